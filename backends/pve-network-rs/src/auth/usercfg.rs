//! `/etc/pve/user.cfg` and `/etc/pve/priv/token.cfg` as PVE reads them.
//!
//! `user.cfg` is read line by line in file order, each line split on `:`
//! with its fields trimmed: `user:`, `token:`, `group:`, `role:`, `acl:`
//! (and `pool:`, which only matters for guest and storage paths). Order
//! matters as in PVE: a token is known only after its user's line, an ACL
//! names a token or custom role only after it was defined. Invalid lines
//! are skipped (PVE warns and goes on); the built-in roles always win over
//! `role:` lines of the same name, and `root@pam` exists even when the file
//! does not say so.

use std::collections::{BTreeMap, BTreeSet};

use super::acl::{builtin_roles, is_valid_privilege};

/// A user (`user:` line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// Whether the account is enabled.
    pub enable: bool,
    /// Expiry (Unix time); 0 = never.
    pub expire: i64,
    /// The user's API tokens by name.
    pub tokens: BTreeMap<String, Token>,
}

/// An API token (`token:` line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Token {
    /// Expiry (Unix time); 0 = never.
    pub expire: i64,
    /// Privilege separation: the token's own ACLs, intersected with the
    /// owner's permissions.
    pub privsep: bool,
}

/// The ACL entries of one path: per subject, role → propagate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclNode {
    /// `user@realm` entries.
    pub users: BTreeMap<String, BTreeMap<String, bool>>,
    /// `@group` entries (without the `@`).
    pub groups: BTreeMap<String, BTreeMap<String, bool>>,
    /// `user@realm!token` entries.
    pub tokens: BTreeMap<String, BTreeMap<String, bool>>,
}

/// A parsed `user.cfg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserConfig {
    /// Users by id.
    pub users: BTreeMap<String, User>,
    /// Group members by group name.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Roles (built-in and custom) with their privileges.
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// ACL entries by normalised path.
    pub acl: BTreeMap<String, AclNode>,
}

impl Default for UserConfig {
    fn default() -> Self {
        Self::parse("")
    }
}

/// PVE's `split_list`: NUL-separated when the text has a NUL, otherwise
/// `,`, `;` and whitespace.
fn split_list(s: &str) -> Vec<&str> {
    if s.contains('\0') {
        return s.split('\0').filter(|x| !x.is_empty()).collect();
    }
    s.split(|c: char| c == ',' || c == ';' || c.is_ascii_whitespace())
        .filter(|x| !x.is_empty())
        .collect()
}

