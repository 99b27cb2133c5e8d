//! Metering: usage → cost, gateway keys, budgets, limits and the ledger.
//! Never on the request path's critical section beyond in-memory work.

pub mod keys;
