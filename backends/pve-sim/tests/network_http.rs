//! The node network API over real TLS, in both flavours: every method, the
//! error cases, proxmoxer-style form writes with a ticket and JSON bodies
//! with a token.

mod common;

use common::{Auth, Env, FLAVORS, req};
use pve_sim::Flavor;
use serde_json::{Value, json};

const NET: &str = "/api2/json/nodes/pve1/network";

fn find<'a>(list: &'a Value, iface: &str) -> &'a Value {
    list.as_array()
        .expect("list")
        .iter()
        .find(|i| i["iface"] == iface)
        .unwrap_or_else(|| panic!("{iface} not in {list}"))
}

#[tokio::test]
async fn list_and_get_in_both_flavours() {
    let env = Env::new();
    let perl = env.start(Flavor::Perl).await;
    let rust = env.start(Flavor::Rust).await;

    let p = env
        .client
        .send(perl.addr(), req("GET", NET))
        .await
        .expect(200);
    assert_eq!(p.headers["server"], "pve-api-daemon/3.0");
    assert_eq!(p.headers["content-type"], "application/json;charset=UTF-8");
    let vmbr0 = find(&p.data(), "vmbr0").clone();
    assert_eq!(vmbr0["bridge_fd"], "0");
    assert_eq!(vmbr0["netmask"], "24");
    assert_eq!(vmbr0["active"], 1);
    assert_eq!(vmbr0["autostart"], 1);
    assert_eq!(vmbr0["bridge_vlan_aware"], 1);
    assert!(p.text().contains(r#""bridge_fd":"0""#));
    // Perl leaves false flags out
    assert!(find(&p.data(), "eno1").get("autostart").is_none());

    let r = env
        .client
        .send(rust.addr(), req("GET", NET))
        .await
        .expect(200);
    let vmbr0 = find(&r.data(), "vmbr0").clone();
    assert_eq!(vmbr0["bridge_fd"], 0);
    assert_eq!(vmbr0["netmask"], 24);
    assert_eq!(vmbr0["active"], true);
    assert_eq!(vmbr0["bridge_vlan_aware"], true);
    assert_eq!(find(&r.data(), "eno1")["autostart"], false);
    // Rust: sorted by name, sorted keys
    let ifaces: Vec<String> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["iface"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ifaces, ["bond0", "eno1", "eno2", "vmbr0", "vmbr0.50"]);

    for sim in [&perl, &rust] {
        // the type filter, extjs and a single interface
        let b = env
            .client
            .send(sim.addr(), req("GET", &format!("{NET}?type=bridge")))
            .await
            .expect(200);
        assert_eq!(b.data().as_array().unwrap().len(), 1);
        let x = env
            .client
            .send(sim.addr(), req("GET", "/api2/extjs/nodes/pve1/network"))
            .await
            .expect(200);
        assert_eq!(x.json()["success"], 1);
        assert_eq!(x.data().as_array().unwrap().len(), 5);
        let one = env
            .client
            .send(sim.addr(), req("GET", &format!("{NET}/bond0")))
            .await
            .expect(200);
        assert_eq!(one.data()["bond_mode"], "802.3ad");
        assert!(one.data().get("iface").is_none());
    }
}

#[tokio::test]
async fn proxmoxer_style_writes_with_a_ticket() {
    for flavor in FLAVORS {
        let env = Env::new();
        let sim = env.start(flavor).await;
        let c = &env.client;
        let a = sim.addr();
        let ticket = c.login(a).await;

        // POST: create (form body, cookie + CSRF header)
        let created = c
            .send(
                a,
                req("POST", NET).auth(&ticket).form(&[
                    ("iface", "vmbr1"),
                    ("type", "bridge"),
                    ("cidr", "10.1.1.1/24"),
                    ("autostart", "1"),
                    ("comments", "lab bridge"),
                ]),
            )
            .await
            .expect(200);
        assert_eq!(created.json(), json!({"data": null}));
        let pending = std::fs::read_to_string(env.interfaces.with_extension("new")).unwrap();
        assert!(
            pending.contains("auto vmbr1\niface vmbr1 inet static\n"),
            "{pending}"
        );

        // GET: the list carries the diff, the interface its settings
        let list = c.send(a, req("GET", NET).auth(&ticket)).await.expect(200);
        let changes = list.json()["changes"].as_str().unwrap().to_string();
        assert!(changes.contains("+auto vmbr1\n"), "{changes}");
        let one = c
            .send(a, req("GET", &format!("{NET}/vmbr1")).auth(&ticket))
            .await
            .expect(200)
            .data();
        assert_eq!(one["cidr"], "10.1.1.1/24");
        assert_eq!(one["comments"], "lab bridge\n");
        match flavor {
            Flavor::Perl => assert_eq!(one["netmask"], "24"),
            Flavor::Rust => assert_eq!(one["netmask"], 24),
        }

        // PUT: update
        c.send(
            a,
            req("PUT", &format!("{NET}/vmbr1"))
                .auth(&ticket)
                .form(&[("type", "bridge"), ("mtu", "9000")]),
        )
        .await
        .expect(200);
        let one = c
            .send(a, req("GET", &format!("{NET}/vmbr1")).auth(&ticket))
            .await
            .expect(200)
            .data();
        match flavor {
            Flavor::Perl => assert_eq!(one["mtu"], "9000"),
            Flavor::Rust => assert_eq!(one["mtu"], 9000),
        }
        // PUT recomputes the address from this request: none given, so manual
        assert_eq!(one["method"], "manual");

        // DELETE iface, then revert
        c.send(a, req("DELETE", &format!("{NET}/vmbr1")).auth(&ticket))
            .await
            .expect(200);
        c.send(a, req("DELETE", NET).auth(&ticket))
            .await
            .expect(200);
        assert!(!env.interfaces.with_extension("new").exists());
        let list = c.send(a, req("GET", NET).auth(&ticket)).await.expect(200);
        assert!(list.json().get("changes").is_none());

        // PUT /network: apply
        c.send(
            a,
            req("POST", NET).auth(&ticket).form(&[
                ("iface", "vmbr1"),
                ("type", "bridge"),
                ("autostart", "1"),
            ]),
        )
        .await
        .expect(200);
        let applied = c.send(a, req("PUT", NET).auth(&ticket)).await.expect(200);
        let upid = applied.data().as_str().unwrap().to_string();
        assert!(upid.starts_with("UPID:pve1:"), "{upid}");
        assert!(upid.ends_with(":srvreload:networking:root@pam:"), "{upid}");
        let applied_file = std::fs::read_to_string(&env.interfaces).unwrap();
        assert!(applied_file.contains("iface vmbr1 inet manual"));
        assert!(!env.interfaces.with_extension("new").exists());
    }
}

#[tokio::test]
async fn json_bodies_with_a_token() {
    for flavor in FLAVORS {
        let env = Env::new();
        let sim = env.start(flavor).await;
        let c = &env.client;
        c.send(
            sim.addr(),
            req("POST", NET).json(&json!({
                "iface": "vmbr7",
                "type": "bridge",
                "autostart": true,
                "bridge_vlan_aware": true,
                "mtu": 9000,
            })),
        )
        .await
        .expect(200);
        let one = c
            .send(sim.addr(), req("GET", &format!("{NET}/vmbr7")))
            .await
            .expect(200)
            .data();
        match flavor {
            Flavor::Perl => {
                assert_eq!(one["bridge_vlan_aware"], 1);
                assert_eq!(one["mtu"], "9000");
            }
            Flavor::Rust => {
                assert_eq!(one["bridge_vlan_aware"], true);
                assert_eq!(one["mtu"], 9000);
            }
        }
    }
}

#[tokio::test]
async fn errors_in_both_flavours() {
    for flavor in FLAVORS {
        let env = Env::new();
        let sim = env.start(flavor).await;
        let c = &env.client;
        let a = sim.addr();

        let r = c
            .send(a, req("GET", &format!("{NET}/vmbr9")))
            .await
            .expect(400);
        assert_eq!(r.reason, "Parameter verification failed.");
        assert_eq!(r.headers["connection"], "close");
        assert_eq!(r.json()["errors"]["iface"], "interface does not exist");
        assert_eq!(r.json()["message"], "Parameter verification failed.\n");

        let r = c
            .send(
                a,
                req("POST", NET).form(&[("iface", "9x"), ("type", "bridge")]),
            )
            .await
            .expect(400);
        assert_eq!(
            r.json()["errors"]["iface"],
            "invalid format - invalid network interface name '9x'\n"
        );
        let r = c
            .send(
                a,
                req("POST", NET).form(&[("iface", "vmbr0"), ("type", "bridge")]),
            )
            .await
            .expect(400);
        assert_eq!(r.json()["errors"]["iface"], "interface already exists");
        let r = c
            .send(
                a,
                req("POST", NET).form(&[("iface", "vmbr5"), ("type", "wifi")]),
            )
            .await
            .expect(400);
        assert!(
            r.json()["errors"]["type"]
                .as_str()
                .unwrap()
                .starts_with("value 'wifi' does not have a value in the enumeration")
        );
        let r = c
            .send(a, req("GET", &format!("{NET}?foo=1")))
            .await
            .expect(400);
        assert!(r.json()["errors"]["foo"].is_string());

        // authentication
        let r = c
            .send(a, req("GET", NET).auth(&Auth::None))
            .await
            .expect(401);
        assert_eq!(r.reason, "No ticket");
        let ticket = c.login(a).await;
        let Auth::Ticket { cookie, .. } = &ticket else {
            unreachable!()
        };
        let r = c
            .send(
                a,
                req("POST", NET)
                    .auth(&Auth::None)
                    .header("Cookie", cookie)
                    .form(&[("iface", "vmbr5"), ("type", "bridge")]),
            )
            .await
            .expect(401);
        assert_eq!(r.reason, "Permission denied - invalid csrf token");
        let r = c
            .send(
                a,
                req("GET", NET)
                    .auth(&Auth::None)
                    .header("Authorization", "PVEAPIToken=root@pam!ci=wrong"),
            )
            .await
            .expect(401);
        assert_eq!(r.reason, "invalid token value!");
        let r = c
            .send(
                a,
                req("POST", "/api2/json/access/ticket")
                    .auth(&Auth::None)
                    .form(&[("username", "root@pam"), ("password", "nope")]),
            )
            .await
            .expect(401);
        assert_eq!(r.reason, "authentication failure");

        // another node, extjs, unknown methods
        let r = c
            .send(a, req("GET", "/api2/json/nodes/pve9/network"))
            .await
            .expect(500);
        assert!(r.reason.starts_with("hostname lookup 'pve9' failed"));
        let r = c
            .send(a, req("GET", "/api2/extjs/nodes/pve1/network/vmbr9"))
            .await
            .expect(200);
        assert_eq!(r.json()["success"], 0);
        assert_eq!(r.json()["status"], 400);
        assert_eq!(r.json()["errors"]["iface"], "interface does not exist");
        let r = c
            .send(a, req("POST", &format!("{NET}/vmbr0")))
            .await
            .expect(501);
        assert_eq!(
            r.reason,
            "Method 'POST /nodes/pve1/network/vmbr0' not implemented"
        );
    }
}
