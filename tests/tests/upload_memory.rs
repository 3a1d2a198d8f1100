//! A 1 GiB upload streams through the gateway in constant memory.
//!
//! This file holds a single test so the process's resident memory belongs to
//! this upload alone. The client, the gateway and the simulated pveproxy run
//! in this one process, so the measured growth is an upper bound for the
//! gateway's own.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use pve_migration_tests::{Rig, TOKEN, read, within};

const CHUNK: usize = 64 * 1024;
const TOTAL: u64 = 1 << 30;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_streams_in_constant_memory() {
    let rig = Rig::start().await;
    // Warm up connections, TLS sessions and buffers before the baseline.
    let warm = rig
        .client
        .send(
            rig.gw(),
            pve_migration_tests::request(
                "POST",
                "/api2/json/nodes/pve1/storage/local/upload",
                &[("authorization", TOKEN)],
                Bytes::from_static(&ZEROS),
            ),
        )
        .await;
    assert_eq!(warm.status, 200);

    // Reset the peak-RSS counter so VmHWM measures this upload only.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");

    let chunks = (TOTAL / CHUNK as u64) as usize;
    let stream = futures_util::stream::iter(
        (0..chunks).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(&ZEROS)))),
    );
    let body = StreamBody::new(stream)
        .map_err(|e| Box::new(e) as pve_network_migration::body::BoxError)
        .boxed_unsync();
    let req = Request::post("/api2/json/nodes/pve1/storage/local/upload")
        .header("host", "localhost")
        .header("authorization", TOKEN)
        .header("content-type", "application/octet-stream")
        .header("content-length", TOTAL)
        .body(body)
        .unwrap();
    let mut h1 = rig.client.h1(rig.gw()).await;
    let started = std::time::Instant::now();
    let resp = within("1 GiB upload", async {
        read(h1.send_request(req).await.unwrap()).await
    })
    .await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.reason());
    assert_eq!(resp.json()["data"]["bytes"], TOTAL);

    let peak = status_kib("VmHWM:");
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "1 GiB upload through the gateway: RSS before {:.1} MiB, peak {:.1} MiB, growth {growth_mib:.1} MiB, {:.1} s",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        elapsed.as_secs_f64()
    );
    assert!(
        growth_mib < 64.0,
        "memory grew by {growth_mib:.1} MiB while streaming 1 GiB"
    );
}
