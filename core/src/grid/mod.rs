//! Grid models for security checks and nodal clearing: a reader of MATPOWER cases, the DC
//! power transfer distribution factors (PTDF) that turn line limits into linear cuts over bid
//! injections (spec C9), and each management node's private security check of its own area
//! (spec 3.8, C20-C25), with the tools that make a consortium of areas from a whole-system
//! case (the RTS-GMLC demo in `data/rts-gmlc/`).
//!
//! Pure: cases are parsed from text handed in by the caller. Floating point is fine here: a
//! grid model is private to the node that holds it, and what leaves the node (a cut) is
//! fixed-point.

pub mod consortium;
pub mod matpower;
pub mod network;
pub mod offers;
pub mod ptdf;
pub mod security;
pub mod split;

pub use consortium::{
    AreaFile, GridConsortium, GridConsortiumError, GridConsortiumOptions, NegotiationError,
};
pub use matpower::{Branch, Bus, Case, GenCost, Generator, MatpowerError};
pub use network::{Network, NetworkLine};
pub use offers::{DEFAULT_POLYNOMIAL_SEGMENTS, Offer, OfferError, OfferSource, case_offers};
pub use ptdf::{GridError, Ptdf, line_limit_cuts};
pub use security::{AreaModel, AreaModelError, LineFlow};
pub use split::{
    AreaCase, Split, SplitColumn, SplitError, TieBranch, TieOrigin, derate_lines, split_by,
    split_by_area,
};
