//! OpenTelemetry end to end: the daemon exports spans over OTLP/HTTP to an
//! in-test receiver that decodes the protobuf; the span tree, attributes,
//! trace propagation and the absence of secrets are checked.

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::{Command, Stdio};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use pve_migration_tests::{Rig, RigOptions, RustOptions, TOKEN, run_bounded, within};

const BIN: &str = env!("CARGO_BIN_EXE_pve-network-migration");

/// Accepts OTLP/HTTP protobuf exports and forwards every span.
async fn receiver() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Span>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let export =
                            ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                        for rs in export.resource_spans {
                            for ss in rs.scope_spans {
                                for span in ss.spans {
                                    let _ = tx.send(span);
                                }
                            }
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(bytes::Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn attrs(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_with_the_migration_attributes() {
    let rig = Rig::start_with(RigOptions {
        phase: Some("shadow".into()),
        rust: Some(RustOptions::default()),
        ..RigOptions::default()
    })
    .await;
    let (otlp, mut spans) = receiver().await;
    let d = rig.dir.path().join("otel");
    std::fs::create_dir_all(&d).unwrap();
    let toml = format!(
        r#"node = "pve1"
phase = "shadow"
perl_api_base_url = "{perl}"
state_dir = "{d}/state"
[listen]
addresses = ["127.0.0.1:0"]
tls_cert = "{cert}"
tls_key = "{key}"
[backends.perl]
ca = "{ca}"
[backends.rust]
url = "{rust}"
ca = "{ca}"
[access]
pveproxy_defaults = "{d}/pveproxy"
[log]
migration_log = "{d}/migration.log"
[admin]
socket = "{d}/control.sock"
[telemetry]
otlp_endpoint = "http://{otlp}"
"#,
        perl = rig.perl().url(),
        rust = rig.rust().url(),
        d = d.display(),
        cert = rig.gw_cert.0.display(),
        key = rig.gw_cert.1.display(),
        ca = rig.ca_path.display(),
    );
    std::fs::write(d.join("migration.toml"), toml).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(d.join("migration.toml"))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    let addr: std::net::SocketAddr = within("the gateway logs its address", async {
        while let Some(l) = lines.next_line().await.expect("stderr") {
            if let Some(a) = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr=").map(str::to_owned))
            {
                return a;
            }
        }
        panic!("the gateway exited before listening");
    })
    .await
    .parse()
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let (trace_id, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let resp = rig
        .client
        .get(
            addr,
            "/api2/json/nodes/pve1/network",
            &[("authorization", TOKEN), ("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(resp.status, 200);

    // The shadow comparison is logged once it is done; then stop (which flushes spans).
    let log = d.join("migration.log");
    within("decision logged", async {
        loop {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("verdict=type-only")
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains(&format!("trace_id={trace_id}")),
        "{log_text}"
    );
    let kill = run_bounded(
        Command::new("kill").args(["-TERM", &child.id().expect("running").to_string()]),
    );
    assert!(kill.status.success());
    let status = within("the gateway exits", child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));

    let mut all = Vec::new();
    while let Ok(s) = spans.try_recv() {
        all.push(s);
    }
    let by_name = |n: &str| all.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let server = by_name("node.network.list");
    assert_eq!(
        server.len(),
        1,
        "one server span: {:?}",
        all.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let server = server[0];
    assert_eq!(
        hex(&server.trace_id),
        trace_id,
        "the caller's trace is continued"
    );
    assert_eq!(hex(&server.parent_span_id), parent);
    let a = attrs(server);
    assert_eq!(a["pve.node"], "pve1");
    assert_eq!(a["migration.phase"], "shadow");
    assert_eq!(a["migration.served_by"], "perl");
    assert_eq!(a["migration.used_fallback"], "false");
    assert_eq!(a["contract.verdict"], "type-only");

    let perl = by_name("perl");
    assert_eq!(perl.len(), 1);
    assert_eq!(
        perl[0].parent_span_id, server.span_id,
        "the Perl call is a child of the request"
    );
    let compare = by_name("compare");
    assert_eq!(compare.len(), 1);
    assert_eq!(compare[0].parent_span_id, server.span_id);
    assert_eq!(attrs(compare[0])["contract.verdict"], "type-only");
    let shadow = by_name("shadow");
    assert_eq!(shadow.len(), 1);
    assert_eq!(shadow[0].trace_id, server.trace_id);
    assert!(
        shadow[0].links.iter().any(|l| l.span_id == server.span_id),
        "the shadow span is linked to the request"
    );

    let secret = TOKEN.rsplit('=').next().unwrap();
    for s in &all {
        for (k, v) in attrs(s) {
            assert!(
                !v.contains(secret) && !v.contains("PVEAPIToken"),
                "secret in {} attribute {k}",
                s.name
            );
        }
    }
}
