//! The plain-HTTP listener: a 308 to the same host and path over HTTPS, for
//! configured hosts only (an unknown host gets a 404, never an open redirect).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Shared;
use crate::body::{self, ResponseBody};
use crate::canon;
use crate::error::{self, Denial};
use crate::stack::{ConnInfo, new_request_id};

/// Answers one plain-HTTP request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    _conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, std::convert::Infallible> {
    let rt = shared.runtime.load();
    let bound = shared.https_port.get().copied().unwrap_or(443);
    let port = rt.config.listen.https_redirect_port.unwrap_or(bound);
    let target = location(&req, port).and_then(|(host, loc)| match rt.site_for(&host) {
        Some(site) => Ok((site.site.name.clone(), loc)),
        None => Err(Denial::UnknownHost(host)),
    });
    let resp = match target {
        Ok((site, loc)) => {
            shared
                .metrics
                .request(&site, "redirect", 308, std::time::Duration::ZERO);
            redirect(loc)
        }
        Err(d) => {
            shared.metrics.request(
                "-",
                d.decision(),
                d.status().as_u16(),
                std::time::Duration::ZERO,
            );
            error::rescue(&d, &new_request_id(), false)
        }
    };
    Ok(resp)
}

/// The canonical host and the `Location` for it.
fn location(req: &Request<Incoming>, port: u16) -> Result<(String, HeaderValue), Denial> {
    if req.uri().scheme().is_some() {
        return Err(Denial::BadRequest("absolute-form request target".into()));
    }
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| Denial::BadRequest("no Host".into()))?;
    let mut host = canon::canonical_host(raw).map_err(|e| Denial::BadRequest(e.to_string()))?;
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    // The client's port named this plain listener; the redirect names the HTTPS one.
    host.port = (port != 443).then_some(port);
    let loc = HeaderValue::from_str(&format!("https://{}{pq}", host.authority()))
        .map_err(|_| Denial::BadRequest("unrepresentable location".into()))?;
    Ok((host.name, loc))
}

fn redirect(location: HeaderValue) -> Response<ResponseBody> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}
