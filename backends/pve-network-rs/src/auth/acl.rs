//! Roles, privileges and ACL evaluation as PVE does them.
//!
//! * The built-in roles are built from PVE's privilege categories: per
//!   category an admin, user and audit list, so `PVE<Cat>Admin`,
//!   `PVE<Cat>User`, `PVEAdmin`, `PVEAuditor`; `Administrator` has every
//!   privilege, `NoAccess` none.
//! * [`roles`] walks the path from `/` down: at each level the subject's
//!   token entries, else its user entries, else the union of its groups'
//!   entries *replace* what was inherited, counting only entries that
//!   propagate or are on the final level. `NoAccess` anywhere in the result
//!   means nothing.
//! * [`permissions`]: `root@pam` has everything; a token without privilege
//!   separation has its owner's permissions, one with privilege separation
//!   the intersection of its own and its owner's.

use std::collections::{BTreeMap, BTreeSet};

use super::usercfg::{UserConfig, split_tokenid};

/// One privilege category: (root-only, admin, user, audit) privileges.
struct Category {
    name: &'static str,
    root: &'static [&'static str],
    admin: &'static [&'static str],
    user: &'static [&'static str],
    audit: &'static [&'static str],
}

const CATEGORIES: [Category; 7] = [
    Category {
        name: "VM",
        root: &[],
        admin: &[
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.GuestAgent.Unrestricted",
            "VM.Migrate",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        ],
        user: &[
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.PowerMgmt",
        ],
        audit: &["VM.Audit", "VM.GuestAgent.Audit"],
    },
    Category {
        name: "Sys",
        root: &[
            "Sys.PowerMgmt",
            "Sys.Modify",
            "Sys.Incoming",
            "Sys.AccessNetwork",
        ],
        admin: &["Sys.Console", "Sys.Syslog"],
        user: &[],
        audit: &["Sys.Audit"],
    },
    Category {
        name: "Datastore",
        root: &[],
        admin: &["Datastore.Allocate", "Datastore.AllocateTemplate"],
        user: &["Datastore.AllocateSpace"],
        audit: &["Datastore.Audit"],
    },
    Category {
        name: "SDN",
        root: &[],
        admin: &["SDN.Allocate", "SDN.Audit"],
        user: &["SDN.Use"],
        audit: &["SDN.Audit"],
    },
    Category {
        name: "User",
        root: &["Realm.Allocate"],
        admin: &["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
        user: &[],
        audit: &[],
    },
    Category {
        name: "Pool",
        root: &[],
        admin: &["Pool.Allocate"],
        user: &["Pool.Audit"],
        audit: &["Pool.Audit"],
    },
    Category {
        name: "Mapping",
        root: &[],
        admin: &["Mapping.Modify"],
        user: &["Mapping.Use"],
        audit: &["Mapping.Audit"],
    },
];

/// The privilege outside every category.
const PERMISSIONS_MODIFY: &str = "Permissions.Modify";

/// Whether PVE knows the privilege.
pub fn is_valid_privilege(p: &str) -> bool {
    p == PERMISSIONS_MODIFY
        || CATEGORIES.iter().any(|c| {
            [c.root, c.admin, c.user, c.audit]
                .iter()
                .any(|l| l.contains(&p))
        })
}

/// The 17 built-in roles with their privileges.
pub fn builtin_roles() -> BTreeMap<String, BTreeSet<String>> {
    let mut roles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut all = BTreeSet::from([PERMISSIONS_MODIFY.to_string()]);
    for c in &CATEGORIES {
        for l in [c.root, c.admin, c.user, c.audit] {
            all.extend(l.iter().map(|p| p.to_string()));
        }
        for p in c.admin.iter().chain(c.user).chain(c.audit) {
            roles
                .entry(format!("PVE{}Admin", c.name))
                .or_default()
                .insert(p.to_string());
            roles
                .entry("PVEAdmin".into())
                .or_default()
                .insert(p.to_string());
        }
        if !c.user.is_empty() {
            for p in c.user.iter().chain(c.audit) {
                roles
                    .entry(format!("PVE{}User", c.name))
                    .or_default()
                    .insert(p.to_string());
            }
        }
        for p in c.audit {
            roles
                .entry("PVEAuditor".into())
                .or_default()
                .insert(p.to_string());
        }
    }
    if let Some(admin) = roles.get_mut("PVEAdmin") {
        admin.remove("Mapping.Modify");
    }
    roles.insert(
        "PVETemplateUser".into(),
        BTreeSet::from(["VM.Clone".to_string(), "VM.Audit".to_string()]),
    );
    roles.insert("NoAccess".into(), BTreeSet::new());
    roles.insert("Administrator".into(), all);
    roles
}

/// The prefixes of a normalised path the walk visits: `/`, `/a`, `/a/b`.
fn levels(path: &str) -> Vec<String> {
    let mut out = vec!["/".to_string()];
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur.push('/');
        cur.push_str(part);
        out.push(cur.clone());
    }
    out
}

