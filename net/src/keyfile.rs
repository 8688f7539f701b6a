//! Key files: a management node's or participant's ed25519 secret, as 64 hex characters.

use std::fs;
use std::io;
use std::path::Path;

use tieline_core::crypto::{Ed25519Signer, Signer};

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The content is not a key.
    #[error("key file {path}: expected 64 hex characters (an ed25519 secret seed)")]
    Malformed {
        /// The file.
        path: String,
    },
}

/// Creates a new random key and writes it to `path`, readable by its owner only. Refuses to
/// overwrite an existing file.
pub fn generate(path: &Path) -> Result<Ed25519Signer, KeyFileError> {
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed);
    let signer = Ed25519Signer::from_seed(seed);
    write(path, &signer)?;
    Ok(signer)
}

/// Writes `signer`'s secret to `path`, readable by its owner only; refuses to overwrite.
pub fn write(path: &Path, signer: &Ed25519Signer) -> Result<(), KeyFileError> {
    let io_err = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(io_err)?;
    io::Write::write_all(
        &mut f,
        format!("{}\n", hex::encode(signer.seed())).as_bytes(),
    )
    .map_err(io_err)
}

/// Reads a key file.
pub fn read(path: &Path) -> Result<Ed25519Signer, KeyFileError> {
    let text = fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| KeyFileError::Malformed {
        path: path.display().to_string(),
    })?;
    Ok(Ed25519Signer::from_seed(seed))
}

/// The public key of a key file's signer, as hex.
pub fn public_hex(signer: &Ed25519Signer) -> String {
    signer.public_key().to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_read_and_refuse_overwrite() {
        let dir = std::env::temp_dir().join(format!("tieline-keyfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        let _ = fs::remove_file(&path);
        let a = generate(&path).unwrap();
        let b = read(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert!(matches!(generate(&path), Err(KeyFileError::Io { .. })));
        fs::write(dir.join("bad.key"), "zz").unwrap();
        assert!(matches!(
            read(&dir.join("bad.key")),
            Err(KeyFileError::Malformed { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
