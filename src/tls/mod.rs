//! TLS termination: one certificate per site, chosen by SNI.
//!
//! What this module promises:
//! - **Fail closed.** A handshake without SNI, or whose SNI no loaded certificate covers, gets
//!   no certificate and fails. There is no default certificate.
//! - **Checked at load, not at handshake.** Every certificate is checked when it is loaded:
//!   readable PEM, a private key that matches the leaf certificate, within its validity period.
//!   Any problem is a [`TlsError`] that names the file and says how to fix it. Nothing here
//!   panics on a bad file. A certificate that expires within 14 days loads with a warning.
//! - **No key material in logs or errors.** Messages name files, never their contents.
//! - **TLS 1.2 and 1.3 only, `ring` only.** The provider is passed explicitly; the process-wide
//!   default provider is neither used nor installed. ALPN offers `h2` and `http/1.1`; session
//!   resumption (tickets and a session cache) is on; 0-RTT early data is off.
//! - **Atomic swaps.** [`SniResolver::replace`] swaps the whole [`CertStore`] while handshakes
//!   go on; each handshake reads the current store without taking a lock.
//! - **Self-signed certificates** ([`CertSource::SelfSigned`]) are generated only in
//!   [`Mode::Run`], written atomically with the key at mode 0600; [`Mode::CheckOnly`] never
//!   writes anything.

mod selfsigned;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// A certificate expiring sooner than this still loads, with a warning.
const EXPIRY_WARNING: time::Duration = time::Duration::days(14);
/// PEM certificate chains and keys are a few KiB; refusing big files keeps a wrong path
/// (a log file, `/dev/zero`) from exhausting memory.
const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;
/// Sessions kept for TLS 1.2 session-ID resumption (tickets need no server state).
const SESSION_CACHE_ENTRIES: usize = 4096;
/// The only protocol versions served: nothing below TLS 1.2.
const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Where one site's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// PEM files: full chain (leaf first) and private key (PKCS#8, PKCS#1 or SEC1).
    Files {
        /// The certificate chain file, leaf certificate first.
        cert: PathBuf,
        /// The private key file of the leaf certificate.
        key: PathBuf,
    },
    /// Generated on first start for the site's hosts and kept in `dir` as
    /// `<site>.selfsigned.pem` / `<site>.selfsigned.key` (key mode 0600 on unix).
    SelfSigned {
        /// Directory holding the generated files; created in [`Mode::Run`] if missing.
        dir: PathBuf,
    },
}

/// One site's certificate configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCert {
    /// The site's name from the config (also the self-signed file name stem).
    pub site: String,
    /// The host names the site serves; its certificate must cover each of them.
    pub hosts: Vec<String>,
    /// Where the certificate comes from.
    pub source: CertSource,
}

/// Whether loading may create files (run) or must only read (check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `erpguard run`: missing or stale self-signed certificates are generated.
    Run,
    /// `erpguard check`: nothing is written; missing self-signed certificates are noted.
    CheckOnly,
}

/// What was loaded for one site, for `erpguard check` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The site's name.
    pub site: String,
    /// The names the certificate covers (lower-case DNS names, then IP addresses).
    pub names: Vec<String>,
    /// End of the leaf certificate's validity.
    pub not_after: SystemTime,
    /// The certificate file it was loaded from.
    pub path: Option<PathBuf>,
}

/// All certificates of one config generation, indexed by the DNS names in their SANs.
/// `CertStore::default()` is empty and so refuses every handshake.
#[derive(Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    // `*.example.com` is stored under its parent domain `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    ips: HashSet<IpAddr>,
    pending_hosts: HashSet<String>,
    pending_self_signed: Vec<String>,
    notes: Vec<String>,
    info: Vec<CertInfo>,
    files: Vec<PathBuf>,
}

impl CertStore {
    /// Loads (and in [`Mode::Run`] generates, for self-signed sites) every site's certificate.
    /// The first problem found is returned and no store is built (self-signed files generated
    /// for earlier sites stay on disk and are reused next time).
    pub fn load(sites: &[SiteCert], mode: Mode) -> Result<CertStore, TlsError> {
        let mut builder = Builder::default();
        for site in sites {
            builder.add_site(site, mode)?;
        }
        Ok(builder.store)
    }

    /// The certificate for an SNI name (ASCII case-insensitive): exact SAN match first, then a
    /// one-label wildcard (`*.example.com` covers `erp.example.com`, not `a.b.example.com`,
    /// not `example.com`).
    pub fn lookup(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let name = normalize_host(sni);
        if let Some(key) = self.exact.get(name.as_ref()) {
            return Some(Arc::clone(key));
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.wildcard.get(parent).map(Arc::clone)
    }

    /// True if some certificate covers `host` (used by config validation: every site host must
    /// be covered). IP SANs count here, although a client connecting by IP sends no SNI and so
    /// is refused; hosts of self-signed certificates still to be generated count as covered.
    pub fn covers(&self, host: &str) -> bool {
        let name = normalize_host(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.ips.contains(&ip) || self.pending_hosts.contains(name.as_ref());
        }
        self.lookup(&name).is_some() || self.pending_hosts.contains(name.as_ref())
    }

    /// One entry per site whose certificate was loaded, in config order.
    pub fn info(&self) -> &[CertInfo] {
        &self.info
    }

    /// Every file this store was loaded from, for change detection by the caller.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    /// Sites whose self-signed certificate does not exist (or is stale) and will be generated
    /// on the next `erpguard run` ([`Mode::CheckOnly`] only).
    pub fn pending_self_signed(&self) -> &[String] {
        &self.pending_self_signed
    }

    /// Operator notes for `erpguard check`, one per pending self-signed site, saying why.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

// Hand-written so that no signing key is ever formatted, whatever its Debug impl prints.
impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<&String> = self.exact.keys().collect();
        exact.sort();
        let mut wildcard: Vec<&String> = self.wildcard.keys().collect();
        wildcard.sort();
        f.debug_struct("CertStore")
            .field("exact", &exact)
            .field("wildcard", &wildcard)
            .field("pending_self_signed", &self.pending_self_signed)
            .finish_non_exhaustive()
    }
}

