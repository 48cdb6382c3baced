//! Prometheus metrics, served on the admin listener only.

use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::tls::CertInfo;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    site: String,
    decision: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    site: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    site: String,
    name: String,
}

/// Every metric erpguard exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<SiteLabel, Histogram>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    handshakes: Family<ResultLabel, Counter>,
    cert_expiry: Family<CertLabels, Gauge>,
    reloads: Family<ResultLabel, Counter>,
    connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("erpguard");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<SiteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        let handshakes = Family::<ResultLabel, Counter>::default();
        let cert_expiry = Family::<CertLabels, Gauge>::default();
        let reloads = Family::<ResultLabel, Counter>::default();
        let connections = Gauge::default();
        registry.register(
            "requests",
            "Requests by site, decision and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result",
            handshakes.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Unix time at which each served certificate expires",
            cert_expiry.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result",
            reloads.clone(),
        );
        registry.register(
            "connections_active",
            "Open HTTPS client connections (after the TLS handshake)",
            connections.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            upstream_errors,
            handshakes,
            cert_expiry,
            reloads,
            connections,
        }
    }

    /// Counts one finished request.
    pub fn request(&self, site: &str, decision: &'static str, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            site: site.to_owned(),
            decision,
            status: status_class(status),
        };
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&SiteLabel { site: labels.site })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an upstream failure (`connect`, `timeout`, `protocol`).
    pub fn upstream_error(&self, site: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                site: site.to_owned(),
                kind,
            })
            .inc();
    }

    /// Counts a TLS handshake (`ok`, `failed`, `timeout`).
    pub fn handshake(&self, result: &'static str) {
        self.handshakes.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a config reload (`ok`, `failed`).
    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// Tracks open connections; call with +1 on accept and -1 on close.
    pub fn connection(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// Replaces the certificate expiry gauges with the current certificates.
    pub fn certificates(&self, certs: &[CertInfo]) {
        self.cert_expiry.clear();
        for cert in certs {
            let secs = cert
                .not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            for name in &cert.names {
                let labels = CertLabels {
                    site: cert.site.clone(),
                    name: name.clone(),
                };
                self.cert_expiry.get_or_create(&labels).set(secs);
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
