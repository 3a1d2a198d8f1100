//! The kernel's view of the network links, as `ip -details -json link show`
//! prints it.
//!
//! PVE's reader asks the kernel two things: which links exist (with their
//! type and altnames; a link of `link_type` `ether` without a `linkinfo` kind
//! is a physical NIC, whose stanza gets `exists`) and which are up (the
//! `IFF_UP` flag; their stanzas get `active`). The daemon reads the same JSON
//! (from `ip` or from a `--links` file); the post-apply verification compares
//! the configured bonds, bridges and VLANs with the other fields kept here
//! (MTU, master, VLAN parent and id).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One link as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// The interface name (`ifname`).
    pub name: String,
    /// `link_type`: `ether`, `loopback`, `none`, …
    pub link_type: String,
    /// `linkinfo.info_kind`: `bridge`, `bond`, `vlan`, `vxlan`, … (`None` for
    /// a physical NIC).
    pub kind: Option<String>,
    /// `linkinfo.info_slave_kind` (`bridge`, `bond`) when the link is a port.
    pub slave_kind: Option<String>,
    /// Alternative names (`altnames`).
    pub altnames: Vec<String>,
    /// Administratively up (`UP` in `flags`).
    pub up: bool,
    /// Carrier (`LOWER_UP` in `flags`).
    pub lower_up: bool,
    /// MTU.
    pub mtu: Option<u32>,
    /// The bridge or bond this link is enslaved to (`master`).
    pub master: Option<String>,
    /// The lower device of a VLAN (`link`).
    pub parent: Option<String>,
    /// The VLAN id (`linkinfo.info_data.id`) of a VLAN link.
    pub vlan_id: Option<u16>,
    /// The VLAN protocol (`linkinfo.info_data.protocol`, `802.1Q`/`802.1ad`).
    pub vlan_protocol: Option<String>,
}

impl Link {
    /// A physical NIC (`ether` without a link kind), down.
    pub fn physical(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            link_type: "ether".into(),
            ..Self::default()
        }
    }

    /// PVE's `ip_link_is_physical`: `link_type` `ether` and no `info_kind`
    /// (virtual links can be `ether` too).
    pub fn is_physical(&self) -> bool {
        self.link_type == "ether" && self.kind.is_none()
    }
}

/// Why a links document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    /// Not JSON, or not an array of link objects.
    #[error("not the output of 'ip -details -json link show': {0}")]
    Json(#[from] serde_json::Error),
    /// A link without a name.
    #[error("link #{0} has no 'ifname'")]
    Unnamed(usize),
}

/// What the host's kernel reports: every link by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    links: BTreeMap<String, Link>,
}

#[derive(Deserialize)]
struct RawLink {
    ifname: Option<String>,
    #[serde(default)]
    link_type: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    altnames: Vec<String>,
    #[serde(default)]
    linkinfo: Option<RawLinkInfo>,
}

#[derive(Deserialize)]
struct RawLinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
    #[serde(default)]
    info_slave_kind: Option<String>,
    /// Read only for VLANs: other kinds keep other things under the same
    /// names (a VXLAN's `id` is a 24-bit VNI).
    #[serde(default)]
    info_data: Option<serde_json::Value>,
}

