//! Fault injection: what a misbehaving backend does on command.
//!
//! A [`Fault`] is a [`FaultKind`] plus a [`FaultScope`]. Faults are given at
//! start-up (`--fault KIND[=VALUE]`, [`crate::SimConfig::faults`]) and changed
//! at run time through [`crate::SimHandle::set_faults`] or the control
//! endpoint `/_sim/faults` ([`crate::control`]).
//!
//! Faults apply to API requests (`/api2/{json,extjs}/…`) except
//! `/access/ticket`, so a client can always log in. Each kind is counted in
//! [`crate::server::FaultHits`] whenever it changed what a request saw.
//!
//! | kind | what the client sees |
//! |---|---|
//! | `latency=MS[+JITTER]` | the answer, `MS` (plus up to `JITTER`) milliseconds late; the request is carried out first |
//! | `delay=MS` | the request waits `MS` milliseconds before it is carried out (pveproxy handing a write to a busy pvedaemon worker) |
//! | `error-rate=P` | with probability `P`, `500 Internal Server Error` in pveproxy's format; nothing is carried out |
//! | `reset-before-head` | the request is read and carried out, then the TCP connection is reset without a byte of answer |
//! | `reset-after-head` | status line, headers and half the body, then a reset |
//! | `malformed-json` | `200 OK` with the real body cut in half (invalid JSON) |
//! | `refuse` | the listening socket is closed (connects get `ECONNREFUSED`); clearing it binds the same port again |
//! | `auth-bypass` | every request is answered as `root@pam` without looking at credentials |
//!
//! `error-rate` draws from a generator seeded with [`crate::SimConfig::seed`]
//! and advanced once per eligible request, so the same request sequence always
//! fails the same way.

use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

/// One kind of misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// Hold every answer back by `ms` plus a pseudo-random `0..=jitter_ms`.
    Latency {
        /// Fixed delay in milliseconds.
        ms: u64,
        /// Upper bound of the added random delay in milliseconds.
        jitter_ms: u64,
    },
    /// Hold every request back by `ms` before carrying it out.
    Delay {
        /// Delay in milliseconds.
        ms: u64,
    },
    /// Answer `500` instead of handling the request with this probability
    /// (`0.0..=1.0`).
    ErrorRate(f64),
    /// Read (and carry out) the request, then reset the connection before
    /// any byte of the answer.
    ResetBeforeHead,
    /// Send the status line, the headers and half the body, then reset.
    ResetAfterHead,
    /// Answer `200` with the body cut in half.
    MalformedJson,
    /// Close the listening socket while the fault is set.
    Refuse,
    /// Skip authentication: every request acts as `root@pam`.
    AuthBypass,
}

impl FaultKind {
    /// Every kind's name, as accepted by [`Fault::from_str`].
    pub const NAMES: [&'static str; 8] = [
        "latency",
        "delay",
        "error-rate",
        "reset-before-head",
        "reset-after-head",
        "malformed-json",
        "refuse",
        "auth-bypass",
    ];

    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Latency { .. } => "latency",
            FaultKind::Delay { .. } => "delay",
            FaultKind::ErrorRate(_) => "error-rate",
            FaultKind::ResetBeforeHead => "reset-before-head",
            FaultKind::ResetAfterHead => "reset-after-head",
            FaultKind::MalformedJson => "malformed-json",
            FaultKind::Refuse => "refuse",
            FaultKind::AuthBypass => "auth-bypass",
        }
    }

    /// The value part of `KIND=VALUE`, if the kind has one.
    pub fn value(&self) -> Option<String> {
        match self {
            FaultKind::Latency { ms, jitter_ms: 0 } => Some(ms.to_string()),
            FaultKind::Latency { ms, jitter_ms } => Some(format!("{ms}+{jitter_ms}")),
            FaultKind::Delay { ms } => Some(ms.to_string()),
            FaultKind::ErrorRate(p) => Some(p.to_string()),
            _ => None,
        }
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultScope {
    /// Every API request (except `/access/ticket`).
    #[default]
    All,
    /// Only requests that are not `GET` or `HEAD`.
    Writes,
}

impl FaultScope {
    /// `all` or `writes`.
    pub fn name(self) -> &'static str {
        match self {
            FaultScope::All => "all",
            FaultScope::Writes => "writes",
        }
    }

    /// Whether a request with this method is in scope.
    pub fn covers(self, method: &Method) -> bool {
        match self {
            FaultScope::All => true,
            FaultScope::Writes => *method != Method::GET && *method != Method::HEAD,
        }
    }
}