fn is_realm(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// PVE's `verify_username`: `name@realm`, 3 to 64 characters, no whitespace,
/// `:` or `/` in the name.
pub fn is_userid(s: &str) -> bool {
    if s.len() < 3 || s.len() > 64 {
        return false;
    }
    let Some((name, realm)) = s.rsplit_once('@') else {
        return false;
    };
    !name.is_empty()
        && !name.contains(|c: char| c.is_whitespace() || c == ':' || c == '/')
        && is_realm(realm)
}

/// Splits a full token id `user@realm!name` into user id and token name.
pub fn split_tokenid(s: &str) -> Option<(&str, &str)> {
    let (user, token) = s.split_once('!')?;
    (is_userid(user) && is_realm(token)).then_some((user, token))
}

fn is_group_or_role_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// PVE's `normalize_path`: `/` runs collapsed, no trailing `/`, a leading
/// `/`, only `[[:alnum:].-_/]`.
pub fn normalize_path(p: &str) -> Option<String> {
    if p.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(p.len() + 1);
    for c in p.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    if out.is_empty() {
        out.push('/');
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        .then_some(out)
}

fn expire_field(s: Option<&str>) -> Option<i64> {
    match s {
        None | Some("") | Some("0") => Some(0),
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => v.parse().ok(),
        Some(_) => None,
    }
}

/// Perl truthiness of a field.
fn truthy(s: Option<&str>) -> bool {
    matches!(s, Some(v) if !v.is_empty() && v != "0")
}

impl UserConfig {
    /// Parse the text of `user.cfg` (never fails: bad lines are skipped, as
    /// PVE skips them).
    pub fn parse(text: &str) -> Self {
        let mut cfg = UserConfig {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            roles: builtin_roles(),
            acl: BTreeMap::new(),
        };
        // PVE installs its defaults before the parse too: root@pam exists
        // for the tokens and ACLs of the lines that follow
        cfg.users.insert(
            "root@pam".into(),
            User {
                enable: true,
                ..User::default()
            },
        );
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut fields: Vec<&str> = line.split(':').map(str::trim).collect();
            while fields.last().is_some_and(|f| f.is_empty()) {
                fields.pop();
            }
            let get = |i: usize| fields.get(i).copied();
            match get(0) {
                Some("user") => cfg.user_line(get(1), get(2), get(3)),
                Some("token") => cfg.token_line(get(1), get(2), get(3)),
                Some("group") => cfg.group_line(get(1), get(2)),
                Some("role") => cfg.role_line(get(1), get(2)),
                Some("acl") => cfg.acl_line(get(1), get(2), get(3), get(4)),
                _ => {} // pools and unknown lines: nothing for /nodes and /sdn
            }
        }
        for (name, privs) in builtin_roles() {
            cfg.roles.insert(name, privs);
        }
        cfg.users.entry("root@pam".into()).or_insert(User {
            enable: true,
            ..User::default()
        });
        cfg
    }

    fn user_line(&mut self, id: Option<&str>, enable: Option<&str>, expire: Option<&str>) {
        let Some(id) = id.filter(|id| is_userid(id)) else {
            return;
        };
        let Some(expire) = expire_field(expire) else {
            return;
        };
        let user = self.users.entry(id.to_string()).or_default();
        user.enable = truthy(enable);
        user.expire = expire;
    }

    fn token_line(&mut self, id: Option<&str>, expire: Option<&str>, privsep: Option<&str>) {
        let Some((user, token)) = id.and_then(split_tokenid) else {
            return;
        };
        let Some(expire) = expire_field(expire) else {
            return;
        };
        if let Some(u) = self.users.get_mut(user) {
            u.tokens.insert(
                token.to_string(),
                Token {
                    expire,
                    privsep: truthy(privsep),
                },
            );
        }
    }

    fn group_line(&mut self, name: Option<&str>, members: Option<&str>) {
        let Some(name) = name.filter(|n| is_group_or_role_name(n)) else {
            return;
        };
        let group = self.groups.entry(name.to_string()).or_default();
        for m in split_list(members.unwrap_or("")) {
            if is_userid(m) {
                group.insert(m.to_string());
            }
        }
    }

    fn role_line(&mut self, name: Option<&str>, privs: Option<&str>) {
        let Some(name) = name.filter(|n| is_group_or_role_name(n)) else {
            return;
        };
        if builtin_roles().contains_key(name) {
            return;
        }
        let role = self.roles.entry(name.to_string()).or_default();
        for p in split_list(privs.unwrap_or("")) {
            if is_valid_privilege(p) {
                role.insert(p.to_string());
            }
        }
    }

    fn acl_line(
        &mut self,
        propagate: Option<&str>,
        path: Option<&str>,
        subjects: Option<&str>,
        roles: Option<&str>,
    ) {
        let propagate = truthy(propagate);
        let Some(path) = path.and_then(normalize_path) else {
            return;
        };
        for role in split_list(roles.unwrap_or("")) {
            if !is_group_or_role_name(role) || !self.roles.contains_key(role) {
                continue;
            }
            for subject in split_list(subjects.unwrap_or("")) {
                let group = subject
                    .strip_prefix('@')
                    .filter(|g| !g.contains(char::is_whitespace) && is_group_or_role_name(g));
                let entry = if let Some(g) = group {
                    Some((&mut self.acl.entry(path.clone()).or_default().groups, g))
                } else if is_userid(subject) {
                    Some((
                        &mut self.acl.entry(path.clone()).or_default().users,
                        subject,
                    ))
                } else if let Some((user, token)) = split_tokenid(subject) {
                    let exists = self
                        .users
                        .get(user)
                        .is_some_and(|u| u.tokens.contains_key(token));
                    exists.then(|| {
                        (
                            &mut self.acl.entry(path.clone()).or_default().tokens,
                            subject,
                        )
                    })
                } else {
                    None
                };
                if let Some((map, key)) = entry {
                    map.entry(key.to_string())
                        .or_default()
                        .insert(role.to_string(), propagate);
                }
            }
        }
    }

    /// A token by its full id (`user@realm!name`).
    pub fn token(&self, tokenid: &str) -> Option<(&User, &Token)> {
        let (user, name) = split_tokenid(tokenid)?;
        let u = self.users.get(user)?;
        Some((u, u.tokens.get(name)?))
    }
}

/// `/etc/pve/priv/token.cfg`: the secrets, one `TOKENID SECRET` per line.
///
/// PVE (through pmxcfs) accepts a secret only when the file has a line that
/// is exactly `TOKENID SECRET`; so does [`TokenSecrets::matches`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSecrets {
    lines: BTreeSet<String>,
}

