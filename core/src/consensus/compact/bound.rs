//! Every message of a valid round fits one frame (spec D25): the largest frame of each clearing
//! rule, counted item by item at its encoded size, and the build-time checks against the
//! frame limit.

use super::*;

// ----- Every message of a valid round fits one frame (spec D25) -----
//
// A frame's size is bounded by the limits of what it carries, each counted at its encoded
// size; the build fails if a limit is raised past the frame limit. A block body's frame holds:
// - a reference per batch, at most one batch per member;
// - per bid step of the round (at most the rule's `max_round_steps`, each home node's batch at
//   most its share, D25), plus the steps of the upheld omission appeals' bids: one award, and
//   at most one trade under a coupled rule (one per cleared bid, no counterparty) or two under
//   pay-as-bid (two per match, one per side, and every match but a product's last exhausts a
//   step); every award and trade of a valid block names a bid of its batches or appeals
//   (V6), so each travels by position. A rejected bid has no award or trade, and its
//   rejection is smaller than one step's award;
// - the appeals (at most `MAX_APPEALS`);
// - the objections (at most `MAX_NEGOTIATION_BYTES`), and the clearing's cuts as places in
//   them (V8: every cut comes from a recorded security objection);
// - the outcome's prices and flows (at most `MAX_OUTCOME_ROWS` each), the skipped primaries,
//   the skip certificate, the evidence and the fixed fields.

/// Encoded sizes of the fixed-size items a frame carries, checked against their encodings by
/// `the_frame_bound_counts_each_item_at_its_encoded_size`.
pub(super) const SEQ_LEN: usize = 4;
pub(super) const BID_AT_LEN: usize = 2 + 4;
pub(super) const AWARD_AT_LEN: usize = 1 + BID_AT_LEN + 2 + 8;
/// A trade by position without a counterparty (a coupled rule's), and with one.
pub(super) const TRADE_AT_LEN: [usize; 2] =
    [1 + BID_AT_LEN + 8 + 8 + 1, 1 + BID_AT_LEN + 8 + 8 + 1 + 4];
pub(super) const CUT_ENTRY_LEN: usize = 1 + 2 + 2;
pub(super) const BATCH_REF_LEN: usize = 8 + 2 + 32;
pub(super) const REJECTION_LEN: usize = 32 + 1;
pub(super) const PRODUCT_LEN: usize = 8 + 4 + 1 + 1;
/// An area price, a bus price, a tie flow and a cut price.
pub(super) const OUTCOME_ROW_LEN: usize =
    (PRODUCT_LEN + 2 + 8) + (PRODUCT_LEN + 4 + 8) + (PRODUCT_LEN + 2 + 8) + 8;
/// Everything of a body that is not a list, and the lists' lengths, generously.
pub(super) const BODY_FIXED_LEN: usize = 512;
/// A place's list lengths and kept prefixes.
pub(super) const PLACE_FIXED_LEN: usize = 4 * SEQ_LEN + 4 + 4;
/// Everything of a frame around its bodies: the encoding's tag and version, the base, the
/// message's variant, a proposal's stamp and header or a block's header and certificate, and
/// the places' fixed fields.
pub(super) const FRAME_FIXED_LEN: usize = MESSAGE_OVERHEAD
    + 1
    + 48
    + <Signed<crate::block::Vote> as Tagged>::MAX_ENCODED_LEN
    + <crate::block::BlockHeader as Tagged>::MAX_ENCODED_LEN
    + <crate::block::QuorumCertificate as Tagged>::MAX_ENCODED_LEN
    + SEQ_LEN
    + PLACE_FIXED_LEN;

/// The most one bid step adds to a body's frame, with `trades` trades per step at `trade_len`
/// bytes each.
pub(super) const fn step_len(trades: usize, trade_len: usize) -> usize {
    let len = AWARD_AT_LEN + trades * trade_len;
    if len > REJECTION_LEN {
        len
    } else {
        REJECTION_LEN
    }
}

/// The most a block body's frame takes under `rule` (spec D25).
pub const fn body_frame_bound(rule: ClearingRule) -> usize {
    let step = match rule {
        ClearingRule::PayAsBid => step_len(2, TRADE_AT_LEN[1]),
        ClearingRule::UniformPrice | ClearingRule::ZonalCoupling => step_len(1, TRADE_AT_LEN[0]),
    };
    BODY_FIXED_LEN
        + MAX_MEMBERS * BATCH_REF_LEN
        + (rule.max_round_steps() + MAX_APPEALS * MAX_BID_STEPS) * step
        + MAX_APPEALS * (<Signed<Appeal> as Tagged>::MAX_ENCODED_LEN + 2 + 5)
        + MAX_NEGOTIATION_BYTES
        + MAX_OUTCOME_ROWS * (CUT_ENTRY_LEN + OUTCOME_ROW_LEN)
        + MAX_VIEW as usize * 2
        + 1
        + <SkipCertificate as Tagged>::MAX_ENCODED_LEN
        + MAX_EVIDENCE * <Evidence as Tagged>::MAX_ENCODED_LEN
}

/// The most any frame takes under `rule`: a proposal, a decided block or a sync response's
/// lone block (a body and the fixed fields around it), or a skip vote with its locked
/// proposal and held batches.
pub const fn frame_bound(rule: ClearingRule) -> usize {
    FRAME_FIXED_LEN
        + body_frame_bound(rule)
        // A proposal's justification.
        + 1
        + <SkipCertificate as Tagged>::MAX_ENCODED_LEN
        // A skip vote's signed vote, its locked proposal's option byte and its held batches'
        // place.
        + <Signed<SkipVote> as Tagged>::MAX_ENCODED_LEN
        + 1
        + PLACE_FIXED_LEN
        + MAX_MEMBERS * BATCH_REF_LEN
}

const _: () = {
    // Sent as a message, or as the answer to a proposal fetch (a response around the frame).
    assert!(frame_bound(ClearingRule::PayAsBid) + MESSAGE_OVERHEAD <= MAX_WIRE_LEN);
    assert!(frame_bound(ClearingRule::UniformPrice) + MESSAGE_OVERHEAD <= MAX_WIRE_LEN);
    assert!(frame_bound(ClearingRule::ZonalCoupling) + MESSAGE_OVERHEAD <= MAX_WIRE_LEN);
    // The decode limits admit every valid round: an award per step, at most two trades per
    // step, a rejection per bid.
    let coupled = crate::genesis::MAX_ROUND_STEPS_COUPLED + MAX_APPEALS * MAX_BID_STEPS;
    let matched = crate::genesis::MAX_ROUND_STEPS_MATCHED + MAX_APPEALS * MAX_BID_STEPS;
    assert!(coupled <= MAX_AWARDS && matched <= MAX_AWARDS);
    assert!(coupled <= crate::block::MAX_BLOCK_TRADES);
    assert!(2 * matched <= crate::block::MAX_BLOCK_TRADES);
    // A sync response of several blocks holds at most SYNC_CHUNK_BYTES of them.
    assert!(SYNC_CHUNK_BYTES + FRAME_FIXED_LEN <= MAX_WIRE_LEN);
    // A view certificate: the certificate and a reference per member's batch.
    assert!(
        FRAME_FIXED_LEN
            + <SkipCertificate as Tagged>::MAX_ENCODED_LEN
            + MAX_MEMBERS * BATCH_REF_LEN
            <= MAX_WIRE_LEN
    );
};