impl FromStr for FaultScope {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(FaultScope::All),
            "writes" => Ok(FaultScope::Writes),
            _ => Err(FaultError(format!(
                "invalid fault scope '{s}' (expected 'all' or 'writes')"
            ))),
        }
    }
}

/// A fault and the requests it applies to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// To which requests.
    pub scope: FaultScope,
}

impl Fault {
    /// A fault for every API request.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            scope: FaultScope::All,
        }
    }

    /// The same fault, limited to writes (not `GET`/`HEAD`).
    pub fn writes_only(self) -> Self {
        Self {
            scope: FaultScope::Writes,
            ..self
        }
    }

    /// The same fault with another scope.
    pub fn with_scope(self, scope: FaultScope) -> Self {
        Self { scope, ..self }
    }

    /// Parses `KIND[=VALUE]` (see the module docs for the kinds).
    ///
    /// # Errors
    /// A [`FaultError`] naming what is wrong, e.g. `error-rate must be
    /// between 0 and 1`.
    pub fn parse(s: &str) -> Result<Self, FaultError> {
        s.parse()
    }

    /// The fault as JSON (what `GET /_sim/faults` shows).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"kind": self.kind.name(), "scope": self.scope.name()});
        if let Some(value) = self.kind.value() {
            v["value"] = Value::from(value);
        }
        v
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        if let Some(v) = self.kind.value() {
            write!(f, "={v}")?;
        }
        Ok(())
    }
}

/// A fault specification that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FaultError(pub String);

fn err(msg: impl Into<String>) -> FaultError {
    FaultError(msg.into())
}

fn parse_ms(s: &str, whole: &str) -> Result<u64, FaultError> {
    s.trim().parse().map_err(|_| {
        err(format!(
            "invalid latency '{whole}': expected MS or MS+JITTER in whole milliseconds"
        ))
    })
}

impl FromStr for Fault {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (s.trim(), None),
        };
        let no_value = |kind: FaultKind| match value {
            None => Ok(kind),
            Some(_) => Err(err(format!("fault '{name}' takes no value"))),
        };
        let kind = match name {
            "latency" => {
                let v = value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| err("latency needs a value: latency=MS or latency=MS+JITTER"))?;
                let (ms, jitter_ms) = match v.split_once('+') {
                    Some((a, b)) => (parse_ms(a, v)?, parse_ms(b, v)?),
                    None => (parse_ms(v, v)?, 0),
                };
                FaultKind::Latency { ms, jitter_ms }
            }
            "delay" => {
                let v = value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| err("delay needs a value: delay=MS"))?;
                let ms = v.parse().map_err(|_| {
                    err(format!("invalid delay '{v}': expected whole milliseconds"))
                })?;
                FaultKind::Delay { ms }
            }
            "error-rate" => {
                let v = value.filter(|v| !v.is_empty()).ok_or_else(|| {
                    err("error-rate needs a value: error-rate=P with 0 <= P <= 1")
                })?;
                let p: f64 = v
                    .parse()
                    .map_err(|_| err(format!("invalid error-rate '{v}': expected a number")))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(err("error-rate must be between 0 and 1"));
                }
                FaultKind::ErrorRate(p)
            }
            "reset-before-head" => no_value(FaultKind::ResetBeforeHead)?,
            "reset-after-head" => no_value(FaultKind::ResetAfterHead)?,
            "malformed-json" => no_value(FaultKind::MalformedJson)?,
            "refuse" => no_value(FaultKind::Refuse)?,
            "auth-bypass" => no_value(FaultKind::AuthBypass)?,
            _ => {
                return Err(err(format!(
                    "unknown fault kind '{name}' (known: {})",
                    FaultKind::NAMES.join(", ")
                )));
            }
        };
        Ok(Fault::new(kind))
    }
}

// ---------------------------------------------------------------------------
// the control endpoint's JSON

