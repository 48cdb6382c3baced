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

criterion_group!(benches, canonicalisation, rule_matching, client_identity);
criterion_main!(benches);
