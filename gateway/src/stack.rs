//! The request pipeline, top to bottom.
//!
//! | # | stage | runs | default | fails how |
//! |---|-------|------|---------|-----------|
//! | 1 | accept | per TCP connection ([`crate::server`]) | pauses accepting at `limits.max_connections` | accept errors are logged, the loop backs off |
//! | 2 | access policy | before any byte is read | pveproxy's `ALLOW_FROM`/`DENY_FROM`/`POLICY` | denied clients are closed without a response |
//! | 3 | TLS | first byte `0x16` | TLS 1.2/1.3, ALPN `h2` + `http/1.1`, certificate from the reloading resolver | handshake timeout or error closes the connection; plain HTTP gets a 301/308 to `https://` |
//! | 4 | HTTP | per request | hyper HTTP/1.1 (with upgrades) or HTTP/2 | head timeout / size limit: hyper answers 408/431 or closes; malformed framing → 400 or RST_STREAM/GOAWAY; Content-Length with Transfer-Encoding is read by the latter and the connection closed after |
//! | 5 | classify | per request | the rules engine's routing table: a migrated route of this node (or a cluster SDN route)? | anything else → stage 7 as pass-through |
//! | 6 | choose backends | migrated routes | the node's effective phase (configured, then trip) → a [`Plan`](crate::engine::Plan) (docs/design.md, Phases) | no Rust backend configured → Perl |
//! | 7 | forward | per request | pass-through streams to pveproxy; migrated requests are buffered up to `shadow.max_body_bytes` and sent per plan | upstream failure → 502 naming backend and cause; Rust failure → Perl fallback where safe |
//! | 8 | shadow | migrated, per plan | mirrored call spawned off the request path, bounded (`max_in_flight`, `timeout_ms`, `sample`) | not compared → counted with a reason |
//! | 9 | compare | both answers in | rules engine: normalise, RFC 6902 patch, verdict, fingerprint | critical → trip at once |
//! | 10 | record | after compare | evidence record + `migration.log` line, queued to the writer thread | queue full → dropped and counted, never blocks |
//!
//! Stages 5–10 live in [`crate::engine`]; stages 1–4 in [`crate::server`].

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::engine::Engine;
use crate::proxy::ClientInfo;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct Pipeline {
    engine: Arc<Engine>,
}

impl Pipeline {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// Stages 5–10 for one request.
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        client: &ClientInfo,
    ) -> Response<Body> {
        self.engine.handle(req, client).await
    }
}
