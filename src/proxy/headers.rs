//! Headers toward the upstream and back.
//!
//! Toward the upstream, every header that carries a claim about the connection (client
//! address, scheme, host, site, internal routing, method override, request id) is removed
//! and the gateway's own facts are set in its place; hop-by-hop headers never cross.
//! Toward the client, hop-by-hop headers, server fingerprints and internal-redirect headers
//! are removed. Removal always happens before setting, so nothing a client or upstream
//! sends can remove or replace a value the gateway sets.

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue, UPGRADE};

/// What the gateway knows for certain about a request, to be told to the upstream.
#[derive(Debug, Clone)]
pub struct ForwardedFacts<'a> {
    /// The resolved client address (see `crate::client_ip`), as its text.
    pub client_ip: HeaderValue,
    /// The scheme the client used: `"https"` or `"http"`.
    pub proto: &'static str,
    /// The canonical host as forwarded, with `:port` if the client sent one.
    pub host: HeaderValue,
    /// The port the client connected to.
    pub port: u16,
    /// The gateway's request id.
    pub request_id: &'a str,
}

// Checked at compile time (const evaluation), so inserting them can never panic.
// The lists below are header names too: comparing two names is one integer
// comparison for the standard ones, which most request headers are.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// RFC 9110 hop-by-hop headers (plus the non-standard `proxy-connection` and
/// `keep-alive`, and the proxy credentials meant for the gateway, not the upstream).
static HOP_BY_HOP: [HeaderName; 9] = [
    HeaderName::from_static("connection"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("transfer-encoding"),
    HeaderName::from_static("upgrade"),
    HeaderName::from_static("proxy-authorization"),
    HeaderName::from_static("proxy-authenticate"),
];

/// Request headers that claim something only the gateway may say. Any `x-forwarded-*`
/// header is removed as well (see [`is_spoofable`]). `x-frappe-cmd` is deliberately
/// absent: the ERPNext login page sends it, and it is only a client hint.
static SPOOFABLE: [HeaderName; 20] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("x-original-forwarded-for"),
    HeaderName::from_static("remote-addr"),
    HeaderName::from_static("x-remote-addr"),
    HeaderName::from_static("x-frappe-site-name"),
    HeaderName::from_static("x-use-x-accel-redirect"),
    HeaderName::from_static("x-accel-redirect"),
    HeaderName::from_static("x-sendfile"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-original-authorization"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-request-id"),
];

/// Response headers that reveal the upstream or ask a front server for an internal
/// redirect; none may reach a client.
static RESPONSE_STRIP: [HeaderName; 7] = [
    HeaderName::from_static("server"),
    HeaderName::from_static("x-powered-by"),
    HeaderName::from_static("x-aspnet-version"),
    HeaderName::from_static("x-runtime"),
    HeaderName::from_static("x-use-x-accel-redirect"),
    HeaderName::from_static("x-accel-redirect"),
    HeaderName::from_static("x-sendfile"),
];

/// Headers a client's `Connection` header may not remove: the gateway judged the request
/// with this `Host`, so the upstream must see it too.
static CONNECTION_PROTECTED: [HeaderName; 1] = [http::header::HOST];

/// Rewrites a client request's headers in place for the upstream.
///
/// In order: removes the headers named in `Connection` (except `Host`) and the hop-by-hop
/// set; removes every header whose name contains `_` (WSGI and PHP map `-` and `_` to the
/// same variable); removes the spoofable set and any `x-forwarded-*`; then sets exactly
/// one each of `x-forwarded-for`, `x-forwarded-proto`, `x-forwarded-host`,
/// `x-forwarded-port`, `x-real-ip` and `x-request-id` from `facts`. A fact that is not a
/// valid header value is left absent (never the client's value). If `upgrade` is `Some`,
/// `connection: upgrade` and `upgrade: <value>` are set last.
pub fn prepare_request(
    headers: &mut HeaderMap,
    facts: &ForwardedFacts<'_>,
    upgrade: Option<&HeaderValue>,
) {
    remove_connection_listed(headers, &CONNECTION_PROTECTED);
    // One pass over the names present rather than a hashed removal per listed
    // name: a request carries a handful of headers, the lists are long.
    remove_matching(headers, |name| {
        HOP_BY_HOP.contains(name) || name.as_str().contains('_') || is_spoofable(name)
    });
    set_forwarded(headers, facts);
    if let Some(value) = upgrade {
        set_upgrade(headers, value);
    }
}

