//! Length-prefixed frames on QUIC streams: a `u32` big-endian length, then the payload.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 64 * 1024;
/// The length prefix.
const PREFIX_LEN: usize = 4;

/// Why a stream's frames cannot be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The declared length is above the limit; nothing of the payload was read.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes of it received)")]
    Truncated {
        /// Bytes received of the incomplete frame, prefix included.
        buffered: usize,
    },
    /// A stream that must carry one frame carried more.
    #[error("unexpected data after the frame")]
    TrailingData,
    /// The stream was reset, or the connection failed.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
}

/// Appends `payload` as one frame to `out`. The caller has checked the length limit.
pub(crate) fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("frame length is checked against the limit");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// One frame as its own buffer.
pub(crate) fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + payload.len());
    encode_into(&mut out, payload);
    out
}

/// Splits the frames out of the bytes a stream delivers, in order, without copying payloads
/// more than once.
#[derive(Debug)]
pub(crate) struct Deframer {
    buf: BytesMut,
    max: usize,
}

impl Deframer {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Adds bytes received from the stream.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. Checks the declared
    /// length as soon as the prefix is in, before buffering the payload.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..PREFIX_LEN].try_into().expect("4 bytes")) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        self.buf.advance(PREFIX_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Bytes held of a frame not yet complete.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Reads frames from a QUIC receive stream.
pub(crate) struct FrameReader {
    stream: quinn::RecvStream,
    deframer: Deframer,
}

impl FrameReader {
    pub(crate) fn new(stream: quinn::RecvStream, max: usize) -> Self {
        Self {
            stream,
            deframer: Deframer::new(max),
        }
    }

    /// The next frame; `Ok(None)` when the stream ends cleanly between frames.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.deframer.next_frame()? {
                return Ok(Some(frame));
            }
            match self.stream.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.deframer.push(&chunk.bytes),
                Ok(None) if self.deframer.buffered() == 0 => return Ok(None),
                Ok(None) => {
                    return Err(FrameError::Truncated {
                        buffered: self.deframer.buffered(),
                    });
                }
                Err(e) => return Err(FrameError::Read(e)),
            }
        }
    }

    /// Reads exactly one frame and the end of the stream.
    pub(crate) async fn single(&mut self) -> Result<Bytes, FrameError> {
        let frame = self
            .next()
            .await?
            .ok_or(FrameError::Truncated { buffered: 0 })?;
        match self.next().await {
            Ok(None) => Ok(frame),
            Ok(Some(_)) => Err(FrameError::TrailingData),
            Err(FrameError::TooLarge { .. }) => Err(FrameError::TrailingData),
            Err(e) => Err(e),
        }
    }

    /// Tells the peer to stop sending on this stream, with `code`.
    pub(crate) fn stop(&mut self, code: u32) {
        // Stopping a stream that already ended is harmless.
        let _ = self.stream.stop(code.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_an_oversized_length_before_its_payload() {
        let mut d = Deframer::new(10);
        d.push(&11u32.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        let mut d = Deframer::new(10);
        d.push(&encode(&[7; 10]));
        assert_eq!(d.next_frame().unwrap().unwrap().as_ref(), &[7; 10]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 0);
    }

    proptest! {
        /// Frames split at arbitrary points come out whole and in order.
        #[test]
        fn frames_survive_any_split(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in proptest::collection::vec(1usize..97, 1..8),
        ) {
            let mut wire = Vec::new();
            for f in &frames {
                encode_into(&mut wire, f);
            }
            let mut d = Deframer::new(300);
            let mut out = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < wire.len() {
                let step = cuts[i % cuts.len()].min(wire.len() - at);
                d.push(&wire[at..at + step]);
                at += step;
                i += 1;
                while let Some(f) = d.next_frame().unwrap() {
                    out.push(f.to_vec());
                }
            }
            prop_assert_eq!(out, frames);
            prop_assert_eq!(d.buffered(), 0);
        }
    }
}
