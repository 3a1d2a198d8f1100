//! The dry-run marker and the mutation counters.
//!
//! A Rust-flavour write with `X-PVE-Dry-Run: 1` must leave every file
//! (interfaces, interfaces.new, the SDN directory) byte-identical while
//! answering exactly what the real write answers. Each step runs from the
//! same starting files on two nodes: a dry run on one, the real write on the
//! other.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use common::{Env, Req, mask_upid, req, wait_until};
use pve_sim::{Flavor, SimHandle};

/// A node with the starting files of every step.
struct Node {
    env: Env,
    sim: SimHandle,
}

impl Node {
    async fn new() -> Node {
        let env = Env::new();
        let sim = env.start(Flavor::Rust).await;
        Node { env, sim }
    }

    /// Puts the starting files in place (the same on both nodes).
    fn reset(&self, interfaces_new: Option<&str>, sdn: &[(&str, &str)]) {
        std::fs::write(&self.env.interfaces, pve_sim::EXAMPLE_INTERFACES).unwrap();
        let new = self.env.interfaces.with_extension("new");
        match interfaces_new {
            Some(text) => std::fs::write(&new, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&new);
            }
        }
        let dir = self.env.sdn_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in sdn {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    /// The snapshot with paths relative to the node directory.
    fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let base = self.env.dir.path().to_path_buf();
        self.env
            .snapshot()
            .into_iter()
            .map(|(p, v)| (p.strip_prefix(&base).unwrap().to_path_buf(), v))
            .collect()
    }
}

const PENDING: &str = "auto lo\niface lo inet loopback\n\niface eno1 inet manual\n\n\
                       iface eno2 inet manual\n\nauto vmbr0\niface vmbr0 inet static\n\
                       \taddress 192.168.200.134/24\n\tgateway 192.168.200.2\n\
                       \tbridge-ports eno1\n\tbridge-stp off\n\tbridge-fd 0\n\n\
                       auto vmbr3\niface vmbr3 inet manual\n\tbridge-ports none\n\
                       \tbridge-stp off\n\tbridge-fd 0\n\n";

const ZONES: &str = "vlan: lab\n\tbridge vmbr0\n\nsimple: sz\n\n";
const VNETS: &str = "vnet: v10\n\tzone lab\n\ttag 10\n\nvnet: v20\n\tzone sz\n\n";
const SUBNETS: &str = "subnet: sz-10.20.0.0-24\n\tvnet v20\n\tgateway 10.20.0.1\n\n";

/// The starting files of a step: `interfaces.new` and the SDN files.
type Start<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>);

/// Runs `r` as a dry run on `dry` and for real on `real`, from the same
/// files; returns whether the real write changed something.
async fn compare(dry: &Node, real: &Node, r: Req, start: &Start<'_>) -> bool {
    dry.reset(start.0, &start.1);
    real.reset(start.0, &start.1);
    let before = dry.files();
    assert_eq!(before, real.files());
    let a = dry
        .env
        .client
        .send(dry.sim.addr(), r.clone().dry_run())
        .await;
    let b = real.env.client.send(real.sim.addr(), r.clone()).await;
    assert_eq!(dry.files(), before, "a dry run wrote something: {r:?}");
    assert_eq!((a.status, &a.reason), (b.status, &b.reason), "{r:?}");
    assert_eq!(mask_upid(&a.text()), mask_upid(&b.text()), "{r:?}");
    real.files() != before
}

