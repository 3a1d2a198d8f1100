//! The front door's edges: plain HTTP on the TLS port, the access policy, a
//! dead upstream, and certificate rotation while running.

use std::net::SocketAddr;

use pve_migration_tests::{Rig, RigOptions, TOKEN, within};
use pve_network_migration::server::CertEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // read_to_end returning proves the gateway closed the connection.
    within("redirect and close", tcp.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_then_closed() {
    let rig = Rig::start().await;
    let resp = raw_exchange(
        rig.gw(),
        "GET /pve2/index.html?console=kvm HTTP/1.1\r\nHost: pve1.example.com:8006\r\n\r\n",
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{resp}"
    );
    assert!(
        resp.contains(
            "\r\nLocation: https://pve1.example.com:8006/pve2/index.html?console=kvm\r\n"
        ),
        "{resp}"
    );
    let resp = raw_exchange(
        rig.gw(),
        "POST /api2/json/access/ticket HTTP/1.1\r\nHost: 192.0.2.10:8006\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{resp}"
    );
    assert!(
        resp.contains("\r\nLocation: https://192.0.2.10:8006/api2/json/access/ticket\r\n"),
        "{resp}"
    );
    assert_eq!(
        rig.perl().stats().recent().len(),
        0,
        "nothing reached pveproxy"
    );
}

#[tokio::test]
async fn denied_clients_are_closed_without_a_response() {
    let rig = Rig::start_with(RigOptions {
        // pveproxy's documented pattern: matching both lists → POLICY (allow);
        // matching only DENY_FROM → denied.
        pveproxy_defaults: Some(
            "ALLOW_FROM=\"127.0.0.1\"\nDENY_FROM=\"all\"\nPOLICY=\"allow\"\n".into(),
        ),
        ..RigOptions::default()
    })
    .await;
    let allowed = rig
        .client
        .get(rig.gw(), "/api2/json/version", &[("authorization", TOKEN)])
        .await;
    assert_eq!(allowed.status, 200);

    // 127.0.0.2 is loopback too, but not in ALLOW_FROM.
    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut tcp = {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(from).unwrap();
        s.connect(rig.gw()).await.unwrap()
    };
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let mut buf = Vec::new();
    let read = within("denied connection closes", tcp.read_to_end(&mut buf)).await;
    assert!(
        buf.is_empty(),
        "a denied client gets no response bytes, got {buf:?}"
    );
    let _ = read; // EOF or reset, both are a close without a response
    let tls = rig
        .client
        .connect_from(rig.gw(), &[b"http/1.1"], Some(from))
        .await;
    assert!(tls.is_err(), "no TLS handshake for a denied client");
}

#[tokio::test]
async fn dead_upstream_gives_502_naming_backend_and_cause() {
    let rig = Rig::start_with(RigOptions {
        perl_down: true,
        ..RigOptions::default()
    })
    .await;
    let resp = rig
        .client
        .get(rig.gw(), "/api2/json/version", &[("authorization", TOKEN)])
        .await;
    assert_eq!(resp.status, 502);
    let reason = resp.reason();
    assert!(reason.starts_with("perl backend 127.0.0.1:"), "{reason}");
    assert!(reason.ends_with(": connection refused"), "{reason}");
    assert!(
        !reason.contains(TOKEN) && !reason.contains("PVEAPIToken"),
        "no secrets in errors"
    );
    assert!(resp.body.is_empty());
}

async fn served_fingerprint(rig: &Rig) -> [u8; 32] {
    let tls = rig.client.connect(rig.gw(), &[b"http/1.1"]).await.unwrap();
    let cert = &tls.get_ref().1.peer_certificates().unwrap()[0];
    pve_migration_certs::sha256(cert.as_ref())
}

async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<CertEvent>,
    want_reloaded: bool,
) -> CertEvent {
    within("certificate event", async {
        loop {
            let e = events.recv().await.unwrap();
            if matches!(e, CertEvent::Reloaded(_)) == want_reloaded {
                return e;
            }
        }
    })
    .await
}

#[tokio::test]
async fn certificate_rotation_keeps_last_good_and_picks_up_new() {
    let rig = Rig::start().await;
    let mut events = rig.gateway.cert_events();
    let original = served_fingerprint(&rig).await;
    let (cert, key) = &rig.gw_cert;

    // A broken file: rejected, the old certificate keeps serving.
    std::fs::write(
        cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    next_event(&mut events, false).await;
    assert_eq!(served_fingerprint(&rig).await, original);
    let ok = rig
        .client
        .get(rig.gw(), "/api2/json/version", &[("authorization", TOKEN)])
        .await;
    assert_eq!(ok.status, 200);

    // An expired certificate: rejected as well.
    let expired = rig
        .ca
        .issue_with_validity(&["localhost", "127.0.0.1"], jan1(2020), jan1(2021))
        .unwrap();
    expired.write(cert, key).unwrap();
    // The two files are replaced one after the other: a poll in between may
    // reject the mixed pair (the new key with the broken file) first.
    within("the expired certificate is rejected", async {
        loop {
            match next_event(&mut events, false).await {
                CertEvent::Rejected(why) if why.contains("certificate is not valid now") => return,
                CertEvent::Rejected(_) => continue,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(served_fingerprint(&rig).await, original);

    // A good renewal: picked up without a restart.
    let renewed = rig.ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    renewed.write(cert, key).unwrap();
    let CertEvent::Reloaded(fp) = next_event(&mut events, true).await else {
        unreachable!()
    };
    let now = served_fingerprint(&rig).await;
    assert_ne!(now, original);
    assert_eq!(pve_migration_certs::format_fingerprint(&now), fp);
}

/// 1 January of `year`, UTC.
fn jan1(year: i32) -> time::OffsetDateTime {
    let date = time::Date::from_calendar_date(year, time::Month::January, 1).unwrap();
    date.midnight().assume_utc()
}
