//! Clearing benchmarks (written below).
fn main() {}
