//! Does the kernel match the configuration? The check after an apply
//! (logged as `StorageVlanManager`) and behind `pvenet status --verbose`.
//!
//! For every interface the file starts (`auto`), the kernel must have a link
//! of that name, of the right kind (a bridge for `bridge`, a bond for
//! `bond`, a VLAN for `vlan`), with the configured MTU, the VLAN on its
//! parent with its id, and every bridge port and bond slave enslaved to it.
//! OVS objects are left out: the kernel does not show them as such.

use std::fmt;

use crate::links::HostState;
use crate::model::{Config, Iface, split_list};

/// One way the kernel differs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discrepancy {
    /// The link does not exist.
    Missing {
        /// Interface name.
        iface: String,
        /// Configured type.
        kind: String,
    },
    /// The link exists with another kind.
    WrongKind {
        /// Interface name.
        iface: String,
        /// Configured type.
        expected: String,
        /// What the kernel says (`linkinfo.info_kind`, or `physical`).
        found: String,
    },
    /// Another MTU.
    Mtu {
        /// Interface name.
        iface: String,
        /// Configured.
        expected: u32,
        /// Kernel.
        found: Option<u32>,
    },
    /// A VLAN on another parent or with another id.
    Vlan {
        /// Interface name.
        iface: String,
        /// Configured parent and id.
        expected: (String, u16),
        /// Kernel parent and id.
        found: (Option<String>, Option<u16>),
    },
    /// A port or slave not enslaved to its bridge or bond.
    Port {
        /// The bridge or bond.
        iface: String,
        /// The port.
        port: String,
        /// Its master in the kernel.
        master: Option<String>,
    },
    /// Configured to start, but down.
    Down {
        /// Interface name.
        iface: String,
    },
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discrepancy::Missing { iface, kind } => {
                write!(f, "{kind} '{iface}' is configured but does not exist")
            }
            Discrepancy::WrongKind {
                iface,
                expected,
                found,
            } => write!(f, "'{iface}' should be a {expected} but is a {found}"),
            Discrepancy::Mtu {
                iface,
                expected,
                found,
            } => match found {
                Some(m) => write!(f, "'{iface}' has mtu {m}, configured {expected}"),
                None => write!(f, "'{iface}' has no mtu, configured {expected}"),
            },
            Discrepancy::Vlan {
                iface,
                expected,
                found,
            } => write!(
                f,
                "vlan '{iface}' should be id {} on '{}' but is id {} on '{}'",
                expected.1,
                expected.0,
                found.1.map_or("?".into(), |i| i.to_string()),
                found.0.as_deref().unwrap_or("?")
            ),
            Discrepancy::Port {
                iface,
                port,
                master,
            } => match master {
                Some(m) => write!(
                    f,
                    "'{port}' should be a port of '{iface}' but belongs to '{m}'"
                ),
                None => write!(
                    f,
                    "'{port}' should be a port of '{iface}' but is not enslaved"
                ),
            },
            Discrepancy::Down { iface } => {
                write!(f, "'{iface}' is configured to start but is down")
            }
        }
    }
}

fn kind_of(link: &crate::links::Link) -> String {
    link.kind.clone().unwrap_or_else(|| {
        if link.is_physical() {
            "physical".into()
        } else {
            link.link_type.clone()
        }
    })
}

fn expected_kind(d: &Iface) -> Option<&'static str> {
    match d.kind().as_ref() {
        "bridge" => Some("bridge"),
        "bond" => Some("bond"),
        "vlan" => Some("vlan"),
        "vxlan" => Some("vxlan"),
        _ => None,
    }
}