/// rustls cert resolver whose store can be swapped atomically while connections are being
/// accepted.
#[derive(Debug)]
pub struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl SniResolver {
    /// A resolver serving `store`.
    pub fn new(store: CertStore) -> Arc<Self> {
        Arc::new(Self {
            store: ArcSwap::from_pointee(store),
        })
    }

    /// Serves `store` from the next handshake on; handshakes under way keep the old one.
    pub fn replace(&self, store: CertStore) {
        self.store.store(Arc::new(store));
    }

    /// The store currently served.
    pub fn current(&self) -> arc_swap::Guard<Arc<CertStore>> {
        self.store.load()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI, no certificate: a default certificate would answer scanners and hosts we do
        // not serve.
        let Some(sni) = hello.server_name() else {
            tracing::debug!("TLS handshake without SNI refused");
            return None;
        };
        let found = self.store.load().lookup(sni);
        if found.is_none() {
            // `?` formats the client-supplied name escaped, so it cannot forge log lines.
            tracing::debug!(sni = ?sni, "TLS handshake for an unknown SNI refused");
        }
        found
    }
}

/// TLS 1.2 and 1.3 only, ring provider, ALPN ["h2", "http/1.1"], session resumption (tickets +
/// cache) on, the resolver above.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    // Stateless tickets with keys rotated by rustls; they outlive the session cache.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
    // `max_early_data_size` stays 0: 0-RTT data can be replayed, and a replayed ERP POST is an
    // action done twice.
    Ok(Arc::new(config))
}

/// Why certificates could not be loaded; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error(
        "cannot read {what} file {path}: {source} (check the path and the file's permissions; relative paths are resolved from the working directory)"
    )]
    Read {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is far larger than any certificate or key.
    #[error(
        "{path}: file is larger than 1 MiB, so it is not a PEM certificate or key (check the path)"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not well-formed PEM.
    #[error(
        "{path}: not a valid PEM file ({detail}); expected -----BEGIN ...----- / -----END ...----- blocks"
    )]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong, without the file's contents.
        detail: &'static str,
    },
    /// The certificate file has no certificate.
    #[error(
        "{path}: no certificate found (expected one or more PEM CERTIFICATE blocks, leaf certificate first)"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The leaf certificate could not be parsed.
    #[error(
        "{path}: cannot parse the certificate ({detail}); re-export it as a PEM X.509 certificate"
    )]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// The certificate names no host at all.
    #[error(
        "{path}: the certificate names no host (no DNS or IP subject alternative name, no usable subject CN); issue it for the site's host names"
    )]
    NoNames {
        /// The file.
        path: PathBuf,
    },
    /// The key file has no private key block.
    #[error(
        "{path}: no private key found (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds a passphrase-protected key.
    #[error(
        "{path}: the private key is encrypted; store it unencrypted and readable only by erpguard (for example `openssl pkey -in {path} -out NEW.key`)"
    )]
    EncryptedKey {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds several keys, so which one is meant is ambiguous.
    #[error("{path}: more than one private key found; keep only the key of the certificate")]
    MultipleKeys {
        /// The file.
        path: PathBuf,
    },
    /// The key's type or parameters are not supported.
    #[error(
        "{path}: unsupported private key ({detail}); use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key"
    )]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// rustls' complaint.
        detail: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error(
        "{cert}: the private key does not match the certificate (key file {key}; check that both files belong to the same certificate)"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The leaf certificate's validity has ended.
    #[error("{path}: certificate expired on {date} (renew it)")]
    Expired {
        /// The file.
        path: PathBuf,
        /// The `notAfter` date, `YYYY-MM-DD` (UTC).
        date: String,
    },
    /// The leaf certificate's validity has not started.
    #[error("{path}: certificate is not valid before {date} (check the system clock)")]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// The `notBefore` date, `YYYY-MM-DD` (UTC).
        date: String,
    },
    /// The site name cannot be used as a file name.
    #[error(
        "site {site}: the site name cannot name a self-signed certificate file (use only letters, digits, '-', '_' and '.', not starting with '.')"
    )]
    BadSiteName {
        /// The site.
        site: String,
    },
    /// A self-signed certificate needs at least one host.
    #[error(
        "site {site}: no hosts to put in a self-signed certificate (give the site at least one host)"
    )]
    NoHosts {
        /// The site.
        site: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("site {site}: cannot generate a self-signed certificate: {detail}")]
    Generate {
        /// The site.
        site: String,
        /// rcgen's complaint.
        detail: String,
    },
    /// Writing a generated file (or creating its directory) failed.
    #[error(
        "cannot write {path}: {source} (check that the directory exists or can be created and is writable by the user erpguard runs as)"
    )]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Not fatal: a note in [`Mode::CheckOnly`] (see [`CertStore::notes`]).
    #[error(
        "site {site}: self-signed certificate {path} does not exist yet; it is generated on first `erpguard run`"
    )]
    SelfSignedPending {
        /// The site.
        site: String,
        /// The certificate file to be generated.
        path: PathBuf,
    },
    /// Not fatal: a note in [`Mode::CheckOnly`] (see [`CertStore::notes`]).
    #[error(
        "site {site}: self-signed certificate {path} is not usable ({reason}); it is regenerated on the next `erpguard run`"
    )]
    SelfSignedStale {
        /// The site.
        site: String,
        /// The certificate file.
        path: PathBuf,
        /// Why it cannot be reused.
        reason: String,
    },
    /// rustls refused the server configuration.
    #[error("cannot build the TLS server configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// A certificate with its key, checked and ready to serve.
