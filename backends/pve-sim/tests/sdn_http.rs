//! The SDN API over real TLS, in both flavours: every method, the error
//! cases with PVE's messages, pending/running views, the apply, the
//! read-only lists, JSON and form bodies, json and extjs formats.

mod common;

use common::{Env, FLAVORS, req};
use pve_sim::Flavor;
use serde_json::{Value, json};

const SDN: &str = "/api2/json/cluster/sdn";

fn keys_sorted(text: &str, obj: &Value) -> bool {
    let keys: Vec<&String> = obj.as_object().expect("object").keys().collect();
    let pos: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).expect("key in text"))
        .collect();
    pos.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn index_and_read_only_lists() {
    for flavor in FLAVORS {
        let env = Env::new();
        let sim = env.start(flavor).await;
        let c = &env.client;
        let a = sim.addr();
        let r = c.send(a, req("GET", SDN)).await.expect(200);
        assert_eq!(
            r.data(),
            json!([{"id":"vnets"},{"id":"zones"},{"id":"controllers"},{"id":"ipams"},{"id":"dns"}])
        );
        let ipams = c
            .send(a, req("GET", &format!("{SDN}/ipams")))
            .await
            .expect(200);
        assert_eq!(ipams.data()[0]["ipam"], "pve");
        assert_eq!(
            ipams.data()[0]["digest"],
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        for kind in ["controllers", "dns"] {
            let r = c
                .send(a, req("GET", &format!("{SDN}/{kind}")))
                .await
                .expect(200);
            assert_eq!(r.data(), json!([]));
        }
        let r = c
            .send(a, req("GET", &format!("{SDN}/dns/pdns")))
            .await
            .expect(500);
        assert_eq!(r.reason, "sdn 'pdns' does not exist");
        let r = c
            .send(
                a,
                req("POST", &format!("{SDN}/controllers")).form(&[("controller", "c1")]),
            )
            .await
            .expect(501);
        assert_eq!(
            r.reason,
            "Method 'POST /cluster/sdn/controllers' not implemented"
        );
        // without the SDN directory nothing was created
        assert!(!env.sdn_dir().exists());
    }
}

#[tokio::test]
async fn zones_vnets_subnets_round_trip() {
    for flavor in FLAVORS {
        let env = Env::new();
        let sim = env.start(flavor).await;
        let c = &env.client;
        let a = sim.addr();
        let ticket = c.login(a).await;

        // zones: proxmoxer-style form with a ticket
        c.send(
            a,
            req("POST", &format!("{SDN}/zones")).auth(&ticket).form(&[
                ("zone", "lab"),
                ("type", "vlan"),
                ("bridge", "vmbr0"),
                ("ipam", "pve"),
            ]),
        )
        .await
        .expect(200);
        c.send(
            a,
            req("POST", &format!("{SDN}/zones")).auth(&ticket).form(&[
                ("zone", "sz"),
                ("type", "simple"),
                ("mtu", "1450"),
            ]),
        )
        .await
        .expect(200);
        let zones_file = std::fs::read_to_string(env.sdn_dir().join("zones.cfg")).unwrap();
        assert_eq!(
            zones_file,
            "vlan: lab\n\tbridge vmbr0\n\tipam pve\n\nsimple: sz\n\tmtu 1450\n\n"
        );
        let r = c
            .send(a, req("GET", &format!("{SDN}/zones")))
            .await
            .expect(200);
        let zones = r.data();
        assert_eq!(zones.as_array().unwrap().len(), 2);
        assert_eq!(zones[0]["zone"], "lab");
        assert_eq!(zones[1]["mtu"], 1450);
        let digest = zones[0]["digest"].as_str().unwrap().to_string();
        assert_eq!(digest.len(), 40);
        match flavor {
            Flavor::Rust => assert!(keys_sorted(&r.text(), &zones[0])),
            Flavor::Perl => {}
        }
        let r = c
            .send(a, req("GET", &format!("{SDN}/zones?type=simple")))
            .await
            .expect(200);
        assert_eq!(r.data().as_array().unwrap().len(), 1);
        let z = c
            .send(a, req("GET", &format!("{SDN}/zones/lab")))
            .await
            .expect(200)
            .data();
        assert_eq!(
            z,
            json!({"bridge":"vmbr0","digest":digest,"ipam":"pve","type":"vlan","zone":"lab"})
        );

        // vnets: JSON with a token, booleans typed per flavour
        c.send(
            a,
            req("POST", &format!("{SDN}/vnets"))
                .json(&json!({"vnet": "v10", "zone": "lab", "tag": 10, "alias": "ten"})),
        )
        .await
        .expect(200);
        c.send(
            a,
            req("POST", &format!("{SDN}/vnets"))
                .json(&json!({"vnet": "v20", "zone": "lab", "tag": 20, "vlanaware": true})),
        )
        .await
        .expect(200);
        let v20 = c
            .send(a, req("GET", &format!("{SDN}/vnets/v20")))
            .await
            .expect(200)
            .data();
        assert_eq!(v20["tag"], 20);
        match flavor {
            Flavor::Perl => assert_eq!(v20["vlanaware"], 1),
            Flavor::Rust => assert_eq!(v20["vlanaware"], true),
        }

        // subnets: a JSON array for dhcp-range
        c.send(
            a,
            req("POST", &format!("{SDN}/vnets/v10/subnets")).json(&json!({
                "subnet": "10.10.0.0/24",
                "gateway": "10.10.0.1",
                "snat": true,
                "dhcp-range": [
                    "start-address=10.10.0.100,end-address=10.10.0.150",
                    "start-address=10.10.0.200,end-address=10.10.0.210",
                ],
            })),
        )
        .await
        .expect(200);
        let s = c
            .send(
                a,
                req("GET", &format!("{SDN}/vnets/v10/subnets/lab-10.10.0.0-24")),
            )
            .await
            .expect(200)
            .data();
        assert_eq!(s["cidr"], "10.10.0.0/24");
        assert_eq!(s["dhcp-range"].as_array().unwrap().len(), 2);
        assert_eq!(s["dhcp-range"][1]["start-address"], "10.10.0.200");
        match flavor {
            Flavor::Perl => {
                assert_eq!(s["mask"], "24");
                assert_eq!(s["snat"], 1);
            }
            Flavor::Rust => {
                assert_eq!(s["mask"], 24);
                assert_eq!(s["snat"], true);
            }
        }
        let list = c
            .send(a, req("GET", &format!("{SDN}/vnets/v10/subnets")))
            .await
            .expect(200);
        assert_eq!(list.data().as_array().unwrap().len(), 1);
        let none = c
            .send(a, req("GET", &format!("{SDN}/vnets/v20/subnets")))
            .await
            .expect(200);
        assert_eq!(none.data(), json!([]));

        // updates with digest and delete
        c.send(
            a,
            req("PUT", &format!("{SDN}/zones/lab")).form(&[("mtu", "9000"), ("digest", &digest)]),
        )
        .await
        .expect(200);
        let r = c
            .send(
                a,
                req("PUT", &format!("{SDN}/zones/lab"))
                    .form(&[("mtu", "1500"), ("digest", &digest)]),
            )
            .await
            .expect(500);
        assert_eq!(
            r.reason,
            "update sdn zone object failed: error during cfs-locked 'file-sdn__running-config' \
             operation: detected modified configuration - file changed by other user? Try again."
        );
        c.send(
            a,
            req("PUT", &format!("{SDN}/vnets/v10")).form(&[("delete", "alias")]),
        )
        .await
        .expect(200);
        c.send(
            a,
            req("PUT", &format!("{SDN}/vnets/v10/subnets/lab-10.10.0.0-24"))
                .form(&[("delete", "snat")]),
        )
        .await
        .expect(200);
        let v10 = c
            .send(a, req("GET", &format!("{SDN}/vnets/v10")))
            .await
            .expect(200)
            .data();
        assert!(v10.get("alias").is_none());

        // deletes in dependency order, with PVE's refusals
        let r = c
            .send(a, req("DELETE", &format!("{SDN}/vnets/v10")))
            .await
            .expect(500);
        assert_eq!(
            r.reason,
            "delete sdn vnet object failed: 400 Parameter verification failed."
        );
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .ends_with("vnet: Can't delete vnet if subnets exists\n")
        );
        let r = c
            .send(a, req("DELETE", &format!("{SDN}/zones/lab")))
            .await
            .expect(500);
        assert!(
            r.reason.contains("zone lab is used by vnet v10 at "),
            "{}",
            r.reason
        );
        for path in [
            "vnets/v10/subnets/lab-10.10.0.0-24",
            "vnets/v10",
            "vnets/v20",
            "zones/lab",
            "zones/sz",
        ] {
            c.send(a, req("DELETE", &format!("{SDN}/{path}")))
                .await
                .expect(200);
        }
        let r = c
            .send(a, req("GET", &format!("{SDN}/zones")))
            .await
            .expect(200);
        assert_eq!(r.data(), json!([]));
    }
}

