//! Simulated backends for `bazaar demo`, the load bench and the SDK suites.
//! They speak the providers' real wire formats and never reach the network.

pub mod run;
pub mod sim;
