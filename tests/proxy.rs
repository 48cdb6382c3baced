//! Forwarding basics: SNI, redirect, security headers, HTTP/2, WebSocket,
//! upstream failures, body limits, slow clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::support::upstream::Upstream;
use crate::support::{Ca, Gateway, base_config, dead_port, site};

/// Two sites, `a.test` and `b.test`, with their own certificates, in front of one upstream.
async fn two_sites(
    extra_a: &str,
) -> (
    Gateway,
    Upstream,
    Vec<rustls::pki_types::CertificateDer<'static>>,
) {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (ca_cert, ka, da) = ca.leaf(dir.path(), "a", &["a.test"]);
    let (cb, kb, db) = ca.leaf(dir.path(), "b", &["b.test"]);
    let mut config = base_config(
        dir.path(),
        "http = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"",
    );
    config += &site(
        "a",
        &["a.test"],
        &up.url(),
        &ca_cert,
        &ka,
        &format!("allow = \"off\"\n{extra_a}"),
    );
    config += &site(
        "b",
        &["b.test"],
        &up.url(),
        &cb,
        &kb,
        "allow = [\"127.0.0.0/8\"]",
    );
    (Gateway::start(ca, dir, &config), up, vec![da, db])
}

#[tokio::test]
async fn sni_selects_each_sites_certificate() {
    let (gw, _up, ders) = two_sites("").await;
    for (sni, der) in [("a.test", &ders[0]), ("b.test", &ders[1])] {
        let tls = gw.tls(sni, &[b"h2"]).await.unwrap();
        let (_, session) = tls.get_ref();
        assert_eq!(
            session.peer_certificates().unwrap()[0],
            *der,
            "certificate for {sni}"
        );
        assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    }
    assert!(
        gw.tls("c.test", &[]).await.is_err(),
        "an unknown SNI must fail the handshake"
    );
}

