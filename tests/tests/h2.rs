//! An HTTP/2 client (ALPN h2) gets correct answers from the HTTP/1.1-only pveproxy.

use bytes::Bytes;
use http::Request;
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
