//! Self-signed certificates for sites without a real one: reused while they cover the site's
//! hosts and stay valid for more than 30 days, otherwise generated anew (only in
//! [`Mode::Run`]). Files are written to a temporary name and renamed, so a crash leaves either
//! the old file or the new one, never half a key; the key is created with mode 0600.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

use super::{Loaded, Mode, SiteCert, TlsError, load_pair};

/// A reused certificate must stay valid at least this long, so it never expires unnoticed
/// between restarts.
const MIN_REMAINING: time::Duration = time::Duration::days(30);
const VALIDITY: time::Duration = time::Duration::days(365);
// Backdated so that clients with a slightly slow clock accept a fresh certificate.
const BACKDATE: time::Duration = time::Duration::hours(1);
const ORGANIZATION: &str = "erpguard self-signed";

/// The outcome for one self-signed site.
pub(super) enum Obtained {
    /// Loaded from `dir`, reused or freshly generated.
    Ready(Loaded),
    /// [`Mode::CheckOnly`] and nothing usable on disk: the note says what `run` will do.
    Pending(TlsError),
}

/// Why the files on disk cannot be reused.
enum Unusable {
    Missing,
    Invalid(String),
}

/// Loads the site's self-signed certificate, generating it first if needed and allowed.
pub(super) fn obtain(site: &SiteCert, dir: &Path, mode: Mode) -> Result<Obtained, TlsError> {
    let (cert, key) = file_paths(dir, &site.site)?;
    let problem = match reusable(&cert, &key, &site.hosts) {
        Ok(loaded) => return Ok(Obtained::Ready(loaded)),
        Err(problem) => problem,
    };
    let name = site.site.clone();
    if mode == Mode::CheckOnly {
        return Ok(Obtained::Pending(match problem {
            Unusable::Missing => TlsError::SelfSignedPending {
                site: name,
                path: cert,
            },
            Unusable::Invalid(reason) => TlsError::SelfSignedStale {
                site: name,
                path: cert,
                reason,
            },
        }));
    }
    if let Unusable::Invalid(reason) = &problem {
        tracing::warn!(site = %name, cert = %cert.display(), %reason, "self-signed certificate is not usable; generating a new one");
    }
    generate(site, dir, &cert, &key)?;
    let loaded = load_pair(&cert, &key)?;
    tracing::info!(site = %name, cert = %cert.display(), key = %key.display(), "generated a self-signed certificate; browsers warn about it until a trusted certificate replaces it");
    Ok(Obtained::Ready(loaded))
}

/// `<dir>/<site>.selfsigned.pem` and `.key`; the site name must be a plain file name stem so
/// that it cannot point outside `dir`.
fn file_paths(dir: &Path, site: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let plain = site
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if site.is_empty() || site.starts_with('.') || !plain {
        return Err(TlsError::BadSiteName {
            site: site.to_owned(),
        });
    }
    Ok((
        dir.join(format!("{site}.selfsigned.pem")),
        dir.join(format!("{site}.selfsigned.key")),
    ))
}

fn reusable(cert: &Path, key: &Path, hosts: &[String]) -> Result<Loaded, Unusable> {
    if !cert.exists() && !key.exists() {
        return Err(Unusable::Missing);
    }
    let loaded = load_pair(cert, key).map_err(|e| Unusable::Invalid(e.to_string()))?;
    if let Some(host) = hosts.iter().find(|host| !loaded.names.covers(host)) {
        return Err(Unusable::Invalid(format!("it does not cover host {host}")));
    }
    let deadline = OffsetDateTime::now_utc().checked_add(MIN_REMAINING);
    if deadline.is_none_or(|deadline| loaded.not_after <= deadline) {
        return Err(Unusable::Invalid("it expires within 30 days".to_owned()));
    }
    Ok(loaded)
}

/// Generates a certificate and key for the site's hosts and writes them into `dir`.
fn generate(site: &SiteCert, dir: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let (cert_pem, key_pem) = build(&site.hosts).map_err(|detail| match detail {
        BuildError::NoHosts => TlsError::NoHosts {
            site: site.site.clone(),
        },
        BuildError::Rcgen(detail) => TlsError::Generate {
            site: site.site.clone(),
            detail,
        },
    })?;
    create_dir(dir)?;
    // Key first: if the process dies between the two renames, the old certificate no longer
    // matches the new key, and the next start regenerates both.
    write_atomic(key, key_pem.as_bytes(), 0o600)?;
    write_atomic(cert, cert_pem.as_bytes(), 0o644)
}

enum BuildError {
    NoHosts,
    Rcgen(String),
}

/// An ECDSA P-256 certificate for `hosts` (IP literals as IP SANs), valid for a year, as PEM
/// (certificate, PKCS#8 key).
fn build(hosts: &[String]) -> Result<(String, String), BuildError> {
    let sans: Vec<String> = hosts
        .iter()
        .map(|h| super::normalize_host(h).into_owned())
        .collect();
    let Some(first) = sans.first().cloned() else {
        return Err(BuildError::NoHosts);
    };
    let rcgen_err = |e: rcgen::Error| BuildError::Rcgen(e.to_string());
    let mut params = CertificateParams::new(sans).map_err(rcgen_err)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, first);
    subject.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = subject;
    let now = OffsetDateTime::now_utc();
    let out_of_range = || BuildError::Rcgen("the system clock is out of range".to_owned());
    params.not_before = now.checked_sub(BACKDATE).ok_or_else(out_of_range)?;
    params.not_after = now.checked_add(VALIDITY).ok_or_else(out_of_range)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_err)?;
    let cert = params.self_signed(&key_pair).map_err(rcgen_err)?;
    Ok((cert.pem(), key_pair.serialize_pem()))
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        // Only applies to directories created here; an existing directory keeps its mode.
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `data` to a new temporary file beside `path` with `mode`, syncs it and renames it
/// over `path`; on failure the temporary file is removed.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = temp_path(path);
    let result = write_new(&tmp, data, mode).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the error that matters is the one returned below.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    sync_parent(path);
    Ok(())
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    // `create_new` refuses an existing file or symlink, so nothing else gets overwritten.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp.{}.{nanos}", std::process::id()))
}

// Makes the rename durable; failing here loses nothing that a regeneration cannot redo.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let dir = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(handle) = fs::File::open(dir) {
            let _ = handle.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
