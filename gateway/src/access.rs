//! pveproxy's host access policy (`ALLOW_FROM`, `DENY_FROM`, `POLICY` in
//! `/etc/default/pveproxy`), so the gateway's front door is never wider than
//! pveproxy's was.
//!
//! Semantics, as pveproxy applies them to every accepted connection:
//! * a client address that matches `ALLOW_FROM` but not `DENY_FROM` is allowed;
//! * one that matches `DENY_FROM` but not `ALLOW_FROM` is denied;
//! * one that matches both or neither is decided by `POLICY` (default `allow`);
//! * `all` in a list means every IPv4 and IPv6 address;
//! * IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are treated as IPv4.
//!
//! Denied clients are disconnected before TLS, without a response.
//!
//! The file is a shell fragment that pveproxy evaluates with bash. This
//! reader understands what such files contain in practice (`KEY=value`,
//! quotes, `export`, comments) and refuses anything that would need a shell
//! (`$VAR`, command substitution) with an error naming the line, rather than
//! guessing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

/// The default location of pveproxy's settings.
pub const PVEPROXY_DEFAULTS: &str = "/etc/default/pveproxy";

/// An error in the pveproxy defaults file.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct AccessError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number (0 when the file could not be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The allow/deny rules in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    allow: Vec<Matcher>,
    deny: Vec<Matcher>,
    policy_allow: bool,
}

/// One entry of an `ALLOW_FROM`/`DENY_FROM` list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// An address or a network in CIDR notation.
    Net(IpNet),
    /// An inclusive range `first-last` of one family.
    Range(IpAddr, IpAddr),
}

impl Matcher {
    fn contains(&self, ip: &IpAddr) -> bool {
        match self {
            Matcher::Net(net) => net.contains(ip),
            Matcher::Range(first, last) => match (first, last, ip) {
                (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(x)) => a <= x && x <= b,
                (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(x)) => a <= x && x <= b,
                _ => false,
            },
        }
    }
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self::allow_all()
    }
}

fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl AccessPolicy {
    /// What pveproxy does without a defaults file: no lists, policy `allow`.
    pub fn allow_all() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            policy_allow: true,
        }
    }

    /// Reads a pveproxy defaults file; a missing file means [`AccessPolicy::allow_all`].
    ///
    /// # Errors
    /// When the file exists but cannot be read or holds an invalid value.
    pub fn from_file(path: &Path) -> Result<Self, AccessError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::allow_all()),
            Err(e) => Err(AccessError {
                path: path.to_owned(),
                line: 0,
                message: e.to_string(),
            }),
        }
    }

    /// Parses the text of a pveproxy defaults file.
    ///
    /// # Errors
    /// On an invalid address, an unknown policy, or shell syntax this reader
    /// cannot evaluate, naming the line.
    pub fn parse(path: &Path, text: &str) -> Result<Self, AccessError> {
        let mut policy = Self::allow_all();
        for (idx, raw) in text.lines().enumerate() {
            let err = |message: String| AccessError {
                path: path.to_owned(),
                line: idx + 1,
                message,
            };
            let Some((key, value)) = parse_assignment(raw).map_err(err)? else {
                continue;
            };
            match key {
                "ALLOW_FROM" => policy.allow = parse_list(&value).map_err(err)?,
                "DENY_FROM" => policy.deny = parse_list(&value).map_err(err)?,
                "POLICY" => {
                    policy.policy_allow = match value.as_str() {
                        "" | "allow" => true,
                        "deny" => false,
                        other => {
                            return Err(err(format!(
                                "POLICY: unknown policy '{other}' (expected 'allow' or 'deny')"
                            )));
                        }
                    }
                }
                // LISTEN_IP, CIPHERS, PROXY_REAL_IP_* …: pveproxy's own business.
                _ => {}
            }
        }
        Ok(policy)
    }

    /// Whether a client at `ip` may connect.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        let allowed = self.allow.iter().any(|n| n.contains(&ip));
        let denied = self.deny.iter().any(|n| n.contains(&ip));
        if allowed == denied {
            self.policy_allow
        } else {
            allowed
        }
    }
}

/// `KEY=value` → `Some((KEY, value))`; blank lines and comments → `None`.
fn parse_assignment(line: &str) -> Result<Option<(&str, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line.strip_prefix("export ").map(str::trim).unwrap_or(line);
    let Some((key, rest)) = line.split_once('=') else {
        return Err(format!("expected KEY=value, found '{line}'"));
    };
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid variable name '{key}'"));
    }
    Ok(Some((key, unquote(rest)?)))
}

