//! WebSocket consoles (noVNC, xterm.js) pass through the gateway: the upgrade
//! completes on both sides, frames flow both ways, and a close on either side
//! ends the other.

use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use pve_migration_tests::{Rig, TOKEN, wait_until, within};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PATH: &str =
    "wss://localhost/api2/json/nodes/pve1/qemu/100/vncwebsocket?port=5900&vncticket=PVEVNC%3Aabc";

async fn open(
    rig: &Rig,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    // Browsers open WebSockets on a connection offering only http/1.1.
    let tls = rig.client.connect(rig.gw(), &[b"http/1.1"]).await.unwrap();
    let mut req = PATH.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", TOKEN.parse().unwrap());
    let (ws, resp) = within(
        "websocket handshake",
        tokio_tungstenite::client_async(req, tls),
    )
    .await
    .expect("upgrade through the gateway");
    assert_eq!(resp.status(), 101);
    ws
}

#[tokio::test]
async fn echo_session_and_client_close_reaches_the_backend() {
    let rig = Rig::start().await;
    let mut ws = open(&rig).await;
    for i in 0..20 {
        let text = format!("frame {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = within("echo", ws.next()).await.unwrap().unwrap();
        assert_eq!(back.to_text().unwrap(), text);
    }
    let big = vec![7u8; 200_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(
        within("echo", ws.next())
            .await
            .unwrap()
            .unwrap()
            .into_data(),
        big
    );

    // Client goes away without a close frame: the backend session must end too.
    let closed = rig.perl().stats().ws_closed.load(Ordering::SeqCst);
    drop(ws);
    wait_until(rig.perl(), "backend notices the close", |s| {
        s.ws_closed.load(Ordering::SeqCst) > closed
    })
    .await;
}

#[tokio::test]
async fn backend_close_reaches_the_client() {
    let rig = Rig::start().await;
    let mut ws = open(&rig).await;
    ws.send(Message::text("close")).await.unwrap();
    let msg = within("close frame", ws.next()).await.unwrap().unwrap();
    assert!(msg.is_close(), "got {msg:?}");
    // After the close handshake the stream ends.
    assert!(
        within("end of stream", ws.next())
            .await
            .is_none_or(|m| m.is_err())
    );
}
