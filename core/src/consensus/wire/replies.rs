//! The encoding of the replies a home node gives its participants (bid refusals, receipts,
//! results, appeal answers).

use super::*;

// ----- replies to participants -----

impl Canonical for BidError {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            BidError::WrongChain { expected, found } => {
                out.push(0);
                expected.encode(out);
                found.encode(out);
            }
            BidError::UnknownParticipant(p) => {
                out.push(1);
                p.encode(out);
            }
            BidError::WrongArea {
                participant,
                registered,
                found,
            } => {
                out.push(2);
                participant.encode(out);
                registered.encode(out);
                found.encode(out);
            }
            BidError::WrongHome {
                participant,
                home,
                this,
            } => {
                out.push(3);
                participant.encode(out);
                home.encode(out);
                this.encode(out);
            }
            BidError::NoSteps => out.push(4),
            BidError::BadStep { step, reason } => {
                out.push(5);
                // A step index is below MAX_BID_STEPS; decoding enforces it.
                (*step as u32).encode(out);
                encode_str(reason, out);
            }
            BidError::BadSignature(p) => {
                out.push(6);
                p.encode(out);
            }
            BidError::ReplayedNonce { participant, nonce } => {
                out.push(7);
                participant.encode(out);
                nonce.encode(out);
            }
            BidError::EmptyDelivery => out.push(8),
            BidError::BatchFull { height } => {
                out.push(9);
                height.encode(out);
            }
            BidError::OffSchedule { reason } => {
                out.push(10);
                encode_str(reason, out);
            }
            BidError::GateClosed { height, gate } => {
                out.push(11);
                height.encode(out);
                gate.encode(out);
            }
            BidError::TooFarAhead {
                height,
                open,
                ahead,
            } => {
                out.push(12);
                height.encode(out);
                open.encode(out);
                ahead.encode(out);
            }
            BidError::Revoked {
                participant,
                height,
            } => {
                out.push(13);
                participant.encode(out);
                height.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => BidError::WrongChain {
                expected: field(r, "expected")?,
                found: field(r, "found")?,
            },
            1 => BidError::UnknownParticipant(field(r, "participant")?),
            2 => BidError::WrongArea {
                participant: field(r, "participant")?,
                registered: field(r, "registered")?,
                found: field(r, "found")?,
            },
            3 => BidError::WrongHome {
                participant: field(r, "participant")?,
                home: field(r, "home")?,
                this: field(r, "this")?,
            },
            4 => BidError::NoSteps,
            5 => {
                let step = u32::decode(r).map_err(|e| e.within("step"))?;
                if step as usize >= MAX_BID_STEPS {
                    return Err(DecodeError::new(DecodeErrorKind::TooLong {
                        len: step.into(),
                        max: MAX_BID_STEPS - 1,
                    })
                    .within("step"));
                }
                BidError::BadStep {
                    step: step as usize,
                    reason: decode_str(r, MAX_DETAIL_LEN).map_err(|e| e.within("reason"))?,
                }
            }
            6 => BidError::BadSignature(field(r, "participant")?),
            7 => BidError::ReplayedNonce {
                participant: field(r, "participant")?,
                nonce: field(r, "nonce")?,
            },
            8 => BidError::EmptyDelivery,
            9 => BidError::BatchFull {
                height: field(r, "height")?,
            },
            10 => BidError::OffSchedule {
                reason: decode_str(r, MAX_DETAIL_LEN).map_err(|e| e.within("reason"))?,
            },
            11 => BidError::GateClosed {
                height: field(r, "height")?,
                gate: field(r, "gate")?,
            },
            12 => BidError::TooFarAhead {
                height: field(r, "height")?,
                open: field(r, "open")?,
                ahead: field(r, "ahead")?,
            },
            13 => BidError::Revoked {
                participant: field(r, "participant")?,
                height: field(r, "height")?,
            },

            value => return Err(invalid(value)),
        })
    }
}

impl Canonical for Reply {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Receipt(r) => {
                out.push(0);
                r.encode(out);
            }
            Reply::BidRejected { bid, reason } => {
                out.push(1);
                bid.encode(out);
                reason.encode(out);
            }
            Reply::AppealForwarded { height } => {
                out.push(2);
                height.encode(out);
            }
            Reply::AppealRejected { reason } => {
                out.push(3);
                encode_str(reason, out);
            }
            Reply::AppealResolved { height, resolution } => {
                out.push(4);
                height.encode(out);
                resolution.encode(out);
            }
            Reply::Result {
                height,
                block,
                trades,
            } => {
                out.push(5);
                height.encode(out);
                block.encode(out);
                encode_seq(trades, out);
            }
            Reply::ChangeAccepted { change, height } => {
                out.push(6);
                change.encode(out);
                height.encode(out);
            }
            Reply::ChangeRefused { change, reason } => {
                out.push(7);
                change.encode(out);
                encode_str(reason, out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match u8::decode(r)? {
            0 => Reply::Receipt(field::<SignedReceipt>(r, "receipt")?),
            1 => Reply::BidRejected {
                bid: field(r, "bid")?,
                reason: field(r, "reason")?,
            },
            2 => Reply::AppealForwarded {
                height: field(r, "height")?,
            },
            3 => Reply::AppealRejected {
                reason: decode_str(r, MAX_DETAIL_LEN).map_err(|e| e.within("reason"))?,
            },
            4 => Reply::AppealResolved {
                height: field(r, "height")?,
                resolution: field::<AppealResolution>(r, "resolution")?,
            },
            5 => Reply::Result {
                height: field(r, "height")?,
                block: field(r, "block")?,
                trades: decode_seq(r, MAX_REPORTED_TRADES).map_err(|e| e.within("trades"))?,
            },
            6 => Reply::ChangeAccepted {
                change: field(r, "change")?,
                height: field(r, "height")?,
            },
            7 => Reply::ChangeRefused {
                change: field(r, "change")?,
                reason: decode_str(r, MAX_DETAIL_LEN).map_err(|e| e.within("reason"))?,
            },
            value => return Err(invalid(value)),
        })
    }
}
