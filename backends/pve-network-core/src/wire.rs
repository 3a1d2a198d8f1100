//! The one canonical rendering of answers in PVE's wire format.
//!
//! What pveproxy sends for a handler's result or exception, minus the HTTP
//! framing (the daemon adds the headers):
//!
//! * values keep the type Perl stored: strings from the file stay JSON
//!   strings (`"mtu":"9000"`, `"netmask":"24"`), flags and `priority` are
//!   numbers (`"active":1`, absent when false), `families` is an array;
//! * `/api2/json/`: `{"data":…}` plus result attributes (`changes`); an error
//!   has the message as HTTP reason phrase and the body
//!   `{"data":null,"message":"…\n"}` plus `errors` for parameter errors;
//! * `/api2/extjs/`: always HTTP 200 `OK`; `success` is `1` or `0`, errors
//!   carry `message`, `errors` and `status` (a string for parameter errors,
//!   a number otherwise — pveproxy's own inconsistency, kept for parity).
//!
//! Object keys come out sorted. Perl's come in hash order, which differs
//! between processes; no client can depend on it.

use serde_json::{Map, Value as J};

use crate::api::{ApiError, Outcome, ResponseData};
use crate::model::{Iface, Value};

/// The API result format, the second segment of `/api2/{format}/…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `/api2/json/`.
    Json,
    /// `/api2/extjs/`.
    Extjs,
}

impl Format {
    /// The format named by a path segment (`json`, `extjs`).
    pub fn from_segment(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Format::Json),
            "extjs" => Some(Format::Extjs),
            _ => None,
        }
    }
}

/// An answer without HTTP framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireResponse {
    /// HTTP status.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// The JSON body.
    pub body: String,
}

/// A property value as Perl's JSON encoder writes it.
pub fn value_json(v: &Value) -> J {
    match v {
        Value::Str(s) => J::String(s.clone()),
        Value::Int(i) => J::from(*i),
        Value::List(l) => J::Array(
            l.iter()
                .map(|x| x.as_ref().map_or(J::Null, |s| J::String(s.clone())))
                .collect(),
        ),
        Value::Null => J::Null,
    }
}

/// One interface hash (`name` adds the `iface` key, as the list does).
pub fn interface_json(name: Option<&str>, d: &Iface) -> J {
    let mut m: Map<String, J> = d.iter().map(|(k, v)| (k.clone(), value_json(v))).collect();
    if let Some(name) = name {
        m.insert("iface".into(), J::String(name.to_string()));
    }
    J::Object(m)
}

/// The `data` of an outcome.
pub fn data_json(data: &ResponseData) -> J {
    match data {
        ResponseData::Null => J::Null,
        ResponseData::Upid(u) => J::String(u.clone()),
        ResponseData::Object(d) => interface_json(None, d),
        ResponseData::List(items) => J::Array(
            items
                .iter()
                .map(|(name, d)| interface_json(Some(name), d))
                .collect(),
        ),
    }
}

/// The body members of a successful outcome: `data` and, for the list,
/// `changes`.
pub fn outcome_members(outcome: &Outcome) -> Map<String, J> {
    let mut m = Map::new();
    m.insert("data".into(), data_json(&outcome.data));
    if let Some(c) = &outcome.changes {
        m.insert("changes".into(), J::String(c.clone()));
    }
    m
}

/// A success with the given body members (`data` and result attributes).
pub fn success_members(format: Format, mut members: Map<String, J>) -> WireResponse {
    if format == Format::Extjs {
        members.insert("success".into(), J::from(1));
    }
    WireResponse {
        status: 200,
        reason: "OK".into(),
        body: J::Object(members).to_string(),
    }
}

/// JSON string escaping as serde_json (and Perl's JSON::XS) write it:
/// `\"`, `\\`, `\b \f \n \r \t`, other control characters as `\u00XX`,
/// everything else (UTF-8 included) as is.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::Str(s) => push_json_str(out, s),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Null => out.push_str("null"),
        Value::List(l) => {
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match x {
                    Some(s) => push_json_str(out, s),
                    None => out.push_str("null"),
                }
            }
            out.push(']');
        }
    }
}

/// One interface object, keys sorted, `iface` among them for list entries.
fn push_interface(out: &mut String, name: Option<&str>, d: &Iface) {
    out.push('{');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
    };
    let mut pending_name = name;
    for (k, v) in d.iter() {
        if let Some(n) = pending_name
            && k.as_str() > "iface"
        {
            sep(out);
            out.push_str("\"iface\":");
            push_json_str(out, n);
            pending_name = None;
        }
        if name.is_some() && k == "iface" {
            continue; // the list's own key wins, as in PVE's hash_to_array
        }
        sep(out);
        push_json_str(out, k);
        out.push(':');
        push_value(out, v);
    }
    if let Some(n) = pending_name {
        sep(out);
        out.push_str("\"iface\":");
        push_json_str(out, n);
    }
    out.push('}');
}

fn push_data(out: &mut String, data: &ResponseData) {
    match data {
        ResponseData::Null => out.push_str("null"),
        ResponseData::Upid(u) => push_json_str(out, u),
        ResponseData::Object(d) => push_interface(out, None, d),
        ResponseData::List(items) => {
            out.push('[');
            for (i, (name, d)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_interface(out, Some(name), d);
            }
            out.push(']');
        }
    }
}