/// Undoes shell quoting for the simple values these files hold.
fn unquote(rest: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => return Err("unterminated single quote".into()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('$') | Some('`') => {
                        return Err(
                            "shell expansion ($ or `) is not supported in this file; write the value literally"
                                .into(),
                        );
                    }
                    Some('\\') => match chars.next() {
                        Some(c) => out.push(c),
                        None => return Err("unterminated double quote".into()),
                    },
                    Some(c) => out.push(c),
                    None => return Err("unterminated double quote".into()),
                }
            },
            '$' | '`' => {
                return Err(
                    "shell expansion ($ or `) is not supported in this file; write the value literally"
                        .into(),
                );
            }
            '#' => break,
            c if c.is_whitespace() => {
                // An unquoted blank ends the value; only a comment may follow.
                let tail: String = chars.collect();
                let tail = tail.trim();
                if !tail.is_empty() && !tail.starts_with('#') {
                    return Err(format!("unexpected text after the value: '{tail}'"));
                }
                break;
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    out.push(c);
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn parse_ip(item: &str) -> Result<IpAddr, String> {
    item.trim()
        .parse()
        .map(normalize)
        .map_err(|_| format!("invalid address or network '{item}'"))
}

fn parse_list(value: &str) -> Result<Vec<Matcher>, String> {
    let mut nets = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "all" {
            nets.push(Matcher::Net("0.0.0.0/0".parse().expect("valid literal")));
            nets.push(Matcher::Net("::/0".parse().expect("valid literal")));
            continue;
        }
        if let Some((first, last)) = item.split_once('-') {
            let (first, last) = (parse_ip(first)?, parse_ip(last)?);
            if first.is_ipv4() != last.is_ipv4() || first > last {
                return Err(format!("invalid address range '{item}'"));
            }
            nets.push(Matcher::Range(first, last));
            continue;
        }
        let net = if item.contains('/') {
            let net: IpNet = item
                .parse()
                .map_err(|_| format!("invalid address or network '{item}'"))?;
            match net {
                IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96 => {
                    let v4 = v6.addr().to_ipv4_mapped().expect("checked");
                    IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).expect("prefix <= 32")
                }
                other => other,
            }
        } else {
            IpNet::from(parse_ip(item)?)
        };
        nets.push(Matcher::Net(net.trunc()));
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> AccessPolicy {
        AccessPolicy::parse(Path::new("/etc/default/pveproxy"), text).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pveproxy_semantics() {
        // The example from the pveproxy man page.
        let p = policy("ALLOW_FROM=\"10.0.0.1-10.0.0.5,192.168.0.0/22\"\nPOLICY=deny\n");
        assert!(p.permits(ip("192.168.1.7")));
        assert!(p.permits(ip("10.0.0.5")), "ranges are inclusive");
        assert!(!p.permits(ip("10.0.0.6")));
        assert!(!p.permits(ip("8.8.8.8")), "no match → POLICY deny");
        assert!(
            policy("DENY_FROM=10.0.0.0/8\n").permits(ip("8.8.8.8")),
            "default POLICY is allow"
        );

        let p = policy("ALLOW_FROM=\"10.0.0.0/8\"\nDENY_FROM=\"all\"\nPOLICY=\"allow\"\n");
        assert!(
            p.permits(ip("10.1.2.3")),
            "allow wins over deny-all when allowed"
        );
        assert!(!p.permits(ip("192.0.2.1")));
        assert!(!p.permits(ip("2001:db8::1")), "all covers IPv6");

        let p = policy("ALLOW_FROM=10.0.0.0/8\nDENY_FROM=10.0.0.0/8\nPOLICY=deny\n");
        assert!(!p.permits(ip("10.0.0.1")), "both match → POLICY");
        assert!(!p.permits(ip("192.0.2.1")), "neither matches → POLICY");

        let p = policy("ALLOW_FROM='192.0.2.10'\nPOLICY=deny # only one admin host\n");
        assert!(p.permits(ip("::ffff:192.0.2.10")), "v4-mapped v6 is v4");
        assert!(!p.permits(ip("192.0.2.11")));
    }

    #[test]
    fn other_keys_comments_and_export_are_fine() {
        let p = policy(
            "# pveproxy settings\nLISTEN_IP=\"127.0.0.1\"\nexport DENY_FROM=\"all\" # comment\nCIPHERS=\"ECDHE\"\n\nPROXY_REAL_IP_HEADER=\"X-Forwarded-For\"\n",
        );
        assert!(!p.permits(ip("192.0.2.1")));
    }

    #[test]
    fn errors_name_the_line() {
        let path = Path::new("/etc/default/pveproxy");
        let err = AccessPolicy::parse(path, "LISTEN_IP=1\nPOLICY=\"maybe\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string()
                .starts_with("/etc/default/pveproxy:2: POLICY"),
            "{err}"
        );
        let err = AccessPolicy::parse(path, "ALLOW_FROM=\"10.0.0.0/8,bogus\"\n").unwrap_err();
        assert!(err.message.contains("bogus"), "{err}");
        let err = AccessPolicy::parse(path, "ALLOW_FROM=\"$NETS\"\n").unwrap_err();
        assert!(err.message.contains("shell expansion"), "{err}");
    }

    #[test]
    fn missing_file_allows_all() {
        let p = AccessPolicy::from_file(Path::new("/nonexistent/pveproxy")).unwrap();
        assert_eq!(p, AccessPolicy::allow_all());
    }
}
