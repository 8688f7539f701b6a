//! Grid models for security checks and nodal clearing: a reader of MATPOWER cases and the DC
//! power transfer distribution factors (PTDF) that turn line limits into linear cuts over bid
//! injections (spec C9).
//!
//! Pure: cases are parsed from text handed in by the caller. Floating point is fine here: a
//! grid model is private to the node that holds it, and what leaves the node (a cut) is
//! fixed-point.

pub mod matpower;
pub mod ptdf;

pub use matpower::{Branch, Bus, Case, GenCost, Generator, MatpowerError};
pub use ptdf::{GridError, Ptdf, line_limit_cuts};
