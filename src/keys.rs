//! The gateway's secret key: 32 random bytes in a file (mode 0600) created on
//! first start. It signs device cookies (and will protect TOTP secrets).
//!
//! The file is written to a temporary name and renamed, so a crash never
//! leaves a short key; a file of the wrong size is an error, never replaced,
//! because replacing it would silently invalidate everything it signed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const KEY_LEN: usize = 32;

/// A loaded secret key. `Debug` never prints it.
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists but is not a key.
    #[error(
        "key file {0}: expected exactly 32 bytes; restore it from backup (replacing it logs every device out)"
    )]
    BadLength(PathBuf),
}

impl SecretKey {
    /// Loads the key, creating it (and its directory) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                Self::from_bytes(&bytes).ok_or_else(|| KeyError::BadLength(path.to_path_buf()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path).map_err(io),
            Err(e) => Err(io(e)),
        }
    }

    /// Loads an existing key without ever creating one (for read-only verbs).
    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).ok_or_else(|| KeyError::BadLength(path.to_path_buf()))
    }

    fn from_bytes(bytes: &[u8]) -> Option<SecretKey> {
        let bytes: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(SecretKey { bytes })
    }

    fn create(path: &Path) -> std::io::Result<SecretKey> {
        let key = SecretKey {
            bytes: rand::random(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut file = private_file(&tmp)?;
        file.write_all(&key.bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        tracing::info!(path = %path.display(), "created the gateway secret key");
        Ok(key)
    }

    /// A keyed MAC over `parts` (each length-prefixed, so parts cannot be shifted).
    pub fn mac(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        self.hmac(domain, parts).finalize().into_bytes().into()
    }

    /// A 32-byte subkey for one purpose (e.g. sealing TOTP secrets): the MAC of
    /// nothing under `domain`, so subkeys of different purposes are unrelated.
    pub fn derive(&self, domain: &str) -> [u8; 32] {
        self.mac(domain, &[])
    }

    /// A key from fixed bytes, for tests.
    #[cfg(test)]
    pub fn from_test_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey { bytes }
    }

    /// Constant-time check of a MAC made by [`SecretKey::mac`].
    pub fn verify(&self, domain: &str, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.hmac(domain, parts).verify_slice(tag).is_ok()
    }

    fn hmac(&self, domain: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
        // HMAC zero-pads a key shorter than the block (64 bytes for SHA-256), so
        // building it from the padded key is the same MAC and cannot fail.
        let mut block = [0u8; 64];
        block[..KEY_LEN].copy_from_slice(&self.bytes);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        // Domain separation: a device-cookie MAC can never pass as another kind.
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/erpguard.key");
        let a = SecretKey::load_or_create(&path).unwrap();
        let b = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(a.bytes, b.bytes);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(format!("{a:?}"), "SecretKey(..)");
    }

    #[test]
    fn a_damaged_key_is_an_error_not_a_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            SecretKey::load_or_create(&path),
            Err(KeyError::BadLength(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
    }

    #[test]
    fn the_mac_is_standard_hmac_sha256_over_the_framed_parts() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_create(&dir.path().join("k")).unwrap();
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes).unwrap();
        for part in [&b"d"[..], b"x"] {
            reference.update(&(part.len() as u64).to_be_bytes());
            reference.update(part);
        }
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(key.mac("d", &[b"x"]), expected);
    }

    #[test]
    fn macs_are_domain_separated_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_create(&dir.path().join("k")).unwrap();
        let tag = key.mac("device", &[b"erp", b"alice"]);
        assert!(key.verify("device", &[b"erp", b"alice"], &tag));
        assert!(!key.verify("grant", &[b"erp", b"alice"], &tag));
        assert!(!key.verify("device", &[b"erpa", b"lice"], &tag));
    }
}
