//! Unit tests of the SDN operations: checks and messages, file contents,
//! pending/running views.

use serde_json::{Value as J, json};

use super::*;
use crate::render::Flavour;

fn p(kv: &[(&str, &str)]) -> SdnParams {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const REAL: MutateOptions = MutateOptions { dry_run: false };

fn rust_json(o: &SdnOutcome) -> J {
    let body: J = serde_json::from_str(&o.data.render(&Flavour::rust())).unwrap();
    body["data"].clone()
}

/// Runs a write on the files and commits it.
fn ok(
    files: &mut SdnFiles,
    op: impl FnOnce(&SdnFiles) -> Result<SdnOutcome, ApiError>,
) -> SdnOutcome {
    let o = op(files).unwrap_or_else(|e| panic!("unexpected error: {e:?}"));
    files.commit(&o);
    o
}

fn lab() -> SdnFiles {
    let mut f = SdnFiles::default();
    ok(&mut f, |f| {
        zone_create(
            f,
            &p(&[("zone", "lab"), ("type", "vlan"), ("bridge", "vmbr0")]),
            REAL,
        )
    });
    ok(&mut f, |f| {
        vnet_create(
            f,
            &p(&[("vnet", "v10"), ("zone", "lab"), ("tag", "10")]),
            REAL,
        )
    });
    f
}

fn locked_msg(what: &str, inner: &str) -> String {
    format!("{what}: error during cfs-locked 'file-sdn__running-config' operation: {inner}")
}

#[test]
fn index_lists_children() {
    let o = index(&p(&[])).unwrap();
    assert_eq!(
        rust_json(&o),
        json!([{"id":"vnets"},{"id":"zones"},{"id":"controllers"},{"id":"ipams"},{"id":"dns"}])
    );
    assert_eq!(index(&p(&[("x", "1")])).unwrap_err().status, 400);
}

#[test]
fn zone_create_checks() {
    let f = SdnFiles::default();
    let e = zone_create(&f, &p(&[]), REAL).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (400, "Parameter verification failed.")
    );
    assert_eq!(
        e.errors["zone"],
        "property is missing and it is not optional"
    );
    assert_eq!(
        e.errors["type"],
        "property is missing and it is not optional"
    );

    let e = zone_create(&f, &p(&[("zone", "9lab"), ("type", "vlan")]), REAL).unwrap_err();
    assert_eq!(
        e.errors["zone"],
        "invalid format - zone ID '9lab' contains illegal characters\n"
    );
    let e = zone_create(&f, &p(&[("zone", "toolongid"), ("type", "vlan")]), REAL).unwrap_err();
    assert_eq!(
        e.errors["zone"],
        "invalid format - zone ID 'toolongid' can't be more length than 8 characters\n"
    );
    let e = zone_create(&f, &p(&[("zone", "lab"), ("type", "faucet")]), REAL).unwrap_err();
    assert_eq!(
        e.errors["type"],
        "value 'faucet' does not have a value in the enumeration 'evpn, qinq, simple, vlan, vxlan'"
    );
    let e = zone_create(
        &f,
        &p(&[("zone", "lab"), ("type", "vlan"), ("bogus", "1")]),
        REAL,
    )
    .unwrap_err();
    assert!(e.errors["bogus"].starts_with("property is not defined in schema"));

    // per-type required options and foreign options: check_config, 500, no lock prefix
    let e = zone_create(&f, &p(&[("zone", "lab"), ("type", "vlan")]), REAL).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (500, "missing value for required option 'bridge'")
    );
    let e = zone_create(
        &f,
        &p(&[("zone", "qz"), ("type", "qinq"), ("bridge", "vmbr0")]),
        REAL,
    )
    .unwrap_err();
    assert_eq!(e.message, "missing value for required option 'tag'");
    let e = zone_create(&f, &p(&[("zone", "vx"), ("type", "vxlan")]), REAL).unwrap_err();
    assert_eq!(e.message, "missing value for required option 'peers'");
    let e = zone_create(&f, &p(&[("zone", "ev"), ("type", "evpn")]), REAL).unwrap_err();
    assert_eq!(e.message, "missing value for required option 'controller'");
    let e = zone_create(
        &f,
        &p(&[("zone", "sz"), ("type", "simple"), ("bridge", "vmbr0")]),
        REAL,
    )
    .unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (500, "unexpected property 'bridge'")
    );

    // references checked under the lock: parameter errors are stringified
    let e = zone_create(
        &f,
        &p(&[("zone", "sz"), ("type", "simple"), ("ipam", "nb")]),
        REAL,
    )
    .unwrap_err();
    assert_eq!(e.status, 500);
    assert_eq!(
        e.message,
        "create sdn zone object failed: 400 Parameter verification failed.\nipam: nb not existing"
    );
    assert!(e.errors.is_empty());
    let e = zone_create(
        &f,
        &p(&[
            ("zone", "sz"),
            ("type", "simple"),
            ("dnszone", "example.com"),
        ]),
        REAL,
    )
    .unwrap_err();
    assert!(
        e.message.ends_with("dnszone: missing dns server"),
        "{}",
        e.message
    );

    // the built-in IPAM always exists
    let mut f = SdnFiles::default();
    ok(&mut f, |f| {
        zone_create(
            f,
            &p(&[
                ("zone", "sz"),
                ("type", "simple"),
                ("ipam", "pve"),
                ("mtu", "1450"),
            ]),
            REAL,
        )
    });
    assert_eq!(
        f.get(SdnFile::Section(Section::Zones)),
        "simple: sz\n\tipam pve\n\tmtu 1450\n\n"
    );
    let e = zone_create(
        &f,
        &p(&[("zone", "sz"), ("type", "vlan"), ("bridge", "b")]),
        REAL,
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            "create sdn zone object failed",
            "sdn zone object ID 'sz' already defined"
        )
    );
}

