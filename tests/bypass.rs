//! Every bypass class from DESIGN.md "Promises": encoding, case, dot segments,
//! doubled slashes, spoofed forwarding headers, method overrides, absolute-form
//! targets, HTTP/2 vs HTTP/1. No payload may reach a denied path upstream or
//! get a 200.

use std::sync::Arc;

use crate::support::upstream::{Seen, Upstream};
use crate::support::{Ca, Gateway, base_config, site};

const RULES: &str = r#"allow = "off"

[[site.rule]]
name = "no-user-admin"
paths = ["/app/user*", "/api/resource/user*"]
action = "deny"

[[site.rule]]
name = "no-backups"
paths = ["/backups/*"]
action = "deny"

[[site.rule]]
name = "no-deletes"
paths = ["/api/*"]
methods = ["DELETE"]
action = "deny"
"#;

/// Request targets that all mean a denied path to some part of an ERP stack.
const PATHS: &[&str] = &[
    "/app/user",
    "/APP/USER",
    "/App/User/",
    "/app//user",
    "//app/user",
    "/app/./user",
    "/x/../app/user",
    "/app/x/../user",
    "/%61pp/user",
    "/app/%75ser",
    "/%41PP/USER",
    "/app%2Fuser",
    "/app%2fuser",
    "/app/user%00",
    "/app/user%00.png",
    "/app/user;x",
    "/app;x/user",
    "/app%3Buser",
    "/app/user%3b.css",
    "/%2e%2e/app/user",
    "/x/%2e%2e/app/user",
    "/x/.%2E/app/user",
    "/%252e%252e/app/user",
    "/app%252fuser",
    "/app%5cuser",
    "/app\\user",
    "/x/..\\app/user",
    "/%c0%ae%c0%ae/app/user",
    "/app/%c0%afuser",
    "/app/user%3F",
    "/app/user%23",
    "/app/us%0aer",
    "/..",
    "/api/resource/User",
    "/api/resource/%55ser",
    "/api//resource/User",
    "/backups/site.sql.gz",
    "/BACKUPS/x",
    "/backups/../backups/x",
];

async fn gateway() -> (Gateway, Upstream) {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (c, k, _) = ca.leaf(dir.path(), "a", &["a.test"]);
    let mut config = base_config(dir.path(), "");
    config += &site("a", &["a.test"], &up.url(), &c, &k, RULES);
    (Gateway::start(ca, dir, &config), up)
}

/// Whether the upstream saw anything the rules deny, read the way a lenient
/// server would (decoded, case-folded, dot segments and slashes collapsed).
fn denied_reached(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| {
            let p = lenient(&s.uri);
            p.starts_with("/app/user")
                || p.starts_with("/api/resource/user")
                || p.starts_with("/backups/")
                || (s.method == "DELETE" && p.starts_with("/api/"))
        })
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect()
}

fn lenient(uri: &str) -> String {
    let mut p = uri.split('?').next().unwrap_or("").to_ascii_lowercase();
    for _ in 0..3 {
        p = p
            .replace("%2f", "/")
            .replace("%5c", "/")
            .replace("%2e", ".")
            .replace("%25", "%")
            .replace('\\', "/");
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[tokio::test]
async fn http1_payloads_never_reach_a_denied_path() {
    let (gw, up) = gateway().await;
    let mut failures = Vec::new();
    for path in PATHS {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
        let r = gw.raw("a.test", &raw).await;
        if r.status == 200 || r.status == 0 {
            failures.push(format!("{path} → {}", r.status));
        }
    }
    assert!(
        failures.is_empty(),
        "payloads that got through: {failures:?}"
    );
    assert!(
        denied_reached(&up.seen()).is_empty(),
        "reached upstream: {:?}",
        denied_reached(&up.seen())
    );
}

#[tokio::test]
async fn absolute_form_and_host_tricks_are_refused() {
    let (gw, up) = gateway().await;
    for raw in [
        "GET https://a.test/app/user HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        "GET http://other.test/app/user HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        "GET https://a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.test@b.test\r\nConnection: close\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        "TRACE /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    ] {
        let r = gw.raw("a.test", raw).await;
        assert!(r.status >= 400, "{raw:?} → {}", r.status);
    }
    assert!(up.seen().is_empty(), "reached upstream: {:?}", up.seen());
    // A trailing dot and upper case in Host are the same site.
    let r = gw
        .raw(
            "a.test",
            "GET /ok HTTP/1.1\r\nHost: A.TEST.\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen()[0].header_values("host"), vec!["a.test"]);
}

#[tokio::test]
async fn method_overrides_do_not_dodge_method_rules() {
    let (gw, up) = gateway().await;
    let raw = "POST /api/resource/Item/x HTTP/1.1\r\nHost: a.test\r\nX-HTTP-Method-Override: DELETE\r\n\
X-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(gw.raw("a.test", raw).await.status, 200);
    let seen = &up.seen()[0];
    assert_eq!(seen.method, "POST");
    for h in [
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
    ] {
        assert!(seen.header_values(h).is_empty(), "{h} reached the upstream");
    }
    let raw = "DELETE /api/resource/Item/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    assert_eq!(gw.raw("a.test", raw).await.status, 403);
    assert!(denied_reached(&up.seen()).is_empty());
}

#[tokio::test]
async fn http2_payloads_match_http1() {
    let (gw, up) = gateway().await;
    let mut failures = Vec::new();
    for path in PATHS.iter().filter(|p| !p.contains('\\')) {
        let reply = gw.get("a.test", path, &[], true).await;
        if reply.status == 200 {
            failures.push(path.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "h2 payloads that got through: {failures:?}"
    );
    assert!(
        denied_reached(&up.seen()).is_empty(),
        "reached upstream: {:?}",
        denied_reached(&up.seen())
    );
    // The same allowed request works on both protocols and is forwarded identically.
    let a = gw
        .get("a.test", "/%61pi/method/ping?x=%2F", &[], true)
        .await;
    let b = gw
        .get("a.test", "/%61pi/method/ping?x=%2F", &[], false)
        .await;
    assert_eq!((a.status, b.status), (200, 200));
    let seen = up.seen();
    let last_two: Vec<&str> = seen.iter().rev().take(2).map(|s| s.uri.as_str()).collect();
    assert_eq!(
        last_two,
        vec!["/api/method/ping?x=%2F", "/api/method/ping?x=%2F"]
    );
}

#[tokio::test]
async fn refusals_are_audited() {
    let (gw, _up) = gateway().await;
    gw.raw(
        "a.test",
        "GET /app/user HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    gw.raw(
        "a.test",
        "GET /app%2fuser HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let audit = gw.audit_lines();
    let denied = audit
        .iter()
        .find(|l| l["event"] == "rule_denied")
        .expect("rule_denied");
    assert_eq!(denied["path"], "/app/user");
    assert!(denied["reason"].as_str().unwrap().contains("no-user-admin"));
    assert!(audit.iter().any(|l| l["event"] == "request_rejected"));
}
