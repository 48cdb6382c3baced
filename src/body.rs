//! The body types that cross erpguard, without boxing on the hot path.

use bytes::Bytes;
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;

use crate::proxy::pool::UpstreamBody;

/// A response body: the upstream's stream, or a body erpguard wrote itself.
pub type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

/// A request body toward the upstream: the client's stream under the site's
/// size limit, or bytes erpguard already holds.
pub type RequestBody = Either<Limited<Incoming>, Full<Bytes>>;

/// A response body erpguard wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Either::Right(Full::new(bytes.into()))
}

/// An empty response body.
pub fn empty() -> ResponseBody {
    full(Bytes::new())
}
