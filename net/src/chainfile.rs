//! Exported chains: a file of canonical blocks that anyone can audit offline.
//!
//! Layout: the 8-byte magic `TLCHAIN\x01`, then per block a `u32` big-endian length and the
//! block's canonical bytes. Lengths above [`Block::MAX_ENCODED_LEN`] are refused before any
//! allocation.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use tieline_core::block::Block;
use tieline_core::encoding::Tagged;

/// The first bytes of every chain file.
pub const MAGIC: &[u8; 8] = b"TLCHAIN\x01";

/// Why a chain file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ChainFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a chain file.
    #[error("{path} is not a Tieline chain file (bad magic bytes)")]
    BadMagic {
        /// The file.
        path: String,
    },
    /// A block's length prefix is out of bounds or the file is cut short.
    #[error("{path}: block {index} is truncated or its length {len} is out of bounds")]
    BadFrame {
        /// The file.
        path: String,
        /// The block's position, from 0.
        index: usize,
        /// The declared length.
        len: u64,
    },
}

/// Writes blocks to a chain file, replacing it atomically (write to a temporary, then rename).
pub fn write_chain<'a>(path: &Path, blocks: impl IntoIterator<Item = &'a Block>) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = io::BufWriter::new(fs::File::create(&tmp)?);
        f.write_all(MAGIC)?;
        for b in blocks {
            write_frame(&mut f, &b.to_canonical_bytes())?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    fs::rename(tmp, path)
}

fn write_frame(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "block too large"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)
}

/// Reads the encoded blocks of a chain file, undecoded, so the audit sees the exact bytes.
pub fn read_chain(path: &Path) -> Result<Vec<Vec<u8>>, ChainFileError> {
    let p = path.display().to_string();
    let io_err = |source| ChainFileError::Io {
        path: p.clone(),
        source,
    };
    let mut data = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err)?;
    let rest = data
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| ChainFileError::BadMagic { path: p.clone() })?;
    let mut blocks = Vec::new();
    let mut pos = 0usize;
    while pos < rest.len() {
        let bad = |len| ChainFileError::BadFrame {
            path: p.clone(),
            index: blocks.len(),
            len,
        };
        let header: [u8; 4] = rest
            .get(pos..pos + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad(0))?;
        let len = u32::from_be_bytes(header) as usize;
        if len > Block::MAX_ENCODED_LEN {
            return Err(bad(len as u64));
        }
        let body = rest
            .get(pos + 4..pos + 4 + len)
            .ok_or_else(|| bad(len as u64))?;
        blocks.push(body.to_vec());
        pos += 4 + len;
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tieline_core::audit::audit_encoded;
    use tieline_core::crypto::Ed25519;
    use tieline_core::sample::SampleConsortium;

    #[test]
    fn written_chain_reads_back_and_audits() {
        let s = SampleConsortium::new(4, 2);
        let chain = s.chain(3, 8);
        let dir = std::env::temp_dir().join(format!("tieline-chainfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chain.bin");
        write_chain(&path, &chain).unwrap();
        let raw = read_chain(&path).unwrap();
        assert_eq!(raw.len(), 3);
        let summary = audit_encoded(&s.genesis, &Ed25519::default(), &raw).unwrap();
        assert_eq!(summary.blocks, 3);
        assert_eq!(summary.trades, 24);

        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1);
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read_chain(&path),
            Err(ChainFileError::BadFrame { index: 2, .. })
        ));
        fs::write(&path, b"not a chain").unwrap();
        assert!(matches!(
            read_chain(&path),
            Err(ChainFileError::BadMagic { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