#[tokio::test]
async fn sni_must_agree_with_host() {
    let (gw, up, _) = two_sites("").await;
    let r = gw
        .raw(
            "a.test",
            "GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(r.status, 421);
    let r = gw
        .raw(
            "a.test",
            "GET / HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(r.status, 421);
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn http_redirects_to_https_and_https_has_hsts() {
    let (gw, up, _) = two_sites("").await;
    let http = gw.http.unwrap();
    let mut tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    tcp.write_all(b"GET /app/user?x=1 HTTP/1.1\r\nHost: A.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut buf)
        .await
        .unwrap();
    assert!(buf.starts_with("HTTP/1.1 308"), "{buf}");
    let port = gw.https.port();
    assert!(
        buf.contains(&format!("location: https://a.test:{port}/app/user?x=1")),
        "{buf}"
    );
    let mut tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut buf)
        .await
        .unwrap();
    assert!(
        buf.starts_with("HTTP/1.1 404"),
        "unknown host must not be redirected: {buf}"
    );

    let reply = gw.get("a.test", "/hello", &[], false).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    assert!(
        reply.headers.get("server").is_none(),
        "upstream Server header must not leak"
    );
    assert!(reply.headers.get("x-accel-redirect").is_none());
    assert_eq!(up.seen().len(), 1);
}

/// Sockets in LISTEN state on 127.0.0.1:`port`, from the kernel's own table.
fn listening_sockets(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
        .count()
}

#[tokio::test]
async fn workers_share_the_port_and_each_serves() {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (cert, key, _) = ca.leaf(dir.path(), "a", &["a.test"]);
    let mut config = base_config(dir.path(), "workers = 3");
    config += &site("a", &["a.test"], &up.url(), &cert, &key, "allow = \"off\"");
    let gw = Gateway::start(ca, dir, &config);

    assert_eq!(
        listening_sockets(gw.https.port()),
        3,
        "one socket per worker"
    );
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", gw.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect();
    for w in ["erpguard-w0", "erpguard-w1", "erpguard-w2"] {
        assert!(threads.iter().any(|t| t == w), "{w} missing in {threads:?}");
    }
    // Many fresh connections: the kernel spreads them over the three
    // sockets, and every one is answered whichever worker took it.
    let replies = futures_util::future::join_all(
        (0..30).map(|i| gw.get("a.test", "/spread", &[], i % 2 == 0)),
    )
    .await;
    assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
    assert_eq!(up.seen().len(), 30);
}

#[tokio::test]
async fn a_tls_client_without_alpn_is_served_http11() {
    let (gw, up, _) = two_sites("").await;
    let tls = gw.tls("a.test", &[]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let req = http::Request::get("/no-alpn")
        .header("host", "a.test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let reply = crate::support::send(tls, req, false).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(up.seen()[0].uri, "/no-alpn");
}

#[tokio::test]
async fn http2_is_forwarded_as_http11_with_one_cookie_header() {
    let (gw, up, _) = two_sites("").await;
    let reply = gw
        .get(
            "a.test",
            "/h2/path?q=1",
            &[("cookie", "sid=abc"), ("cookie", "user_id=x")],
            true,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = &up.seen()[0];
    assert_eq!(seen.uri, "/h2/path?q=1");
    assert_eq!(seen.header_values("host"), vec!["a.test"]);
    assert_eq!(seen.header_values("cookie"), vec!["sid=abc; user_id=x"]);
}

#[tokio::test]
async fn websocket_round_trips_through_the_gateway() {
    let (gw, up, _) = two_sites("").await;
    let tls = gw.tls("a.test", &[b"http/1.1"]).await.unwrap();
    let (mut ws, resp) =
        tokio_tungstenite::client_async("wss://a.test/socket.io/?EIO=4&transport=websocket", tls)
            .await
            .expect("websocket handshake through erpguard");
    assert_eq!(resp.status(), 101);
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        "ping-erpguard",
    ))
    .await
    .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ping-erpguard");
    assert_eq!(up.seen()[0].uri, "/socket.io/?EIO=4&transport=websocket");
}

#[tokio::test]
async fn upstream_down_gives_502_within_a_second() {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = ca.leaf(dir.path(), "a", &["a.test"]);
    let mut config = base_config(dir.path(), "");
    config += &site(
        "a",
        &["a.test"],
        &format!("http://127.0.0.1:{}", dead_port()),
        &c,
        &k,
        "allow = \"off\"",
    );
    let gw = Gateway::start(ca, dir, &config);
    let started = Instant::now();
    let reply = gw.get("a.test", "/app", &[], false).await;
    assert_eq!(reply.status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(reply.body.contains("not reachable"), "{}", reply.body);
    assert!(
        !reply.body.contains("127.0.0.1"),
        "no internal detail in the page"
    );
}

#[tokio::test]
async fn slow_upstream_gives_504() {
    let (gw, _up, _) = two_sites("[site.timeouts]\nresponse_header = \"300ms\"").await;
    let reply = gw.get("a.test", "/slow/3000", &[], false).await;
    assert_eq!(reply.status, 504);
}

#[tokio::test]
async fn oversized_body_is_refused_before_the_upstream() {
    let (gw, up, _) = two_sites("max_body = 1024").await;
    let body = "x".repeat(4096);
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(gw.raw("a.test", &raw).await.status, 413);
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1000\r\n{body}\r\n0\r\n\r\n"
    );
    assert_eq!(gw.raw("a.test", &chunked).await.status, 413);
    assert!(up.seen().iter().all(|s| s.body.len() <= 1024));
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let (gw, up, _) = two_sites("").await;
    let mut tls = gw.tls("a.test", &[b"http/1.1"]).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(6),
        tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut buf),
    )
    .await;
    assert!(
        read.is_ok(),
        "connection with unfinished headers must be closed by the header-read timeout"
    );
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn admin_listener_serves_health_and_metrics() {
    let (gw, _up, _) = two_sites("").await;
    let _ = gw.get("a.test", "/x", &[], false).await;
    let admin = gw.admin.unwrap();
    let get = |path: &'static str| async move {
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut buf)
            .await
            .unwrap();
        buf
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("erpguard_requests_total{site=\"a\",decision=\"allow\",status=\"2xx\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("erpguard_certificate_expiry_timestamp_seconds{site=\"a\",name=\"a.test\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("erpguard_tls_handshakes_total{result=\"ok\"}"));
    let on_public = gw.get("a.test", "/metrics", &[], false).await;
    assert!(
        !on_public.body.contains("erpguard_requests_total"),
        "metrics never on the public port"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let (gw, _up, _) = two_sites("").await;
    let tls = gw.tls("a.test", &[b"http/1.1"]).await.unwrap();
    let req = http::Request::get("/slow/800")
        .header("host", "a.test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let in_flight = tokio::spawn(crate::support::send(tls, req, false));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = tokio::task::spawn_blocking(move || gw.stop())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        in_flight.await.unwrap().status,
        200,
        "the in-flight request completes during the drain"
    );
}