/// Every discrepancy between the configuration and the kernel, by interface
/// name.
pub fn discrepancies(config: &Config, host: &HostState) -> Vec<Discrepancy> {
    let mut out = Vec::new();
    for (name, d) in &config.ifaces {
        if name == "lo" || !d.truthy("autostart") {
            continue;
        }
        let Some(kind) = expected_kind(d) else {
            continue;
        };
        let Some(link) = host.get(name) else {
            out.push(Discrepancy::Missing {
                iface: name.clone(),
                kind: kind.into(),
            });
            continue;
        };
        if link.kind.as_deref() != Some(kind) {
            out.push(Discrepancy::WrongKind {
                iface: name.clone(),
                expected: kind.into(),
                found: kind_of(link),
            });
            continue;
        }
        if !link.up {
            out.push(Discrepancy::Down {
                iface: name.clone(),
            });
        }
        if let Some(mtu) = d.scalar("mtu").and_then(|m| m.parse::<u32>().ok())
            && link.mtu != Some(mtu)
        {
            out.push(Discrepancy::Mtu {
                iface: name.clone(),
                expected: mtu,
                found: link.mtu,
            });
        }
        if kind == "vlan" {
            let parent = d.text("vlan-raw-device");
            let id = d.scalar("vlan-id").and_then(|i| i.parse::<u16>().ok());
            if let Some(id) = id
                && (link.parent.as_deref() != Some(parent.as_str()) || link.vlan_id != Some(id))
            {
                out.push(Discrepancy::Vlan {
                    iface: name.clone(),
                    expected: (parent, id),
                    found: (link.parent.clone(), link.vlan_id),
                });
            }
        }
        let ports = match kind {
            "bridge" => split_list(&d.text("bridge_ports")),
            "bond" => split_list(&d.text("slaves")),
            _ => Vec::new(),
        };
        for port in ports {
            let master = host.resolve(&port).and_then(|l| l.master.clone());
            if master.as_deref() != Some(name.as_str()) {
                out.push(Discrepancy::Port {
                    iface: name.clone(),
                    port,
                    master,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_interfaces;

    #[test]
    fn finds_what_the_kernel_lacks() {
        let text = "auto lo\niface lo inet loopback\n\nauto eno1\niface eno1 inet manual\n\n\
                    auto bond0\niface bond0 inet manual\n\tbond-slaves eno1 eno2\n\tbond-mode 802.3ad\n\tmtu 9000\n\n\
                    auto vmbr0\niface vmbr0 inet manual\n\tbridge-ports bond0\n\tbridge-stp off\n\tbridge-fd 0\n\n\
                    auto vmbr0.30\niface vmbr0.30 inet manual\n\n\
                    auto vlan40\niface vlan40 inet manual\n\tvlan-raw-device eno1\n\n\
                    iface vmbr9 inet manual\n\tbridge-ports none\n";
        let host = HostState::from_ip_json(
            r#"[{"ifname":"lo","link_type":"loopback","flags":["UP"]},
                {"ifname":"eno1","link_type":"ether","flags":["UP"],"master":"bond0"},
                {"ifname":"eno2","link_type":"ether","flags":["UP"],"master":"vmbr0"},
                {"ifname":"bond0","link_type":"ether","flags":["UP"],"mtu":1500,"master":"vmbr0",
                 "linkinfo":{"info_kind":"bond"}},
                {"ifname":"vmbr0","link_type":"ether","flags":["UP"],"linkinfo":{"info_kind":"bridge"}},
                {"ifname":"vlan40","link":"eno1","link_type":"ether","flags":[],
                 "linkinfo":{"info_kind":"vlan","info_data":{"id":41}}}]"#,
        )
        .unwrap();
        let config = parse_interfaces(text, &host);
        let found: Vec<String> = discrepancies(&config, &host)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            found,
            vec![
                "'bond0' has mtu 1500, configured 9000",
                "'eno2' should be a port of 'bond0' but belongs to 'vmbr0'",
                "'vlan40' is configured to start but is down",
                "vlan 'vlan40' should be id 40 on 'eno1' but is id 41 on 'eno1'",
                "vlan 'vmbr0.30' is configured but does not exist",
            ]
        );
    }
}
