//! Shape checks for nondeterministic values (UPIDs, diffs, digests, UUIDs).
//!
//! Each check takes the Perl and the Rust value found at the same place and
//! says whether they are "the same" for the purpose of the migration even
//! though their bytes differ.

use crate::doc::Node;
use crate::endpoint::{PatternKind, PatternRule};

/// The parts of a PVE task id that must agree between the two backends.
#[derive(Debug, PartialEq, Eq)]
struct Upid<'a> {
    node: &'a str,
    kind: &'a str,
    id: &'a str,
    user: &'a str,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses `UPID:node:PID:PSTART:STARTTIME:type:id:user:` (PID, PSTART and
/// STARTTIME are hexadecimal, the id may be empty).
fn parse_upid(s: &str) -> Option<Upid<'_>> {
    let rest = s.strip_prefix("UPID:")?.strip_suffix(':')?;
    let mut parts = rest.splitn(7, ':');
    let node = parts.next()?;
    let pid = parts.next()?;
    let pstart = parts.next()?;
    let starttime = parts.next()?;
    let kind = parts.next()?;
    let id = parts.next()?;
    let user = parts.next()?;
    let well_formed = !node.is_empty()
        && is_hex(pid)
        && is_hex(pstart)
        && is_hex(starttime)
        && !kind.is_empty()
        && !user.is_empty()
        && !user.contains(':');
    well_formed.then_some(Upid {
        node,
        kind,
        id,
        user,
    })
}

/// Masks the timestamps of the `---`/`+++` file header pairs of a unified
/// diff: each header keeps its marker and file name only.
pub(crate) fn mask_diff_headers(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        let is_pair =
            lines[i].starts_with("--- ") && lines.get(i + 1).is_some_and(|l| l.starts_with("+++ "));
        if is_pair {
            for line in &lines[i..i + 2] {
                let (marker, rest) = line.split_at(4);
                out.push_str(marker);
                out.push_str(rest.split(['\t', ' ', '\n']).next().unwrap_or(""));
                out.push_str("\t<timestamp>");
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            i += 2;
        } else {
            out.push_str(lines[i]);
            i += 1;
        }
    }
    out
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && is_hex(g))
}

/// Whether `perl` and `rust` are equivalent under `rule`.
pub(crate) fn equivalent(rule: &PatternRule, perl: &Node<'_>, rust: &Node<'_>) -> bool {
    if rule.kind == PatternKind::Present {
        return true;
    }
    let (Some(a), Some(b)) = (perl.as_str(), rust.as_str()) else {
        return false;
    };
    match rule.kind {
        PatternKind::Upid => match (parse_upid(a), parse_upid(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        PatternKind::UnifiedDiff => a == b || mask_diff_headers(a) == mask_diff_headers(b),
        PatternKind::Digest => is_hex(a) && is_hex(b) && a.len() == b.len(),
        PatternKind::Uuid => is_uuid(a) && is_uuid(b),
        PatternKind::Regex => rule
            .regex
            .as_ref()
            .is_some_and(|re| re.is_match(a) && re.is_match(b)),
        PatternKind::Present => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upids() {
        let a = parse_upid("UPID:pve1:00001A2B:0003C4D5:6650F1A2:srvreload:networking:root@pam:");
        let b = parse_upid("UPID:pve1:00009999:00AAAAAA:6650F1FF:srvreload:networking:root@pam:");
        assert!(a.is_some());
        assert_eq!(a, b);
        let c = parse_upid("UPID:pve1:00009999:00AAAAAA:6650F1FF:reloadnetworkall::root@pam:");
        assert_eq!(c.unwrap().id, "");
        assert!(
            parse_upid("UPID:pve1:xyz:00AAAAAA:6650F1FF:srvreload:networking:root@pam:").is_none()
        );
        assert!(parse_upid("UPID:pve1:0:0:0:srvreload:networking:root@pam").is_none());
        assert!(parse_upid("pve1:0:0:0:srvreload:networking:root@pam:").is_none());
    }

    #[test]
    fn diff_masking() {
        let a = "--- /etc/network/interfaces\t2024-05-02 10:11:12.000000000 +0200\n+++ /etc/network/interfaces.new\t2024-05-02 10:20:00.123456789 +0200\n@@ -1,2 +1,3 @@\n auto lo\n+auto vmbr1\n";
        let b = "--- /etc/network/interfaces\t2025-01-01 00:00:00.000000000 +0000\n+++ /etc/network/interfaces.new\t2025-01-01 00:00:01.000000000 +0000\n@@ -1,2 +1,3 @@\n auto lo\n+auto vmbr1\n";
        assert_eq!(mask_diff_headers(a), mask_diff_headers(b));
        assert!(mask_diff_headers(a).starts_with("--- /etc/network/interfaces\t<timestamp>\n+++ /etc/network/interfaces.new\t<timestamp>\n"));
        let c = b.replace("vmbr1", "vmbr2");
        assert_ne!(mask_diff_headers(a), mask_diff_headers(&c));
        assert_eq!(mask_diff_headers("plain text"), "plain text");
    }

    #[test]
    fn uuids() {
        assert!(is_uuid("0190a7c2-5b7e-7cc0-8f3e-2b1d0c9a8e77"));
        assert!(!is_uuid("0190a7c2-5b7e-7cc0-8f3e-2b1d0c9a8e7"));
        assert!(!is_uuid("0190a7c2x5b7e-7cc0-8f3e-2b1d0c9a8e77"));
    }
}
