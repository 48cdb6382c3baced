//! One generation of running configuration: the checked config, compiled into
//! what the request path needs (host index, upstream clients, certificates).
//!
//! A generation is immutable. Reload builds a whole new one beside the old and
//! swaps it in atomically; a request keeps the generation it started with, so it
//! is judged and forwarded under one config.

use std::collections::HashMap;
use std::sync::Arc;

use crate::client_ip::TrustedProxies;
use crate::config::{Config, ConfigError, Site};
use crate::proxy::UpstreamClient;
use crate::tls::{CertStore, Mode, SiteCert};

/// A protected site with its upstream connection pool.
pub struct SiteRuntime {
    /// The site's checked config.
    pub site: Site,
    /// Pooled client toward the site's upstream.
    pub client: UpstreamClient,
    /// Login rate limiters.
    pub guard: crate::login::SiteGuard,
}

/// One config generation.
pub struct Runtime {
    /// The config it was built from.
    pub config: Config,
    /// Increases by one on every successful reload.
    pub generation: u64,
    /// Sites in config order.
    pub sites: Vec<SiteRuntime>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted: TrustedProxies,
    hosts: HashMap<String, usize>,
}

impl Runtime {
    /// Compiles a checked config. Certificates are loaded separately (see
    /// [`load_certs`]) so `check` can validate them without serving.
    pub fn build(config: Config, generation: u64) -> Result<Runtime, ConfigError> {
        let mut hosts = HashMap::new();
        let mut sites = Vec::with_capacity(config.sites.len());
        let workers = config.listen.worker_count();
        for (i, site) in config.sites.iter().enumerate() {
            for h in &site.hosts {
                hosts.insert(h.clone(), i);
            }
            let client = UpstreamClient::new(site, workers).map_err(|e| {
                ConfigError::whole(&config.source, format!("site {:?}: {e}", site.name))
            })?;
            let guard = crate::login::SiteGuard::new(&site.login);
            sites.push(SiteRuntime {
                site: site.clone(),
                client,
                guard,
            });
        }
        let trusted = TrustedProxies::new(config.trusted_proxies.clone());
        Ok(Runtime {
            config,
            generation,
            sites,
            trusted,
            hosts,
        })
    }

    /// The site that owns a canonical host name.
    pub fn site_for(&self, host: &str) -> Option<&SiteRuntime> {
        self.site_entry(host).map(|(_, site)| site)
    }

    /// The site that owns a canonical host name, with its index in `sites`:
    /// one lookup for the request path, which needs both.
    pub fn site_entry(&self, host: &str) -> Option<(usize, &SiteRuntime)> {
        let i = self.site_index(host)?;
        self.sites.get(i).map(|site| (i, site))
    }

    /// The index (in `sites`) of the site that owns a canonical host name.
    pub fn site_index(&self, host: &str) -> Option<usize> {
        self.hosts.get(host).copied()
    }
}

/// Loads every site's certificate and checks that each host is covered.
///
/// Errors point at the site's `tls` key.
pub fn load_certs(config: &Config, mode: Mode) -> Result<CertStore, ConfigError> {
    let sites: Vec<SiteCert> = config
        .sites
        .iter()
        .map(|s| SiteCert {
            site: s.name.clone(),
            hosts: s.hosts.clone(),
            source: s.tls.source.clone(),
        })
        .collect();
    let store = CertStore::load(&sites, mode).map_err(|e| {
        ConfigError::whole(&config.source, e.to_string()).hint(
            "fix the certificate paths or files, or use tls = \"self-signed\" to try erpguard out",
        )
    })?;
    for site in &config.sites {
        if let Some(host) = site.hosts.iter().find(|h| !store.covers(h)) {
            let mut err = ConfigError::whole(
                &config.source,
                format!("site {:?}: no certificate covers host {host:?}", site.name),
            )
            .hint("add the host to the certificate's subject alternative names, or use a certificate that covers it");
            err.pos = Some(site.tls.pos);
            return Err(err);
        }
    }
    Ok(store)
}

/// Shared handle type for the current generation.
pub type SharedRuntime = Arc<arc_swap::ArcSwap<Runtime>>;