struct Loaded {
    key: Arc<CertifiedKey>,
    names: Names,
    not_after: OffsetDateTime,
    cert_path: PathBuf,
    key_path: PathBuf,
}

/// The names a certificate covers: lower-case DNS names (maybe `*.` wildcards) and IPs.
#[derive(Debug, Default)]
struct Names {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

impl Names {
    fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ips.is_empty()
    }

    fn push_dns(&mut self, raw: &str) {
        let name = normalize_host(raw).into_owned();
        if !is_dns_pattern(&name) {
            // Partial wildcards (`erp*.example.com`) and junk are never matched: skipping them
            // can only make fewer hosts match.
            tracing::debug!(name = ?raw, "ignoring unusable certificate name");
        } else if !self.dns.contains(&name) {
            self.dns.push(name);
        }
    }

    /// Whether these names cover `host`, with the same rules as [`CertStore::lookup`].
    fn covers(&self, host: &str) -> bool {
        let host = normalize_host(host);
        match host.parse::<IpAddr>() {
            Ok(ip) => self.ips.contains(&ip),
            Err(_) => self.dns.iter().any(|name| dns_matches(name, &host)),
        }
    }

    fn to_strings(&self) -> Vec<String> {
        let ips = self.ips.iter().map(IpAddr::to_string);
        self.dns.iter().cloned().chain(ips).collect()
    }
}

/// Accumulates a [`CertStore`] site by site.
#[derive(Default)]
struct Builder {
    store: CertStore,
    // Names some site lists among its own hosts: such a claim beats a name that merely
    // appears in another site's certificate.
    owned_exact: HashSet<String>,
    owned_wildcard: HashSet<String>,
    // Sites sharing one cert/key pair share one `CertifiedKey`.
    cache: HashMap<(PathBuf, PathBuf), Arc<Loaded>>,
}

impl Builder {
    fn add_site(&mut self, site: &SiteCert, mode: Mode) -> Result<(), TlsError> {
        let loaded = match &site.source {
            CertSource::Files { cert, key } => self.load_cached(cert, key)?,
            CertSource::SelfSigned { dir } => match selfsigned::obtain(site, dir, mode)? {
                selfsigned::Obtained::Ready(loaded) => Arc::new(loaded),
                selfsigned::Obtained::Pending(note) => {
                    self.add_pending(site, &note);
                    return Ok(());
                }
            },
        };
        warn_if_expiring(&site.site, &loaded);
        self.index(site, &loaded);
        Ok(())
    }

    fn load_cached(&mut self, cert: &Path, key: &Path) -> Result<Arc<Loaded>, TlsError> {
        let id = (cert.to_path_buf(), key.to_path_buf());
        if let Some(loaded) = self.cache.get(&id) {
            return Ok(Arc::clone(loaded));
        }
        let loaded = Arc::new(load_pair(cert, key)?);
        self.cache.insert(id, Arc::clone(&loaded));
        Ok(loaded)
    }

    fn add_pending(&mut self, site: &SiteCert, note: &TlsError) {
        let store = &mut self.store;
        store.pending_self_signed.push(site.site.clone());
        store.notes.push(note.to_string());
        let hosts = site.hosts.iter().map(|h| normalize_host(h).into_owned());
        store.pending_hosts.extend(hosts);
    }

    fn index(&mut self, site: &SiteCert, loaded: &Loaded) {
        let own: Vec<String> = site
            .hosts
            .iter()
            .map(|h| normalize_host(h).into_owned())
            .collect();
        for name in &loaded.names.dns {
            let is_own = own.iter().any(|host| dns_matches(name, host));
            let (map, owned, key) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.store.wildcard, &mut self.owned_wildcard, parent),
                None => (&mut self.store.exact, &mut self.owned_exact, name.as_str()),
            };
            claim(map, owned, key, &loaded.key, is_own, &site.site);
        }
        self.store.ips.extend(loaded.names.ips.iter().copied());
        self.store.info.push(CertInfo {
            site: site.site.clone(),
            names: loaded.names.to_strings(),
            not_after: system_time(loaded.not_after),
            path: Some(loaded.cert_path.clone()),
        });
        for file in [&loaded.cert_path, &loaded.key_path] {
            if !self.store.files.contains(file) {
                self.store.files.push(file.clone());
            }
        }
    }
}

