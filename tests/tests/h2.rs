//! An HTTP/2 client (ALPN h2) gets correct answers from the HTTP/1.1-only pveproxy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pve_migration_tests::{Rig, TOKEN, read, within};
use pve_network_migration::body;

#[tokio::test]
async fn h2_client_against_http1_upstream() {
    let rig = Rig::start().await;
    let direct = rig
        .client
        .get(
            rig.perl_addr(),
            "/api2/json/version",
            &[("authorization", TOKEN)],
        )
        .await;
    let mut h2 = rig.client.h2(rig.gw()).await;

    // Several concurrent streams on one connection.
    let mut pending = Vec::new();
    for _ in 0..8 {
        let req = Request::get("https://localhost/api2/json/version")
            .header("authorization", TOKEN)
            .body(body::empty())
            .unwrap();
        pending.push(h2.send_request(req));
    }
    for fut in pending {
        let resp = within("h2 response", async { read(fut.await.unwrap()).await }).await;
        assert_eq!(resp.version, http::Version::HTTP_2);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, direct.body);
        assert_eq!(resp.headers["server"], "pve-api-daemon/3.0");
        assert!(
            !resp.headers.contains_key("connection"),
            "no connection-specific headers in h2"
        );
    }

    // The :authority becomes the upstream Host header.
    let last = rig.perl().stats().recent().pop().unwrap();
    assert_eq!(last.host.as_deref(), Some("localhost"));

    // A request body (with and without content-length) crosses h2 → h1.
    for with_length in [true, false] {
        let mut b = Request::post("https://localhost/api2/json/nodes/pve1/storage/local/upload")
            .header("authorization", TOKEN);
        if with_length {
            b = b.header("content-length", "5");
        }
        let req = b.body(body::full(Bytes::from_static(b"hello"))).unwrap();
        let resp = within("h2 upload", async {
            read(h2.send_request(req).await.unwrap()).await
        })
        .await;
        assert_eq!(resp.status, 200, "{}", resp.reason());
        assert_eq!(resp.json()["data"]["bytes"], 5);
    }

    // Errors keep their status; h2 has no reason phrase to carry.
    let req = Request::get("https://localhost/api2/json/version")
        .body(body::empty())
        .unwrap();
    let resp = within("h2 401", async {
        read(h2.send_request(req).await.unwrap()).await
    })
    .await;
    assert_eq!(resp.status, 401);
}

/// An HTTP/2 connection without requests is closed after the header timeout
/// (the HTTP/1.1 keep-alive idle limit), with a GOAWAY; a request taking
/// longer than that limit is not cut short by it.
#[tokio::test]
async fn idle_h2_connections_are_closed_but_slow_requests_finish() {
    let mut rig = Rig::start().await;
    rig.config.limits.header_timeout = Duration::from_millis(400);
    rig.restart_gateway().await;
    rig.perl()
        .set_faults([pve_sim::Fault::parse("latency=1200").unwrap()])
        .await
        .unwrap();

    let tls = rig.client.connect(rig.gw(), &[b"h2"]).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);

    // Three times the idle limit in flight: answered, not cut.
    let started = Instant::now();
    let req = Request::get("https://localhost/api2/json/version")
        .header("authorization", TOKEN)
        .body(body::empty())
        .unwrap();
    let resp = within("slow h2 response", async {
        read(h2.send_request(req).await.unwrap()).await
    })
    .await;
    assert_eq!(resp.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(1200));

    // Then idle: the gateway ends the connection (the client's connection
    // task returns), without the client doing anything.
    let idle_from = Instant::now();
    within("idle h2 connection closed", conn)
        .await
        .unwrap()
        .expect("a clean close (GOAWAY), not an error");
    assert!(idle_from.elapsed() >= Duration::from_millis(300));
    assert!(h2.ready().await.is_err(), "the connection is closed");
}