#[test]
fn evpn_needs_an_evpn_controller() {
    let mut f = SdnFiles::default();
    let params = p(&[
        ("zone", "ev"),
        ("type", "evpn"),
        ("controller", "ctl"),
        ("vrf-vxlan", "10000"),
    ]);
    let e = zone_create(&f, &params, REAL).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            "create sdn zone object failed",
            "controller ctl don't exist at /usr/share/perl5/PVE/Network/SDN/Zones/EvpnPlugin.pm line 283."
        )
    );
    f.set(
        SdnFile::Section(Section::Controllers),
        "bgp: ctl\n\tasn 65000\n\tnode pve1\n\tpeers 10.0.0.1\n\n",
    );
    let e = zone_create(&f, &params, REAL).unwrap_err();
    assert!(e.message.contains("ctl is not a evpn controller type at "));
    f.set(
        SdnFile::Section(Section::Controllers),
        "evpn: ctl\n\tasn 65000\n\tpeers 10.0.0.1\n\n",
    );
    ok(&mut f, |f| zone_create(f, &params, REAL));
    let zones = f.get(SdnFile::Section(Section::Zones)).to_string();
    assert!(zones.starts_with("evpn: ev\n\tcontroller ctl\n\tvrf-vxlan 10000\n\tmac BC:24:11:"));
    let e = zone_create(
        &f,
        &p(&[
            ("zone", "ev2"),
            ("type", "evpn"),
            ("controller", "ctl"),
            ("vrf-vxlan", "10000"),
        ]),
        REAL,
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("vrf-vxlan 10000 is already declared in ev at ")
    );
    // the controller list is typed from controllers.cfg
    let o = objects_list(&f, Section::Controllers, &p(&[])).unwrap();
    let d = rust_json(&o);
    assert_eq!(d[0]["controller"], "ctl");
    assert_eq!(d[0]["asn"], 65000);
    assert_eq!(d[0]["type"], "evpn");
}

