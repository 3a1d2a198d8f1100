//! The SDN objects' properties: which keys each section type has, which are
//! required, how their values are typed, and the API parameter schemas built
//! from them (PVE's `SectionConfig` plugins in "unified" mode).
//!
//! The zone plugins are those of PVE 8 (`simple`, `vlan`, `qinq`, `vxlan`,
//! `evpn`; the experimental `faucet` is left out). In unified mode every
//! plugin property is optional in the parameter schema; which are required
//! for a type is checked afterwards by `check_config` (a `500`, not a `400`).

use crate::network::schema::{Fmt, Prop};

/// One SDN configuration file (section config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// `zones.cfg`
    Zones,
    /// `vnets.cfg`
    Vnets,
    /// `subnets.cfg`
    Subnets,
    /// `controllers.cfg`
    Controllers,
    /// `ipams.cfg`
    Ipams,
    /// `dns.cfg`
    Dns,
}

impl Section {
    /// Every section file.
    pub const ALL: [Section; 6] = [
        Section::Zones,
        Section::Vnets,
        Section::Subnets,
        Section::Controllers,
        Section::Ipams,
        Section::Dns,
    ];

    /// The file name in the SDN directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Section::Zones => "zones.cfg",
            Section::Vnets => "vnets.cfg",
            Section::Subnets => "subnets.cfg",
            Section::Controllers => "controllers.cfg",
            Section::Ipams => "ipams.cfg",
            Section::Dns => "dns.cfg",
        }
    }

    /// The key of this section in `.running-config` (ipams and dns are not
    /// part of the running configuration).
    pub fn running_key(self) -> Option<&'static str> {
        match self {
            Section::Zones => Some("zones"),
            Section::Vnets => Some("vnets"),
            Section::Subnets => Some("subnets"),
            Section::Controllers => Some("controllers"),
            Section::Ipams | Section::Dns => None,
        }
    }

    /// Whether section headers have their type lower-cased (the zone plugin
    /// overrides `parse_section_header`).
    pub(crate) fn lowercase_type(self) -> bool {
        self == Section::Zones
    }
}

/// How a property's value is stored after `check_value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string.
    Str,
    /// An integer (`$value + 0`).
    Int,
    /// A boolean, stored as Perl's `1`/`0`.
    Bool,
    /// `nodes`/`exitnodes`: decoded into a set of node names.
    Nodes,
    /// An array property (one line per item in the file).
    List,
}

/// A zone plugin: its type and options (`name`, `required`).
#[derive(Debug)]
pub(crate) struct ZonePlugin {
    pub(crate) name: &'static str,
    pub(crate) options: &'static [(&'static str, bool)],
}

/// The zone types, sorted (the `type` enum).
pub(crate) const ZONE_TYPES: [&str; 5] = ["evpn", "qinq", "simple", "vlan", "vxlan"];

const DNS_OPTS: [(&str, bool); 4] = [
    ("dns", false),
    ("reversedns", false),
    ("dnszone", false),
    ("ipam", false),
];

/// The zone plugins of PVE 8.
pub(crate) const ZONE_PLUGINS: [ZonePlugin; 5] = [
    ZonePlugin {
        name: "simple",
        options: &[
            ("nodes", false),
            ("mtu", false),
            DNS_OPTS[0],
            DNS_OPTS[1],
            DNS_OPTS[2],
            DNS_OPTS[3],
            ("dhcp", false),
        ],
    },
    ZonePlugin {
        name: "vlan",
        options: &[
            ("nodes", false),
            ("bridge", true),
            ("bridge-disable-mac-learning", false),
            ("mtu", false),
            DNS_OPTS[0],
            DNS_OPTS[1],
            DNS_OPTS[2],
            DNS_OPTS[3],
        ],
    },
    ZonePlugin {
        name: "qinq",
        options: &[
            ("nodes", false),
            ("tag", true),
            ("bridge", true),
            ("bridge-disable-mac-learning", false),
            ("mtu", false),
            ("vlan-protocol", false),
            DNS_OPTS[0],
            DNS_OPTS[1],
            DNS_OPTS[2],
            DNS_OPTS[3],
        ],
    },
    ZonePlugin {
        name: "vxlan",
        options: &[
            ("nodes", false),
            ("peers", true),
            ("vxlan-port", false),
            ("mtu", false),
            DNS_OPTS[0],
            DNS_OPTS[1],
            DNS_OPTS[2],
            DNS_OPTS[3],
        ],
    },
    ZonePlugin {
        name: "evpn",
        options: &[
            ("nodes", false),
            ("vrf-vxlan", true),
            ("controller", true),
            ("exitnodes", false),
            ("exitnodes-local-routing", false),
            ("exitnodes-primary", false),
            ("advertise-subnets", false),
            ("disable-arp-nd-suppression", false),
            ("bridge-disable-mac-learning", false),
            ("rt-import", false),
            ("vxlan-port", false),
            ("mtu", false),
            ("mac", false),
            DNS_OPTS[0],
            DNS_OPTS[1],
            DNS_OPTS[2],
            DNS_OPTS[3],
        ],
    },
];

