//! The request pipeline, top to bottom.
//!
//! | # | stage | runs | default | fails how |
//! |---|-------|------|---------|-----------|
//! | 1 | accept | per TCP connection ([`crate::server`]) | pauses accepting at `limits.max_connections` | accept errors are logged, the loop backs off |
//! | 2 | access policy | before any byte is read | pveproxy's `ALLOW_FROM`/`DENY_FROM`/`POLICY` | denied clients are closed without a response |
//! | 3 | TLS | first byte `0x16` | TLS 1.2/1.3, ALPN `h2` + `http/1.1`, certificate from the reloading resolver | handshake timeout or error closes the connection; plain HTTP gets a 301/308 to `https://` |
//! | 4 | HTTP | per request | hyper HTTP/1.1 (with upgrades) or HTTP/2 | head timeout / size limit: hyper answers 408/431 or closes |
//! | 5 | classify | per request | every request is pass-through (phase `perl-only`) | — |
//! | 6 | forward | per request | stream to pveproxy, stream the answer back, reason phrase kept | upstream failure → 502 naming backend and cause |
//!
//! Later stages (choose backends by phase, shadow, compare, record) hook in
//! between 5 and 6 for migrated routes only; everything else keeps this path.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::proxy::{self, ClientInfo};
use crate::upstream::Upstream;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct Pipeline {
    perl: Upstream,
}

impl Pipeline {
    pub(crate) fn new(perl: Upstream) -> Self {
        Self { perl }
    }

    /// Stages 5 and 6 for one request.
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        client: &ClientInfo,
    ) -> Response<Body> {
        proxy::forward(&self.perl, req, client).await
    }
}
