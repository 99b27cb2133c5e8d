#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods
)]

//! Integration tests: the real gateway on an ephemeral port against mock upstreams.
//! One binary, one module per feature.

mod common;

mod anthropic_thinking;
mod billing;
mod budgets;
mod catalog;
mod chat;
mod config_examples;
mod conformance;
mod errors;
mod fastpath;
mod feedback;
mod first_hour;
mod fuzz;
mod hostile;
mod hostile_limits;
mod hostile_more;
mod ledger;
mod lifecycle;
mod messages;
mod meter_matrix;
mod metering;
mod predictor;
mod reload;
mod replicas;
mod responses;
mod responses_stored;
mod responses_translation;
mod routing;
mod transport;
mod upstream_limits;
