//! Fingerprints: one stable id per kind of difference.
//!
//! A fingerprint is the first 16 hex digits of a SHA-256 over a version tag,
//! the endpoint id and the sorted, de-duplicated set of lines
//!
//! * `<op> <path>` for each patch operation (`replace /body/data/*/mtu`);
//! * `type-only <kind> <path>` for each type-only hit;
//!
//! where `<path>` is the pointer with every array index replaced by `*`
//! (indices are known from the documents, so a numeric object key such as a
//! VLAN id stays as it is; [`generalise_pointer`] does the same for any
//! pointer into two `serde_json` documents).
//! Values are never hashed. So "`mtu` differs" has one fingerprint whether
//! it differs in element 3 or in elements 3 and 7, and the fingerprint does
//! not depend on key order, array order, run or process.

use std::collections::BTreeSet;

use json_patch::PatchOperation;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::normalise::hex;
use crate::pointer::{decode_token, parse_index};

fn child<'v>(v: &'v Value, token: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => parse_index(token).and_then(|i| a.get(i)),
        _ => None,
    }
}

/// Replaces the array indices of `pointer` by `*`, using `perl` and `rust`
/// (the documents the pointer refers to) to tell indices from keys.
///
/// ```
/// use pve_migration_rules::fingerprint::generalise_pointer;
/// use serde_json::json;
/// let doc = json!({"data": [{"mtu": 1}], "errors": {"0": "x"}});
/// assert_eq!(generalise_pointer(&doc, &doc, "/data/0/mtu"), "/data/*/mtu");
/// assert_eq!(generalise_pointer(&doc, &doc, "/errors/0"), "/errors/0");
/// ```
pub fn generalise_pointer(perl: &Value, rust: &Value, pointer: &str) -> String {
    let Some(rest) = pointer.strip_prefix('/') else {
        return pointer.to_owned();
    };
    let mut out = String::with_capacity(pointer.len());
    let mut a = Some(perl);
    let mut b = Some(rust);
    for raw in rest.split('/') {
        let is_array = a.is_some_and(Value::is_array) || b.is_some_and(Value::is_array);
        let token = decode_token(raw).unwrap_or_else(|| raw.to_owned());
        if is_array && (parse_index(raw).is_some() || raw == "-") {
            out.push_str("/*");
        } else {
            out.push('/');
            out.push_str(raw);
        }
        a = a.and_then(|v| child(v, &token));
        b = b.and_then(|v| child(v, &token));
    }
    out
}

pub(crate) fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// Hashes an endpoint id and a set of lines (sorted and de-duplicated here).
pub(crate) fn hash_lines(endpoint: &str, lines: impl Iterator<Item = String>) -> String {
    let set: BTreeSet<String> = lines.collect();
    let mut h = Sha256::new();
    h.update(b"pve-migration-rules fingerprint v1\n");
    h.update(endpoint.as_bytes());
    for line in set {
        h.update(b"\n");
        h.update(line.as_bytes());
    }
    let digest = h.finalize();
    hex(&digest[..8])
}
