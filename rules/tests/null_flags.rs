//! A flag Perl never set comes out of its JSON encoder as `null` (`undef`);
//! the Rust port says `false`. That is a representation difference only.

use pve_migration_rules::{Exchange, RuleSet, TypeOnlyKind, Verdict};

#[test]
fn undef_flag_is_type_only() {
    let rules = RuleSet::with_defaults();
    let m = rules
        .route("GET", "/api2/json/nodes/pve1/network/vmbr0.50")
        .unwrap();
    let perl = Exchange::new(200, br#"{"data":{"type":"vlan","exists":null,"active":1}}"#);
    let rust = Exchange::new(
        200,
        br#"{"data":{"type":"vlan","exists":false,"active":true}}"#,
    );
    let cmp = rules.compare(m.endpoint(), m.format(), &perl, &rust, None);
    assert_eq!(cmp.verdict, Verdict::TypeOnly, "{cmp:?}");
    assert!(
        cmp.type_only
            .iter()
            .any(|h| h.kind == TypeOnlyKind::AbsentFlag && h.pointer.ends_with("/exists"))
    );

    // null is not false for a value that is not a flag.
    let perl = Exchange::new(200, br#"{"data":{"type":"vlan","mtu":null}}"#);
    let rust = Exchange::new(200, br#"{"data":{"type":"vlan","mtu":false}}"#);
    let cmp = rules.compare(m.endpoint(), m.format(), &perl, &rust, None);
    assert_eq!(cmp.verdict, Verdict::Mismatch, "{cmp:?}");
}
