//! Overload: what a client sees when the gateway or a backend is at its
//! limit — a prompt 503 naming the limit, or a wait in the accept queue,
//! never an unbounded wait or a refused connection.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pve_migration_tests::{Rig, RigOptions, TOKEN, wait_until, within};
use pve_sim::Fault;

const VERSION: &str = "/api2/json/version";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_finding_every_upstream_connection_busy_gets_a_prompt_503() {
    let rig = Rig::start_with(RigOptions {
        limits_toml: "upstream_max_connections_per_backend = 2\nupstream_queue_timeout_ms = 300\n"
            .into(),
        ..RigOptions::default()
    })
    .await;
    // pveproxy stuck: it takes requests and answers none for a minute.
    rig.perl()
        .set_faults([Fault::parse("latency=60000").unwrap()])
        .await
        .unwrap();
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let (c, gw) = (rig.client.clone(), rig.gw());
        stuck.push(tokio::spawn(async move {
            c.get(gw, VERSION, &[("authorization", TOKEN)]).await
        }));
    }
    wait_until(rig.perl(), "both requests reach pveproxy", |s| {
        s.requests.load(Ordering::SeqCst) == 2
    })
    .await;

    let started = Instant::now();
    let third = rig
        .client
        .get(rig.gw(), VERSION, &[("authorization", TOKEN)])
        .await;
    let took = started.elapsed();
    assert_eq!(third.status, 503);
    let reason = third.reason();
    let prefix = format!(
        "perl backend {}: all 2 connections busy for ",
        rig.perl_addr()
    );
    let waited: u64 = reason
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(" ms (limits.upstream_max_connections_per_backend)"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("reason: {reason}"));
    assert!(
        (300..1000).contains(&waited),
        "waited {waited} ms: {reason}"
    );
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
    assert!(third.body.is_empty());
    // The third request never reached pveproxy.
    assert_eq!(rig.perl().stats().requests.load(Ordering::SeqCst), 2);
    for s in stuck {
        s.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_instead_of_being_refused() {
    let rig = Rig::start_with(RigOptions {
        limits_toml: "max_connections = 1\n".into(),
        ..RigOptions::default()
    })
    .await;
    let mut first = rig.client.h1(rig.gw()).await;
    let (c, gw) = (rig.client.clone(), rig.gw());
    let second = tokio::spawn(async move { c.get(gw, VERSION, &[("authorization", TOKEN)]).await });
    // The first connection is served while the second waits.
    let resp = within(
        "first connection answered",
        first.send_request(pve_migration_tests::request(
            "GET",
            VERSION,
            &[("authorization", TOKEN)],
            bytes::Bytes::new(),
        )),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    assert!(
        !second.is_finished(),
        "a second connection was served past max_connections = 1"
    );
    assert_eq!(rig.perl().stats().requests.load(Ordering::SeqCst), 1);
    // Closing the first lets the second in: it waited, it was not refused.
    drop(first);
    let resp = within("second connection answered", second).await.unwrap();
    assert_eq!(resp.status, 200);
}