#[test]
fn zone_update_and_delete() {
    let mut f = lab();
    let digest = sha1_hex(f.get(SdnFile::Section(Section::Zones)));
    ok(&mut f, |f| {
        zone_update(
            f,
            "lab",
            &p(&[("mtu", "9000"), ("nodes", "pve2,pve1"), ("digest", &digest)]),
            REAL,
        )
    });
    assert_eq!(
        f.get(SdnFile::Section(Section::Zones)),
        "vlan: lab\n\tbridge vmbr0\n\tmtu 9000\n\tnodes pve1,pve2\n\n"
    );
    let what = "update sdn zone object failed";
    let e = zone_update(&f, "lab", &p(&[("digest", &digest)]), REAL).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            what,
            "detected modified configuration - file changed by other user? Try again."
        )
    );
    let e = zone_update(&f, "lab", &p(&[("delete", "bridge")]), REAL).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(what, "unable to delete required option 'bridge'")
    );
    let e = zone_update(&f, "lab", &p(&[("delete", "mtu"), ("mtu", "1")]), REAL).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            what,
            "cannot set and delete property 'mtu' at the same time!"
        )
    );
    let e = zone_update(&f, "lab", &p(&[("delete", "peers")]), REAL).unwrap_err();
    assert_eq!(e.message, locked_msg(what, "no such option 'peers'"));
    let e = zone_update(&f, "lab", &p(&[("peers", "10.0.0.1")]), REAL).unwrap_err();
    assert_eq!(e.message, locked_msg(what, "unexpected property 'peers'"));
    let e = zone_update(&f, "nope", &p(&[]), REAL).unwrap_err();
    assert_eq!(e.message, locked_msg(what, "sdn 'nope' does not exist"));
    let e = zone_update(&f, "lab", &p(&[("type", "simple")]), REAL).unwrap_err();
    assert_eq!(e.status, 400);
    ok(&mut f, |f| {
        zone_update(f, "lab", &p(&[("delete", "mtu,nodes")]), REAL)
    });
    assert_eq!(
        f.get(SdnFile::Section(Section::Zones)),
        "vlan: lab\n\tbridge vmbr0\n\n"
    );

    let e = zone_delete(&f, "lab", &p(&[]), REAL).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            "delete sdn zone object failed",
            "zone lab is used by vnet v10 at /usr/share/perl5/PVE/Network/SDN/Zones/Plugin.pm line 138."
        )
    );
    let e = zone_get(&f, "nope", &p(&[])).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (500, "sdn 'nope' does not exist")
    );
    ok(&mut f, |f| vnet_delete(f, "v10", &p(&[]), REAL));
    ok(&mut f, |f| zone_delete(f, "lab", &p(&[]), REAL));
    assert_eq!(f.get(SdnFile::Section(Section::Zones)), "");
}

