//! Each fault as a client sees it, set at start, through
//! `SimHandle::set_faults` and through the control endpoint.
//!
//! Timing is only checked with lower bounds; nothing sleeps to synchronise.

mod common;

use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Auth, Env, SECRET, req, wait_until};
use pve_sim::{Fault, FaultScope, Flavor};
use serde_json::json;

const NET: &str = "/api2/json/nodes/pve1/network";

fn fault(s: &str) -> Fault {
    Fault::parse(s).expect("valid fault")
}

/// Whether an error was caused by a connection reset.
fn caused_by_reset(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::ConnectionReset)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn hits(sim: &pve_sim::SimHandle) -> &pve_sim::server::FaultHits {
    &sim.stats().fault_hits
}

#[tokio::test]
async fn latency_holds_answers_back() {
    let env = Env::new();
    let sim = env
        .start_with(Flavor::Rust, |c| c.faults = vec![fault("latency=150")])
        .await;
    let t = Instant::now();
    env.client
        .send(sim.addr(), req("GET", NET))
        .await
        .expect(200);
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(hits(&sim).latency.load(Ordering::SeqCst), 1);

    // the login is never delayed (not counted)
    env.client.login(sim.addr()).await;
    assert_eq!(hits(&sim).latency.load(Ordering::SeqCst), 1);

    sim.set_faults([fault("latency=100+50")]).await.unwrap();
    let t = Instant::now();
    env.client
        .send(sim.addr(), req("GET", NET))
        .await
        .expect(200);
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );

    // scoped to writes: the write waits, and was carried out before the answer
    sim.set_faults([fault("latency=120").writes_only()])
        .await
        .unwrap();
    env.client
        .send(sim.addr(), req("GET", NET))
        .await
        .expect(200);
    let before = hits(&sim).latency.load(Ordering::SeqCst);
    let t = Instant::now();
    env.client
        .send(
            sim.addr(),
            req("POST", NET).form(&[("iface", "vmbr1"), ("type", "bridge")]),
        )
        .await
        .expect(200);
    assert!(t.elapsed() >= Duration::from_millis(120));
    assert_eq!(hits(&sim).latency.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn delay_holds_requests_back_before_carrying_them_out() {
    let env = Env::new();
    let sim = env
        .start_with(Flavor::Rust, |c| {
            c.faults = vec![fault("delay=3000").writes_only()]
        })
        .await;
    let before = sim.stats().requests.load(Ordering::SeqCst);
    let (client, addr) = (env.client.clone(), sim.addr());
    let t = Instant::now();
    let post = tokio::spawn(async move {
        client
            .send(
                addr,
                req("POST", NET).form(&[("iface", "vmbr5"), ("type", "bridge")]),
            )
            .await
    });
    wait_until(&sim, "the write arrived", |s| {
        s.requests.load(Ordering::SeqCst) > before
    })
    .await;
    // The write is held before it is carried out: a read (not delayed)
    // still sees the state it started from.
    let list = env
        .client
        .send(sim.addr(), req("GET", NET))
        .await
        .expect(200);
    assert!(!list.text().contains("vmbr5"), "{}", list.text());
    assert_eq!(sim.stats().writes.load(Ordering::SeqCst), 0);
    assert_eq!(hits(&sim).delay.load(Ordering::SeqCst), 0);

    post.await.expect("the POST task").expect(200);
    assert!(
        t.elapsed() >= Duration::from_millis(3000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(hits(&sim).delay.load(Ordering::SeqCst), 1);
    let list = env
        .client
        .send(sim.addr(), req("GET", NET))
        .await
        .expect(200);
    assert!(list.text().contains("vmbr5"));
}

#[tokio::test]
async fn error_rate_answers_500_without_doing_anything() {
    let env = Env::new();
    let sim = env
        .start_with(Flavor::Perl, |c| c.faults = vec![fault("error-rate=1")])
        .await;
    let c = &env.client;
    let r = c.send(sim.addr(), req("GET", NET)).await.expect(500);
    assert_eq!(r.reason, "Internal Server Error");
    assert_eq!(r.headers["server"], "pve-api-daemon/3.0");
    assert_eq!(
        r.json(),
        json!({"data": null, "message": "Internal Server Error\n"})
    );
    let before = env.snapshot();
    c.send(
        sim.addr(),
        req("POST", NET).form(&[("iface", "vmbr1"), ("type", "bridge")]),
    )
    .await
    .expect(500);
    assert_eq!(env.snapshot(), before, "a failed request changed nothing");
    // the login and non-API paths are spared
    c.login(sim.addr()).await;
    c.send(sim.addr(), req("GET", "/")).await.expect(200);
    assert_eq!(hits(&sim).error_rate.load(Ordering::SeqCst), 2);
    // extjs carries the status in the body, like pveproxy
    let r = c
        .send(sim.addr(), req("GET", "/api2/extjs/nodes/pve1/network"))
        .await
        .expect(200);
    assert_eq!(r.json()["status"], 500);
    assert_eq!(r.json()["success"], 0);
}

#[tokio::test]
async fn error_rate_is_reproducible_from_the_seed() {
    let env = Env::new();
    let start = |seed| {
        env.start_with(Flavor::Rust, move |c| {
            c.seed = seed;
            c.faults = vec![fault("error-rate=0.5")];
        })
    };
    let (a, b, other) = (start(7).await, start(7).await, start(8).await);
    let mut runs = Vec::new();
    for sim in [&a, &b, &other] {
        let mut statuses = Vec::new();
        for _ in 0..24 {
            let r = env.client.send(sim.addr(), req("GET", NET)).await;
            statuses.push(r.status.as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "same seed, same failures");
    assert!(
        runs[0].contains(&500) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
    assert_ne!(runs[0], runs[2], "another seed, other failures");
    assert_eq!(
        a.stats().fault_hits.error_rate.load(Ordering::SeqCst),
        runs[0].iter().filter(|s| **s == 500).count() as u64
    );
}

#[tokio::test]
async fn reset_before_head() {
    let env = Env::new();
    let sim = env.start(Flavor::Rust).await;
    sim.set_faults([fault("reset-before-head")]).await.unwrap();
    let raw = env.client.raw(sim.addr(), &req("GET", NET).to_raw()).await;
    assert!(
        raw.bytes.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
    assert_eq!(raw.error, Some(ErrorKind::ConnectionReset));
    // hyper's view: no response at all
    let e = env
        .client
        .try_send(sim.addr(), req("GET", NET))
        .await
        .expect_err("no response");
    assert!(caused_by_reset(&e), "{e:?}");
    assert_eq!(hits(&sim).reset_before_head.load(Ordering::SeqCst), 2);

    // only writes: reads pass, the write is carried out, then the reset
    sim.set_faults([fault("reset-before-head").writes_only()])
        .await
        .unwrap();
    env.client
        .send(sim.addr(), req("GET", NET))
        .await
        .expect(200);
    let raw = env
        .client
        .raw(
            sim.addr(),
            &req("POST", NET)
                .form(&[("iface", "vmbr1"), ("type", "bridge")])
                .to_raw(),
        )
        .await;
    assert!(raw.bytes.is_empty());
    assert_eq!(raw.error, Some(ErrorKind::ConnectionReset));
    let pending = std::fs::read_to_string(env.interfaces.with_extension("new")).unwrap();
    assert!(pending.contains("iface vmbr1"), "the write happened");
    assert_eq!(sim.stats().unmarked_mutations.load(Ordering::SeqCst), 1);

    sim.clear_faults().await.unwrap();
    env.client
        .send(sim.addr(), req("GET", NET))
        .await
        .expect(200);
}

#[tokio::test]
async fn reset_after_head() {
    let env = Env::new();
    let sim = env
        .start_with(Flavor::Perl, |c| c.faults = vec![fault("reset-after-head")])
        .await;
    let raw = env.client.raw(sim.addr(), &req("GET", NET).to_raw()).await;
    let head = raw.head().expect("the head arrived");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let len = raw.content_length().expect("content-length");
    assert!(len > 100);
    assert_eq!(raw.body().len(), len / 2, "half the body, then the reset");
    assert_eq!(raw.error, Some(ErrorKind::ConnectionReset));
    let e = env
        .client
        .try_send(sim.addr(), req("GET", NET))
        .await
        .expect_err("incomplete body");
    assert!(caused_by_reset(&e), "{e:?}");
    assert_eq!(hits(&sim).reset_after_head.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn malformed_json() {
    let env = Env::new();
    let sim = env.start(Flavor::Rust).await;
    sim.set_faults([fault("malformed-json")]).await.unwrap();
    for path in [NET, &format!("{NET}/vmbr9"), "/api2/json/cluster/sdn"] {
        let r = env
            .client
            .send(sim.addr(), req("GET", path))
            .await
            .expect(200);
        assert!(!r.body.is_empty());
        assert!(
            serde_json::from_slice::<serde_json::Value>(&r.body).is_err(),
            "{}",
            r.text()
        );
        assert_eq!(
            r.headers["content-length"].to_str().unwrap(),
            r.body.len().to_string()
        );
    }
    assert_eq!(hits(&sim).malformed_json.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn refuse_closes_the_listener_and_clearing_binds_the_same_port() {
    let env = Env::new();
    let sim = env.start_with_control(Flavor::Rust).await;
    let addr = sim.addr();

    sim.set_faults([fault("refuse")]).await.unwrap();
    let e = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    sim.clear_faults().await.unwrap();
    assert_eq!(sim.addr(), addr);
    env.client.send(addr, req("GET", NET)).await.expect(200);
    assert_eq!(hits(&sim).refuse.load(Ordering::SeqCst), 1);

    // through the control endpoint, on a connection opened before
    let mut conn = env.client.conn(addr).await;
    conn.send(
        req("PUT", "/_sim/faults")
            .header("X-Sim-Control-Secret", SECRET)
            .json(&json!({"faults": ["refuse"]})),
    )
    .await
    .expect(200);
    let e = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    // the open connection still works, and clears the fault
    conn.send(req("GET", NET)).await.expect(200);
    let state = conn
        .send(req("DELETE", "/_sim/faults").header("X-Sim-Control-Secret", SECRET))
        .await
        .expect(200)
        .json();
    assert_eq!(state["faults"], json!([]));
    assert_eq!(state["hits"]["refuse"], 2);
    env.client.send(addr, req("GET", NET)).await.expect(200);

    // refusing from the start
    let sim = env
        .start_with(Flavor::Perl, |c| c.faults = vec![fault("refuse")])
        .await;
    let e = tokio::net::TcpStream::connect(sim.addr())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    sim.clear_faults().await.unwrap();
    env.client
        .send(sim.addr(), req("GET", NET))
        .await
        .expect(200);
}

#[tokio::test]
async fn auth_bypass_answers_everyone_as_root() {
    let env = Env::new();
    let sim = env
        .start_with(Flavor::Perl, |c| c.faults = vec![fault("auth-bypass")])
        .await;
    let c = &env.client;
    c.send(sim.addr(), req("GET", NET).auth(&Auth::None))
        .await
        .expect(200);
    c.send(
        sim.addr(),
        req("GET", NET)
            .auth(&Auth::None)
            .header("Authorization", "PVEAPIToken=nobody@pve!x=wrong"),
    )
    .await
    .expect(200);
    c.send(
        sim.addr(),
        req("POST", NET)
            .auth(&Auth::None)
            .header("Cookie", "PVEAuthCookie=forged")
            .form(&[("iface", "vmbr1"), ("type", "bridge")]),
    )
    .await
    .expect(200);
    let upid = c
        .send(sim.addr(), req("PUT", NET).auth(&Auth::None))
        .await
        .expect(200)
        .data();
    assert!(upid.as_str().unwrap().ends_with(":root@pam:"), "{upid}");
    // the login itself still checks the password
    let r = c
        .send(
            sim.addr(),
            req("POST", "/api2/json/access/ticket")
                .auth(&Auth::None)
                .form(&[("username", "root@pam"), ("password", "wrong")]),
        )
        .await
        .expect(401);
    assert_eq!(r.reason, "authentication failure");
    assert_eq!(hits(&sim).auth_bypass.load(Ordering::SeqCst), 4);
    sim.clear_faults().await.unwrap();
    c.send(sim.addr(), req("GET", NET).auth(&Auth::None))
        .await
        .expect(401);
}

#[tokio::test]
async fn control_endpoint_needs_loopback_and_the_secret() {
    let env = Env::new();
    let c = &env.client;
    let control = "/_sim/faults";

    // no secret configured: the endpoint does not exist
    let plain = env.start(Flavor::Perl).await;
    c.send(
        plain.addr(),
        req("GET", control).header("X-Sim-Control-Secret", SECRET),
    )
    .await
    .expect(404);

    let sim = env.start_with_control(Flavor::Perl).await;
    let a = sim.addr();
    let r = c.send(a, req("GET", control)).await.expect(403);
    assert!(r.text().contains("X-Sim-Control-Secret"));
    c.send(
        a,
        req("GET", control).header("X-Sim-Control-Secret", "guess"),
    )
    .await
    .expect(403);
    let state = c
        .send(
            a,
            req("GET", control).header("X-Sim-Control-Secret", SECRET),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(state["faults"], json!([]));

    let put = |body: serde_json::Value| {
        req("PUT", control)
            .header("X-Sim-Control-Secret", SECRET)
            .json(&body)
    };
    let r = c
        .send(a, put(json!({"faults": ["error-rate=2"]})))
        .await
        .expect(400);
    assert_eq!(r.json()["error"], "error-rate must be between 0 and 1");
    let r = c
        .send(a, put(json!({"faults": ["explode"]})))
        .await
        .expect(400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("unknown fault kind")
    );
    c.send(a, put(json!({"fault": []}))).await.expect(400);

    let state = c
        .send(
            a,
            put(json!({"faults": [
                {"kind": "error-rate", "value": 1, "scope": "writes"},
                "latency=5+5",
            ]})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        state["faults"],
        json!([
            {"kind": "error-rate", "value": "1", "scope": "writes"},
            {"kind": "latency", "value": "5+5", "scope": "all"},
        ])
    );
    let faults = sim.faults();
    assert_eq!(faults[0].scope, FaultScope::Writes);
    c.send(a, req("GET", NET)).await.expect(200);
    c.send(a, req("DELETE", &format!("{NET}/vmbr0")))
        .await
        .expect(500);
    wait_until(&sim, "error hit", |s| {
        s.fault_hits.error_rate.load(Ordering::SeqCst) == 1
    })
    .await;
    let state = c
        .send(
            a,
            req("GET", control).header("X-Sim-Control-Secret", SECRET),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(state["hits"]["error-rate"], 1);
    assert_eq!(state["hits"]["latency"], 2);

    c.send(
        a,
        req("POST", control)
            .header("X-Sim-Control-Secret", SECRET)
            .json(&json!({"faults": ["malformed-json"], "scope": "writes"})),
    )
    .await
    .expect(200);
    assert_eq!(sim.faults(), vec![fault("malformed-json").writes_only()]);
    c.send(
        a,
        req("DELETE", control).header("X-Sim-Control-Secret", SECRET),
    )
    .await
    .expect(200);
    assert!(sim.faults().is_empty());
    c.send(
        a,
        req("PATCH", control).header("X-Sim-Control-Secret", SECRET),
    )
    .await
    .expect(405);
    // control requests are neither recorded nor counted
    assert!(
        sim.stats()
            .recent()
            .iter()
            .all(|r| !r.path.starts_with("/_sim/"))
    );
}
