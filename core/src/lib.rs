//! # tieline-core
//!
//! The pure core of Tieline, a consortium ledger for cross-border electricity trade: the ledger
//! types, their canonical encoding, hashing and signatures, Merkle proofs and the chain audit.
//! Nothing here does I/O, reads a clock, spawns a thread or depends on hash-map iteration
//! order; time and keys come in as arguments.
//!
//! The normative description is `spec/PROTOCOL.md`; property ids (D1, D2, ...) in comments
//! point at it.

pub mod audit;
pub mod block;
pub mod clearing;
pub mod consensus;
pub mod crypto;
pub mod eic;
pub mod encoding;
pub mod genesis;
pub mod grid;
pub mod market;
pub mod merkle;
pub mod registry;
pub mod sample;
pub mod schedule;
pub mod units;

#[cfg(test)]
mod proptests;
