//! Routing policies and their weights: how survivors of the filters are ordered. The
//! types are plain config data and live in `config::routes`; they are re-exported here
//! so `router::policy::{Policy, Weights}` keep naming them.

pub use crate::config::routes::{Policy, Weights};