impl TokenSecrets {
    /// Parse the file (lines that are not `ID SECRET` are skipped).
    pub fn parse(text: &str) -> Self {
        Self {
            lines: text
                .lines()
                .filter(|l| {
                    let mut parts = l.split(' ');
                    matches!(
                        (parts.next(), parts.next(), parts.next()),
                        (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty()
                    )
                })
                .map(str::to_string)
                .collect(),
        }
    }

    /// Whether `secret` is the secret of `tokenid`.
    pub fn matches(&self, tokenid: &str, secret: &str) -> bool {
        if tokenid.contains(['\n', '\0']) || secret.contains(['\n', '\0']) {
            return false;
        }
        self.lines.contains(&format!("{tokenid} {secret}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
user:root@pam:1:0:::root@example.invalid:::
token:root@pam!replay:0:0::
user:alice@pve:1:0:Alice::::
token:alice@pve!ro:0:1::
token:alice@pve!full::::
user:bob@pve:0:0:::
user:carol@pve:1:1000:::
token:ghost@pve!x:0:0::
group:admins:alice@pve,bob@pve, nobody@pve:
role:NetAudit:Sys.Audit,Bogus.Priv:
role:Administrator:Sys.Audit:
acl:1:/nodes:@admins:PVEAuditor:
acl:0:/nodes/pve1/:alice@pve:NetAudit:
acl:1:/:alice@pve!ro:PVEAuditor,Unknown:
acl:1:/sdn:ghost@pve!x:PVEAuditor:
acl:1:/bad path:alice@pve:PVEAuditor:
";

    #[test]
    fn users_tokens_groups_roles() {
        let c = UserConfig::parse(CFG);
        assert!(c.users["root@pam"].enable);
        assert!(c.users["alice@pve"].enable && !c.users["bob@pve"].enable);
        assert_eq!(c.users["carol@pve"].expire, 1000);
        assert!(c.users["alice@pve"].tokens["ro"].privsep);
        assert!(
            !c.users["alice@pve"].tokens["full"].privsep,
            "empty privsep means 0"
        );
        assert!(!c.users.contains_key("ghost@pve"));
        assert_eq!(
            c.groups["admins"].iter().collect::<Vec<_>>(),
            vec!["alice@pve", "bob@pve", "nobody@pve"]
        );
        assert_eq!(
            c.roles["NetAudit"].iter().collect::<Vec<_>>(),
            vec!["Sys.Audit"]
        );
        assert_eq!(c.roles["Administrator"].len(), 47, "built-ins win");
        assert!(c.token("alice@pve!ro").is_some());
        assert!(c.token("alice@pve!nope").is_none());
    }

    #[test]
    fn acl_lines() {
        let c = UserConfig::parse(CFG);
        assert!(c.acl["/nodes"].groups["admins"]["PVEAuditor"]);
        assert!(!c.acl["/nodes/pve1"].users["alice@pve"]["NetAudit"]);
        let root = &c.acl["/"];
        assert_eq!(
            root.tokens["alice@pve!ro"].len(),
            1,
            "unknown roles skipped"
        );
        assert!(!c.acl.contains_key("/sdn"), "unknown token ignored");
        assert!(!c.acl.contains_key("/bad path"));
    }

    #[test]
    fn names_and_paths() {
        assert!(is_userid("root@pam") && is_userid("a.b-c@pve"));
        assert!(!is_userid("root") && !is_userid("ro ot@pam") && !is_userid("x@1realm"));
        assert_eq!(split_tokenid("root@pam!ci"), Some(("root@pam", "ci")));
        assert_eq!(split_tokenid("root@pam!1ci"), None);
        assert_eq!(
            normalize_path("//nodes///pve1/").as_deref(),
            Some("/nodes/pve1")
        );
        assert_eq!(normalize_path("nodes").as_deref(), Some("/nodes"));
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        assert_eq!(normalize_path("/a b"), None);
    }

    #[test]
    fn token_secrets_match_whole_lines() {
        let s = TokenSecrets::parse("root@pam!ci 1111\nbroken line here\nalice@pve!ro 2222\n");
        assert!(s.matches("root@pam!ci", "1111"));
        assert!(!s.matches("root@pam!ci", "111"));
        assert!(!s.matches("root@pam!ci", "1111 "));
        assert!(!s.matches("alice@pve!ro", "1111"));
        assert!(!s.matches("broken", "line here"));
    }
}
