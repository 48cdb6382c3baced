//! Who the client is: spoofed forwarding headers never reach the upstream and
//! never move the allowlist decision unless the peer is a trusted proxy.

use std::net::IpAddr;
use std::sync::Arc;

use crate::support::upstream::Upstream;
use crate::support::{Ca, Gateway, base_config, site};

const SPOOFS: &str = "X-Forwarded-For: 10.9.9.9\r\nX-Real-IP: 10.9.9.9\r\nCF-Connecting-IP: 10.9.9.9\r\n\
True-Client-IP: 10.9.9.9\r\nForwarded: for=10.9.9.9\r\nX_Forwarded_For: 10.9.9.9\r\nX_Real_IP: 10.9.9.9\r\n\
Cf_Connecting_Ip: 10.9.9.9\r\nRemote-Addr: 10.9.9.9\r\nX-Frappe-Site-Name: other.site\r\nX-Forwarded-Host: evil.test\r\n\
X-Forwarded-Proto: http\r\nX-Use-X-Accel-Redirect: 1\r\nX-HTTP-Method-Override: DELETE\r\nConnection: close, X-Forwarded-For, X-Real-IP\r\n";

async fn gateway(trusted: &str, allow: &str) -> (Gateway, Upstream) {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (c, k, _) = ca.leaf(dir.path(), "a", &["a.test"]);
    let mut config = base_config(dir.path(), "");
    config += &format!("\n[client_ip]\ntrusted_proxies = [{trusted}]\n");
    config += &site(
        "a",
        &["a.test"],
        &up.url(),
        &c,
        &k,
        &format!("allow = [{allow}]"),
    );
    (Gateway::start(ca, dir, &config), up)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn spoofed_headers_never_reach_the_upstream() {
    let (gw, up) = gateway("", "\"127.0.0.0/8\"").await;
    let raw = format!("GET /x HTTP/1.1\r\nHost: a.test\r\n{SPOOFS}\r\n");
    let r = gw.raw_from(ip("127.0.0.7"), "a.test", &raw).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = &up.seen()[0];
    assert_eq!(seen.header_values("x-forwarded-for"), vec!["127.0.0.7"]);
    assert_eq!(seen.header_values("x-real-ip"), vec!["127.0.0.7"]);
    assert_eq!(seen.header_values("x-forwarded-proto"), vec!["https"]);
    assert_eq!(seen.header_values("x-forwarded-host"), vec!["a.test"]);
    for gone in [
        "cf-connecting-ip",
        "true-client-ip",
        "forwarded",
        "remote-addr",
        "x-frappe-site-name",
        "x-use-x-accel-redirect",
        "x-http-method-override",
    ] {
        assert!(
            seen.header_values(gone).is_empty(),
            "{gone} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert!(
        seen.headers.iter().all(|(k, _)| !k.contains('_')),
        "underscore headers reached the upstream: {:?}",
        seen.headers
    );
    assert!(
        seen.headers.iter().all(|(_, v)| !v.contains("10.9.9.9")),
        "a spoofed value reached the upstream"
    );
}

#[tokio::test]
async fn spoofed_headers_do_not_open_the_allowlist() {
    let (gw, up) = gateway("", "\"10.9.9.0/24\"").await;
    let raw = format!("GET /x HTTP/1.1\r\nHost: a.test\r\n{SPOOFS}\r\n");
    let r = gw.raw("a.test", &raw).await;
    assert_eq!(r.status, 403);
    assert!(up.seen().is_empty());
    let audit = gw.audit_lines();
    let denial = audit
        .iter()
        .find(|l| l["event"] == "ip_denied")
        .expect("an ip_denied audit event");
    assert_eq!(denial["client_ip"], "127.0.0.1");
}

#[tokio::test]
async fn allowlist_uses_the_real_peer() {
    let (gw, _up) = gateway("", "\"127.0.0.5/32\"").await;
    let ok = gw
        .raw_from(
            ip("127.0.0.5"),
            "a.test",
            "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(ok.status, 200);
    let no = gw
        .raw_from(
            ip("127.0.0.6"),
            "a.test",
            "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(no.status, 403);
}

#[tokio::test]
async fn a_trusted_proxy_chain_resolves_the_right_client() {
    // 127.0.0.1 is the load balancer in front; 10.0.0.0/8 are inner proxies.
    let (gw, up) = gateway("\"127.0.0.1/32\", \"10.0.0.0/8\"", "\"198.51.100.0/24\"").await;
    let raw = "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.66, 198.51.100.4, 10.1.1.1\r\nConnection: close\r\n\r\n";
    let r = gw.raw_from(ip("127.0.0.1"), "a.test", raw).await;
    assert_eq!(
        r.status, 200,
        "client 198.51.100.4 is inside the allow list"
    );
    assert_eq!(
        up.seen()[0].header_values("x-forwarded-for"),
        vec!["198.51.100.4"]
    );
    // The same header from a peer that is not trusted changes nothing.
    let r = gw.raw_from(ip("127.0.0.2"), "a.test", raw).await;
    assert_eq!(r.status, 403);
    // A client prepending a fake address cannot choose what the walk finds.
    let raw = "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 198.51.100.9, 203.0.113.66\r\nConnection: close\r\n\r\n";
    assert_eq!(
        gw.raw_from(ip("127.0.0.1"), "a.test", raw).await.status,
        403
    );
    // Garbage where the walk must read is a refusal, not a guess.
    let raw = "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 198.51.100.4, unknown\r\nConnection: close\r\n\r\n";
    assert_eq!(
        gw.raw_from(ip("127.0.0.1"), "a.test", raw).await.status,
        400
    );
}

#[tokio::test]
async fn secrets_never_reach_logs_or_the_audit_log() {
    let (gw, up) = gateway("", "\"127.0.0.0/8\"").await;
    let secret_query = "GET /api/method/login?usr=admin&pwd=Hunter2-Query-Secret HTTP/1.1\r\nHost: a.test\r\n\
Authorization: token abcKEY:Sekret-Api-Token\r\nCookie: sid=0123456789abcdef-session-cookie\r\nConnection: close\r\n\r\n";
    assert_eq!(gw.raw("a.test", secret_query).await.status, 200);
    // A refused request carrying the same secrets.
    let refused = secret_query.replace("/api/method/login", "/%2e%2e/x");
    assert_eq!(gw.raw("a.test", &refused).await.status, 400);
    let body = "usr=admin&pwd=Hunter2-Body-Secret";
    let post = format!(
        "POST /login HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(gw.raw("a.test", &post).await.status, 200);
    assert_eq!(
        up.seen().len(),
        2,
        "the upstream still gets the credentials it needs"
    );
    let logs = gw.log_text();
    let audit = std::fs::read_to_string(gw.audit_path()).unwrap_or_default();
    for secret in ["Hunter2", "Sekret-Api-Token", "session-cookie", "abcKEY"] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
        assert!(
            !audit.contains(secret),
            "{secret} in the audit log:\n{audit}"
        );
    }
    assert!(
        logs.contains("/api/method/login"),
        "the access log names the path"
    );
}
