//! The learned-noise model: counting, thresholds, export/import, verdicts.

use pve_migration_rules::{ApiFormat, Exchange, NoiseModel, RuleSet, Verdict};

fn list(body: &str) -> Exchange<'_> {
    Exchange::new(200, body.as_bytes())
}

#[test]
fn learns_generalised_pointers_and_classifies_noise() {
    let rules = RuleSet::with_defaults();
    let ep = rules.endpoint("node.network.list").unwrap();
    let mut model = NoiseModel::new();

    // Two Perl answers to the same GET: the (hypothetical) `stats` field of
    // two interfaces and the pending `changes` differ.
    let p1 = r#"{"data":[{"iface":"a","stats":{"rx":1}},{"iface":"b","stats":{"rx":5}}]}"#;
    let p2 = r#"{"data":[{"iface":"b","stats":{"rx":6}},{"iface":"a","stats":{"rx":2}}]}"#;
    let learned = model.learn(ep, &list(p1), &list(p2));
    assert_eq!(learned, ["/body/data/*/stats/rx"]);
    assert_eq!(model.count("node.network.list", "/body/data/*/stats/rx"), 1);
    assert!(model.is_noisy("node.network.list", "/body/data/*/stats/rx"));
    assert!(!model.is_noisy("node.network.list", "/body/data/*/stats"));
    assert!(!model.is_noisy("node.network.iface.get", "/body/data/*/stats/rx"));

    // Identical answers teach nothing.
    assert!(model.learn(ep, &list(p1), &list(p1)).is_empty());

    // Perl vs Rust differing only there: noise.
    let rust = r#"{"data":[{"iface":"a","stats":{"rx":9}},{"iface":"b","stats":{"rx":5}}]}"#;
    let cmp = ep.compare(ApiFormat::Json, &list(p1), &list(rust), Some(&model));
    assert_eq!(cmp.verdict, Verdict::Noise);
    assert_eq!(cmp.noise, ["/body/data/0/stats/rx"]);
    // Without the model it is a mismatch with the same fingerprint.
    let plain = ep.compare(ApiFormat::Json, &list(p1), &list(rust), None);
    assert_eq!(plain.verdict, Verdict::Mismatch);
    assert_eq!(plain.fingerprint, cmp.fingerprint);
    assert!(plain.noise.is_empty());

    // A difference elsewhere too: mismatch, the noisy part still listed.
    let rust2 =
        r#"{"data":[{"iface":"a","stats":{"rx":9}},{"iface":"b","mtu":"1","stats":{"rx":5}}]}"#;
    let cmp = ep.compare(ApiFormat::Json, &list(p1), &list(rust2), Some(&model));
    assert_eq!(cmp.verdict, Verdict::Mismatch);
    assert_eq!(cmp.noise, ["/body/data/0/stats/rx"]);
}

#[test]
fn ancestors_cover_descendants() {
    let mut model = NoiseModel::new();
    model.record("sdn.zones.list", "/body/data/*/pending");
    assert!(model.is_noisy("sdn.zones.list", "/body/data/*/pending"));
    assert!(model.is_noisy("sdn.zones.list", "/body/data/*/pending/mtu"));
    assert!(!model.is_noisy("sdn.zones.list", "/body/data/*/pending-x"));
    assert!(!model.is_noisy("sdn.zones.list", "/body/data/*"));
    assert!(!model.is_noisy("sdn.zones.list", "/body"));
}

#[test]
fn threshold_counts_observations() {
    let rules = RuleSet::with_defaults();
    let ep = rules.endpoint("node.network.iface.get").unwrap();
    let mut model = NoiseModel::with_threshold(3);
    let a = r#"{"data":{"iface":"vmbr0","uptime":1}}"#;
    let b = r#"{"data":{"iface":"vmbr0","uptime":2}}"#;
    for round in 1..=3 {
        assert!(
            !model.is_noisy(ep.id(), "/body/data/uptime"),
            "round {round}"
        );
        model.learn(ep, &list(a), &list(b));
    }
    assert!(model.is_noisy(ep.id(), "/body/data/uptime"));
    assert_eq!(model.noisy_pointers(ep.id()), ["/body/data/uptime"]);
    model.set_threshold(4);
    assert!(model.noisy_pointers(ep.id()).is_empty());
    assert_eq!(NoiseModel::with_threshold(0).threshold(), 1);
}

#[test]
fn export_import_and_merge() {
    let mut model = NoiseModel::with_threshold(2);
    model.record("node.network.list", "/body/data/*/x");
    model.record("node.network.list", "/body/data/*/x");
    model.record("sdn.index", "/body/data");
    let text = model.to_json();
    let back = NoiseModel::from_json(&text).unwrap();
    assert_eq!(back, model);
    assert!(back.is_noisy("node.network.list", "/body/data/*/x"));
    assert!(!back.is_noisy("sdn.index", "/body/data"));

    let mut other = NoiseModel::new();
    other.record("sdn.index", "/body/data");
    let mut merged = back.clone();
    merged.merge(&other);
    assert_eq!(merged.count("sdn.index", "/body/data"), 2);
    assert!(merged.is_noisy("sdn.index", "/body/data"));

    let minimal = NoiseModel::from_json(r#"{"endpoints":{"a":{"/status":1}}}"#).unwrap();
    assert_eq!(minimal.threshold(), 1);
    assert!(minimal.is_noisy("a", "/status"));
    assert!(NoiseModel::from_json(r#"{"threshold":"a"}"#).is_err());
    assert!(NoiseModel::from_json(r#"{"endpoint":{}}"#).is_err());
}

#[test]
fn noise_never_hides_critical() {
    let rules = RuleSet::with_defaults();
    let ep = rules.endpoint("node.network.list").unwrap();
    let mut model = NoiseModel::new();
    model.record(ep.id(), "/status");
    model.record(ep.id(), "/body");
    let ok = Exchange::new(200, br#"{"data":[]}"#);
    let denied = Exchange::new(401, br#"{"data":[]}"#);
    let cmp = ep.compare(ApiFormat::Json, &ok, &denied, Some(&model));
    assert_eq!(cmp.verdict, Verdict::Critical);
}