#[tokio::test]
async fn errors_with_pve_messages() {
    for flavor in FLAVORS {
        let env = Env::new();
        let sim = env.start(flavor).await;
        let c = &env.client;
        let a = sim.addr();
        let zones = format!("{SDN}/zones");

        let r = c.send(a, req("POST", &zones).form(&[])).await.expect(400);
        assert_eq!(r.reason, "Parameter verification failed.");
        assert_eq!(
            r.json()["errors"],
            json!({
                "type": "property is missing and it is not optional",
                "zone": "property is missing and it is not optional",
            })
        );
        let r = c
            .send(
                a,
                req("POST", &zones).form(&[("zone", "lab-1"), ("type", "vlan")]),
            )
            .await
            .expect(400);
        assert_eq!(
            r.json()["errors"]["zone"],
            "invalid format - zone ID 'lab-1' contains illegal characters\n"
        );
        let r = c
            .send(
                a,
                req("POST", &zones).form(&[("zone", "lab"), ("type", "vlan")]),
            )
            .await
            .expect(500);
        assert_eq!(r.reason, "missing value for required option 'bridge'");
        assert_eq!(r.headers["connection"], "close");
        c.send(
            a,
            req("POST", &zones).form(&[("zone", "lab"), ("type", "vlan"), ("bridge", "vmbr0")]),
        )
        .await
        .expect(200);
        let r = c
            .send(
                a,
                req("POST", &zones).form(&[("zone", "lab"), ("type", "vlan"), ("bridge", "x")]),
            )
            .await
            .expect(500);
        assert_eq!(
            r.reason,
            "create sdn zone object failed: error during cfs-locked 'file-sdn__running-config' \
             operation: sdn zone object ID 'lab' already defined"
        );
        assert_eq!(
            r.json()["message"],
            "create sdn zone object failed: error during cfs-locked 'file-sdn__running-config' \
             operation: sdn zone object ID 'lab' already defined\n"
        );
        let r = c
            .send(a, req("GET", &format!("{zones}/nope")))
            .await
            .expect(500);
        assert_eq!(r.reason, "sdn 'nope' does not exist");

        let vnets = format!("{SDN}/vnets");
        let r = c
            .send(
                a,
                req("POST", &vnets).form(&[("vnet", "v1"), ("zone", "lab")]),
            )
            .await
            .expect(500);
        assert_eq!(
            r.reason,
            "create sdn vnet object failed: 400 Parameter verification failed."
        );
        assert_eq!(
            r.json()["message"],
            "create sdn vnet object failed: 400 Parameter verification failed.\ntag: missing vlan tag\n"
        );
        let r = c
            .send(a, req("GET", &format!("{vnets}/v1")))
            .await
            .expect(500);
        assert_eq!(r.reason, "sdn vnet 'v1' does not exist");
        let r = c
            .send(
                a,
                req("POST", &format!("{vnets}/v1/subnets")).form(&[("subnet", "10.0.0.0/24")]),
            )
            .await
            .expect(500);
        assert_eq!(r.reason, "sdn vnet 'v1' does not exist");
        c.send(
            a,
            req("POST", &vnets).form(&[("vnet", "v1"), ("zone", "lab"), ("tag", "5")]),
        )
        .await
        .expect(200);
        let r = c
            .send(
                a,
                req("POST", &format!("{vnets}/v1/subnets"))
                    .form(&[("subnet", "10.0.0.0/24"), ("gateway", "192.0.2.1")]),
            )
            .await
            .expect(500);
        assert_eq!(
            r.json()["message"],
            "create sdn subnet object failed: 400 Parameter verification failed.\n\
             gateway: 192.0.2.1 is not in subnet 10.0.0.0/24\n"
        );
        let r = c
            .send(
                a,
                req("POST", &format!("{vnets}/v1/subnets")).form(&[("subnet", "10.0.0.0/33")]),
            )
            .await
            .expect(400);
        assert_eq!(
            r.json()["errors"]["subnet"],
            "invalid format - value does not look like a valid CIDR network\n"
        );
        // apply takes no parameters
        let r = c
            .send(a, req("PUT", SDN).form(&[("force", "1")]))
            .await
            .expect(400);
        assert!(r.json()["errors"]["force"].is_string());

        // extjs: errors in the body with HTTP 200
        let r = c
            .send(a, req("GET", "/api2/extjs/cluster/sdn/zones/nope"))
            .await
            .expect(200);
        assert_eq!(r.json()["success"], 0);
        assert_eq!(r.json()["status"], 500);
        let r = c
            .send(a, req("GET", "/api2/extjs/cluster/sdn/zones"))
            .await
            .expect(200);
        assert_eq!(r.json()["success"], 1);
        assert_eq!(r.data()[0]["zone"], "lab");
    }
}