/// Rewrites an upstream response's headers in place for the client.
///
/// Removes the headers named in `Connection`, the hop-by-hop set, `server`,
/// `x-powered-by`, `x-aspnet-version`, `x-runtime` and the internal-redirect headers.
/// If `upgrade` is `Some` (the caller passes it only for a `101` answer to a WebSocket
/// upgrade), `connection: upgrade` and `upgrade: <value>` are set afterwards.
pub fn prepare_response(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    remove_connection_listed(headers, &[]);
    remove_matching(headers, |name| {
        HOP_BY_HOP.contains(name) || RESPONSE_STRIP.contains(name)
    });
    if let Some(value) = upgrade {
        set_upgrade(headers, value);
    }
}

/// The `Upgrade` value if this is a WebSocket upgrade request (HTTP/1.1, `Connection` contains the token `upgrade`, `Upgrade: websocket`, case-insensitive).
///
/// Only the headers are examined: the caller checks that the request is HTTP/1.1. Exactly
/// one `Upgrade` header, whose value is `websocket`, is accepted.
pub fn websocket_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    if !wants_upgrade {
        return None;
    }
    let mut values = headers.get_all(UPGRADE).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"websocket")
        .then(|| value.clone())
}

/// Removes every header named by a `Connection` token, except those in `protected`.
/// Tokens that are not valid header names name nothing and are skipped; a
/// `connection` token is skipped too (the hop-by-hop pass removes that header).
fn remove_connection_listed(headers: &mut HeaderMap, protected: &[HeaderName]) {
    // Each line is cloned (a reference count, not a copy) so the map can change
    // while its tokens are read; removing by `&str` parses the name on the
    // stack, where building a `HeaderName` would allocate for `keep-alive`.
    let mut line = 0;
    while let Some(value) = headers.get_all(CONNECTION).iter().nth(line).cloned() {
        for token in value.as_bytes().split(|&b| b == b',') {
            let Ok(name) = std::str::from_utf8(token.trim_ascii()) else {
                continue;
            };
            let kept = name.eq_ignore_ascii_case(CONNECTION.as_str())
                || protected
                    .iter()
                    .any(|p| name.eq_ignore_ascii_case(p.as_str()));
            if !kept {
                headers.remove(name);
            }
        }
        line += 1;
    }
}