impl HostState {
    /// A host without links.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parse the output of `ip -details -json link show`.
    ///
    /// # Errors
    ///
    /// When the text is not a JSON array of objects or a link has no
    /// `ifname`. Unknown fields are ignored (the tool adds fields over time).
    pub fn from_ip_json(text: &str) -> Result<Self, LinksError> {
        let raw: Vec<RawLink> = serde_json::from_str(text)?;
        let mut links = BTreeMap::new();
        for (i, r) in raw.into_iter().enumerate() {
            let name = r.ifname.ok_or(LinksError::Unnamed(i))?;
            let (kind, slave_kind, data) = match r.linkinfo {
                Some(li) => (li.info_kind, li.info_slave_kind, li.info_data),
                None => (None, None, None),
            };
            let (vlan_id, vlan_protocol) = match (&kind, data) {
                (Some(k), Some(d)) if k == "vlan" => (
                    d.get("id")
                        .and_then(serde_json::Value::as_u64)
                        .and_then(|i| u16::try_from(i).ok()),
                    d.get("protocol")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string),
                ),
                _ => (None, None),
            };
            let link = Link {
                name: name.clone(),
                link_type: r.link_type.unwrap_or_default(),
                kind,
                slave_kind,
                altnames: r.altnames,
                up: r.flags.iter().any(|f| f == "UP"),
                lower_up: r.flags.iter().any(|f| f == "LOWER_UP"),
                mtu: r.mtu,
                master: r.master,
                parent: r.link,
                vlan_id,
                vlan_protocol,
            };
            links.insert(name, link);
        }
        Ok(Self { links })
    }

    /// A host with the given physical NICs (down) whose links named in `up`
    /// are up (a loopback `lo` is added when `up` names it) — for tests and
    /// the simulator.
    pub fn with_physical<'a>(
        nics: impl IntoIterator<Item = &'a str>,
        up: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut state = Self::empty();
        for nic in nics {
            state.insert(Link::physical(nic));
        }
        for name in up {
            let link = state.links.entry(name.to_string()).or_insert_with(|| Link {
                name: name.to_string(),
                link_type: if name == "lo" { "loopback" } else { "ether" }.into(),
                kind: (name != "lo").then(|| "unknown".to_string()),
                ..Link::default()
            });
            link.up = true;
        }
        state
    }

    /// A kernel view for a host that has none (the simulator, tests): derived
    /// from the *applied* interfaces file.
    ///
    /// * every name matching PVE's physical-NIC pattern that the file mentions
    ///   anywhere (as a stanza, in an `auto` line, as a bridge port / bond
    ///   slave / OVS port, as `vlan-raw-device`, or as the parent of an `X.N`
    ///   VLAN or `X:N` alias), plus `extra_nics`, is a physical NIC;
    /// * every interface the file marks `auto` / `allow-hotplug` /
    ///   `allow-auto` / `allow-ovs` is up. Interfaces only present in a
    ///   pending `interfaces.new` are therefore not up until applied, as on a
    ///   real node.
    pub fn derived_from_file(applied: &str, extra_nics: &[String]) -> Self {
        use crate::model::{alias_parent, is_physical_nic, vlan_dot_parent};
        let config = crate::parse::parse_interfaces(applied, &HostState::empty());
        let mut nics = std::collections::BTreeSet::new();
        let mut up = std::collections::BTreeSet::new();
        let mut consider = |name: &str| {
            if is_physical_nic(name) {
                nics.insert(name.to_string());
            }
        };
        for (name, d) in &config.ifaces {
            consider(name);
            if let Some(parent) = alias_parent(name).or_else(|| vlan_dot_parent(name).map(|p| p.0))
            {
                consider(parent);
            }
            for key in ["bridge_ports", "slaves", "ovs_ports", "ovs_bonds"] {
                for port in d.text(key).split_ascii_whitespace() {
                    consider(port);
                }
            }
            consider(&d.text("vlan-raw-device"));
            if d.truthy("autostart") {
                up.insert(name.clone());
            }
        }
        for nic in extra_nics {
            nics.insert(nic.clone());
        }
        Self::with_physical(
            nics.iter().map(String::as_str),
            up.iter().map(String::as_str),
        )
    }

    /// Add or replace a link.
    pub fn insert(&mut self, link: Link) {
        self.links.insert(link.name.clone(), link);
    }

    /// A link by its name.
    pub fn get(&self, name: &str) -> Option<&Link> {
        self.links.get(name)
    }

    /// A link by its name or one of its altnames.
    pub fn resolve(&self, name: &str) -> Option<&Link> {
        self.links.get(name).or_else(|| {
            self.links
                .values()
                .find(|l| l.altnames.iter().any(|a| a == name))
        })
    }

    /// Every link, by name.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    /// The physical NICs.
    pub fn physical(&self) -> impl Iterator<Item = &Link> {
        self.links.values().filter(|l| l.is_physical())
    }

    /// Names of the links that are up (PVE's active interfaces).
    pub fn active(&self) -> impl Iterator<Item = &str> {
        self.links
            .values()
            .filter(|l| l.up)
            .map(|l| l.name.as_str())
    }

    /// PVE's `altname_mapping`: altname → the link's name.
    pub fn altname_mapping(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for l in self.links.values() {
            for a in &l.altnames {
                out.insert(a.clone(), l.name.clone());
            }
        }
        out
    }

    /// PVE's `extract_altnames`: the other names of `iface` (its legacy name
    /// when `iface` is an altname, and every altname of that link but
    /// `iface`), sorted; `None` when there are none.
    pub fn altnames_of(&self, iface: &str) -> Option<Vec<String>> {
        let mapping = self.altname_mapping();
        let mut names = Vec::new();
        let mut original = None;
        let mut name = iface;
        if let Some(legacy) = mapping.get(iface) {
            names.push(legacy.clone());
            original = Some(iface);
            name = legacy;
        }
        for (alt, of) in &mapping {
            if Some(alt.as_str()) == original {
                continue;
            }
            if of == name {
                names.push(alt.clone());
            }
        }
        names.sort();
        (!names.is_empty()).then_some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP_JSON: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"link_type":"loopback"},
      {"ifindex":2,"ifname":"eno1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,
       "master":"vmbr0","link_type":"ether","altnames":["enp0s31f6","ethmain"],
       "linkinfo":{"info_slave_kind":"bridge"}},
      {"ifindex":3,"ifname":"eno2","flags":["BROADCAST","MULTICAST"],"mtu":9000,"link_type":"ether"},
      {"ifindex":4,"ifname":"vmbr0","flags":["BROADCAST","MULTICAST","UP"],"mtu":1500,
       "link_type":"ether","linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}}},
      {"ifindex":5,"ifname":"eno2.30","link":"eno2","flags":["BROADCAST","MULTICAST"],"mtu":1500,
       "link_type":"ether","linkinfo":{"info_kind":"vlan","info_data":{"protocol":"802.1Q","id":30}}},
      {"ifindex":6,"ifname":"vxlan100","flags":["UP"],"link_type":"ether",
       "linkinfo":{"info_kind":"vxlan","info_data":{"id":1000100}}}
    ]"#;

    #[test]
    fn reads_ip_details_json() {
        let h = HostState::from_ip_json(IP_JSON).unwrap();
        let phys: Vec<&str> = h.physical().map(|l| l.name.as_str()).collect();
        assert_eq!(phys, vec!["eno1", "eno2"]);
        let up: Vec<&str> = h.active().collect();
        assert_eq!(up, vec!["eno1", "lo", "vmbr0", "vxlan100"]);
        let eno1 = h.get("eno1").unwrap();
        assert_eq!(eno1.master.as_deref(), Some("vmbr0"));
        assert_eq!(eno1.slave_kind.as_deref(), Some("bridge"));
        assert!(eno1.lower_up);
        let vlan = h.get("eno2.30").unwrap();
        assert_eq!(
            (
                vlan.parent.as_deref(),
                vlan.vlan_id,
                vlan.vlan_protocol.as_deref()
            ),
            (Some("eno2"), Some(30), Some("802.1Q"))
        );
        assert_eq!(h.get("vmbr0").unwrap().kind.as_deref(), Some("bridge"));
        assert_eq!(h.get("eno2").unwrap().mtu, Some(9000));
        assert_eq!(h.resolve("ethmain").unwrap().name, "eno1");
    }

    #[test]
    fn altnames_like_pve() {
        let h = HostState::from_ip_json(IP_JSON).unwrap();
        assert_eq!(
            h.altnames_of("eno1"),
            Some(vec!["enp0s31f6".to_string(), "ethmain".to_string()])
        );
        // asked by an altname: the legacy name and the other altnames
        assert_eq!(
            h.altnames_of("ethmain"),
            Some(vec!["eno1".to_string(), "enp0s31f6".to_string()])
        );
        assert_eq!(h.altnames_of("eno2"), None);
    }

    #[test]
    fn derived_from_a_file() {
        let text = "auto lo\niface lo inet loopback\n\niface eno1 inet manual\n\n\
                    auto vmbr0\niface vmbr0 inet manual\n\tbridge-ports eno2 bond0\n\n\
                    auto enp1s0.50\niface enp1s0.50 inet manual\n";
        let host = HostState::derived_from_file(text, &["eth9".to_string()]);
        let nics: Vec<&str> = host.physical().map(|l| l.name.as_str()).collect();
        assert_eq!(nics, vec!["eno1", "eno2", "enp1s0", "eth9"]);
        let active: Vec<&str> = host.active().collect();
        assert_eq!(active, vec!["enp1s0.50", "lo", "vmbr0"]);
    }

    #[test]
    fn rejects_what_is_not_ip_output() {
        let e = HostState::from_ip_json("{}").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("not the output of 'ip -details -json link show'")
        );
        let e = HostState::from_ip_json(r#"[{"link_type":"ether"}]"#).unwrap_err();
        assert_eq!(e.to_string(), "link #0 has no 'ifname'");
    }
}