#[tokio::test]
async fn pending_running_and_apply() {
    for flavor in FLAVORS {
        let env = Env::new();
        let sim = env.start(flavor).await;
        let c = &env.client;
        let a = sim.addr();
        c.send(
            a,
            req("POST", &format!("{SDN}/zones")).form(&[
                ("zone", "lab"),
                ("type", "vlan"),
                ("bridge", "vmbr0"),
            ]),
        )
        .await
        .expect(200);
        c.send(
            a,
            req("POST", &format!("{SDN}/vnets")).form(&[
                ("vnet", "v10"),
                ("zone", "lab"),
                ("tag", "10"),
            ]),
        )
        .await
        .expect(200);

        let p = c
            .send(a, req("GET", &format!("{SDN}/vnets?pending=1")))
            .await
            .expect(200)
            .data();
        assert_eq!(
            p,
            json!([{"digest":null,"pending":{"tag":10,"zone":"lab"},"state":"new","type":"vnet","vnet":"v10"}])
        );
        let running = c
            .send(a, req("GET", &format!("{SDN}/zones?running=1")))
            .await
            .expect(200);
        assert_eq!(running.data(), json!([]));

        // the apply commits and starts reloadnetworkall
        let r = c.send(a, req("PUT", SDN)).await.expect(200);
        let upid = r.data().as_str().unwrap().to_string();
        assert!(upid.starts_with("UPID:pve1:"), "{upid}");
        assert!(upid.ends_with(":reloadnetworkall::root@pam:"), "{upid}");
        let committed = std::fs::read_to_string(env.sdn_dir().join(".running-config")).unwrap();
        let committed: Value = serde_json::from_str(&committed).unwrap();
        assert_eq!(committed["version"], 1);
        assert_eq!(committed["vnets"]["ids"]["v10"]["tag"], 10);

        let p = c
            .send(a, req("GET", &format!("{SDN}/vnets?pending=1")))
            .await
            .expect(200)
            .data();
        assert_eq!(
            p,
            json!([{"digest":null,"tag":10,"type":"vnet","vnet":"v10","zone":"lab"}])
        );
        c.send(
            a,
            req("PUT", &format!("{SDN}/vnets/v10")).form(&[("tag", "11")]),
        )
        .await
        .expect(200);
        let p = c
            .send(a, req("GET", &format!("{SDN}/vnets/v10?pending=1")))
            .await
            .expect(200)
            .data();
        assert_eq!(p["state"], "changed");
        assert_eq!(p["tag"], 10);
        assert_eq!(p["pending"]["tag"], 11);
        let r = c
            .send(a, req("GET", &format!("{SDN}/vnets/v10?running=1")))
            .await
            .expect(200)
            .data();
        assert_eq!(r["tag"], 10);

        // the apply also applies the node's pending network changes, as the
        // reload worker does
        c.send(
            a,
            req("POST", "/api2/json/nodes/pve1/network")
                .form(&[("iface", "vmbr9"), ("type", "bridge")]),
        )
        .await
        .expect(200);
        c.send(a, req("PUT", SDN)).await.expect(200);
        let committed = std::fs::read_to_string(env.sdn_dir().join(".running-config")).unwrap();
        assert!(committed.contains(r#""version":2"#));
        assert!(
            std::fs::read_to_string(&env.interfaces)
                .unwrap()
                .contains("iface vmbr9")
        );
        assert!(!env.interfaces.with_extension("new").exists());
    }
}

#[tokio::test]
async fn perl_orders_keys_like_a_perl_hash() {
    let env = Env::new();
    let perl = env.start(Flavor::Perl).await;
    let c = &env.client;
    for (zone, kind) in [("za", "simple"), ("zb", "simple"), ("zc", "simple")] {
        c.send(
            perl.addr(),
            req("POST", &format!("{SDN}/zones")).form(&[
                ("zone", zone),
                ("type", kind),
                ("mtu", "1400"),
                ("ipam", "pve"),
            ]),
        )
        .await
        .expect(200);
    }
    let r = c
        .send(perl.addr(), req("GET", &format!("{SDN}/zones")))
        .await
        .expect(200);
    let zones = r.data();
    // PVE sorts the ids ...
    let ids: Vec<&str> = zones
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["zone"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["za", "zb", "zc"]);
    // ... but not the keys of each object
    let text = r.text();
    let objects: Vec<&str> = text.split("},{").collect();
    assert!(
        zones
            .as_array()
            .unwrap()
            .iter()
            .zip(&objects)
            .any(|(z, t)| !keys_sorted(t, z)),
        "some object comes out unsorted: {text}"
    );
    // the same request on the same state answers byte for byte the same
    let again = c
        .send(perl.addr(), req("GET", &format!("{SDN}/zones")))
        .await
        .expect(200);
    assert_eq!(again.body, r.body);
}
