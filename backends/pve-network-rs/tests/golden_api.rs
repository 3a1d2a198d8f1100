//! The backend against API scenarios run through PVE's own Perl handlers
//! (`tests/golden/api/`, see `pve-network-core/tests/golden/README.md`):
//! each step's status, message, per-parameter errors, data (value types
//! included) and `interfaces.new` afterwards, through the whole request
//! pipeline of [`Backend::handle`] (authenticated as a token of root@pam).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use pve_network_rs::api::{Backend, Request};
use pve_network_rs::links::LinkSource;
use pve_network_rs::paths::HostPaths;
use pve_network_rs::worker::TaskSpawner;
use serde_json::Value;

const TOKEN: &str = "PVEAPIToken=root@pam!golden=00000000-0000-0000-0000-000000000000";

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/api");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("golden/api")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

fn node_root(root: &Path, sc: &Value) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "etc/network/interfaces",
        sc["initial_interfaces"].as_str().unwrap(),
    );
    w(
        "etc/pve/user.cfg",
        "user:root@pam:1:0:::\ntoken:root@pam!golden:0:0::\n",
    );
    w(
        "etc/pve/priv/token.cfg",
        "root@pam!golden 00000000-0000-0000-0000-000000000000\n",
    );
    w("usr/share/ifupdown2/ifupdown2", "");
    w("links.json", &sc["links"].to_string());
    if sc["openvswitch"].as_bool() == Some(true) {
        w("usr/bin/ovs-vsctl", "#!/bin/sh\nexit 0\n");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("usr/bin/ovs-vsctl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
}

fn form(params: &serde_json::Map<String, Value>) -> String {
    let mut s = String::new();
    for (k, v) in params {
        if !s.is_empty() {
            s.push('&');
        }
        let enc = |t: &str| -> String {
            t.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        s.push_str(&enc(k));
        s.push('=');
        s.push_str(&enc(v.as_str().expect("string parameters")));
    }
    s
}

/// Perl's die location, which is not part of the contract.
fn strip_die(m: &str) -> String {
    match m.rfind(" at /usr/share/perl5/") {
        Some(i) if m[i..].trim_end().ends_with('.') && m[i..].contains(" line ") => {
            let nl = if m.ends_with('\n') { "\n" } else { "" };
            format!("{}{nl}", &m[..i])
        }
        _ => m.to_string(),
    }
}

/// Non-ASCII text where PVE's Perl, reading the file as bytes, encodes it
/// once more on every write (`Brücke` → `BrÃ¼cke`) and cuts a comment ending
/// in `à`: the Rust side keeps the text as it is (see the golden README). In
/// the steps of [`NON_ASCII`] everything else must still be PVE's.
fn mask_non_ascii(v: &Value) -> Value {
    match v {
        Value::String(s) if !s.is_ascii() => Value::String("<non-ASCII text>".into()),
        Value::Array(a) => Value::Array(a.iter().map(mask_non_ascii).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), mask_non_ascii(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn mask_non_ascii_lines(text: Option<&str>) -> Option<String> {
    text.map(|t| {
        t.lines()
            .map(|l| if l.is_ascii() { l } else { "<non-ASCII line>" })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// The scenario whose steps carry non-ASCII text.
const NON_ASCII: &str = "13-preserve";

fn sorted_list(v: &Value) -> Value {
    match v {
        Value::Array(items) if items.iter().all(|x| x.get("iface").is_some()) => {
            let mut items = items.clone();
            items.sort_by(|a, b| a["iface"].as_str().cmp(&b["iface"].as_str()));
            Value::Array(items)
        }
        other => other.clone(),
    }
}

#[test]
fn every_scenario_is_there() {
    let names: Vec<String> = scenarios()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 13, "{names:?}");
    let steps: usize = scenarios()
        .iter()
        .map(|p| {
            let sc: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            sc["steps"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(steps, 216);
}

#[tokio::test]
async fn answers_like_pves_handlers() {
    let mut failures = Vec::new();
    let mut total = 0;
    for path in scenarios() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let sc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        node_root(dir.path(), &sc);
        let paths = HostPaths::new(dir.path());
        let links = LinkSource::File(dir.path().join("links.json"));
        let tasks = TaskSpawner::new("/nonexistent", paths.clone(), links.clone());
        let backend = Arc::new(Backend::new("pve", paths, links, tasks));
        for (i, st) in sc["steps"].as_array().unwrap().iter().enumerate() {
            total += 1;
            let method = st["method"].as_str().unwrap();
            let params = st["params"].as_object().unwrap();
            let body = form(params);
            let (query, body) = if method == "GET" || method == "DELETE" {
                ((!body.is_empty()).then_some(body), String::new())
            } else {
                (None, body)
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, TOKEN.parse().unwrap());
            headers.insert(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded".parse().unwrap(),
            );
            let r = backend
                .handle(Request {
                    method: method.parse().unwrap(),
                    path: format!("/api2/json{}", st["path"].as_str().unwrap()),
                    query,
                    headers,
                    body: Some(Bytes::from(body)),
                })
                .await;
            let label = format!(
                "{name}#{} {method} {} {}",
                i + 1,
                st["path"],
                Value::Object(params.clone())
            );
            let got: Value = r
                .body
                .as_ref()
                .map(|(b, _)| serde_json::from_str(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            let want_status = st["status"].as_u64().unwrap() as u16;
            let mut probs = Vec::new();
            if r.status != want_status {
                probs.push(format!(
                    "status {} want {want_status} ({})",
                    r.status, r.reason
                ));
            }
            let want_msg = st["message"].as_str().map(strip_die);
            let got_msg = got
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string);
            if want_msg != got_msg {
                probs.push(format!("message {got_msg:?} want {want_msg:?}"));
            }
            if let Some(m) = &want_msg {
                let reason = m.split('\n').next().unwrap_or("");
                if r.reason != reason {
                    probs.push(format!("reason {:?} want {reason:?}", r.reason));
                }
            }
            let want_errors = &st["errors"];
            let got_errors = got.get("errors").cloned().unwrap_or(Value::Null);
            if *want_errors != got_errors {
                probs.push(format!("errors {got_errors} want {want_errors}"));
            }
            let masked = name == NON_ASCII;
            let mask = |v: Value| if masked { mask_non_ascii(&v) } else { v };
            let want_data = mask(sorted_list(&st["data"]));
            let got_data = mask(sorted_list(got.get("data").unwrap_or(&Value::Null)));
            if want_data != got_data {
                probs.push(format!(
                    "data\n      ours {got_data}\n      PVE  {want_data}"
                ));
            }
            let pending =
                std::fs::read_to_string(dir.path().join("etc/network/interfaces.new")).ok();
            let (mine, pves) = if masked {
                (
                    mask_non_ascii_lines(pending.as_deref()),
                    mask_non_ascii_lines(st["interfaces_new_after"].as_str()),
                )
            } else {
                (
                    pending.clone(),
                    st["interfaces_new_after"].as_str().map(str::to_string),
                )
            };
            if mine != pves {
                probs.push(format!(
                    "interfaces.new\n--- PVE\n{}\n--- ours\n{}",
                    st["interfaces_new_after"].as_str().unwrap_or("(none)"),
                    pending.as_deref().unwrap_or("(none)")
                ));
            }
            if !probs.is_empty() {
                failures.push(format!("{label}\n    {}", probs.join("\n    ")));
            }
        }
    }
    assert_eq!(total, 216);
    assert!(
        failures.is_empty(),
        "{} of {total} steps differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