/// Removes every header whose (lower-case) name satisfies `pred`, all lines
/// of each; allocates only when something goes.
fn remove_matching(headers: &mut HeaderMap, pred: impl Fn(&HeaderName) -> bool) {
    let doomed: Vec<HeaderName> = headers.keys().filter(|name| pred(name)).cloned().collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// True for a request header only the gateway may set (names are lower-case in http).
fn is_spoofable(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-forwarded-") || SPOOFABLE.contains(name)
}

/// Sets the gateway's facts, one value each, replacing anything present.
fn set_forwarded(headers: &mut HeaderMap, facts: &ForwardedFacts<'_>) {
    headers.insert(X_FORWARDED_FOR, facts.client_ip.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(facts.proto));
    headers.insert(X_FORWARDED_HOST, facts.host.clone());
    headers.insert(X_FORWARDED_PORT, HeaderValue::from(facts.port));
    headers.insert(X_REAL_IP, facts.client_ip.clone());
    match HeaderValue::from_str(facts.request_id) {
        Ok(value) => {
            headers.insert(X_REQUEST_ID, value);
        }
        // Already removed above, so an unusable id leaves the header absent.
        Err(_) => {
            headers.remove(X_REQUEST_ID);
        }
    }
}

/// Sets the only hop-by-hop pair that may cross, for a WebSocket upgrade.
fn set_upgrade(headers: &mut HeaderMap, value: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, value.clone());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn facts() -> ForwardedFacts<'static> {
        ForwardedFacts {
            client_ip: HeaderValue::from_static("203.0.113.7"),
            proto: "https",
            host: HeaderValue::from_static("erp.example.com:8443"),
            port: 8443,
            request_id: "req-42",
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn assert_gateway_facts(headers: &HeaderMap) {
        assert_eq!(values(headers, "x-forwarded-for"), ["203.0.113.7"]);
        assert_eq!(values(headers, "x-forwarded-proto"), ["https"]);
        assert_eq!(
            values(headers, "x-forwarded-host"),
            ["erp.example.com:8443"]
        );
        assert_eq!(values(headers, "x-forwarded-port"), ["8443"]);
        assert_eq!(values(headers, "x-real-ip"), ["203.0.113.7"]);
        assert_eq!(values(headers, "x-request-id"), ["req-42"]);
    }

    #[test]
    fn connection_cannot_remove_gateway_headers() {
        let mut headers = map(&[
            (
                "connection",
                "x-forwarded-for, X-Real-IP,x-request-id , host, cookie",
            ),
            ("host", "erp.example.com:8443"),
            ("cookie", "sid=abc"),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        prepare_request(&mut headers, &facts(), None);
        assert_gateway_facts(&headers);
        assert_eq!(values(&headers, "host"), ["erp.example.com:8443"]);
        assert!(headers.get("cookie").is_none());
        assert!(headers.get("connection").is_none());
    }

    #[test]
    fn every_connection_line_names_headers_in_any_case() {
        let mut headers = map(&[
            ("connection", "Keep-Alive, X-Custom-One"),
            ("connection", "bad name, , connection,X-CUSTOM-TWO, HOST"),
            ("host", "erp.example.com"),
            ("keep-alive", "timeout=5"),
            ("x-custom-one", "1"),
            ("x-custom-two", "2"),
            ("accept", "*/*"),
        ]);
        remove_connection_listed(&mut headers, &CONNECTION_PROTECTED);
        assert!(headers.get("keep-alive").is_none());
        assert!(headers.get("x-custom-one").is_none());
        assert!(headers.get("x-custom-two").is_none());
        assert_eq!(values(&headers, "host"), ["erp.example.com"]);
        assert_eq!(values(&headers, "accept"), ["*/*"]);
        // Both lines were read to the end; the hop-by-hop pass removes them.
        assert_eq!(values(&headers, "connection").len(), 2);
        prepare_response(&mut headers, None);
        assert!(headers.get("connection").is_none());
    }

    #[test]
    fn underscore_variants_are_removed() {
        let mut headers = map(&[
            ("X_Forwarded_For", "1.1.1.1"),
            ("X_REAL_IP", "1.1.1.1"),
            ("Cf_Connecting_Ip", "1.1.1.1"),
            ("x_frappe_site_name", "other.site"),
            ("remote_addr", "1.1.1.1"),
            ("accept", "application/json"),
        ]);
        prepare_request(&mut headers, &facts(), None);
        assert!(headers.keys().all(|name| !name.as_str().contains('_')));
        assert_eq!(values(&headers, "accept"), ["application/json"]);
        assert_gateway_facts(&headers);
    }

    #[test]
    fn spoofed_headers_are_removed_or_replaced() {
        let mut headers = map(&[
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Forwarded-For", "2.2.2.2, 3.3.3.3"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Port", "80"),
            ("X-Forwarded-Authorization", "Bearer x"),
            ("X-Forwarded-Server", "evil"),
            ("X-Real-IP", "1.1.1.1"),
            ("CF-Connecting-IP", "1.1.1.1"),
            ("True-Client-IP", "1.1.1.1"),
            ("Forwarded", "for=1.1.1.1"),
            ("Remote-Addr", "1.1.1.1"),
            ("X-Frappe-Site-Name", "other.site"),
            ("X-Use-X-Accel-Redirect", "1"),
            ("X-Original-URL", "/app/user"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-Method-Override", "PUT"),
            ("X-Request-Id", "client-chosen"),
            ("X-Frappe-CMD", "login"),
            ("Authorization", "token a:b"),
        ]);
        prepare_request(&mut headers, &facts(), None);
        assert_gateway_facts(&headers);
        for gone in [
            "x-forwarded-authorization",
            "x-forwarded-server",
            "cf-connecting-ip",
            "true-client-ip",
            "forwarded",
            "remote-addr",
            "x-frappe-site-name",
            "x-use-x-accel-redirect",
            "x-original-url",
            "x-http-method-override",
            "x-method-override",
        ] {
            assert!(headers.get(gone).is_none(), "{gone} survived");
        }
        assert_eq!(values(&headers, "x-frappe-cmd"), ["login"]);
        assert_eq!(values(&headers, "authorization"), ["token a:b"]);
    }

    #[test]
    fn hop_by_hop_request_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-foo"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
        ]);
        prepare_request(&mut headers, &facts(), None);
        for name in &HOP_BY_HOP {
            assert!(headers.get(name).is_none(), "{name} survived");
        }
    }

    #[test]
    fn ipv6_client_is_forwarded_bare() {
        let mut headers = HeaderMap::new();
        let facts = ForwardedFacts {
            client_ip: HeaderValue::from_static("2001:db8::1"),
            ..facts()
        };
        prepare_request(&mut headers, &facts, None);
        assert_eq!(values(&headers, "x-forwarded-for"), ["2001:db8::1"]);
    }

    #[test]
    fn invalid_fact_leaves_header_absent() {
        let mut headers = map(&[("x-request-id", "client-chosen")]);
        let facts = ForwardedFacts {
            request_id: "bad\nid",
            ..facts()
        };
        prepare_request(&mut headers, &facts, None);
        assert!(headers.get("x-request-id").is_none());
    }

    #[test]
    fn websocket_headers_kept_only_with_upgrade() {
        let client = [
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        let mut headers = map(&client);
        let upgrade = websocket_upgrade(&headers).unwrap();
        prepare_request(&mut headers, &facts(), Some(&upgrade));
        assert_eq!(values(&headers, "connection"), ["upgrade"]);
        assert_eq!(values(&headers, "upgrade"), ["websocket"]);
        assert!(headers.get("keep-alive").is_none());
        assert!(headers.get("sec-websocket-key").is_some());

        let mut headers = map(&client);
        prepare_request(&mut headers, &facts(), None);
        assert!(headers.get("connection").is_none());
        assert!(headers.get("upgrade").is_none());
    }

    #[test]
    fn websocket_detection() {
        let yes = map(&[
            ("connection", "keep-alive, UPGRADE"),
            ("upgrade", "WebSocket"),
        ]);
        assert_eq!(websocket_upgrade(&yes).unwrap(), "WebSocket");
        let split = map(&[
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(websocket_upgrade(&split).is_some());
        for pairs in [
            &[("upgrade", "websocket")][..],
            &[("connection", "upgrade")][..],
            &[("connection", "upgraded"), ("upgrade", "websocket")][..],
            &[("connection", "upgrade"), ("upgrade", "h2c")][..],
            &[("connection", "upgrade"), ("upgrade", "websocket, h2c")][..],
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "h2c"),
            ][..],
        ] {
            assert!(websocket_upgrade(&map(pairs)).is_none(), "{pairs:?}");
        }
    }

    #[test]
    fn response_headers_are_stripped() {
        let upstream = [
            ("Server", "gunicorn"),
            ("X-Powered-By", "PHP/8.2"),
            ("X-Runtime", "0.1"),
            ("X-Accel-Redirect", "/protected/files/x.pdf"),
            ("X-Sendfile", "/etc/passwd"),
            ("X-Use-X-Accel-Redirect", "1"),
            ("Connection", "close, X-Debug"),
            ("X-Debug", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Set-Cookie", "sid=abc"),
            ("Content-Type", "text/html"),
        ];
        let mut headers = map(&upstream);
        prepare_response(&mut headers, None);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "set-cookie"]);
    }

    #[test]
    fn response_upgrade_kept_for_101() {
        let mut headers = map(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("Server", "node"),
        ]);
        let upgrade = HeaderValue::from_static("websocket");
        prepare_response(&mut headers, Some(&upgrade));
        assert_eq!(values(&headers, "connection"), ["upgrade"]);
        assert_eq!(values(&headers, "upgrade"), ["websocket"]);
        assert!(headers.get("sec-websocket-accept").is_some());
        assert!(headers.get("server").is_none());
    }
}