/// The plugin of a zone type.
pub(crate) fn zone_plugin(kind: &str) -> Option<&'static ZonePlugin> {
    ZONE_PLUGINS.iter().find(|p| p.name == kind)
}

/// Every zone property but `type` and `zone` (all optional in the schema).
pub(crate) const ZONE_PROPS: [Prop; 22] = [
    Prop::string("nodes").format(Fmt::NodeList),
    Prop::string("ipam"),
    Prop::string("dns"),
    Prop::string("reversedns"),
    Prop::string("dnszone").format(Fmt::DnsName),
    Prop::string("dhcp").one_of(&["dnsmasq"]),
    Prop::string("bridge"),
    Prop::boolean("bridge-disable-mac-learning"),
    Prop::int_min("tag", 0),
    Prop::int("mtu"),
    Prop::string("vlan-protocol").one_of(&["802.1q", "802.1ad"]),
    Prop::string("peers").format(Fmt::IpList),
    Prop::integer("vxlan-port", 1, 65536),
    Prop::int("vrf-vxlan"),
    Prop::string("controller"),
    Prop::string("mac").format(Fmt::MacAddr),
    Prop::string("exitnodes").format(Fmt::NodeList),
    Prop::boolean("exitnodes-local-routing"),
    Prop::string("exitnodes-primary").format(Fmt::Node),
    Prop::boolean("advertise-subnets"),
    Prop::boolean("disable-arp-nd-suppression"),
    Prop::string("rt-import").format(Fmt::BgpRtList),
];

/// `pve-sdn-zone-id`.
pub(crate) const ZONE_ID: Prop = Prop::string("zone").format(Fmt::SdnId("zone")).required();
/// `pve-sdn-vnet-id`.
pub(crate) const VNET_ID: Prop = Prop::string("vnet").format(Fmt::SdnVnetId).required();
/// `pve-sdn-subnet-id`.
pub(crate) const SUBNET_ID: Prop = Prop::string("subnet").format(Fmt::SdnSubnetId).required();
/// `running` of the read methods.
pub(crate) const RUNNING: Prop = Prop::boolean("running");
/// `pending` of the read methods.
pub(crate) const PENDING: Prop = Prop::boolean("pending");
/// `digest` of the update methods (`pve-config-digest`).
pub(crate) const DIGEST: Prop = Prop::string("digest").max_len(64);
/// `delete` of the update methods.
pub(crate) const DELETE: Prop = Prop::string("delete")
    .format(Fmt::ConfigIdListStrict)
    .max_len(4096);

/// The vnet `alias` pattern `[\(\)-_.\w\d\s]{0,256}` (a character class that
/// includes the whole range `)`..`_`).
fn alias_ok(v: &str) -> bool {
    v.chars().count() <= 256
        && v.chars().all(|c| {
            ('('..='_').contains(&c)
                || c == '.'
                || c.is_alphanumeric()
                || c == '_'
                || c.is_whitespace()
        })
}

/// The vnet properties (PVE 8.2: `tag` without bounds).
pub(crate) const VNET_PROPS: [Prop; 5] = [
    Prop::string("zone"),
    Prop::int("tag"),
    Prop::boolean("vlanaware"),
    Prop::string("alias").pattern(alias_ok).max_len(256),
    Prop::boolean("isolate-ports"),
];

/// The vnet options (`zone` required).
pub(crate) const VNET_OPTIONS: [(&str, bool); 5] = [
    ("zone", true),
    ("tag", false),
    ("alias", false),
    ("vlanaware", false),
    ("isolate-ports", false),
];

