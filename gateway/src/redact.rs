//! Keeping secrets out of logs, evidence and traces.
//!
//! Credentials travel in headers (`Cookie: PVEAuthCookie=…`, `Authorization:
//! PVEAPIToken=…`, `CSRFPreventionToken`), which are never recorded at all,
//! and in query strings and bodies (`password`, `ticket`, `vncticket`, token
//! secrets), which are redacted here wherever a path or body is kept.

use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a parameter or JSON key names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "ticket",
        "csrfpreventiontoken",
        "secret",
        "token",
        "cookie",
        "authorization",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A path with the values of secret query parameters replaced.
pub fn path(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let mut out = String::with_capacity(path_and_query.len());
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, _)) if is_secret_key(&percent_decode(k)) => {
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(s.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// Replaces the values of secret keys anywhere in a JSON document.
pub fn json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) {
                    *v = Value::String(REDACTED.into());
                } else {
                    json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json),
        _ => {}
    }
}

/// A request or response body for storage: JSON or a form body as redacted
/// JSON; anything else only as its length.
pub fn body(bytes: &[u8], content_type: Option<&str>) -> Value {
    if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
        json(&mut v);
        return v;
    }
    let form = content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form
        || (!bytes.is_empty()
            && bytes.iter().all(|b| b.is_ascii_graphic())
            && bytes.contains(&b'='))
    {
        let mut map = serde_json::Map::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            let v = if is_secret_key(&k) {
                REDACTED.to_owned()
            } else {
                v.into_owned()
            };
            map.insert(k.into_owned(), Value::String(v));
        }
        return Value::Object(map);
    }
    Value::String(format!("<{} bytes, not JSON>", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_secrets_are_redacted() {
        assert_eq!(
            path("/api2/json/nodes/pve1/qemu/100/vncwebsocket?port=5900&vncticket=PVEVNC%3Aabc"),
            "/api2/json/nodes/pve1/qemu/100/vncwebsocket?port=5900&vncticket=<redacted>"
        );
        assert_eq!(
            path("/a?password=x&type=bridge"),
            "/a?password=<redacted>&type=bridge"
        );
        assert_eq!(
            path("/api2/json/nodes/pve1/network"),
            "/api2/json/nodes/pve1/network"
        );
    }

    #[test]
    fn bodies_are_redacted() {
        let b = body(
            b"iface=vmbr9&password=hunter2&type=bridge",
            Some("application/x-www-form-urlencoded"),
        );
        assert_eq!(b["password"], REDACTED);
        assert_eq!(b["iface"], "vmbr9");
        let b = body(br#"{"data":{"ticket":"PVE:root@pam:x","CSRFPreventionToken":"y","ipam":{"token":"z"}}}"#, None);
        let s = b.to_string();
        assert!(
            !s.contains("PVE:root") && !s.contains("\"y\"") && !s.contains("\"z\""),
            "{s}"
        );
    }
}
