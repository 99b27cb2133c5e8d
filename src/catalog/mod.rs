//! The model catalog: what each model is, who serves it, what it costs and can do.
//! Depends on nothing else in the crate; router and billing read it.

pub mod entry;

pub use entry::{parse_usd_micros, Capabilities, Limits, Price, Tier};