/// One entry of `{"faults": [...]}`: `"KIND[=VALUE]"` or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FaultSpec {
    Text(String),
    Object(FaultObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultObject {
    kind: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    #[serde(default)]
    faults: Vec<FaultSpec>,
    /// Default scope of entries without their own.
    #[serde(default)]
    scope: Option<String>,
}

/// Parses the body of `PUT/POST /_sim/faults`:
/// `{"faults": ["latency=200", {"kind": "reset-before-head", "scope": "writes"}], "scope": "all"}`.
///
/// # Errors
/// Malformed JSON or an invalid fault.
pub fn parse_fault_request(body: &[u8]) -> Result<Vec<Fault>, FaultError> {
    let req: FaultRequest =
        serde_json::from_slice(body).map_err(|e| err(format!("invalid fault request: {e}")))?;
    let default_scope = match &req.scope {
        Some(s) => s.parse()?,
        None => FaultScope::All,
    };
    req.faults
        .into_iter()
        .map(|spec| match spec {
            FaultSpec::Text(s) => Ok(Fault::parse(&s)?.with_scope(default_scope)),
            FaultSpec::Object(o) => {
                let text = match o.value {
                    None | Some(Value::Null) => o.kind,
                    Some(Value::String(v)) => format!("{}={v}", o.kind),
                    Some(Value::Number(n)) => format!("{}={n}", o.kind),
                    Some(other) => {
                        return Err(err(format!("invalid value {other} for fault '{}'", o.kind)));
                    }
                };
                let scope = match &o.scope {
                    Some(s) => s.parse()?,
                    None => default_scope,
                };
                Ok(Fault::parse(&text)?.with_scope(scope))
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// the run-time state

/// How the answer to one request is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Shape {
    /// The normal answer.
    #[default]
    Normal,
    /// `500` instead of handling the request.
    Error,
    /// Reset before the head.
    ResetBeforeHead,
    /// Reset after the head and half the body.
    ResetAfterHead,
    /// The body cut in half.
    MalformedJson,
}

/// What the active faults do to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Before the request is carried out.
    pub(crate) delay: Option<Duration>,
    /// After it was carried out, before the answer.
    pub(crate) latency: Option<Duration>,
    pub(crate) shape: Shape,
    pub(crate) auth_bypass: bool,
}

/// SplitMix64 finaliser: turns a counter into well-mixed bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The active faults and the deterministic generator behind `error-rate`
/// and latency jitter.
#[derive(Debug)]
pub(crate) struct FaultState {
    active: RwLock<Vec<Fault>>,
    seed: u64,
    draws: AtomicU64,
}

impl FaultState {
    pub(crate) fn new(faults: Vec<Fault>, seed: u64) -> Self {
        Self {
            active: RwLock::new(faults),
            seed,
            draws: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self) -> Vec<Fault> {
        self.active.read().expect("not poisoned").clone()
    }

    pub(crate) fn set(&self, faults: Vec<Fault>) {
        *self.active.write().expect("not poisoned") = faults;
    }

    pub(crate) fn refusing(&self) -> bool {
        self.get().iter().any(|f| f.kind == FaultKind::Refuse)
    }

    /// A uniform number in `[0, 1)`, the next in the seeded sequence.
    fn draw(&self) -> f64 {
        let n = self.draws.fetch_add(1, Ordering::SeqCst);
        let bits = mix(self.seed ^ mix(n));
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Decides what the active faults do to a request with this method.
    pub(crate) fn plan(&self, method: &Method) -> Plan {
        let faults = self.get();
        let mut plan = Plan::default();
        let set_shape = |plan: &mut Plan, shape: Shape| {
            // The most drastic fault wins: error, then the resets, then a cut body.
            let rank = |s: Shape| match s {
                Shape::Normal => 0,
                Shape::MalformedJson => 1,
                Shape::ResetAfterHead => 2,
                Shape::ResetBeforeHead => 3,
                Shape::Error => 4,
            };
            if rank(shape) > rank(plan.shape) {
                plan.shape = shape;
            }
        };
        for f in faults.iter().filter(|f| f.scope.covers(method)) {
            match f.kind {
                FaultKind::Latency { ms, jitter_ms } => {
                    let jitter = if jitter_ms == 0 {
                        0
                    } else {
                        (self.draw() * (jitter_ms + 1) as f64) as u64
                    };
                    let total = plan.latency.unwrap_or_default()
                        + Duration::from_millis(ms + jitter.min(jitter_ms));
                    plan.latency = Some(total);
                }
                FaultKind::Delay { ms } => {
                    plan.delay = Some(plan.delay.unwrap_or_default() + Duration::from_millis(ms));
                }
                FaultKind::ErrorRate(p) => {
                    if p >= 1.0 || (p > 0.0 && self.draw() < p) {
                        set_shape(&mut plan, Shape::Error);
                    }
                }
                FaultKind::ResetBeforeHead => set_shape(&mut plan, Shape::ResetBeforeHead),
                FaultKind::ResetAfterHead => set_shape(&mut plan, Shape::ResetAfterHead),
                FaultKind::MalformedJson => set_shape(&mut plan, Shape::MalformedJson),
                FaultKind::AuthBypass => plan.auth_bypass = true,
                FaultKind::Refuse => {}
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_kinds_and_errors() {
        assert_eq!(
            Fault::parse("latency=200").unwrap().kind,
            FaultKind::Latency {
                ms: 200,
                jitter_ms: 0
            }
        );
        assert_eq!(
            Fault::parse("latency=200+50").unwrap().kind,
            FaultKind::Latency {
                ms: 200,
                jitter_ms: 50
            }
        );
        assert_eq!(
            Fault::parse("error-rate=0.25").unwrap().kind,
            FaultKind::ErrorRate(0.25)
        );
        assert_eq!(
            Fault::parse("error-rate=2").unwrap_err().0,
            "error-rate must be between 0 and 1"
        );
        assert_eq!(
            Fault::parse("error-rate=-0.1").unwrap_err().0,
            "error-rate must be between 0 and 1"
        );
        assert!(Fault::parse("error-rate").is_err());
        assert!(Fault::parse("latency").is_err());
        assert!(Fault::parse("latency=fast").is_err());
        assert_eq!(
            Fault::parse("delay=25").unwrap().kind,
            FaultKind::Delay { ms: 25 }
        );
        assert_eq!(
            Fault::parse("delay").unwrap_err().0,
            "delay needs a value: delay=MS"
        );
        assert_eq!(
            Fault::parse("delay=soon").unwrap_err().0,
            "invalid delay 'soon': expected whole milliseconds"
        );
        assert_eq!(
            Fault::parse("refuse=1").unwrap_err().0,
            "fault 'refuse' takes no value"
        );
        assert!(
            Fault::parse("explode")
                .unwrap_err()
                .0
                .starts_with("unknown fault kind 'explode'")
        );
        for name in FaultKind::NAMES {
            let text = match name {
                "latency" => "latency=5+1".to_string(),
                "delay" => "delay=5".to_string(),
                "error-rate" => "error-rate=0.5".to_string(),
                n => n.to_string(),
            };
            let f = Fault::parse(&text).unwrap();
            assert_eq!(f.kind.name(), name);
            assert_eq!(f.to_string(), text);
        }
        assert_eq!("writes".parse::<FaultScope>().unwrap(), FaultScope::Writes);
        assert!("reads".parse::<FaultScope>().is_err());
    }

    #[test]
    fn request_json() {
        let faults = parse_fault_request(
            br#"{"faults": ["latency=10", {"kind": "error-rate", "value": 1},
                 {"kind": "reset-before-head", "scope": "writes"}], "scope": "all"}"#,
        )
        .unwrap();
        assert_eq!(faults.len(), 3);
        assert_eq!(faults[1].kind, FaultKind::ErrorRate(1.0));
        assert_eq!(faults[2].scope, FaultScope::Writes);
        let faults = parse_fault_request(br#"{"faults": ["refuse"], "scope": "writes"}"#).unwrap();
        assert_eq!(faults[0].scope, FaultScope::Writes);
        assert!(parse_fault_request(br#"{"faults": ["error-rate=3"]}"#).is_err());
        assert!(parse_fault_request(br#"{"fault": []}"#).is_err());
        assert!(parse_fault_request(b"{").is_err());
        assert_eq!(parse_fault_request(b"{}").unwrap(), vec![]);
    }

    #[test]
    fn plans_are_deterministic_and_scoped() {
        let faults = vec![
            Fault::parse("error-rate=0.5").unwrap(),
            Fault::parse("latency=10+5").unwrap(),
            Fault::parse("reset-after-head").unwrap().writes_only(),
        ];
        let a = FaultState::new(faults.clone(), 7);
        let b = FaultState::new(faults, 7);
        let pa: Vec<Plan> = (0..64).map(|_| a.plan(&Method::GET)).collect();
        let pb: Vec<Plan> = (0..64).map(|_| b.plan(&Method::GET)).collect();
        assert_eq!(pa, pb);
        let errors = pa.iter().filter(|p| p.shape == Shape::Error).count();
        assert!(errors > 10 && errors < 54, "{errors} of 64");
        assert!(pa.iter().all(|p| p.shape != Shape::ResetAfterHead));
        for p in &pa {
            let l = p.latency.unwrap();
            assert!(l >= Duration::from_millis(10) && l <= Duration::from_millis(15));
        }
        let w = a.plan(&Method::POST);
        assert!(matches!(w.shape, Shape::ResetAfterHead | Shape::Error));

        let always = FaultState::new(vec![Fault::parse("error-rate=1").unwrap()], 0);
        assert!((0..32).all(|_| always.plan(&Method::GET).shape == Shape::Error));
        let never = FaultState::new(vec![Fault::parse("error-rate=0").unwrap()], 0);
        assert!((0..32).all(|_| never.plan(&Method::GET).shape == Shape::Normal));
        let bypass = FaultState::new(vec![Fault::parse("auth-bypass").unwrap()], 0);
        assert!(bypass.plan(&Method::DELETE).auth_bypass);
        assert!(!bypass.refusing());
    }
}