#[test]
fn vnet_rules_per_zone_type() {
    let mut f = lab();
    let what = "create sdn vnet object failed";
    let vnet = |f: &SdnFiles, kv: &[(&str, &str)]| vnet_create(f, &p(kv), REAL);

    let e = vnet(&f, &[("vnet", "v1")]).unwrap_err();
    assert_eq!(
        e.errors["zone"],
        "property is missing and it is not optional"
    );
    let e = vnet(&f, &[("vnet", "v1"), ("zone", "nope")]).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            what,
            "cannot lookup undefined type! at /usr/share/perl5/PVE/API2/Network/SDN/Vnets.pm line 247."
        )
    );
    let e = vnet(&f, &[("vnet", "v1"), ("zone", "lab")]).unwrap_err();
    assert_eq!(
        e.message,
        format!("{what}: 400 Parameter verification failed.\ntag: missing vlan tag")
    );
    let e = vnet(&f, &[("vnet", "v1"), ("zone", "lab"), ("tag", "4097")]).unwrap_err();
    assert!(e.message.ends_with("tag: vlan tag max value is 4096"));
    let e = vnet(&f, &[("vnet", "v1"), ("zone", "lab"), ("tag", "10")]).unwrap_err();
    assert!(e.message.ends_with("tag: tag 10 already exist in vnet v10"));
    let e = vnet(&f, &[("vnet", "v10"), ("zone", "lab"), ("tag", "11")]).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(what, "sdn vnet object ID 'v10' already defined")
    );
    let e = vnet(&f, &[("vnet", "v1"), ("zone", "lab"), ("tag", "x")]).unwrap_err();
    assert_eq!(e.errors["tag"], "type check ('integer') failed - got 'x'");
    let e = vnet(
        &f,
        &[("vnet", "v1"), ("zone", "lab"), ("alias", "bad{alias}")],
    )
    .unwrap_err();
    assert_eq!(e.errors["alias"], "value does not match the regex pattern");

    for (id, kind, extra) in [
        ("sz", "simple", vec![]),
        ("qz", "qinq", vec![("bridge", "vmbr0"), ("tag", "100")]),
        ("xz", "vxlan", vec![("peers", "10.0.0.1,10.0.0.2")]),
    ] {
        let mut kv = vec![("zone", id), ("type", kind)];
        kv.extend(extra);
        ok(&mut f, |f| zone_create(f, &p(&kv), REAL));
    }
    let e = vnet(&f, &[("vnet", "vs"), ("zone", "sz"), ("tag", "5")]).unwrap_err();
    assert!(
        e.message
            .ends_with("tag: vlan tag is not allowed on simple zone")
    );
    ok(&mut f, |f| {
        vnet(f, &[("vnet", "vs"), ("zone", "sz"), ("vlanaware", "1")])
    });

    ok(&mut f, |f| vnet(f, &[("vnet", "vq"), ("zone", "qz")]));
    let e = vnet(&f, &[("vnet", "vq2"), ("zone", "qz")]).unwrap_err();
    assert!(
        e.message
            .ends_with("tag: tag-less vnet already exists in zone qz vnet vq")
    );

    let e = vnet(&f, &[("vnet", "vx"), ("zone", "xz")]).unwrap_err();
    assert!(e.message.ends_with("tag: missing vxlan tag"));
    ok(&mut f, |f| {
        vnet(f, &[("vnet", "vx"), ("zone", "xz"), ("tag", "100000")])
    });
    let e = vnet(&f, &[("vnet", "vx2"), ("zone", "xz"), ("tag", "100000")]).unwrap_err();
    assert!(
        e.message
            .ends_with("tag: vxlan tag 100000 already exist in vnet vx in zone xz "),
        "{}",
        e.message
    );
    // a VLAN tag equal to a VXLAN id in another zone type does not clash
    ok(&mut f, |f| {
        vnet(f, &[("vnet", "v11"), ("zone", "lab"), ("tag", "11")])
    });

    assert_eq!(
        f.get(SdnFile::Section(Section::Vnets)),
        "vnet: v10\n\tzone lab\n\ttag 10\n\n\
         vnet: vs\n\tzone sz\n\tvlanaware 1\n\n\
         vnet: vq\n\tzone qz\n\n\
         vnet: vx\n\tzone xz\n\ttag 100000\n\n\
         vnet: v11\n\tzone lab\n\ttag 11\n\n"
    );

    // update: access check before the lock, zone change, delete
    let e = vnet_update(&f, "nope", &p(&[]), REAL).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (500, "sdn vnet 'nope' does not exist")
    );
    ok(&mut f, |f| {
        vnet_update(f, "v11", &p(&[("alias", "Lab 11"), ("tag", "12")]), REAL)
    });
    let e = vnet_update(&f, "v11", &p(&[("tag", "10")]), REAL).unwrap_err();
    assert!(e.message.starts_with("update sdn vnet object failed: 400 "));
    let e = vnet_update(&f, "v11", &p(&[("delete", "zone")]), REAL).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            "update sdn vnet object failed",
            "unable to delete required option 'zone'"
        )
    );
    let got = rust_json(&vnet_get(&f, "v11", &p(&[])).unwrap());
    assert_eq!(got["alias"], "Lab 11");
    assert_eq!(got["tag"], 12);
    assert_eq!(got["vnet"], "v11");
    assert_eq!(got["type"], "vnet");
    assert_eq!(
        got["digest"],
        sha1_hex(f.get(SdnFile::Section(Section::Vnets)))
    );
}

