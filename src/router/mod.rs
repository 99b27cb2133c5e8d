//! The per-call router: which backends may serve a request, in which order.
//! It reads the config and catalog; it never sends a request or touches billing.

pub mod fallback;
pub mod plan;

pub use plan::{plan, Candidate, RoutePlan};
