//! The parser and writer against what PVE's own Perl made of the same files
//! (`tests/golden/`, see its README): every property with Perl's value type,
//! and the written file byte for byte.

use std::path::{Path, PathBuf};

use pve_network_core::{HostState, WriteOptions, parse_interfaces, wire, write_interfaces};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir().join("parser"))
        .expect("golden/parser")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_suffix(".interfaces").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

fn read(name: &str, ext: &str) -> String {
    std::fs::read_to_string(dir().join("parser").join(format!("{name}.{ext}")))
        .unwrap_or_else(|e| panic!("{name}.{ext}: {e}"))
}

/// The fixtures this project answers differently on purpose (README).
const DIFFERENT_ON_PURPOSE: [&str; 1] = ["non-ascii"];

#[test]
fn every_fixture_is_there() {
    // the set is fixed: a lost fixture must fail, not shrink the test
    assert_eq!(
        fixtures(),
        [
            "aliases",
            "allow-hotplug",
            "altnames",
            "basic-bridge",
            "bond-active-backup",
            "bond-lacp",
            "bond-modes",
            "bridge-port-opts",
            "comments-options",
            "ipv6",
            "missing-nic",
            "non-ascii",
            "ovs",
            "source-directives",
            "typeless-ifupdown2",
            "vlan-aware-bridge",
            "vlans",
            "vxlan",
        ]
    );
}

#[test]
fn parse_and_write_like_pve() {
    let mut failures = Vec::new();
    for name in fixtures() {
        if DIFFERENT_ON_PURPOSE.contains(&name.as_str()) {
            continue;
        }
        let links = HostState::from_ip_json(&read(&name, "links.json")).expect("links");
        let config = parse_interfaces(&read(&name, "interfaces"), &links);
        let ours: serde_json::Map<String, Value> = config
            .ifaces
            .iter()
            .map(|(n, d)| (n.clone(), wire::interface_json(None, d)))
            .collect();
        let theirs: Value = serde_json::from_str(&read(&name, "parsed.json")).expect("JSON");
        if Value::Object(ours.clone()) != theirs {
            let theirs = theirs.as_object().expect("object");
            for k in ours.keys().chain(theirs.keys()) {
                if ours.get(k) != theirs.get(k) {
                    failures.push(format!(
                        "{name}: {k}\n  PVE:  {}\n  ours: {}",
                        theirs.get(k).map_or("-".into(), Value::to_string),
                        ours.get(k).map_or("-".into(), Value::to_string)
                    ));
                }
            }
        }
        let written = write_interfaces(&config, &WriteOptions { ifupdown2: true });
        match written {
            Ok(text) if text == read(&name, "written") => {}
            Ok(text) => failures.push(format!(
                "{name}: written file differs\n--- PVE\n{}--- ours\n{text}",
                read(&name, "written")
            )),
            Err(e) => failures.push(format!("{name}: writer failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn non_ascii_text_is_kept_as_it_is() {
    let links = HostState::from_ip_json(&read("non-ascii", "links.json")).expect("links");
    let input = read("non-ascii", "interfaces");
    let config = parse_interfaces(&input, &links);
    assert_eq!(
        config.ifaces["eno1"].text("comments"),
        "Uplink zum Büro-Switch\n"
    );
    let written = write_interfaces(&config, &WriteOptions { ifupdown2: true }).expect("write");
    // every non-ASCII line of the input comes out unchanged (PVE re-encodes
    // option text and truncates some comments; see the README)
    for line in input
        .lines()
        .filter(|l| !l.is_ascii() && !l.trim_start().starts_with("#"))
    {
        assert!(written.contains(line.trim()), "{line:?} lost:\n{written}");
    }
}

#[test]
fn ovs_options_in_either_hash_order() {
    let d = dir().join("nondeterministic");
    let r = |f: &str| std::fs::read_to_string(d.join(f)).expect(f);
    let links = HostState::from_ip_json(&r("ovs-lacp.links.json")).expect("links");
    let config = parse_interfaces(&r("ovs-lacp.interfaces"), &links);
    let written = write_interfaces(&config, &WriteOptions { ifupdown2: true }).expect("write");
    assert!(
        written == r("ovs-lacp.written.variant-a") || written == r("ovs-lacp.written.variant-b"),
        "{written}"
    );
}
