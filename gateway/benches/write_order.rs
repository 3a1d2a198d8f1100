//! What write ordering (docs/design.md, invariant 6) adds to a client's
//! write in `shadow`: the same create + delete of a bridge through the
//! gateway, over one kept-alive HTTPS connection, with Perl and Rust
//! simulators on loopback:
//!
//! * `perl_only`: no shadow work (the baseline);
//! * `shadow`: Perl's write waits for Rust's answer to its dry-run copy;
//! * `shadow_slow_rust`: Rust answers after 1 s, so Perl's write waits the
//!   whole `shadow.write_order_ms` (50 ms here) and the comparison is
//!   `skipped(raced)` — the bound.
//!
//! `cargo bench -p pve-network-migration --bench write_order`; one
//! iteration is two writes.

use std::sync::LazyLock;

use bytes::Bytes;
use divan::Bencher;
use http_body_util::BodyExt;
use pve_migration_tests::{Rig, RigOptions, RustOptions, TOKEN, request};
use pve_sim::Fault;

fn main() {
    divan::main();
}

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});

const NET: &str = "/api2/json/nodes/pve1/network";

fn rig(phase: &str, rust_latency_ms: Option<u64>) -> Rig {
    RT.block_on(async {
        let rig = Rig::start_with(RigOptions {
            phase: Some(phase.into()),
            rust: Some(RustOptions::default()),
            extra_toml: "[shadow]\nwrite_order_ms = 50\ntimeout_ms = 5000\n".into(),
            ..RigOptions::default()
        })
        .await;
        if let Some(ms) = rust_latency_ms {
            rig.rust()
                .set_faults([Fault::parse(&format!("latency={ms}")).expect("fault")])
                .await
                .expect("faults");
        }
        rig
    })
}

fn writes(b: Bencher<'_, '_>, rig: &Rig) {
    let mut conn = RT.block_on(rig.client.h1(rig.gw()));
    b.bench_local(|| {
        RT.block_on(async {
            for (method, path, body) in [
                ("POST", NET.to_string(), "iface=vmbr77&type=bridge"),
                ("DELETE", format!("{NET}/vmbr77"), ""),
            ] {
                let mut headers = vec![("authorization", TOKEN)];
                if !body.is_empty() {
                    headers.push(("content-type", "application/x-www-form-urlencoded"));
                }
                conn.ready().await.expect("connection ready");
                let resp = conn
                    .send_request(request(method, &path, &headers, Bytes::from(body)))
                    .await
                    .expect("response");
                assert_eq!(resp.status(), 200, "{method} {path}");
                resp.into_body().collect().await.expect("body");
            }
        })
    });
}

#[divan::bench(sample_count = 60, sample_size = 1)]
fn perl_only(b: Bencher<'_, '_>) {
    let rig = rig("perl-only", None);
    writes(b, &rig);
}

#[divan::bench(sample_count = 60, sample_size = 1)]
fn shadow(b: Bencher<'_, '_>) {
    let rig = rig("shadow", None);
    writes(b, &rig);
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn shadow_slow_rust(b: Bencher<'_, '_>) {
    let rig = rig("shadow", Some(1000));
    writes(b, &rig);
}
