//! Logs (and, alongside, metrics): structured JSON lines with the request id.

pub mod logging;
pub mod metrics;
