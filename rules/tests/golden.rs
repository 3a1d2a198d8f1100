//! Golden tests: every `tests/fixtures/*.json` is one Perl/Rust exchange
//! pair with the expected endpoint, verdict, patch and type-only pointers.
//!
//! Fixture format:
//! ```json
//! {
//!   "description": "…",
//!   "request": {"method": "GET", "path": "/api2/json/nodes/pve1/network"},
//!   "rules": "optional operator TOML layered on the defaults",
//!   "noise_model": {"threshold": 1, "endpoints": {"id": {"/body/x": 1}}},
//!   "perl": {"status": 200, "reason": "OK", "headers": {…},
//!            "body": <JSON value> | "body_text": "<raw body>"},
//!   "rust": {…},
//!   "expect": {"endpoint": "…", "verdict": "match", "critical": null,
//!              "patch": [RFC 6902 ops], "type_only": [{"pointer", "kind"}],
//!              "masked": [optional], "noise": [optional]}
//! }
//! ```
//! Missing `headers` means `content-type: application/json;charset=UTF-8`;
//! neither `body` nor `body_text` means an empty body.

use std::collections::BTreeMap;
use std::path::Path;

use pve_migration_rules::{Exchange, NoiseModel, RuleSet};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    description: String,
    request: Request,
    #[serde(default)]
    rules: Option<String>,
    #[serde(default)]
    noise_model: Option<Value>,
    perl: Side,
    rust: Side,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    method: String,
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Side {
    status: u16,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    body_text: Option<String>,
}

impl Side {
    fn parts(&self) -> (Vec<(String, String)>, Vec<u8>) {
        let headers = match &self.headers {
            Some(h) => h.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => vec![(
                "Content-Type".to_owned(),
                "application/json;charset=UTF-8".to_owned(),
            )],
        };
        let body = match (&self.body, &self.body_text) {
            (Some(v), None) => serde_json::to_vec(v).unwrap(),
            (None, Some(t)) => t.as_bytes().to_vec(),
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => panic!("both body and body_text"),
        };
        (headers, body)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    endpoint: String,
    verdict: Value,
    #[serde(default)]
    critical: Option<String>,
    patch: Value,
    type_only: Vec<Hit>,
    #[serde(default)]
    masked: Option<Vec<String>>,
    #[serde(default)]
    noise: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
#[serde(deny_unknown_fields)]
struct Hit {
    pointer: String,
    kind: String,
}

fn check(path: &Path, defaults: &RuleSet) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let fx: Fixture = serde_json::from_str(&text).map_err(|e| format!("bad fixture: {e}"))?;
    assert!(!fx.description.is_empty());
    let layered;
    let rules = match &fx.rules {
        Some(layer) => {
            layered = RuleSet::load(&[("fixture.toml", layer)]).map_err(|e| e.to_string())?;
            &layered
        }
        None => defaults,
    };
    let noise = match &fx.noise_model {
        Some(v) => Some(NoiseModel::from_json(&v.to_string()).map_err(|e| e.to_string())?),
        None => None,
    };
    let m = rules
        .route(&fx.request.method, &fx.request.path)
        .ok_or("request not routed")?;
    let ep = m.endpoint();
    let mut errors = Vec::new();
    if ep.id() != fx.expect.endpoint {
        errors.push(format!(
            "endpoint: got {} want {}",
            ep.id(),
            fx.expect.endpoint
        ));
    }

    let (ph, pb) = fx.perl.parts();
    let (rh, rb) = fx.rust.parts();
    let ph: Vec<(&str, &str)> = ph.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let rh: Vec<(&str, &str)> = rh.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut perl = Exchange::new(fx.perl.status, &pb).with_headers(&ph);
    if let Some(r) = &fx.perl.reason {
        perl = perl.with_reason(r);
    }
    let mut rust = Exchange::new(fx.rust.status, &rb).with_headers(&rh);
    if let Some(r) = &fx.rust.reason {
        rust = rust.with_reason(r);
    }

    let cmp = rules.compare(ep, m.format(), &perl, &rust, noise.as_ref());

    let verdict = serde_json::to_value(cmp.verdict).unwrap();
    if verdict != fx.expect.verdict {
        errors.push(format!("verdict: got {verdict} want {}", fx.expect.verdict));
    }
    let critical = cmp.critical.map(|c| c.as_str().to_owned());
    if critical != fx.expect.critical {
        errors.push(format!(
            "critical: got {critical:?} want {:?}",
            fx.expect.critical
        ));
    }
    let patch = serde_json::to_value(&cmp.patch).unwrap();
    if patch != fx.expect.patch {
        errors.push(format!("patch: got {patch}\n    want {}", fx.expect.patch));
    }
    let mut got: Vec<Hit> = cmp
        .type_only
        .iter()
        .map(|h| Hit {
            pointer: h.pointer.clone(),
            kind: h.kind.as_str().to_owned(),
        })
        .collect();
    got.sort();
    let mut want = fx.expect.type_only.clone();
    want.sort();
    if got != want {
        errors.push(format!(
            "type_only: got {}",
            serde_json::to_string(
                &got.iter()
                    .map(|h| serde_json::json!({"pointer": h.pointer, "kind": h.kind}))
                    .collect::<Vec<_>>()
            )
            .unwrap()
        ));
    }
    if let Some(masked) = &fx.expect.masked
        && &cmp.masked != masked
    {
        errors.push(format!("masked: got {:?} want {masked:?}", cmp.masked));
    }
    if let Some(noise) = &fx.expect.noise
        && &cmp.noise != noise
    {
        errors.push(format!("noise: got {:?} want {noise:?}", cmp.noise));
    }

    // Invariants: the patch turns normalised Perl into normalised Rust, and
    // the comparison is deterministic.
    let (mut a, mut b) = ep.envelopes(&perl, &rust);
    ep.normalise_pair(&mut a, &mut b);
    if cmp.patch != json_patch::diff(&a, &b) {
        errors.push("patch differs from json_patch::diff of the normalised envelopes".into());
    }
    json_patch::patch(&mut a, &cmp.patch).map_err(|e| format!("patch does not apply: {e}"))?;
    if a != b {
        errors.push("patched normalised Perl differs from normalised Rust".into());
    }
    let again = rules.compare(ep, m.format(), &perl, &rust, noise.as_ref());
    if again != cmp {
        errors.push("comparison is not deterministic".into());
    }
    assert_eq!(cmp.fingerprint.len(), 16);

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n  "))
    }
}

#[test]
fn golden_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    // Every fixture counts: a lost file must fail here, not shrink the suite.
    assert_eq!(
        files.len(),
        42,
        "fixtures in {}: update the count with the files",
        dir.display()
    );
    let rules = RuleSet::with_defaults();
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = check(file, &rules) {
            failures.push(format!(
                "{}:\n  {e}",
                file.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
