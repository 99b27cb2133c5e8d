//! The per-call router: candidates → filters → scores → an ordered plan, and the
//! fallback loop that walks it. It reads config (policy, weights, breaker settings),
//! catalog facts and live stats. It never builds a request body (adapters do) and
//! imports nothing from billing: it estimates a call's cost only to rank candidates.

pub mod affinity;
pub mod breaker;
pub mod candidates;
pub mod classify;
pub mod explain;
pub mod fallback;
pub mod filter;
pub mod plan;
pub mod policy;
pub mod predict;
pub mod prefs;
pub mod score;
pub mod stats;

pub use candidates::Candidate;
pub use plan::{build_plan, CallShape, RoutePlan, RouterState};
