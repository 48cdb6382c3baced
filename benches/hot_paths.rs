//! Micro-benchmarks of the per-request hot paths, each beside a naive baseline
//! where one makes sense. Run with `cargo bench`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use erpguard::canon::{canonical_host, canonical_path};
use erpguard::client_ip::{TrustedProxies, resolve};
use erpguard::policy::glob::Glob;

const PATHS: &[&str] = &[
    "/api/method/frappe.client.set_value",
    "/app/sales-invoice/SINV-2026-00042",
    "/assets/frappe/dist/js/desk.bundle.ABCDEF12.js",
    "/api/resource/Sales%20Invoice?fields=%5B%22name%22%5D",
];

fn canonicalisation(c: &mut Criterion) {
    c.bench_function("canonical_path/typical", |b| {
        b.iter(|| {
            for p in PATHS {
                let path = p.split('?').next().unwrap();
                black_box(canonical_path(black_box(path)).unwrap());
            }
        });
    });
    // Baseline: what a proxy that only lower-cases for matching pays.
    c.bench_function("canonical_path/baseline_lowercase", |b| {
        b.iter(|| {
            for p in PATHS {
                black_box(black_box(p).to_ascii_lowercase());
            }
        });
    });
    c.bench_function("canonical_host", |b| {
        b.iter(|| black_box(canonical_host(black_box("ERP.Example.com.:8443")).unwrap()));
    });
}

fn rule_matching(c: &mut Criterion) {
    let globs: Vec<Glob> = [
        "/app/user*",
        "/app/role*",
        "/app/system-settings*",
        "/api/resource/user*",
        "/api/method/frappe.client.*",
        "/backups/*",
        "/private/files/*",
        "/*/auth/users*",
    ]
    .iter()
    .map(|p| Glob::new(p).unwrap())
    .collect();
    c.bench_function("rules/8_globs_no_match", |b| {
        b.iter(|| {
            black_box(
                globs
                    .iter()
                    .any(|g| g.matches(black_box("/app/sales-invoice/SINV-2026-00042"))),
            )
        });
    });
    c.bench_function("rules/baseline_starts_with", |b| {
        let prefixes = [
            "/app/user",
            "/app/role",
            "/app/system-settings",
            "/api/resource/user",
        ];
        b.iter(|| {
            let p = black_box("/app/sales-invoice/SINV-2026-00042");
            black_box(prefixes.iter().any(|x| p.starts_with(x)))
        });
    });
}

fn client_identity(c: &mut Criterion) {
    let trusted = TrustedProxies::new(vec![
        "10.0.0.0/8".parse().unwrap(),
        "127.0.0.1/32".parse().unwrap(),
    ]);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.9, 10.1.1.1".parse().unwrap());
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    c.bench_function("client_ip/trusted_chain", |b| {
        b.iter(|| black_box(resolve(peer, headers.get_all("x-forwarded-for"), &trusted).unwrap()));
    });
}

const RPC_BODY: &[u8] = b"cmd=frappe.client.get_list&doctype=Sales%20Invoice&fields=%5B%22name%22%2C%22customer%22%2C%22grand_total%22%5D&filters=%5B%5B%22docstatus%22%2C%22%3D%22%2C1%5D%5D&limit_page_length=20";

fn form_headers() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    h
}

fn erpnext_parameters(c: &mut Criterion) {
    let headers = form_headers();
    c.bench_function("params/frappe_rpc_form", |b| {
        b.iter(|| {
            black_box(erpguard::params::frappe(None, &headers, black_box(RPC_BODY)).unwrap())
        });
    });
    // Baseline: splitting the same form with no Frappe semantics at all.
    c.bench_function("params/baseline_form_urlencoded", |b| {
        b.iter(|| black_box(form_urlencoded::parse(black_box(RPC_BODY)).count()));
    });
    let params = erpguard::params::frappe(None, &headers, RPC_BODY).unwrap();
    let extra = erpguard::profile::admin::Extra::default();
    c.bench_function("admin/erpnext_get_list_not_admin", |b| {
        b.iter(|| {
            black_box(erpguard::profile::admin::erpnext(
                &http::Method::POST,
                black_box("/api/method/frappe.client.get_list"),
                &params,
                &extra,
            ))
        });
    });
}

fn tokens(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let key = erpguard::keys::SecretKey::load_or_create(&dir.path().join("k")).unwrap();
    let made = erpguard::token::generate(&key);
    let (id, secret) = erpguard::token::split(&made.text).unwrap();
    c.bench_function("token/verify_secret", |b| {
        b.iter(|| {
            let presented = erpguard::token::hash(&key, black_box(id), black_box(secret));
            black_box(subtle::ConstantTimeEq::ct_eq(
                presented.as_bytes(),
                made.hash.as_bytes(),
            ))
        });
    });
    let scopes = erpguard::token::scope::parse(&[
        "Item:read".to_owned(),
        "Sales Invoice:read+write".to_owned(),
    ])
    .unwrap();
    let headers = form_headers();
    let params = erpguard::params::frappe(None, &headers, RPC_BODY).unwrap();
    c.bench_function("token/scope_check_rpc", |b| {
        b.iter(|| {
            black_box(scopes.check(
                erpguard::config::AppKind::Erpnext,
                &http::Method::POST,
                black_box("/api/method/frappe.client.get_list"),
                None,
                &headers,
                &params,
            ))
        });
    });
}

fn counters(c: &mut Criterion) {
    let rate = erpguard::config::values::parse_rate("1000000000/s").unwrap();
    let limiter = erpguard::login::limiter::IpLimiter::new(rate);
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    c.bench_function("counters/per_ip_rate_check", |b| {
        b.iter(|| black_box(limiter.check(black_box(ip)).is_ok()));
    });
    use erpguard::store::StateStore as _;
    let dir = tempfile::tempdir().unwrap();
    let store =
        erpguard::store::sqlite::SqliteStore::open(&dir.path().join("s.db"), 100_000).unwrap();
    let policy = erpguard::store::LockPolicy {
        threshold: u32::MAX,
        window: std::time::Duration::from_secs(900),
        base: std::time::Duration::from_secs(900),
        max: std::time::Duration::from_secs(86_400),
        strike_memory: std::time::Duration::from_secs(86_400),
    };
    let key = erpguard::store::Key::user("erp", "alice@example.com");
    c.bench_function("counters/durable_failure_sqlite", |b| {
        b.iter(|| {
            black_box(
                store
                    .add_failure(&key, std::time::SystemTime::now(), &policy)
                    .unwrap(),
            )
        });
    });
}

criterion_group!(
    benches,
    canonicalisation,
    rule_matching,
    client_identity,
    erpnext_parameters,
    tokens,
    counters
);
criterion_main!(benches);