#[test]
fn subnets() {
    let mut f = lab();
    let sub = |f: &SdnFiles, kv: &[(&str, &str)]| subnet_create(f, "v10", &p(kv), REAL);
    let what = "create sdn subnet object failed";

    let e = sub(&f, &[("subnet", "10.0.0.0")]).unwrap_err();
    assert_eq!(
        e.errors["subnet"],
        "invalid format - value does not look like a valid CIDR network\n"
    );
    let e = subnet_create(&f, "nope", &p(&[("subnet", "10.0.0.0/24")]), REAL).unwrap_err();
    assert_eq!(e.message, "sdn vnet 'nope' does not exist");
    let e = sub(&f, &[("subnet", "10.0.0.0/24"), ("gateway", "10.0.1.1")]).unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "{what}: 400 Parameter verification failed.\ngateway: 10.0.1.1 is not in subnet 10.0.0.0/24"
        )
    );
    let e = sub(
        &f,
        &[
            ("subnet", "10.0.0.0/24"),
            (
                "dhcp-range",
                "start-address=10.0.0.50,end-address=10.0.0.40",
            ),
        ],
    )
    .unwrap_err();
    assert!(e.message.ends_with(
        "dhcp-range: start-address 10.0.0.50 must be smaller than end-address 10.0.0.40"
    ));
    let e = sub(
        &f,
        &[
            ("subnet", "10.0.0.0/24"),
            ("dhcp-range", "start-address=10.0.0.5"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        e.errors["dhcp-range[0]"],
        "invalid format - format error\nend-address: property is missing and it is not optional\n"
    );
    let e = sub(
        &f,
        &[
            ("subnet", "10.0.0.0/24"),
            (
                "dhcp-range",
                "start-address=10.0.0.10,end-address=10.0.0.20",
            ),
            (
                "dhcp-range",
                "start-address=10.0.0.15,end-address=10.0.0.30",
            ),
        ],
    )
    .unwrap_err();
    assert!(
        e.message
            .ends_with("dhcp-range: dhcp ranges must not overlap")
    );

    ok(&mut f, |f| {
        sub(
            f,
            &[
                ("subnet", "10.0.0.0/24"),
                ("gateway", "10.0.0.1"),
                ("snat", "1"),
                (
                    "dhcp-range",
                    "start-address=10.0.0.10,end-address=10.0.0.20",
                ),
            ],
        )
    });
    assert_eq!(
        f.get(SdnFile::Section(Section::Subnets)),
        "subnet: lab-10.0.0.0-24\n\tvnet v10\n\
         \tdhcp-range start-address=10.0.0.10,end-address=10.0.0.20\n\
         \tgateway 10.0.0.1\n\tsnat 1\n\n"
    );
    let e = sub(&f, &[("subnet", "10.0.0.0/24")]).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            what,
            "sdn subnet object ID 'lab-10.0.0.0-24' already defined"
        )
    );
    // IPv6 and point-to-point
    ok(&mut f, |f| {
        sub(f, &[("subnet", "fd00:10::/64"), ("gateway", "fd00:10::1")])
    });
    ok(&mut f, |f| {
        sub(f, &[("subnet", "10.9.9.9/32"), ("gateway", "10.0.0.1")])
    });

    let got = rust_json(&subnet_get(&f, "v10", "lab-10.0.0.0-24", &p(&[])).unwrap());
    assert_eq!(
        got,
        json!({
            "cidr": "10.0.0.0/24",
            "dhcp-range": [{"end-address": "10.0.0.20", "start-address": "10.0.0.10"}],
            "digest": sha1_hex(f.get(SdnFile::Section(Section::Subnets))),
            "gateway": "10.0.0.1",
            "id": "lab-10.0.0.0-24",
            "mask": 24,
            "network": "10.0.0.0",
            "snat": true,
            "subnet": "lab-10.0.0.0-24",
            "type": "subnet",
            "vnet": "v10",
            "zone": "lab",
        })
    );
    let perl: J = serde_json::from_str(
        &subnet_get(&f, "v10", "lab-10.0.0.0-24", &p(&[]))
            .unwrap()
            .data
            .render(&Flavour::perl(9)),
    )
    .unwrap();
    assert_eq!(perl["data"]["mask"], "24");
    assert_eq!(perl["data"]["snat"], 1);

    let list = rust_json(&subnets_list(&f, "v10", &p(&[])).unwrap());
    assert_eq!(list.as_array().unwrap().len(), 3);

    // the vnet cannot go away, nor become VLAN-aware, while it has subnets
    let e = vnet_delete(&f, "v10", &p(&[]), REAL).unwrap_err();
    assert_eq!(
        e.message,
        "delete sdn vnet object failed: 400 Parameter verification failed.\nvnet: Can't delete vnet if subnets exists"
    );
    let e = vnet_update(&f, "v10", &p(&[("vlanaware", "1")]), REAL).unwrap_err();
    assert!(
        e.message
            .ends_with("vlanaware: vlanaware vnet is not compatible with subnets")
    );

    // update and delete
    ok(&mut f, |f| {
        subnet_update(
            f,
            "v10",
            "lab-10.0.0.0-24",
            &p(&[("delete", "snat,dhcp-range"), ("gateway", "10.0.0.254")]),
            REAL,
        )
    });
    let got = rust_json(&subnet_get(&f, "v10", "lab-10.0.0.0-24", &p(&[])).unwrap());
    assert_eq!(got["gateway"], "10.0.0.254");
    assert!(got.get("snat").is_none());
    assert_eq!(got["dhcp-range"], json!([]));
    let e = subnet_update(&f, "v10", "lab-10.1.0.0-24", &p(&[]), REAL).unwrap_err();
    assert_eq!(
        e.message,
        locked_msg(
            "update sdn subnet object failed",
            "sdn subnet 'lab-10.1.0.0-24' does not exist"
        )
    );
    for id in ["lab-10.0.0.0-24", "lab-fd00:10::-64", "lab-10.9.9.9-32"] {
        ok(&mut f, |f| subnet_delete(f, "v10", id, &p(&[]), REAL));
    }
    assert_eq!(f.get(SdnFile::Section(Section::Subnets)), "");
}

