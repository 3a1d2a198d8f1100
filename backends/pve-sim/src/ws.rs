//! A WebSocket echo endpoint standing in for noVNC's `…/vncwebsocket`.
//!
//! Every text or binary frame is sent back; the text frame `close` makes the
//! server close the session (to test server-side close). Ended sessions are
//! counted in [`crate::server::Stats::ws_closed`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::respond::{self, SimBody};
use crate::server::SimState;

/// Answers the upgrade and echoes every text/binary frame until the client closes.
pub(crate) fn echo(st: Arc<SimState>, mut req: Request<Incoming>) -> Response<SimBody> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = key.filter(|_| is_ws) else {
        return respond::plain_error(400, "websocket upgrade required");
    };
    let protocol = req.headers().get("sec-websocket-protocol").cloned();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() || msg.to_text().is_ok_and(|t| t == "close") {
                let _ = ws.close(None).await;
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
        st.stats.ws_closed.fetch_add(1, Ordering::SeqCst);
        st.stats.arrived.notify_waiters();
    });
    let mut resp = Response::new(respond::full(""));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is ASCII"),
    );
    if let Some(p) = protocol {
        h.insert("sec-websocket-protocol", p);
    }
    resp
}
