//! A Perl-flavour and a Rust-flavour simulator pointed at the same
//! interfaces file and SDN directory behave like the two backends of one
//! node: each sees the other's writes, and tickets work on both.

mod common;

use common::{Env, req};
use pve_sim::Flavor;

#[tokio::test]
async fn both_flavours_see_each_others_writes() {
    let env = Env::new();
    let perl = env.start(Flavor::Perl).await;
    let rust = env.start(Flavor::Rust).await;
    let c = &env.client;
    let (p, r) = (perl.addr(), rust.addr());
    let net = "/api2/json/nodes/pve1/network";
    let sdn = "/api2/json/cluster/sdn";

    // a ticket issued by one is accepted by the other
    let ticket = c.login(p).await;

    // network: Perl creates, Rust reads and updates, Perl reads
    c.send(
        p,
        req("POST", net).auth(&ticket).form(&[
            ("iface", "vmbr1"),
            ("type", "bridge"),
            ("cidr", "10.1.0.1/24"),
        ]),
    )
    .await
    .expect(200);
    let seen = c
        .send(r, req("GET", &format!("{net}/vmbr1")).auth(&ticket))
        .await
        .expect(200)
        .data();
    assert_eq!(seen["cidr"], "10.1.0.1/24");
    assert_eq!(seen["netmask"], 24);
    c.send(
        r,
        req("PUT", &format!("{net}/vmbr1")).auth(&ticket).form(&[
            ("type", "bridge"),
            ("mtu", "9000"),
            ("cidr", "10.1.0.1/24"),
        ]),
    )
    .await
    .expect(200);
    let seen = c
        .send(p, req("GET", &format!("{net}/vmbr1")))
        .await
        .expect(200)
        .data();
    assert_eq!(seen["mtu"], "9000");
    let changes_perl = c.send(p, req("GET", net)).await.expect(200).json()["changes"].clone();
    let changes_rust = c.send(r, req("GET", net)).await.expect(200).json()["changes"].clone();
    assert_eq!(changes_perl, changes_rust);

    // SDN: Rust creates the zone, Perl the vnet; both list both
    c.send(
        r,
        req("POST", &format!("{sdn}/zones")).form(&[
            ("zone", "lab"),
            ("type", "vlan"),
            ("bridge", "vmbr1"),
        ]),
    )
    .await
    .expect(200);
    c.send(
        p,
        req("POST", &format!("{sdn}/vnets")).form(&[
            ("vnet", "v10"),
            ("zone", "lab"),
            ("tag", "10"),
        ]),
    )
    .await
    .expect(200);
    for sim in [p, r] {
        let zones = c
            .send(sim, req("GET", &format!("{sdn}/zones")))
            .await
            .expect(200)
            .data();
        assert_eq!(zones[0]["zone"], "lab");
        let vnets = c
            .send(sim, req("GET", &format!("{sdn}/vnets")))
            .await
            .expect(200)
            .data();
        assert_eq!(vnets[0]["vnet"], "v10");
        assert_eq!(vnets[0]["tag"], 10);
    }
    // the same checks on the shared state: Rust refuses what Perl created
    let dup = c
        .send(
            r,
            req("POST", &format!("{sdn}/vnets")).form(&[
                ("vnet", "v11"),
                ("zone", "lab"),
                ("tag", "10"),
            ]),
        )
        .await
        .expect(500);
    assert!(
        dup.json()["message"]
            .as_str()
            .unwrap()
            .ends_with("tag: tag 10 already exist in vnet v10\n")
    );

    // Perl applies; Rust sees the running configuration and the applied network
    c.send(p, req("PUT", sdn)).await.expect(200);
    let pending = c
        .send(r, req("GET", &format!("{sdn}/vnets?pending=1")))
        .await
        .expect(200)
        .data();
    assert!(pending[0].get("state").is_none(), "{pending}");
    let list = c.send(r, req("GET", net)).await.expect(200).json();
    assert!(list.get("changes").is_none());
    assert!(
        std::fs::read_to_string(&env.interfaces)
            .unwrap()
            .contains("iface vmbr1 inet static")
    );
}