/// The scalar subnet properties (`dhcp-range` is an array, checked apart).
pub(crate) const SUBNET_PROPS: [Prop; 5] = [
    Prop::string("vnet"),
    Prop::string("gateway").format(Fmt::Ip),
    Prop::boolean("snat"),
    Prop::string("dnszoneprefix").format(Fmt::DnsName),
    Prop::string("dhcp-dns-server").format(Fmt::Ip),
];

/// The subnet options (`vnet` required).
pub(crate) const SUBNET_OPTIONS: [(&str, bool); 6] = [
    ("vnet", true),
    ("gateway", false),
    ("snat", false),
    ("dnszoneprefix", false),
    ("dhcp-range", false),
    ("dhcp-dns-server", false),
];

/// Controller types of PVE 8.
pub(crate) const CONTROLLER_TYPES: [&str; 4] = ["bgp", "evpn", "faucet", "isis"];
/// IPAM types of PVE 8.
pub(crate) const IPAM_TYPES: [&str; 3] = ["netbox", "phpipam", "pve"];
/// DNS plugin types of PVE 8.
pub(crate) const DNS_TYPES: [&str; 1] = ["powerdns"];

/// The options a section of `section` and `kind` may have (`None`: the
/// simulator does not model the type's options and keeps every key).
pub(crate) fn options(section: Section, kind: &str) -> Option<&'static [(&'static str, bool)]> {
    match section {
        Section::Zones => zone_plugin(kind).map(|p| p.options),
        Section::Vnets => (kind == "vnet").then_some(&VNET_OPTIONS[..]),
        Section::Subnets => (kind == "subnet").then_some(&SUBNET_OPTIONS[..]),
        Section::Controllers | Section::Ipams | Section::Dns => None,
    }
}

/// Whether `kind` is a known section type of `section`.
pub(crate) fn known_type(section: Section, kind: &str) -> bool {
    match section {
        Section::Zones => zone_plugin(kind).is_some(),
        Section::Vnets => kind == "vnet",
        Section::Subnets => kind == "subnet",
        Section::Controllers => CONTROLLER_TYPES.contains(&kind),
        Section::Ipams => IPAM_TYPES.contains(&kind),
        Section::Dns => DNS_TYPES.contains(&kind),
    }
}

/// How a key's value is typed.
pub(crate) fn kind_of(section: Section, key: &str) -> Kind {
    match (section, key) {
        (Section::Zones, "nodes" | "exitnodes") => Kind::Nodes,
        (Section::Zones, "tag" | "mtu" | "vxlan-port" | "vrf-vxlan") => Kind::Int,
        (
            Section::Zones,
            "bridge-disable-mac-learning"
            | "exitnodes-local-routing"
            | "advertise-subnets"
            | "disable-arp-nd-suppression",
        ) => Kind::Bool,
        (Section::Vnets, "tag") => Kind::Int,
        (Section::Vnets, "vlanaware" | "isolate-ports") => Kind::Bool,
        (Section::Subnets, "snat") => Kind::Bool,
        (Section::Subnets, "dhcp-range") => Kind::List,
        (Section::Controllers, "asn" | "ebgp-multihop") => Kind::Int,
        (Section::Controllers, "ebgp" | "bgp-multipath-as-path-relax") => Kind::Bool,
        (Section::Ipams, "section") => Kind::Int,
        (Section::Dns, "ttl" | "reversemaskv6" | "reversev6mask") => Kind::Int,
        _ => Kind::Str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        for p in &ZONE_PLUGINS {
            assert!(ZONE_TYPES.contains(&p.name));
            for (opt, _) in p.options {
                assert!(
                    ZONE_PROPS.iter().any(|prop| prop.name == *opt),
                    "{opt} of {}",
                    p.name
                );
            }
        }
        let mut sorted = ZONE_TYPES;
        sorted.sort_unstable();
        assert_eq!(sorted, ZONE_TYPES);
        assert!(alias_ok("Lab net (2) - test_1"));
        assert!(!alias_ok("semi;colon{"));
        assert!(alias_ok(&"a".repeat(256)));
        assert!(!alias_ok(&"a".repeat(257)));
        assert_eq!(kind_of(Section::Vnets, "tag"), Kind::Int);
        assert_eq!(kind_of(Section::Zones, "bridge"), Kind::Str);
        assert!(known_type(Section::Zones, "vlan") && !known_type(Section::Zones, "faucet"));
    }
}