#[tokio::test]
async fn dry_runs_answer_like_writes_and_write_nothing() {
    let dry = Node::new().await;
    let real = Node::new().await;
    let net = "/api2/json/nodes/pve1/network";
    let sdn = "/api2/json/cluster/sdn";
    let plain = (None, vec![]);
    let pending = (Some(PENDING), vec![]);
    let with_sdn = (
        None,
        vec![
            ("zones.cfg", ZONES),
            ("vnets.cfg", VNETS),
            ("subnets.cfg", SUBNETS),
        ],
    );

    let steps: Vec<(Req, &Start<'_>, bool)> = vec![
        // network: every write, and failing ones
        (
            req("POST", net).form(&[("iface", "vmbr1"), ("type", "bridge"), ("autostart", "1")]),
            &plain,
            true,
        ),
        (
            req("POST", net).form(&[("iface", "vmbr0"), ("type", "bridge")]),
            &plain,
            false,
        ),
        (
            req("PUT", &format!("{net}/vmbr3")).form(&[("type", "bridge"), ("mtu", "9000")]),
            &pending,
            true,
        ),
        (req("DELETE", &format!("{net}/vmbr3")), &pending, true),
        (req("DELETE", &format!("{net}/vmbr9")), &pending, false),
        (req("DELETE", net), &pending, true),
        (req("PUT", net), &pending, true),
        // SDN: every write, and failing ones
        (
            req("POST", &format!("{sdn}/zones")).form(&[("zone", "new"), ("type", "simple")]),
            &with_sdn,
            true,
        ),
        (
            req("POST", &format!("{sdn}/zones")).form(&[("zone", "lab"), ("type", "simple")]),
            &with_sdn,
            false,
        ),
        (
            req("PUT", &format!("{sdn}/zones/lab")).form(&[("mtu", "1400")]),
            &with_sdn,
            true,
        ),
        (req("DELETE", &format!("{sdn}/zones/lab")), &with_sdn, false),
        (
            req("POST", &format!("{sdn}/vnets")).form(&[
                ("vnet", "v30"),
                ("zone", "lab"),
                ("tag", "30"),
            ]),
            &with_sdn,
            true,
        ),
        (
            req("PUT", &format!("{sdn}/vnets/v10")).form(&[("tag", "11")]),
            &with_sdn,
            true,
        ),
        (req("DELETE", &format!("{sdn}/vnets/v10")), &with_sdn, true),
        (
            req("POST", &format!("{sdn}/vnets/v20/subnets"))
                .form(&[("subnet", "10.21.0.0/24"), ("gateway", "10.21.0.1")]),
            &with_sdn,
            true,
        ),
        (
            req("PUT", &format!("{sdn}/vnets/v20/subnets/sz-10.20.0.0-24")).form(&[("snat", "1")]),
            &with_sdn,
            true,
        ),
        (
            req(
                "DELETE",
                &format!("{sdn}/vnets/v20/subnets/sz-10.20.0.0-24"),
            ),
            &with_sdn,
            true,
        ),
        (req("PUT", sdn), &with_sdn, true),
    ];
    let n = steps.len() as u64;
    for (r, start, changes) in steps {
        assert_eq!(
            compare(&dry, &real, r.clone(), start).await,
            changes,
            "{r:?}"
        );
    }

    // the counters: every write arrived marked on one node, unmarked on the other
    let (d, w) = (dry.sim.stats(), real.sim.stats());
    assert_eq!(d.marked_mutations.load(Ordering::SeqCst), n);
    assert_eq!(d.unmarked_mutations.load(Ordering::SeqCst), 0);
    assert_eq!(w.unmarked_mutations.load(Ordering::SeqCst), n);
    assert_eq!(w.marked_mutations.load(Ordering::SeqCst), 0);
    assert_eq!(d.dry_runs.load(Ordering::SeqCst), n);
    assert_eq!(d.writes.load(Ordering::SeqCst), 0);
    assert_eq!(w.writes.load(Ordering::SeqCst), n);
}

#[tokio::test]
async fn perl_ignores_the_marker() {
    let env = Env::new();
    let perl = env.start(Flavor::Perl).await;
    let before = env.snapshot();
    env.client
        .send(
            perl.addr(),
            req("POST", "/api2/json/nodes/pve1/network")
                .form(&[("iface", "vmbr1"), ("type", "bridge")])
                .dry_run(),
        )
        .await
        .expect(200);
    env.client
        .send(
            perl.addr(),
            req("POST", "/api2/json/cluster/sdn/zones")
                .form(&[("zone", "lab"), ("type", "simple")])
                .dry_run(),
        )
        .await
        .expect(200);
    assert_ne!(env.snapshot(), before);
    let s = perl.stats();
    assert_eq!(s.marked_mutations.load(Ordering::SeqCst), 2);
    assert_eq!(s.writes.load(Ordering::SeqCst), 2);
    assert_eq!(s.dry_runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn mutation_counters_see_every_write_on_arrival() {
    let env = Env::new();
    let sim = env.start(Flavor::Perl).await;
    let c = &env.client;
    let a = sim.addr();
    // counted even when authentication fails or the route is unknown
    for r in [
        req("POST", "/api2/json/nodes/pve1/network").auth(&common::Auth::None),
        req("PUT", "/api2/extjs/nodes/pve1/network/vmbr0"),
        req("DELETE", "/api2/json/cluster/sdn/zones/x"),
        req("POST", "/api2/json/cluster/sdn/controllers"),
        req("PUT", "/api2/json/cluster/sdn").dry_run(),
        req("POST", "/api2/json/nodes/pve1/network").header("X-PVE-Dry-Run", "yes"),
    ] {
        c.send(a, r).await;
    }
    // not counted: reads, other paths
    for r in [
        req("GET", "/api2/json/nodes/pve1/network"),
        req("GET", "/api2/json/cluster/sdn/zones"),
        req("POST", "/api2/json/nodes/pve1/storage/local/upload"),
        req("POST", "/api2/json/access/ticket")
            .form(&[("username", "root@pam"), ("password", "secret")]),
    ] {
        c.send(a, r).await;
    }
    wait_until(&sim, "all requests", |s| {
        s.requests.load(Ordering::SeqCst) == 10
    })
    .await;
    let s = sim.stats();
    assert_eq!(s.unmarked_mutations.load(Ordering::SeqCst), 5);
    assert_eq!(s.marked_mutations.load(Ordering::SeqCst), 1);
    assert!(pve_sim::server::is_mutation(
        &http::Method::POST,
        "/api2/json/nodes/pve2/network/vmbr0"
    ));
    assert!(!pve_sim::server::is_mutation(
        &http::Method::HEAD,
        "/api2/json/nodes/pve1/network"
    ));
    assert!(!pve_sim::server::is_mutation(
        &http::Method::POST,
        "/api2/json/nodes/pve1/qemu"
    ));
}
