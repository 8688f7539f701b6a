//! # tieline-checker
//!
//! The model checker around the core's state machine (its own issue), and the link between
//! `spec/PROTOCOL.md` and the code: every property id in the spec names the tests that check it.

pub mod spec;