/// Maps `name` to `key` unless an earlier claim wins: a site's own host beats an incidental
/// SAN of another site's certificate; between equals the first site keeps it.
fn claim(
    map: &mut HashMap<String, Arc<CertifiedKey>>,
    owned: &mut HashSet<String>,
    name: &str,
    key: &Arc<CertifiedKey>,
    is_own: bool,
    site: &str,
) {
    let take = match map.get(name) {
        None => true,
        Some(existing) if Arc::ptr_eq(existing, key) => false,
        Some(_) if owned.contains(name) => {
            if is_own {
                tracing::warn!(
                    site,
                    name,
                    "another site's certificate already serves this name; keeping the first"
                );
            }
            return;
        }
        Some(_) => is_own,
    };
    if take {
        map.insert(name.to_owned(), Arc::clone(key));
    }
    if is_own {
        owned.insert(name.to_owned());
    }
}

fn warn_if_expiring(site: &str, loaded: &Loaded) {
    let now = OffsetDateTime::now_utc();
    if now
        .checked_add(EXPIRY_WARNING)
        .is_none_or(|soon| loaded.not_after < soon)
    {
        let date = ymd(loaded.not_after);
        tracing::warn!(site, cert = %loaded.cert_path.display(), expires = %date, "certificate expires within 14 days; renew it");
    }
}

/// Reads, parses and cross-checks one certificate chain and its private key.
fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
    let chain = read_cert_chain(cert_path)?;
    let key_der = read_private_key(key_path)?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let (names, not_after) = inspect_leaf(leaf, cert_path)?;
    let key = certified_key(chain, key_der, cert_path, key_path)?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
        not_after,
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
    })
}

/// Reads a whole file, refusing anything larger than a PEM file can sensibly be.
fn read_limited(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_limited(path, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_limited(path, "private key")?;
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    let mut keys = sections
        .into_iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der));
    let path = path.to_path_buf();
    match (keys.next(), keys.next()) {
        (Some(key), None) => Ok(key),
        (Some(_), Some(_)) => Err(TlsError::MultipleKeys { path }),
        // `ENCRYPTED PRIVATE KEY` and legacy `Proc-Type: 4,ENCRYPTED` blocks are skipped by
        // the PEM reader; say so rather than "no key".
        (None, _) if contains(&bytes, b"ENCRYPTED") => Err(TlsError::EncryptedKey { path }),
        (None, _) => Err(TlsError::NoPrivateKey { path }),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// The PEM reader's own messages can quote lines of the file; for a key file that is key
// material, so only the kind of error is reported.
fn pem_error(path: &Path, err: &pem::Error) -> TlsError {
    let detail = match err {
        pem::Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "invalid base64 data",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "unreadable PEM data",
    };
    TlsError::Pem {
        path: path.to_path_buf(),
        detail,
    }
}

/// Parses the leaf: the names it covers and the end of its validity, which must include now.
fn inspect_leaf(
    der: &CertificateDer<'_>,
    path: &Path,
) -> Result<(Names, OffsetDateTime), TlsError> {
    let bad = |detail: String| TlsError::BadCertificate {
        path: path.to_path_buf(),
        detail,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| bad(e.to_string()))?;
    let names = names_of(&cert).map_err(bad)?;
    if names.is_empty() {
        return Err(TlsError::NoNames {
            path: path.to_path_buf(),
        });
    }
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    );
    let now = OffsetDateTime::now_utc();
    let path = path.to_path_buf();
    if now < not_before {
        return Err(TlsError::NotYetValid {
            path,
            date: ymd(not_before),
        });
    }
    if now >= not_after {
        return Err(TlsError::Expired {
            path,
            date: ymd(not_after),
        });
    }
    Ok((names, not_after))
}

