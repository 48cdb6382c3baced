//! Forwarding: the judged request, rewritten for the upstream and sent over a
//! pooled connection; the answer streamed back. WebSocket upgrades become a
//! byte tunnel once both sides agree.

pub mod headers;
pub mod pool;

use std::error::Error as StdError;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{RequestBody, ResponseBody};
use crate::config::Site;
use crate::error::Denial;
use headers::ForwardedFacts;
pub use pool::UpstreamClient;
use pool::{SendError, UpstreamBody};

/// What the judged request resolved to, as needed for forwarding.
pub struct Forward<'a> {
    /// The site being forwarded to.
    pub site: &'a Site,
    /// The pool for that site.
    pub client: &'a UpstreamClient,
    /// Canonical path plus the raw query (`?…`), exactly what was judged.
    pub path_and_query: &'a str,
    /// `Host` value toward the upstream (canonical host, with the client's port if it sent one).
    pub host_header: HeaderValue,
    /// Facts for the `X-Forwarded-*` headers.
    pub facts: ForwardedFacts<'a>,
}

/// A request taken apart for forwarding: its head, the body to send, and the
/// pending client side of a WebSocket upgrade.
pub struct Outgoing {
    /// Method, headers, extensions; the URI and version are rewritten here.
    pub parts: http::request::Parts,
    /// The streamed or already-buffered body.
    pub body: RequestBody,
    /// The `Upgrade` value and the client's pending upgrade, for WebSocket.
    pub upgrade: Option<(HeaderValue, hyper::upgrade::OnUpgrade)>,
}

impl Outgoing {
    /// Splits a client request; the body streams under the site's size limit.
    pub fn new(mut req: Request<Incoming>, max_body: u64) -> Outgoing {
        let upgrade = match req.version() {
            Version::HTTP_11 => headers::websocket_upgrade(req.headers()),
            _ => None,
        };
        let upgrade = upgrade.map(|value| (value, hyper::upgrade::on(&mut req)));
        let (parts, body) = req.into_parts();
        let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
        Outgoing {
            parts,
            body: Either::Left(Limited::new(body, limit)),
            upgrade,
        }
    }
}

/// Sends the request to the upstream and returns its answer.
pub async fn forward(fwd: Forward<'_>, out: Outgoing) -> Result<Response<ResponseBody>, Denial> {
    let Outgoing {
        mut parts,
        body,
        upgrade,
    } = out;
    let (upgrade, client_upgrade) = match upgrade {
        Some((value, on)) => (Some(value), Some(on)),
        None => (None, None),
    };
    check_declared_length(&parts.headers, fwd.site.max_body)?;
    join_cookies(&mut parts.headers);
    headers::prepare_request(&mut parts.headers, &fwd.facts, upgrade.as_ref());
    parts.headers.insert(
        header::HOST,
        fwd.site.upstream_host.clone().unwrap_or(fwd.host_header),
    );
    // Origin-form: the connection already goes to the upstream.
    parts.uri = Uri::try_from(fwd.path_and_query)
        .map_err(|e| Denial::BadRequest(format!("cannot build upstream URI: {e}")))?;
    parts.version = Version::HTTP_11;
    let resp = send(fwd.client, fwd.site, Request::from_parts(parts, body)).await?;
    Ok(finish_response(resp, upgrade.as_ref(), client_upgrade))
}

/// Refuses up front a body whose declared length is over the limit, so the
/// upstream never sees the start of it.
fn check_declared_length(headers: &http::HeaderMap, limit: u64) -> Result<(), Denial> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(Denial::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

/// HTTP/2 may split `Cookie` into several fields; an HTTP/1.1 upstream must see
/// one, or frameworks that read only the first would see a different session
/// than the one erpguard judged (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if values.len() < 2 {
        return;
    }
    let joined: Vec<u8> = values
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

async fn send(
    client: &UpstreamClient,
    site: &Site,
    req: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, Denial> {
    let wait = site.timeouts.response_header;
    match tokio::time::timeout(wait, client.send(req)).await {
        Err(_) => Err(Denial::UpstreamTimeout(wait)),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(SendError::Exchange(e))) if caused_by_body_limit(&e) => Err(Denial::BodyTooLarge {
            limit: site.max_body,
        }),
        Ok(Err(SendError::Exchange(e))) => Err(Denial::UpstreamProtocol(format!(
            "{}: {}",
            site.name,
            error_chain(&e)
        ))),
        Ok(Err(SendError::Connect(e))) => Err(Denial::UpstreamUnavailable(format!(
            "{}: {}",
            site.name,
            error_chain(&*e)
        ))),
    }
}

fn caused_by_body_limit(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

fn finish_response(
    mut resp: Response<UpstreamBody>,
    upgrade: Option<&HeaderValue>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ResponseBody> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let kept = if switching { upgrade } else { None };
    if let (true, Some(client_side)) = (switching && upgrade.is_some(), client_upgrade) {
        let upstream_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client_side, upstream_side));
    }
    headers::prepare_response(resp.headers_mut(), kept);
    resp.map(Either::Left)
}

/// Copies bytes both ways between an upgraded client and upstream connection.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade did not complete");
            return;
        }
    };
    let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
        tracing::debug!(error = %e, "websocket tunnel closed with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_cookie_fields_become_one() {
        let mut h = http::HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("sid=a"));
        h.append(header::COOKIE, HeaderValue::from_static("user_id=b"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, vec![HeaderValue::from_static("sid=a; user_id=b")]);
    }

    #[test]
    fn declared_length_over_limit_is_refused() {
        let mut h = http::HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2048"));
        assert!(check_declared_length(&h, 1024).is_err());
        assert!(check_declared_length(&h, 4096).is_ok());
    }
}