#[test]
fn subnet_of_another_vnet() {
    let mut f = lab();
    ok(&mut f, |f| {
        vnet_create(
            f,
            &p(&[("vnet", "v20"), ("zone", "lab"), ("tag", "20")]),
            REAL,
        )
    });
    ok(&mut f, |f| {
        subnet_create(f, "v10", &p(&[("subnet", "10.0.0.0/24")]), REAL)
    });
    let e = subnet_get(&f, "v20", "lab-10.0.0.0-24", &p(&[])).unwrap_err();
    assert_eq!((e.status, e.errors["vnet"].as_str()), (400, "wrong vnet"));
    let e = subnet_get(&f, "v10", "lab-10.1.0.0-24", &p(&[])).unwrap_err();
    assert_eq!(e.message, "sdn subnet 'lab-10.1.0.0-24' does not exist");
}

#[test]
fn pending_and_running_views() {
    let host = Host {
        node: "pve1".into(),
        ..Host::simulated()
    };
    let task = TaskInfo {
        pid: 0x1234,
        pstart: 0x10,
        starttime: 0x6500_0000,
        user: "root@pam".into(),
    };
    let mut f = lab();

    // before the first apply everything is new, and running is empty
    let pending = rust_json(&vnets_list(&f, &p(&[("pending", "1")])).unwrap());
    assert_eq!(
        pending,
        json!([{
            "digest": null,
            "pending": {"tag": 10, "zone": "lab"},
            "state": "new",
            "type": "vnet",
            "vnet": "v10",
        }])
    );
    assert_eq!(
        rust_json(&zones_list(&f, &p(&[("running", "1")])).unwrap()),
        json!([])
    );

    let applied = ok(&mut f, |f| apply(f, &host, &p(&[]), &task, REAL));
    assert_eq!(
        rust_json(&applied),
        "UPID:pve1:00001234:00000010:65000000:reloadnetworkall::root@pam:"
    );
    assert!(f.get(SdnFile::Running).contains(r#""version":1"#));
    ok(&mut f, |f| apply(f, &host, &p(&[]), &task, REAL));
    assert!(f.get(SdnFile::Running).contains(r#""version":2"#));

    // applied: no state, no pending
    let pending = rust_json(&vnets_list(&f, &p(&[("pending", "1")])).unwrap());
    assert_eq!(
        pending,
        json!([{"digest": null, "tag": 10, "type": "vnet", "vnet": "v10", "zone": "lab"}])
    );

    // change, add and delete
    ok(&mut f, |f| {
        vnet_update(
            f,
            "v10",
            &p(&[("tag", "15"), ("vlanaware", "0"), ("alias", "ten")]),
            REAL,
        )
    });
    ok(&mut f, |f| {
        zone_create(f, &p(&[("zone", "sz"), ("type", "simple")]), REAL)
    });
    let pending = rust_json(&vnets_list(&f, &p(&[("pending", "1")])).unwrap());
    // `vlanaware 0` is false in both configs: PVE lists it as null
    assert_eq!(
        pending,
        json!([{
            "digest": null,
            "pending": {"alias": "ten", "tag": 15, "vlanaware": null},
            "state": "changed",
            "tag": 10,
            "type": "vnet",
            "vnet": "v10",
            "zone": "lab",
        }])
    );
    let zones = rust_json(&zones_list(&f, &p(&[("pending", "1")])).unwrap());
    assert_eq!(zones[0]["zone"], "lab");
    assert!(zones[0].get("state").is_none());
    assert_eq!(zones[1]["state"], "new");
    assert_eq!(zones[1]["type"], "simple");
    let running = rust_json(&vnet_get(&f, "v10", &p(&[("running", "1")])).unwrap());
    assert_eq!(running["tag"], 10);
    assert_eq!(running["digest"], J::Null);

    ok(&mut f, |f| apply(f, &host, &p(&[]), &task, REAL));
    ok(&mut f, |f| vnet_delete(f, "v10", &p(&[]), REAL));
    let pending = rust_json(&vnets_list(&f, &p(&[("pending", "1")])).unwrap());
    assert_eq!(pending[0]["state"], "deleted");
    assert_eq!(pending[0]["pending"], json!({}));
    assert_eq!(pending[0]["tag"], 15);
    // the config view no longer has it, and reading it fails
    assert_eq!(rust_json(&vnets_list(&f, &p(&[])).unwrap()), json!([]));
    assert_eq!(
        vnet_get(&f, "v10", &p(&[("pending", "1")]))
            .unwrap_err()
            .message,
        "sdn vnet 'v10' does not exist"
    );

    // a subnet with a DHCP range always looks changed (arrays compare by address)
    let mut f = lab();
    ok(&mut f, |f| {
        subnet_create(
            f,
            "v10",
            &p(&[
                ("subnet", "10.0.0.0/24"),
                (
                    "dhcp-range",
                    "start-address=10.0.0.10,end-address=10.0.0.20",
                ),
            ]),
            REAL,
        )
    });
    ok(&mut f, |f| apply(f, &host, &p(&[]), &task, REAL));
    let subnets = rust_json(&subnets_list(&f, "v10", &p(&[("pending", "1")])).unwrap());
    assert_eq!(subnets[0]["state"], "changed");
    assert_eq!(
        subnets[0]["pending"]["dhcp-range"],
        json!(["start-address=10.0.0.10,end-address=10.0.0.20"])
    );
}

#[test]
fn read_only_lists() {
    let mut f = SdnFiles::default();
    let ipams = rust_json(&objects_list(&f, Section::Ipams, &p(&[])).unwrap());
    assert_eq!(
        ipams,
        json!([{"digest": "da39a3ee5e6b4b0d3255bfef95601890afd80709", "ipam": "pve", "type": "pve"}])
    );
    assert_eq!(
        rust_json(&objects_list(&f, Section::Dns, &p(&[])).unwrap()),
        json!([])
    );
    f.set(
        SdnFile::Section(Section::Ipams),
        "netbox: nb\n\turl https://netbox.example/api\n\ttoken abc\n\n",
    );
    let ipams = rust_json(&objects_list(&f, Section::Ipams, &p(&[("type", "netbox")])).unwrap());
    assert_eq!(ipams.as_array().unwrap().len(), 1);
    assert_eq!(ipams[0]["url"], "https://netbox.example/api");
    let got = rust_json(&object_get(&f, Section::Ipams, "pve", &p(&[])).unwrap());
    assert_eq!(got["type"], "pve");
    let e = object_get(&f, Section::Dns, "pdns", &p(&[])).unwrap_err();
    assert_eq!(e.message, "sdn 'pdns' does not exist");
    let e = objects_list(&f, Section::Controllers, &p(&[("type", "ospf")])).unwrap_err();
    assert_eq!(e.status, 400);
}

#[test]
fn dry_runs_have_the_same_answer_and_no_writes() {
    let f = lab();
    let dry = MutateOptions { dry_run: true };
    let params = p(&[("vnet", "v20"), ("zone", "lab"), ("tag", "20")]);
    let a = vnet_create(&f, &params, dry).unwrap();
    let b = vnet_create(&f, &params, REAL).unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!(a.writes, b.writes);
    assert!(a.dry_run && !b.dry_run);
    let mut g = f.clone();
    assert!(!g.commit(&a));
    assert_eq!(g, f);
    let e1 = vnet_create(&f, &p(&[("vnet", "v20"), ("zone", "lab")]), dry).unwrap_err();
    let e2 = vnet_create(&f, &p(&[("vnet", "v20"), ("zone", "lab")]), REAL).unwrap_err();
    assert_eq!(e1, e2);
}