/// SAN DNS names and IPs; the subject CN only if there are no SANs (as browsers once did).
fn names_of(cert: &X509Certificate<'_>) -> Result<Names, String> {
    let mut names = Names::default();
    if let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        for general in &san.value.general_names {
            match general {
                GeneralName::DNSName(name) => names.push_dns(name),
                GeneralName::IPAddress(bytes) => names.ips.extend(ip_from_bytes(bytes)),
                _ => {}
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(name) = cn.as_str() {
                names.push_dns(name);
            }
        }
    }
    Ok(names)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// Parses the key with the ring provider and proves it belongs to the leaf certificate.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let unsupported = |detail: String| TlsError::UnsupportedKey {
        path: key_path.to_path_buf(),
        detail,
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| unsupported(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        // Fail closed: a key whose match cannot be checked is not served.
        Err(rustls::Error::InconsistentKeys(_)) => Err(unsupported(
            "cannot check it against the certificate".to_owned(),
        )),
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// Lower-case, without one trailing dot or IPv6 brackets; borrows when nothing changes, as
/// it runs on every handshake.
fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// A DNS name, or a wildcard whose `*` is the whole leftmost label.
fn is_dns_pattern(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether certificate name `pattern` covers `host` (both normalized).
fn dns_matches(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let Some(parent) = pattern.strip_prefix("*.") else {
        return false;
    };
    host.split_once('.')
        .is_some_and(|(label, rest)| !label.is_empty() && rest == parent)
}

fn ymd(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

// Checked arithmetic: a hostile certificate date must not panic the conversion.
fn system_time(t: OffsetDateTime) -> SystemTime {
    let secs = t.unix_timestamp();
    let offset = Duration::from_secs(secs.unsigned_abs());
    let converted = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(offset)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(offset)
    };
    converted.unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    use rustls_pki_types::ServerName;
    use std::fs;
    use std::net::Ipv4Addr;
    use tempfile::TempDir;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A self-signed (certificate PEM, key PEM) for `sans`, valid from `from` to `until` days
    /// relative to now.
    fn make_cert(sans: &[&str], cn: &str, from: i64, until: i64) -> (String, String) {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        let now = OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(until);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write_pair(dir: &Path, stem: &str, pem: &(String, String)) -> CertSource {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        fs::write(&cert, &pem.0).unwrap();
        fs::write(&key, &pem.1).unwrap();
        CertSource::Files { cert, key }
    }

    fn site(name: &str, hosts: &[&str], source: CertSource) -> SiteCert {
        SiteCert {
            site: name.to_owned(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            source,
        }
    }

    fn files_source(dir: &Path, stem: &str, sans: &[&str]) -> CertSource {
        write_pair(dir, stem, &make_cert(sans, sans[0], -1, 90))
    }

    fn leaf(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].as_ref().to_vec()
    }

    fn same(a: Option<Arc<CertifiedKey>>, b: &Arc<CertifiedKey>) -> bool {
        a.is_some_and(|a| Arc::ptr_eq(&a, b))
    }

    /// Site "erp" with `erp.example.com`, site "shop" with `*.shop.example.org`.
    fn two_sites(dir: &Path) -> CertStore {
        let erp = files_source(dir, "erp", &["erp.example.com"]);
        let shop = files_source(dir, "shop", &["*.shop.example.org"]);
        let sites = [
            site("erp", &["erp.example.com"], erp),
            site("shop", &["a.shop.example.org"], shop),
        ];
        CertStore::load(&sites, Mode::Run).unwrap()
    }

    #[test]
    fn exact_and_wildcard_lookup() {
        let dir = TempDir::new().unwrap();
        let store = two_sites(dir.path());
        let erp = store.lookup("erp.example.com").unwrap();
        let shop = store.lookup("a.shop.example.org").unwrap();
        assert!(!Arc::ptr_eq(&erp, &shop));
        assert!(same(store.lookup("b.shop.example.org"), &shop));
        for miss in [
            "a.b.shop.example.org",
            "shop.example.org",
            ".shop.example.org",
            "example.com",
            "x.erp.example.com",
            "other.example.com",
            "",
        ] {
            assert!(store.lookup(miss).is_none(), "{miss} must not match");
        }
        assert!(store.covers("erp.example.com") && store.covers("z.shop.example.org"));
        assert!(!store.covers("example.org"));
    }

    #[test]
    fn lookup_is_ascii_case_insensitive() {
        let dir = TempDir::new().unwrap();
        let store = two_sites(dir.path());
        let erp = store.lookup("erp.example.com").unwrap();
        assert!(same(store.lookup("ERP.Example.COM"), &erp));
        assert!(same(store.lookup("erp.example.com."), &erp));
        assert!(store.lookup("X.SHOP.example.ORG").is_some());
    }

    #[test]
    fn info_and_files_describe_what_was_loaded() {
        let dir = TempDir::new().unwrap();
        let store = two_sites(dir.path());
        let info = store.info();
        assert_eq!(info.len(), 2);
        assert_eq!(info[0].site, "erp");
        assert_eq!(info[0].names, vec!["erp.example.com".to_owned()]);
        assert_eq!(info[1].names, vec!["*.shop.example.org".to_owned()]);
        assert_eq!(info[0].path, Some(dir.path().join("erp.pem")));
        assert!(info[0].not_after > SystemTime::now() + Duration::from_secs(80 * 86_400));
        let files = store.files();
        assert_eq!(files.len(), 4);
        assert!(files.contains(&dir.path().join("shop.key")));
        assert!(store.pending_self_signed().is_empty());
    }

    #[test]
    fn two_sites_share_one_wildcard_file() {
        let dir = TempDir::new().unwrap();
        let shared = files_source(dir.path(), "wild", &["*.example.com"]);
        let sites = [
            site("erp", &["erp.example.com"], shared.clone()),
            site("books", &["books.example.com"], shared),
        ];
        let store = CertStore::load(&sites, Mode::Run).unwrap();
        let erp = store.lookup("erp.example.com").unwrap();
        assert!(same(store.lookup("books.example.com"), &erp));
        assert_eq!(store.files().len(), 2);
        assert_eq!(store.info().len(), 2);
    }

    #[test]
    fn a_sites_own_host_beats_another_certificates_extra_san() {
        let dir = TempDir::new().unwrap();
        let multi = files_source(dir.path(), "multi", &["a.example.com", "b.example.com"]);
        let only_b = files_source(dir.path(), "b", &["b.example.com"]);
        let sites = [
            site("a", &["a.example.com"], multi),
            site("b", &["b.example.com"], only_b.clone()),
        ];
        let store = CertStore::load(&sites, Mode::Run).unwrap();
        let b = store.lookup("b.example.com").unwrap();
        let a = store.lookup("a.example.com").unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        let CertSource::Files { cert, .. } = &only_b else {
            unreachable!()
        };
        let b_der = CertificateDer::from_pem_file(cert).unwrap();
        assert_eq!(leaf(&b), b_der.as_ref());
    }

    #[test]
    fn subject_cn_is_used_only_without_sans() {
        let dir = TempDir::new().unwrap();
        let cn_only = write_pair(
            dir.path(),
            "cn",
            &make_cert(&[], "legacy.example.com", -1, 90),
        );
        let with_san = write_pair(
            dir.path(),
            "san",
            &make_cert(&["new.example.com"], "ignored.example.com", -1, 90),
        );
        let sites = [
            site("legacy", &["legacy.example.com"], cn_only),
            site("new", &["new.example.com"], with_san),
        ];
        let store = CertStore::load(&sites, Mode::Run).unwrap();
        assert!(store.lookup("legacy.example.com").is_some());
        assert!(store.lookup("new.example.com").is_some());
        assert!(store.lookup("ignored.example.com").is_none());
    }

    #[test]
    fn mismatched_key_is_an_error_naming_the_file() {
        let dir = TempDir::new().unwrap();
        let (cert_pem, _) = make_cert(&["erp.example.com"], "erp", -1, 90);
        let (_, other_key) = make_cert(&["erp.example.com"], "erp", -1, 90);
        let source = write_pair(dir.path(), "erp", &(cert_pem, other_key));
        let err =
            CertStore::load(&[site("erp", &["erp.example.com"], source)], Mode::Run).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        let message = err.to_string();
        let cert = dir.path().join("erp.pem");
        assert!(message.starts_with(&format!(
            "{}: the private key does not match",
            cert.display()
        )));
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_errors() {
        let dir = TempDir::new().unwrap();
        let expired = write_pair(
            dir.path(),
            "old",
            &make_cert(&["erp.example.com"], "e", -30, -1),
        );
        let err =
            CertStore::load(&[site("erp", &["erp.example.com"], expired)], Mode::Run).unwrap_err();
        assert!(matches!(err, TlsError::Expired { .. }), "{err:?}");
        assert!(err.to_string().contains("certificate expired on "));
        let future = write_pair(
            dir.path(),
            "new",
            &make_cert(&["erp.example.com"], "e", 2, 30),
        );
        let err =
            CertStore::load(&[site("erp", &["erp.example.com"], future)], Mode::Run).unwrap_err();
        assert!(matches!(err, TlsError::NotYetValid { .. }), "{err:?}");
    }

    #[test]
    fn certificate_expiring_soon_still_loads() {
        let dir = TempDir::new().unwrap();
        let soon = write_pair(
            dir.path(),
            "soon",
            &make_cert(&["erp.example.com"], "e", -80, 3),
        );
        let store = CertStore::load(&[site("erp", &["erp.example.com"], soon)], Mode::Run);
        assert!(store.unwrap().lookup("erp.example.com").is_some());
    }

    #[test]
    fn missing_file_is_an_error_naming_the_path() {
        let dir = TempDir::new().unwrap();
        let source = CertSource::Files {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let err =
            CertStore::load(&[site("erp", &["erp.example.com"], source)], Mode::Run).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(
            message.starts_with("cannot read certificate file "),
            "{message}"
        );
        assert!(message.contains(&dir.path().join("nope.pem").display().to_string()));
        assert!(message.contains("relative paths are resolved from the working directory"));
    }

    #[test]
    fn bad_pem_contents_are_errors_without_key_material() {
        let dir = TempDir::new().unwrap();
        let (cert_pem, key_pem) = make_cert(&["erp.example.com"], "erp", -1, 90);
        let load = |key: &str| {
            let source = write_pair(dir.path(), "erp", &(cert_pem.clone(), key.to_owned()));
            CertStore::load(&[site("erp", &["erp.example.com"], source)], Mode::Run).unwrap_err()
        };
        assert!(matches!(load(&cert_pem), TlsError::NoPrivateKey { .. }));
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(load(encrypted), TlsError::EncryptedKey { .. }));
        assert!(matches!(
            load(&format!("{key_pem}{key_pem}")),
            TlsError::MultipleKeys { .. }
        ));
        let body = key_pem.lines().nth(1).unwrap();
        let truncated = format!("-----BEGIN PRIVATE KEY-----\n{body}\n");
        let err = load(&truncated);
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        assert!(!err.to_string().contains(body) && !format!("{err:?}").contains(body));
        let empty_cert = write_pair(dir.path(), "empty", &(String::new(), key_pem.clone()));
        let err = CertStore::load(&[site("erp", &["erp.example.com"], empty_cert)], Mode::Run);
        assert!(matches!(err, Err(TlsError::NoCertificate { .. })));
    }

    #[test]
    fn cert_and_key_may_share_one_file() {
        let dir = TempDir::new().unwrap();
        let (cert_pem, key_pem) = make_cert(&["erp.example.com"], "erp", -1, 90);
        let both = dir.path().join("both.pem");
        fs::write(&both, format!("{cert_pem}{key_pem}")).unwrap();
        let source = CertSource::Files {
            cert: both.clone(),
            key: both,
        };
        let store = CertStore::load(&[site("erp", &["erp.example.com"], source)], Mode::Run);
        assert_eq!(store.unwrap().files().len(), 1);
    }

    fn self_signed_site(dir: &Path, hosts: &[&str]) -> SiteCert {
        site(
            "erp",
            hosts,
            CertSource::SelfSigned {
                dir: dir.to_path_buf(),
            },
        )
    }

    #[test]
    fn self_signed_is_generated_reused_and_regenerated_when_hosts_change() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("certs");
        let (cert, key) = (
            dir.join("erp.selfsigned.pem"),
            dir.join("erp.selfsigned.key"),
        );
        let hosts = ["erp.example.com", "10.1.2.3"];
        let store = CertStore::load(&[self_signed_site(&dir, &hosts)], Mode::Run).unwrap();
        assert!(store.lookup("erp.example.com").is_some());
        assert!(store.covers("10.1.2.3") && !store.covers("10.1.2.4"));
        assert_eq!(store.files(), vec![cert.clone(), key.clone()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let first = (fs::read(&cert).unwrap(), fs::read(&key).unwrap());
        CertStore::load(&[self_signed_site(&dir, &hosts)], Mode::Run).unwrap();
        assert_eq!(first, (fs::read(&cert).unwrap(), fs::read(&key).unwrap()));
        let more = ["erp.example.com", "10.1.2.3", "erp2.example.com"];
        let store = CertStore::load(&[self_signed_site(&dir, &more)], Mode::Run).unwrap();
        assert_ne!(first.0, fs::read(&cert).unwrap());
        assert_ne!(first.1, fs::read(&key).unwrap());
        assert!(store.lookup("erp2.example.com").is_some());
        let names = fs::read_dir(&dir).unwrap().count();
        assert_eq!(names, 2, "no temporary files are left behind");
    }

    #[test]
    fn self_signed_generated_certificate_has_the_promised_shape() {
        let tmp = TempDir::new().unwrap();
        let site = self_signed_site(tmp.path(), &["ERP.example.com", "::1"]);
        CertStore::load(&[site], Mode::Run).unwrap();
        let der = CertificateDer::from_pem_file(tmp.path().join("erp.selfsigned.pem")).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let subject = cert.subject().to_string();
        assert!(subject.contains("CN=erp.example.com"), "{subject}");
        assert!(subject.contains("O=erpguard self-signed"), "{subject}");
        let names = names_of(&cert).unwrap();
        assert_eq!(names.dns, vec!["erp.example.com".to_owned()]);
        assert_eq!(names.ips, vec!["::1".parse::<IpAddr>().unwrap()]);
        let days =
            (cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc()).whole_days();
        assert!((363..=365).contains(&days), "{days}");
    }

    #[test]
    fn self_signed_replaces_unusable_files() {
        let tmp = TempDir::new().unwrap();
        fs::write(tmp.path().join("erp.selfsigned.pem"), "garbage").unwrap();
        let store = CertStore::load(&[self_signed_site(tmp.path(), &["erp.test"])], Mode::Run);
        assert!(store.unwrap().lookup("erp.test").is_some());
        let bad = site(
            "../x",
            &["erp.test"],
            CertSource::SelfSigned {
                dir: tmp.path().into(),
            },
        );
        let err = CertStore::load(&[bad], Mode::Run).unwrap_err();
        assert!(matches!(err, TlsError::BadSiteName { .. }));
        let empty = self_signed_site(&tmp.path().join("empty"), &[]);
        assert!(matches!(
            CertStore::load(&[empty], Mode::Run),
            Err(TlsError::NoHosts { .. })
        ));
    }

    #[test]
    fn check_only_writes_nothing_and_notes_pending_sites() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("certs");
        let sites = [self_signed_site(&dir, &["erp.example.com"])];
        let store = CertStore::load(&sites, Mode::CheckOnly).unwrap();
        assert!(!dir.exists());
        assert_eq!(store.pending_self_signed(), ["erp".to_owned()]);
        assert!(store.covers("ERP.example.com"));
        assert!(store.lookup("erp.example.com").is_none());
        assert!(store.info().is_empty() && store.files().is_empty());
        let note = &store.notes()[0];
        assert!(
            note.starts_with("site erp: self-signed certificate "),
            "{note}"
        );
        assert!(note.ends_with("does not exist yet; it is generated on first `erpguard run`"));
        // Once generated, check loads the files without touching them.
        CertStore::load(&sites, Mode::Run).unwrap();
        let before = fs::read(dir.join("erp.selfsigned.key")).unwrap();
        let store = CertStore::load(&sites, Mode::CheckOnly).unwrap();
        assert!(store.pending_self_signed().is_empty());
        assert!(store.lookup("erp.example.com").is_some());
        let more = [self_signed_site(
            &dir,
            &["erp.example.com", "new.example.com"],
        )];
        let store = CertStore::load(&more, Mode::CheckOnly).unwrap();
        assert!(store.notes()[0].contains("does not cover host new.example.com"));
        assert_eq!(before, fs::read(dir.join("erp.selfsigned.key")).unwrap());
    }

    #[test]
    fn replace_swaps_what_lookup_returns() {
        let dir = TempDir::new().unwrap();
        let first = files_source(dir.path(), "one", &["erp.example.com"]);
        let second = files_source(dir.path(), "two", &["erp.example.com"]);
        let load = |source| {
            CertStore::load(&[site("erp", &["erp.example.com"], source)], Mode::Run).unwrap()
        };
        let resolver = SniResolver::new(load(first));
        let old = resolver.current().lookup("erp.example.com").unwrap();
        resolver.replace(load(second));
        let new = resolver.current().lookup("erp.example.com").unwrap();
        assert_ne!(leaf(&old), leaf(&new));
    }

    #[test]
    fn server_config_serves_only_tls12_and_tls13_with_alpn_and_resumption() {
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            [
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
        let dir = TempDir::new().unwrap();
        let store = two_sites(dir.path());
        let config = server_config(SniResolver::new(store)).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(config.ticketer.enabled());
        assert!(config.session_storage.can_cache());
        assert_eq!(config.max_early_data_size, 0);
        // A ClientHello offering at most TLS 1.1 is refused; the same hello offering TLS 1.2
        // gets through, so the version is what was refused.
        let offer = |version| {
            let mut conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let hello = client_hello(version, "erp.example.com");
            conn.read_tls(&mut hello.as_slice()).unwrap();
            conn.process_new_packets().map(|_| ())
        };
        let refused = rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered);
        assert_eq!(offer([0x03, 0x02]), Err(refused));
        assert_eq!(offer([0x03, 0x03]), Ok(()));
    }

    /// A minimal ClientHello record with `version` as its highest version, SNI, signature
    /// algorithms and groups, but no supported_versions extension (as a TLS 1.1 client sends).
    fn client_hello(version: [u8; 2], sni: &str) -> Vec<u8> {
        let name = sni.as_bytes();
        let mut sni_list = vec![0x00];
        sni_list.extend(u16_be(name.len()));
        sni_list.extend(name);
        let mut extensions = extension(
            0x0000,
            &[u16_be(sni_list.len()).as_slice(), &sni_list].concat(),
        );
        extensions.extend(extension(0x000d, &[0x00, 0x04, 0x04, 0x03, 0x08, 0x04]));
        extensions.extend(extension(0x000a, &[0x00, 0x02, 0x00, 0x1d]));
        extensions.extend(extension(0x000b, &[0x01, 0x00]));
        let mut body = version.to_vec();
        body.extend([7u8; 32]);
        // No session id; two ECDHE suites; null compression.
        body.extend([0x00, 0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f, 0x01, 0x00]);
        body.extend(u16_be(extensions.len()));
        body.extend(extensions);
        let mut handshake = vec![0x01, 0x00];
        handshake.extend(u16_be(body.len()));
        handshake.extend(body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend(u16_be(handshake.len()));
        record.extend(handshake);
        record
    }

    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(u16_be(data.len()));
        out.extend(data);
        out
    }

    fn u16_be(n: usize) -> [u8; 2] {
        u16::try_from(n).unwrap().to_be_bytes()
    }

    async fn serve(config: Arc<ServerConfig>) -> std::net::SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    fn client(roots: &[CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add(root.clone()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Handshakes as `name`; the server's leaf certificate and the negotiated ALPN.
    async fn connect(
        connector: &tokio_rustls::TlsConnector,
        addr: std::net::SocketAddr,
        name: ServerName<'static>,
    ) -> std::io::Result<(Vec<u8>, Option<Vec<u8>>)> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = connector.connect(name, tcp).await?;
        let (_, conn) = tls.get_ref();
        let peer = conn.peer_certificates().unwrap()[0].as_ref().to_vec();
        Ok((peer, conn.alpn_protocol().map(<[u8]>::to_vec)))
    }

    /// The server, not the client's certificate check, ended the handshake.
    fn assert_refused_by_server<T: fmt::Debug>(result: std::io::Result<T>) {
        let err = result.unwrap_err();
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied);
        assert_eq!(inner, Some(&alert), "{err:?}");
    }

    #[tokio::test]
    async fn real_handshake_picks_the_certificate_by_sni() {
        let dir = TempDir::new().unwrap();
        let a = make_cert(&["a.erp.test"], "a.erp.test", -1, 90);
        let b = make_cert(&["b.erp.test"], "b.erp.test", -1, 90);
        let sites = [
            site("a", &["a.erp.test"], write_pair(dir.path(), "a", &a)),
            site("b", &["b.erp.test"], write_pair(dir.path(), "b", &b)),
        ];
        let store = CertStore::load(&sites, Mode::Run).unwrap();
        let addr = serve(server_config(SniResolver::new(store)).unwrap()).await;
        let a_der = CertificateDer::from_pem_slice(a.0.as_bytes()).unwrap();
        let b_der = CertificateDer::from_pem_slice(b.0.as_bytes()).unwrap();
        let connector = client(&[a_der.clone(), b_der.clone()]);
        for (name, der) in [("a.erp.test", &a_der), ("B.ERP.TEST", &b_der)] {
            let server_name = ServerName::try_from(name.to_owned()).unwrap();
            let (peer, alpn) = connect(&connector, addr, server_name).await.unwrap();
            assert_eq!(peer, der.as_ref());
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        }
        let unknown = ServerName::try_from("c.erp.test").unwrap();
        assert_refused_by_server(connect(&connector, addr, unknown).await);
        // rustls sends no SNI when connecting to an IP address.
        let no_sni = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        assert_refused_by_server(connect(&connector, addr, no_sni).await);
    }
}
