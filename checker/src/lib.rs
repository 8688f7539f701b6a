//! # tieline-checker
//!
//! Exhaustive, bounded model checking of the very state machine the node runs: a stateright
//! actor adapter around the core's `NodeState` (no protocol logic of its own), the named
//! scenarios, every protocol property of `spec/PROTOCOL.md` as a checker property of the same
//! id, and a catalogue of seeded bugs the checker must catch.

pub mod model;
pub mod mutants;
pub mod properties;
pub mod run;
pub mod scenario;
pub mod search;
pub mod spec;
pub mod trace;
