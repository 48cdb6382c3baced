//! The admin listener: `/healthz`, `/readyz`, `/metrics`. Bound to loopback by
//! default and never served on the public port.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{self, ResponseBody};
use crate::server::Shared;

/// How long `/readyz` waits for each upstream to accept a TCP connection.
const UPSTREAM_PROBE: Duration = Duration::from_secs(1);

/// Answers one admin request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, std::convert::Infallible> {
    let resp = match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => readyz(&shared).await,
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    Ok(resp)
}

/// Ready when a config is loaded, the state store answers and every upstream
/// accepts a TCP connection.
async fn readyz(shared: &Shared) -> Response<ResponseBody> {
    let rt = shared.runtime.load_full();
    let probes = rt.sites.iter().map(|s| {
        let auth = s.site.upstream.authority.clone();
        let port =
            auth.port_u16()
                .unwrap_or(if s.site.upstream.scheme == http::uri::Scheme::HTTPS {
                    443
                } else {
                    80
                });
        let name = s.site.name.clone();
        async move {
            let addr = format!("{}:{port}", auth.host());
            let ok = matches!(
                tokio::time::timeout(UPSTREAM_PROBE, tokio::net::TcpStream::connect(addr)).await,
                Ok(Ok(_))
            );
            (name, ok)
        }
    });
    let results = futures_join_all(probes).await;
    let store = shared.store.clone();
    let store_ok = matches!(
        tokio::task::spawn_blocking(move || store.ping()).await,
        Ok(Ok(()))
    );
    let ready = store_ok && results.iter().all(|(_, ok)| *ok);
    let upstreams: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, ok)| {
            (
                name,
                serde_json::Value::from(if ok { "reachable" } else { "unreachable" }),
            )
        })
        .collect();
    let body = serde_json::json!({
        "ready": ready,
        "config_generation": rt.generation,
        "store": if store_ok { "ok" } else { "unavailable" },
        "upstreams": upstreams,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, "application/json", body.to_string())
}

/// Runs the probes concurrently without pulling in a futures crate.
async fn futures_join_all<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
