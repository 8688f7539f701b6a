//! The consensus core: the rotating-primary, verify-and-negotiate protocol of the paper as a
//! pure state machine (spec part 2).
//!
//! [`NodeState::step`] takes the time and one [`Input`] and returns the [`Effect`]s to carry
//! out, in order. The node runtime (QUIC, storage, timers) and the model checker (stateright)
//! are thin adapters around it; neither holds protocol logic.

pub mod compact;
pub mod content;
mod context;
mod node;
pub mod ready;
pub mod rules;
pub mod sim;
mod types;
pub mod wire;

pub use context::{ConstraintList, Context, CutValues, NoGridModel, SecurityCheck};
pub use node::{
    Appeals, BATCH_WAIT_ALLOWANCE_US_PER_BID, Ballot, Intake, Lock, MAX_FALLBACK_LEVELS,
    ManagementNode, Negotiation, NodeState, RoundState, VIEW_ALLOWANCE_US_PER_BID, VerifiedBids,
    ViewChange, VoteSlot,
};
pub use ready::{Outbox, Ready, Storage};
pub use rules::{Honest, Rules};
pub use types::{
    Effect, Input, MAX_SYNC_BLOCKS, Message, Place, Position, Proposal, Record, Reply, RestoreKey,
    Timer,
};