/// The roles `subject` (a user id or a full token id) has on `path`, with
/// their propagate flags (PVE's `roles`).
pub fn roles(cfg: &UserConfig, subject: &str, path: &str) -> BTreeMap<String, bool> {
    if subject == "root@pam" {
        return BTreeMap::from([("Administrator".to_string(), true)]);
    }
    if let Some((owner, _)) = split_tokenid(subject) {
        match cfg.token(subject) {
            None => return BTreeMap::new(),
            Some((_, t)) if !t.privsep => return roles(cfg, owner, path),
            Some(_) => {}
        }
    }
    let lv = levels(path);
    let mut current: BTreeMap<String, bool> = BTreeMap::new();
    for (i, level) in lv.iter().enumerate() {
        let last = i + 1 == lv.len();
        let Some(node) = cfg.acl.get(level) else {
            continue;
        };
        let qualifying = |entries: &BTreeMap<String, bool>| -> BTreeMap<String, bool> {
            entries
                .iter()
                .filter(|(_, propagate)| last || **propagate)
                .map(|(r, p)| (r.clone(), *p))
                .collect()
        };
        if let Some(e) = node.tokens.get(subject) {
            let new = qualifying(e);
            if !new.is_empty() {
                current = new;
                continue;
            }
        }
        if let Some(e) = node.users.get(subject) {
            let new = qualifying(e);
            if !new.is_empty() {
                current = new;
                continue;
            }
        }
        let mut new = BTreeMap::new();
        for (group, e) in &node.groups {
            if cfg.groups.get(group).is_some_and(|m| m.contains(subject)) {
                new.extend(qualifying(e));
            }
        }
        if !new.is_empty() {
            current = new;
        }
    }
    if let Some(p) = current.get("NoAccess") {
        return BTreeMap::from([("NoAccess".to_string(), *p)]);
    }
    current
}

fn privileges_of(cfg: &UserConfig, roles: &BTreeMap<String, bool>) -> BTreeSet<String> {
    roles
        .keys()
        .filter_map(|r| cfg.roles.get(r))
        .flatten()
        .cloned()
        .collect()
}

/// The privileges `subject` has on `path` (PVE's `permissions`).
pub fn permissions(cfg: &UserConfig, subject: &str, path: &str) -> BTreeSet<String> {
    if subject == "root@pam" {
        return cfg.roles.get("Administrator").cloned().unwrap_or_default();
    }
    if let Some((owner, _)) = split_tokenid(subject) {
        let Some((_, token)) = cfg.token(subject) else {
            return BTreeSet::new();
        };
        let owner_privs = permissions(cfg, owner, path);
        if !token.privsep {
            return owner_privs;
        }
        let own = privileges_of(cfg, &roles(cfg, subject, path));
        if owner == "root@pam" {
            return own;
        }
        return own.intersection(&owner_privs).cloned().collect();
    }
    if !super::usercfg::is_userid(subject) {
        return BTreeSet::new();
    }
    privileges_of(cfg, &roles(cfg, subject, path))
}

/// Whether `subject` has everything on every path: `root@pam`, or a token of
/// it without privilege separation.
fn is_all_powerful(cfg: &UserConfig, subject: &str) -> bool {
    subject == "root@pam"
        || (split_tokenid(subject).is_some_and(|(owner, _)| owner == "root@pam")
            && cfg.token(subject).is_some_and(|(_, t)| !t.privsep))
}

/// Whether `subject` has at least one of `privs` on `path`.
pub fn has_any(cfg: &UserConfig, subject: &str, path: &str, privs: &[&str]) -> bool {
    if is_all_powerful(cfg, subject) {
        return true;
    }
    let have = permissions(cfg, subject, path);
    privs.iter().any(|p| have.contains(*p))
}

