//! The one body type that flows through the gateway in both directions.
//!
//! Client request bodies and upstream response bodies are streamed, never
//! collected: ISO uploads are gigabytes and must pass in constant memory.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors a body stream can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body from bytes in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Wraps a hyper body (client request or upstream response).
pub fn incoming(body: hyper::body::Incoming) -> Body {
    body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
}
