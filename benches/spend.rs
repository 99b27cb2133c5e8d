//! Spend queries at scale: seeds a SQLite ledger with 10 million rows (or
//! `BAZAAR_BENCH_ROWS`) and times the spend API's queries through `Ledger`
//! (`cargo bench --bench ledger` prints the same after its write figures).
//! Run: `cargo bench --bench spend` (the seeded file is kept in target/ for reruns).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_types,
    clippy::disallowed_methods
)]

#[path = "common/spend.rs"]
mod spend;

fn main() {
    let rows: i64 = std::env::var("BAZAAR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(spend::time_spend_queries(rows));
}