/// PVE's `check_sdn_bridge` with `noerr`: may `subject` see `bridge` of
/// `zone` — rights on `/sdn/zones/ZONE/BRIDGE` or on any of its direct
/// children an ACL line names (a VLAN of the bridge).
pub fn can_access_sdn_bridge(cfg: &UserConfig, subject: &str, zone: &str, bridge: &str) -> bool {
    const PRIVS: [&str; 2] = ["SDN.Audit", "SDN.Use"];
    let path = format!("/sdn/zones/{zone}/{bridge}");
    if has_any(cfg, subject, &path, &PRIVS) {
        return true;
    }
    let prefix = format!("{path}/");
    cfg.acl
        .keys()
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('/').next())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .any(|child| has_any(cfg, subject, &format!("{prefix}{child}"), &PRIVS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn builtin_roles_like_pve() {
        let r = builtin_roles();
        assert_eq!(r.len(), 17);
        assert_eq!(r["Administrator"].len(), 47);
        assert_eq!(r["PVEAdmin"].len(), 40);
        assert!(!r["PVEAdmin"].contains("Sys.Modify") && !r["PVEAdmin"].contains("Mapping.Modify"));
        assert_eq!(
            names(&r["PVEAuditor"]),
            vec![
                "Datastore.Audit",
                "Mapping.Audit",
                "Pool.Audit",
                "SDN.Audit",
                "Sys.Audit",
                "VM.Audit",
                "VM.GuestAgent.Audit"
            ]
        );
        assert_eq!(
            names(&r["PVESysAdmin"]),
            vec!["Sys.Audit", "Sys.Console", "Sys.Syslog"]
        );
        assert_eq!(names(&r["PVESDNUser"]), vec!["SDN.Audit", "SDN.Use"]);
        assert_eq!(r["PVEVMAdmin"].len(), 23);
        assert_eq!(r["PVEVMUser"].len(), 10);
        assert!(!r.contains_key("PVESysUser") && !r.contains_key("PVEUserUser"));
        assert!(r["NoAccess"].is_empty());
    }

    const CFG: &str = "\
user:alice@pve:1:
user:bob@pve:1:
user:sue@pve:1:
token:alice@pve!sep:0:1:
token:alice@pve!nosep:0:0:
token:root@pam!sep:0:1:
group:ops:bob@pve,sue@pve:
group:deny:sue@pve:
acl:1:/:alice@pve:PVEAuditor:
acl:1:/nodes/pve1:alice@pve:Administrator:
acl:0:/nodes:@ops:PVEAuditor:
acl:1:/nodes/pve1:@ops:PVESysAdmin:
acl:1:/nodes/pve1:@deny:NoAccess:
acl:1:/nodes:alice@pve!sep:Administrator:
acl:1:/nodes/pve1:root@pam!sep:PVEAuditor:
acl:1:/sdn/zones/localnetwork/vmbr1/10:bob@pve:PVESDNUser:
";

    #[test]
    fn the_deepest_level_wins() {
        let c = UserConfig::parse(CFG);
        assert!(permissions(&c, "alice@pve", "/nodes/pve1").contains("Sys.Modify"));
        assert!(!permissions(&c, "alice@pve", "/nodes/pve2").contains("Sys.Modify"));
        assert!(permissions(&c, "alice@pve", "/nodes/pve2").contains("Sys.Audit"));
        // a non-propagating entry counts only on its own level
        assert!(permissions(&c, "bob@pve", "/nodes").contains("Sys.Audit"));
        assert!(permissions(&c, "bob@pve", "/nodes/pve2").is_empty());
        assert_eq!(
            names(&permissions(&c, "bob@pve", "/nodes/pve1")),
            vec!["Sys.Audit", "Sys.Console", "Sys.Syslog"]
        );
        // NoAccess from one group beats the other group's roles
        assert!(permissions(&c, "sue@pve", "/nodes/pve1").is_empty());
        assert_eq!(permissions(&c, "root@pam", "/x").len(), 47);
        assert!(permissions(&c, "nobody@pve", "/").is_empty());
    }

    #[test]
    fn tokens_and_privilege_separation() {
        let c = UserConfig::parse(CFG);
        // without privsep: exactly the owner's permissions
        assert_eq!(
            permissions(&c, "alice@pve!nosep", "/nodes/pve1"),
            permissions(&c, "alice@pve", "/nodes/pve1")
        );
        // with privsep: own ACL (Administrator on /nodes) ∩ owner's
        let sep = permissions(&c, "alice@pve!sep", "/nodes/pve2");
        assert_eq!(sep, permissions(&c, "alice@pve", "/nodes/pve2"));
        assert!(!sep.contains("Sys.Modify"));
        assert!(permissions(&c, "alice@pve!sep", "/nodes/pve1").contains("Sys.Modify"));
        assert!(
            permissions(&c, "alice@pve!sep", "/storage").is_empty(),
            "no own ACL there"
        );
        // root's privsep token has only its own ACLs
        let rt = permissions(&c, "root@pam!sep", "/nodes/pve1");
        assert!(rt.contains("Sys.Audit") && !rt.contains("Sys.Modify"));
        assert!(permissions(&c, "alice@pve!missing", "/").is_empty());
    }

    #[test]
    fn sdn_bridge_visibility() {
        let c = UserConfig::parse(CFG);
        // alice is PVEAuditor on / (SDN.Audit propagates)
        assert!(can_access_sdn_bridge(
            &c,
            "alice@pve",
            "localnetwork",
            "vmbr0"
        ));
        // bob only has a right on one VLAN of vmbr1
        assert!(can_access_sdn_bridge(
            &c,
            "bob@pve",
            "localnetwork",
            "vmbr1"
        ));
        assert!(!can_access_sdn_bridge(
            &c,
            "bob@pve",
            "localnetwork",
            "vmbr0"
        ));
    }
}