/// The answer to a successful operation (written directly, keys sorted:
/// the same text as [`success_members`] of [`outcome_members`], without
/// building a JSON tree first — a 200-interface list is the hot path).
pub fn success(format: Format, outcome: &Outcome) -> WireResponse {
    let mut body = String::with_capacity(256);
    body.push('{');
    if let Some(c) = &outcome.changes {
        body.push_str("\"changes\":");
        push_json_str(&mut body, c);
        body.push(',');
    }
    body.push_str("\"data\":");
    push_data(&mut body, &outcome.data);
    if format == Format::Extjs {
        body.push_str(",\"success\":1");
    }
    body.push('}');
    WireResponse {
        status: 200,
        reason: "OK".into(),
        body,
    }
}

/// The reason phrase pveproxy makes of a message: its first line.
pub fn reason_phrase(message: &str) -> String {
    message
        .split('\n')
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string()
}

/// The answer to a failed operation.
pub fn error(format: Format, err: &ApiError) -> WireResponse {
    let mut message = err.message.clone();
    if err.newline {
        message.push('\n');
    }
    let mut m = Map::new();
    m.insert("data".into(), J::Null);
    m.insert("message".into(), J::String(message));
    if !err.errors.is_empty() {
        let errors: Map<String, J> = err
            .errors
            .iter()
            .map(|(k, v)| (k.clone(), J::String(v.clone())))
            .collect();
        m.insert("errors".into(), J::Object(errors));
    }
    match format {
        Format::Json => WireResponse {
            status: err.status,
            reason: reason_phrase(&err.message),
            body: J::Object(m).to_string(),
        },
        Format::Extjs => {
            let status = if err.is_param_error() {
                J::String(err.status.to_string())
            } else {
                J::from(err.status)
            };
            m.insert("status".into(), status);
            m.insert("success".into(), J::from(0));
            WireResponse {
                status: 200,
                reason: "OK".into(),
                body: J::Object(m).to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> Iface {
        let mut d = Iface::new();
        d.set_str("type", "bridge");
        d.set_str("bridge_fd", "0");
        d.set("priority", Value::Int(3));
        d.set("autostart", Value::Int(1));
        d.set("families", Value::List(vec![Some("inet".into())]));
        d
    }

    #[test]
    fn perl_types_on_the_wire() {
        let out = Outcome {
            data: ResponseData::List(vec![("vmbr0".into(), bridge())]),
            changes: Some("--- a\n".into()),
            effect: None,
            dry_run: false,
        };
        let r = success(Format::Json, &out);
        assert_eq!(
            r.body,
            r#"{"changes":"--- a\n","data":[{"autostart":1,"bridge_fd":"0","families":["inet"],"iface":"vmbr0","priority":3,"type":"bridge"}]}"#
        );
        let r = success(Format::Extjs, &out);
        assert!(r.body.ends_with(r#","success":1}"#), "{}", r.body);
    }

    #[test]
    fn direct_writer_equals_the_json_tree() {
        let mut odd = bridge();
        odd.set_str(
            "comments",
            "quote \" backslash \\ tab \t nl \n bell \u{7} é",
        );
        odd.set("families", Value::List(vec![None, Some("inet6".into())]));
        odd.set("exists", Value::Null);
        odd.set_str("zz", "last");
        odd.set_str("a", "first");
        for data in [
            ResponseData::List(vec![("vmbr0".into(), bridge()), ("x".into(), odd.clone())]),
            ResponseData::Object(odd.clone()),
            ResponseData::Upid("UPID:pve:1:2:3:srvreload:networking:root@pam:".into()),
            ResponseData::Null,
        ] {
            for changes in [None, Some("--- a\n+b\t\"\n".to_string())] {
                let out = Outcome {
                    data: data.clone(),
                    changes,
                    effect: None,
                    dry_run: false,
                };
                for f in [Format::Json, Format::Extjs] {
                    assert_eq!(
                        success(f, &out).body,
                        success_members(f, outcome_members(&out)).body
                    );
                }
            }
        }
    }

    #[test]
    fn errors_in_both_formats() {
        let e = ApiError::param("iface", "interface does not exist");
        let r = error(Format::Json, &e);
        assert_eq!(
            (r.status, r.reason.as_str()),
            (400, "Parameter verification failed.")
        );
        assert_eq!(
            r.body,
            r#"{"data":null,"errors":{"iface":"interface does not exist"},"message":"Parameter verification failed.\n"}"#
        );
        let r = error(Format::Extjs, &e);
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert_eq!(
            r.body,
            r#"{"data":null,"errors":{"iface":"interface does not exist"},"message":"Parameter verification failed.\n","status":"400","success":0}"#
        );
        let e = ApiError::internal("bridge 'vmbr3' - unable to find bridge port 'eno9'\n");
        let r = error(Format::Extjs, &e);
        assert_eq!(
            r.body,
            r#"{"data":null,"message":"bridge 'vmbr3' - unable to find bridge port 'eno9'\n","status":500,"success":0}"#
        );
        let e = ApiError::not_implemented("GET", "/nodes/pve/network/vmbr0/extra");
        let r = error(Format::Json, &e);
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_str()),
            (
                501,
                "Method 'GET /nodes/pve/network/vmbr0/extra' not implemented",
                r#"{"data":null,"message":"Method 'GET /nodes/pve/network/vmbr0/extra' not implemented"}"#
            )
        );
    }
}
