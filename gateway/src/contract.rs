//! `contract-test`: compare the Perl and the Rust backend directly, outside
//! the gateway, with the gateway's rules engine.
//!
//! The binary (`src/bin/contract_test.rs`) is a thin CLI over this module:
//!
//! * [`Backend`] — one backend URL with its TLS trust and credentials
//!   (`PVEAPIToken` header, or a ticket from `POST /api2/json/access/ticket`
//!   sent as the `PVEAuthCookie` cookie plus `CSRFPreventionToken` on writes);
//! * [`RequestSpec`] — a request as the operator wrote it (`--endpoint`,
//!   `--method`, `--data`, or one `[[request]]` of a suite file), resolved
//!   into a [`Prepared`] request that the rules route;
//! * [`Runner`] — sends a prepared request to both backends and compares the
//!   answers ([`Outcome`]), which can be written as an [`EvidenceRecord`];
//! * [`load_evidence`] and [`replay_candidates`] — the mismatching GET
//!   exchanges of an evidence store (or of a `--output` file) to re-check.
//!
//! Safety: a write (POST/PUT/DELETE) is only ever sent with `X-PVE-Dry-Run: 1`,
//! first to Rust (which must honour the marker) and then to Perl. pveproxy's
//! Perl code does not know the marker and carries the write out; see the
//! binary's `--dry-run` help.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use pve_migration_certs::upstream::UpstreamTrust;
use pve_migration_rules::{ApiFormat, EndpointClass, Exchange, RuleSet, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Answer, HttpsClient, read_answer};
use crate::evidence::{EvidenceRecord, SideRecord, StoredBodies};
use crate::trace::TraceContext;

/// The dry-run marker (docs/design.md, invariant 5): validate, answer as if applied, change nothing.
pub const DRY_RUN_HEADER: &str = "x-pve-dry-run";
/// The default time allowed for one answer (connect, TLS, request, body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many type-only hits an [`Outcome`] lists (the count covers all).
pub const MAX_TYPE_ONLY_LISTED: usize = 50;
/// The `phase` and `kind` stamped on records written by `contract-test`.
pub const RECORD_KIND: &str = "contract-test";

/// Why `contract-test` could not produce a comparison (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// Bad arguments or input files.
    #[error("{0}")]
    Usage(String),
    /// The request is not a migrated endpoint.
    #[error("{method} {path}: not a migrated endpoint (no route in the rules{hint})")]
    NoRoute {
        /// The method.
        method: String,
        /// The full path.
        path: String,
        /// Extra explanation.
        hint: String,
    },
    /// A backend could not be reached or did not answer.
    #[error("{backend} backend {url}: {message}")]
    Backend {
        /// `perl` or `rust`.
        backend: &'static str,
        /// The backend's URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Logging in failed.
    #[error("{backend} backend {url}: login as {user} failed: {message}")]
    Login {
        /// `perl` or `rust`.
        backend: &'static str,
        /// The backend's URL.
        url: String,
        /// The user.
        user: String,
        /// The status and PVE's message.
        message: String,
    },
    /// Both backends refused the credentials: nothing to compare.
    #[error(
        "{method} {path}: both backends refused the credentials (perl: {perl}, rust: {rust}); check --token / --user"
    )]
    Unauthorized {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// Perl's status and reason.
        perl: String,
        /// Rust's status and reason.
        rust: String,
    },
}

fn usage(message: impl Into<String>) -> ContractError {
    ContractError::Usage(message.into())
}

/// A password that never appears in `Debug` output.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: String) -> Self {
        Self(password)
    }

    /// Reads the first line of a file (without its line end).
    ///
    /// # Errors
    /// When the file cannot be read or the line is empty.
    pub fn from_file(path: &Path) -> Result<Self, ContractError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("--password-file {}: {e}", path.display())))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(usage(format!(
                "--password-file {}: the first line is empty",
                path.display()
            )));
        }
        Ok(Self(line.to_owned()))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// How to authenticate, like proxmoxer.
#[derive(Clone)]
pub enum Credentials {
    /// An API token `USER@REALM!ID=SECRET`, sent as `Authorization: PVEAPIToken=…`.
    Token(String),
    /// A user and password: a ticket is requested from each backend.
    User {
        /// `USER@REALM`.
        user: String,
        /// The password.
        password: Password,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(t) => {
                let id = t.split_once('=').map_or("?", |(id, _)| id);
                write!(f, "Token({id}=<redacted>)")
            }
            Credentials::User { user, .. } => write!(f, "User({user})"),
        }
    }
}

impl Credentials {
    /// Parses `USER@REALM!ID=SECRET` (a leading `PVEAPIToken=` is accepted).
    ///
    /// # Errors
    /// When the value does not have that shape.
    pub fn token(value: &str) -> Result<Self, ContractError> {
        let value = value.trim();
        let value = value.strip_prefix("PVEAPIToken=").unwrap_or(value);
        let ok = value.split_once('=').is_some_and(|(id, secret)| {
            !secret.is_empty()
                && id
                    .split_once('!')
                    .is_some_and(|(user, tid)| user.contains('@') && !tid.is_empty())
        });
        if !ok || HeaderValue::from_str(value).is_err() {
            // The value is a secret: do not echo it.
            return Err(usage(
                "--token: expected USER@REALM!TOKENID=SECRET (e.g. root@pam!ci=0000…)",
            ));
        }
        Ok(Credentials::Token(value.to_owned()))
    }

    /// A user (`USER@REALM`) and password.
    ///
    /// # Errors
    /// When the user has no realm.
    pub fn user(user: &str, password: Password) -> Result<Self, ContractError> {
        if !user.contains('@') || user.starts_with('@') || user.ends_with('@') {
            return Err(usage(format!(
                "--user {user}: expected USER@REALM (e.g. root@pam)"
            )));
        }
        Ok(Credentials::User {
            user: user.to_owned(),
            password,
        })
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Token(HeaderValue),
    Ticket {
        cookie: HeaderValue,
        csrf: HeaderValue,
    },
}

/// One backend: URL, TLS client and, after [`Backend::login`], credentials.
#[derive(Clone)]
pub struct Backend {
    name: &'static str,
    url: String,
    host: String,
    port: u16,
    authority: HeaderValue,
    client: HttpsClient,
    timeout: Duration,
    auth: Auth,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The latency of an answer.
#[derive(Debug, Clone)]
pub struct Timed {
    /// The answer.
    pub answer: Answer,
    /// Time to the complete answer.
    pub latency: Duration,
}

impl Backend {
    /// A backend `name` (`perl` or `rust`) at `url` (`https://host[:port]`,
    /// port 443 when absent), verified as `trust` says against the URL's host.
    ///
    /// # Errors
    /// A URL that is not `https://host[:port]`, or an unusable trust setting.
    pub fn new(
        name: &'static str,
        url: &str,
        trust: &UpstreamTrust,
        timeout: Duration,
    ) -> Result<Self, ContractError> {
        let flag = format!("--{name}-url");
        let uri: Uri = url
            .parse()
            .map_err(|_| usage(format!("{flag} '{url}' is not a URL")))?;
        if uri.scheme_str() != Some("https") {
            return Err(usage(format!(
                "{flag} '{url}': only https:// is supported (pveproxy speaks TLS only)"
            )));
        }
        let Some(authority) = uri.authority() else {
            return Err(usage(format!("{flag} '{url}': missing host")));
        };
        if (!uri.path().is_empty() && uri.path() != "/") || uri.query().is_some() {
            return Err(usage(format!(
                "{flag} '{url}': must not have a path (give the API path with --endpoint)"
            )));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(443);
        let client = HttpsClient::new(trust, &host).map_err(|e| ContractError::Backend {
            backend: name,
            url: url.to_owned(),
            message: format!("TLS setup: {}", e.message),
        })?;
        let authority = HeaderValue::from_str(authority.as_str())
            .map_err(|_| usage(format!("{flag} '{url}': invalid host")))?;
        Ok(Self {
            name,
            url: url.trim_end_matches('/').to_owned(),
            host,
            port,
            authority,
            client,
            timeout,
            auth: Auth::None,
        })
    }

    /// `perl` or `rust`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, message: impl Into<String>) -> ContractError {
        ContractError::Backend {
            backend: self.name,
            url: self.url.clone(),
            message: message.into(),
        }
    }

    /// Sets up authentication: a token header, or a ticket from this backend.
    ///
    /// # Errors
    /// When the backend cannot be reached or refuses the login.
    pub async fn login(&mut self, credentials: &Credentials) -> Result<(), ContractError> {
        match credentials {
            Credentials::Token(token) => {
                let mut v = HeaderValue::from_str(&format!("PVEAPIToken={token}"))
                    .map_err(|_| usage("--token: not a valid header value"))?;
                v.set_sensitive(true);
                self.auth = Auth::Token(v);
                Ok(())
            }
            Credentials::User { user, password } => {
                let body = form_urlencoded::Serializer::new(String::new())
                    .append_pair("username", user)
                    .append_pair("password", &password.0)
                    .finish();
                let login_error = |message: String| ContractError::Login {
                    backend: self.name,
                    url: self.url.clone(),
                    user: user.clone(),
                    message,
                };
                let t = self
                    .send(
                        &Method::POST,
                        "/api2/json/access/ticket",
                        Some(Bytes::from(body)),
                        false,
                        None,
                    )
                    .await?;
                let a = &t.answer;
                if !a.status.is_success() {
                    return Err(login_error(format!(
                        "{} {}",
                        a.status.as_u16(),
                        a.reason.trim_end()
                    )));
                }
                let data = &a.json()["data"];
                if data.get("NeedTFA").is_some_and(|v| !v.is_null()) {
                    return Err(login_error(
                        "the user needs a second factor (TFA); use an API token (--token)".into(),
                    ));
                }
                let (Some(ticket), Some(csrf)) = (
                    data["ticket"].as_str(),
                    data["CSRFPreventionToken"].as_str(),
                ) else {
                    return Err(login_error(format!(
                        "{} {}, but the answer has no ticket and CSRFPreventionToken",
                        a.status.as_u16(),
                        a.reason.trim_end()
                    )));
                };
                let bad = |_| login_error("the ticket is not a valid header value".into());
                let mut cookie =
                    HeaderValue::from_str(&format!("PVEAuthCookie={ticket}")).map_err(bad)?;
                cookie.set_sensitive(true);
                let mut csrf = HeaderValue::from_str(csrf).map_err(bad)?;
                csrf.set_sensitive(true);
                self.auth = Auth::Ticket { cookie, csrf };
                Ok(())
            }
        }
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<crate::body::Body>, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        let mut last = format!("{} resolves to no address", self.host);
        for addr in addrs {
            match self.client.connect(addr).await {
                Ok(send) => return Ok(send),
                Err(e) if e.message.contains("invalid peer certificate") => {
                    last = format!(
                        "cannot connect: {e} (check --ca / --{0}-ca / --{0}-fingerprint)",
                        self.name
                    );
                }
                Err(e) => last = format!("cannot connect: {e}"),
            }
        }
        Err(last)
    }

    /// Sends one request (with this backend's credentials) and reads the answer.
    ///
    /// # Errors
    /// Connect, TLS, HTTP failures and the timeout, naming the backend and URL.
    pub async fn send(
        &self,
        method: &Method,
        path_and_query: &str,
        form: Option<Bytes>,
        dry_run: bool,
        trace: Option<&TraceContext>,
    ) -> Result<Timed, ContractError> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(HOST, self.authority.clone())
            .header(
                USER_AGENT,
                concat!("contract-test/", env!("CARGO_PKG_VERSION")),
            );
        match &self.auth {
            Auth::None => {}
            Auth::Token(v) => b = b.header(AUTHORIZATION, v.clone()),
            Auth::Ticket { cookie, csrf } => {
                b = b.header(COOKIE, cookie.clone());
                if method != Method::GET {
                    b = b.header("csrfpreventiontoken", csrf.clone());
                }
            }
        }
        if dry_run {
            b = b.header(DRY_RUN_HEADER, "1");
        }
        if let Some(t) = trace {
            b = b.header("traceparent", t.child_header());
        }
        let body = form.unwrap_or_default();
        if !body.is_empty() || *method == Method::POST || *method == Method::PUT {
            b = b
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(CONTENT_LENGTH, body.len());
        }
        let req = b
            .body(crate::body::full(body))
            .map_err(|e| usage(format!("{method} {path_and_query}: invalid request: {e}")))?;
        let started = Instant::now();
        let call = async {
            let mut send = self.connect().await?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| format!("{method} {path_and_query}: {e}"))?;
            read_answer(resp)
                .await
                .map_err(|e| format!("{method} {path_and_query}: reading the answer: {e}"))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) => Ok(Timed {
                answer,
                latency: started.elapsed(),
            }),
            Ok(Err(message)) => Err(self.error(message)),
            Err(_) => Err(self.error(format!(
                "{method} {path_and_query}: no complete answer within {} s",
                self.timeout.as_secs_f64()
            ))),
        }
    }
}

/// A request as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// A label (suite files).
    pub name: Option<String>,
    /// `GET`, `POST`, `PUT` or `DELETE` (any case).
    pub method: String,
    /// Relative to `/api2/json` (`/nodes/{node}/network`) or a full
    /// `/api2/json/…` / `/api2/extjs/…` path, optionally with a query.
    pub path: String,
    /// Parameters: the query for GET and DELETE, a form body for POST and PUT.
    pub data: Vec<(String, String)>,
}

/// A request ready to send: routed, with its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// A label (suite files).
    pub name: Option<String>,
    /// The method.
    pub method: Method,
    /// The full path and query, e.g. `/api2/json/nodes/pve1/network?type=bridge`.
    pub path_and_query: String,
    /// The form body (POST, PUT).
    pub form: Option<Bytes>,
    /// Endpoint id.
    pub endpoint: String,
    /// Endpoint class.
    pub class: EndpointClass,
    /// `json` or `extjs`.
    pub format: ApiFormat,
}

/// Parses `--data k=v`.
///
/// # Errors
/// When there is no `=` or the key is empty.
pub fn parse_data(value: &str) -> Result<(String, String), ContractError> {
    match value.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(usage(format!(
            "--data '{value}': expected KEY=VALUE (e.g. type=bridge)"
        ))),
    }
}

impl RequestSpec {
    /// Expands `{node}`, makes the path absolute, routes it and checks that
    /// a write is sent only as a dry-run.
    ///
    /// # Errors
    /// An unknown method, an unexpanded `{placeholder}`, an unmigrated path,
    /// or a write without `dry_run`.
    pub fn prepare(
        &self,
        rules: &RuleSet,
        node: &str,
        dry_run: bool,
    ) -> Result<Prepared, ContractError> {
        let method_name = self.method.trim().to_ascii_uppercase();
        let method = match method_name.as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            other => {
                return Err(usage(format!(
                    "method '{other}': expected GET, POST, PUT or DELETE"
                )));
            }
        };
        let raw = self.path.trim().replace("{node}", node);
        let (path, query) = match raw.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (raw.clone(), None),
        };
        let path = if path.starts_with("/api2/") {
            path
        } else if path.starts_with('/') {
            format!("/api2/json{path}")
        } else {
            format!("/api2/json/{path}")
        };
        if let Some(open) = path.find('{') {
            let name = path[open..].split('}').next().unwrap_or("{");
            return Err(usage(format!(
                "{method} {path}: {name}}} is not filled in (only {{node}} is replaced, by --node); write the value into the path"
            )));
        }
        let Some(m) = rules.route(method.as_str(), &path) else {
            let hint = if path.starts_with("/api2/json/") || path.starts_with("/api2/extjs/") {
                String::new()
            } else {
                "; paths are relative to /api2/json or start with /api2/json/ or /api2/extjs/"
                    .to_owned()
            };
            return Err(ContractError::NoRoute {
                method: method.to_string(),
                path,
                hint,
            });
        };
        let endpoint = m.endpoint().id().to_owned();
        let class = m.endpoint().class();
        let format = m.format();
        if method != Method::GET && !dry_run {
            return Err(usage(format!(
                "{method} {path} is a {} ({endpoint}): contract-test sends writes only with --dry-run, \
                 and then marked X-PVE-Dry-Run: 1 to both backends; the Perl backend does not know \
                 the marker and carries the write out, so use --dry-run only against a Perl backend \
                 that honours it or on a test system",
                class.as_str()
            )));
        }
        let encoded = (!self.data.is_empty()).then(|| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &self.data {
                s.append_pair(k, v);
            }
            s.finish()
        });
        let in_query = method == Method::GET || method == Method::DELETE;
        let mut path_and_query = path;
        let mut query_parts: Vec<String> = query.into_iter().filter(|q| !q.is_empty()).collect();
        let mut form = None;
        match encoded {
            Some(e) if in_query => query_parts.push(e),
            Some(e) => form = Some(Bytes::from(e)),
            None => {}
        }
        if !query_parts.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(&query_parts.join("&"));
        }
        Ok(Prepared {
            name: self.name.clone(),
            method,
            path_and_query,
            form,
            endpoint,
            class,
            format,
        })
    }
}

/// A suite file: `[[request]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    #[serde(default)]
    request: Vec<SuiteRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "default_method")]
    method: String,
    path: String,
    #[serde(default)]
    data: BTreeMap<String, toml::Value>,
}

fn default_method() -> String {
    "GET".into()
}

fn toml_scalar(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        // PVE booleans are 0/1.
        toml::Value::Boolean(b) => Ok(if *b { "1" } else { "0" }.into()),
        _ => Err(format!(
            "data.{key}: expected a string, number, boolean or an array of them"
        )),
    }
}

/// Parses a suite file's text (`name` is used in messages).
///
/// # Errors
/// TOML errors (with line and column), unknown keys, bad values, no requests.
pub fn parse_suite(name: &str, text: &str) -> Result<Vec<RequestSpec>, ContractError> {
    let file: SuiteFile = toml::from_str(text).map_err(|e| usage(format!("suite {name}: {e}")))?;
    if file.request.is_empty() {
        return Err(usage(format!(
            "suite {name}: no [[request]] tables (see `contract-test --help`)"
        )));
    }
    let mut out = Vec::with_capacity(file.request.len());
    for (i, r) in file.request.into_iter().enumerate() {
        let mut data = Vec::new();
        for (k, v) in &r.data {
            let err = |m: String| usage(format!("suite {name}: request {}: {m}", i + 1));
            match v {
                toml::Value::Array(items) => {
                    for item in items {
                        data.push((k.clone(), toml_scalar(k, item).map_err(err)?));
                    }
                }
                v => data.push((k.clone(), toml_scalar(k, v).map_err(err)?)),
            }
        }
        out.push(RequestSpec {
            name: r.name,
            method: r.method,
            path: r.path,
            data,
        });
    }
    Ok(out)
}

/// Reads and parses a suite file.
///
/// # Errors
/// As [`parse_suite`], or when the file cannot be read.
pub fn read_suite(path: &Path) -> Result<Vec<RequestSpec>, ContractError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("suite {}: {e}", path.display())))?;
    parse_suite(&path.display().to_string(), &text)
}

/// Evidence-style verdict names: `match`, `type-only`, `mismatch`,
/// `critical`, `noise`, `skipped(reason)` (as the gateway records them).
pub fn verdict_name(v: Verdict) -> String {
    match v {
        Verdict::TypeOnly => "type-only".to_owned(),
        Verdict::Skipped(r) => format!("skipped({})", r.as_str()),
        other => other.as_str().to_owned(),
    }
}

/// Whether a verdict name says the two sides really differ.
pub fn is_mismatch(verdict: &str) -> bool {
    verdict == "mismatch" || verdict == "critical"
}

/// Hex SHA-256 (lower case).
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = String::with_capacity(64);
    crate::trace::push_hex(&mut out, digest.as_ref());
    out
}

/// The result of one comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The request's label (suite files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The method.
    pub method: String,
    /// The full path and query as sent.
    pub path: String,
    /// Endpoint id.
    pub endpoint: String,
    /// `read`, `write` or `apply`.
    pub class: String,
    /// `match`, `type-only`, `mismatch`, `critical` or `noise`.
    pub verdict: String,
    /// The kind of a critical verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical: Option<String>,
    /// The Perl backend's URL.
    pub perl_url: String,
    /// The Rust backend's URL.
    pub rust_url: String,
    /// Perl's side.
    pub perl: SideRecord,
    /// Rust's side.
    pub rust: SideRecord,
    /// RFC 6902 patch from normalised Perl to normalised Rust.
    pub patch: Value,
    /// Number of representation-only (Perl scalar) differences.
    pub type_only: usize,
    /// The type-only differences by kind (`string-number`, `absent-flag`, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub type_only_kinds: BTreeMap<String, usize>,
    /// The first type-only hits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub type_only_hits: Vec<Value>,
    /// Pointers where pattern rules found different but equivalent values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    /// Fingerprint of the difference.
    pub fingerprint: String,
    /// The trace id sent to both backends (`traceparent`).
    pub trace_id: String,
    /// Redacted request body and answers (kept for `--output` with bodies).
    #[serde(skip)]
    pub bodies: Option<StoredBodies>,
}

impl Outcome {
    /// 0 for `match`, `type-only`, `noise`; 1 for `mismatch`, `critical`.
    pub fn exit_code(&self) -> u8 {
        u8::from(is_mismatch(&self.verdict))
    }

    /// The type-only counts by kind (`absent-flag 7, string-number 5`).
    pub fn type_only_summary(&self) -> String {
        self.type_only_kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The outcome as an evidence record (patch, type-only hits, path and
    /// bodies redacted as the gateway redacts them).
    pub fn to_record(&self, node: &str, config_digest: &str) -> EvidenceRecord {
        let mut patch = self.patch.clone();
        crate::redact::json(&mut patch);
        let type_only = self
            .type_only_hits
            .iter()
            .cloned()
            .map(|mut v| {
                crate::redact::json(&mut v);
                v
            })
            .collect();
        EvidenceRecord {
            time: crate::evidence::now_rfc3339(),
            trace_id: self.trace_id.clone(),
            node: node.to_owned(),
            phase: RECORD_KIND.to_owned(),
            kind: RECORD_KIND.to_owned(),
            endpoint: self.endpoint.clone(),
            method: self.method.clone(),
            path: crate::redact::path(&self.path),
            served_by: "none".to_owned(),
            used_fallback: false,
            fallback_reason: None,
            perl: Some(self.perl.clone()),
            rust: Some(self.rust.clone()),
            verdict: self.verdict.clone(),
            critical: self.critical.clone(),
            patch: Some(patch),
            type_only,
            fingerprint: self.fingerprint.clone(),
            exemplar: true,
            config_digest: config_digest.to_owned(),
            bodies: self.bodies.clone(),
        }
    }
}

/// Both backends, the rules, and what to do with writes.
#[derive(Debug)]
pub struct Runner {
    /// The rules.
    pub rules: RuleSet,
    /// The Perl backend.
    pub perl: Backend,
    /// The Rust backend.
    pub rust: Backend,
    /// Keep the redacted bodies in each [`Outcome`].
    pub keep_bodies: bool,
}

fn side(t: &Timed, dry_run: bool) -> SideRecord {
    SideRecord {
        status: t.answer.status.as_u16(),
        reason: t.answer.reason.clone(),
        latency_ms: t.latency.as_secs_f64() * 1000.0,
        body_sha256: sha256_hex(&t.answer.body),
        dry_run,
    }
}

fn header_pairs(a: &Answer) -> Vec<(String, String)> {
    a.headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Sends a prepared request; anything but a GET is marked as a dry-run.
async fn send_prepared(
    backend: &Backend,
    req: &Prepared,
    trace: &TraceContext,
) -> Result<Timed, ContractError> {
    backend
        .send(
            &req.method,
            &req.path_and_query,
            req.form.clone(),
            req.method != Method::GET,
            Some(trace),
        )
        .await
}

impl Runner {
    /// Logs in to both backends.
    ///
    /// # Errors
    /// The first backend that cannot be reached or refuses the login.
    pub async fn login(&mut self, credentials: &Credentials) -> Result<(), ContractError> {
        let (p, r) = tokio::join!(self.perl.login(credentials), self.rust.login(credentials));
        p.and(r)
    }

    /// Sends `req` to both backends and compares the answers.
    ///
    /// GETs go to both at once. A write goes (always marked `X-PVE-Dry-Run:
    /// 1`) to Rust first and to Perl only after Rust answered, so that a Perl
    /// backend that ignores the marker cannot change what Rust validates
    /// against.
    ///
    /// # Errors
    /// A backend failure, or both backends answering 401.
    pub async fn run(&self, req: &Prepared) -> Result<Outcome, ContractError> {
        let dry_run = req.method != Method::GET;
        let trace = TraceContext::from_header(None);
        let (perl, rust) = if dry_run {
            let rust = send_prepared(&self.rust, req, &trace).await?;
            let perl = send_prepared(&self.perl, req, &trace).await?;
            (perl, rust)
        } else {
            let (p, r) = tokio::join!(
                send_prepared(&self.perl, req, &trace),
                send_prepared(&self.rust, req, &trace)
            );
            (p?, r?)
        };
        let (pa, ra) = (&perl.answer, &rust.answer);
        let Some(endpoint) = self.rules.endpoint(&req.endpoint) else {
            return Err(usage(format!("endpoint {} vanished", req.endpoint)));
        };
        let (ph, rh) = (header_pairs(pa), header_pairs(ra));
        let ph: Vec<(&str, &str)> = ph.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let rh: Vec<(&str, &str)> = rh.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let pe = Exchange::new(pa.status.as_u16(), &pa.body)
            .with_reason(&pa.reason)
            .with_headers(&ph);
        let re = Exchange::new(ra.status.as_u16(), &ra.body)
            .with_reason(&ra.reason)
            .with_headers(&rh);
        let cmp = self.rules.compare(endpoint, req.format, &pe, &re, None);
        // Effective statuses (an extjs failure is HTTP 200 with `status` in the body).
        if cmp.perl_status == 401 && cmp.rust_status == 401 {
            let reason = |a: &Answer| match a.json()["message"].as_str() {
                Some(m) if a.status.as_u16() != 401 => m.trim_end().to_owned(),
                _ => a.reason.trim_end().to_owned(),
            };
            return Err(ContractError::Unauthorized {
                method: req.method.to_string(),
                path: req.path_and_query.clone(),
                perl: format!("401 {}", reason(pa)),
                rust: format!("401 {}", reason(ra)),
            });
        }
        let mut type_only_kinds: BTreeMap<String, usize> = BTreeMap::new();
        for h in &cmp.type_only {
            *type_only_kinds
                .entry(h.kind.as_str().to_owned())
                .or_default() += 1;
        }
        let bodies = self.keep_bodies.then(|| StoredBodies {
            request: req
                .form
                .as_ref()
                .map(|f| crate::redact::body(f, Some("application/x-www-form-urlencoded")))
                .unwrap_or(Value::Null),
            perl: crate::redact::body(&pa.body, Some("application/json")),
            rust: crate::redact::body(&ra.body, Some("application/json")),
        });
        Ok(Outcome {
            name: req.name.clone(),
            method: req.method.to_string(),
            path: req.path_and_query.clone(),
            endpoint: req.endpoint.clone(),
            class: req.class.as_str().to_owned(),
            verdict: verdict_name(cmp.verdict),
            critical: cmp.critical.map(|c| c.as_str().to_owned()),
            perl_url: self.perl.url().to_owned(),
            rust_url: self.rust.url().to_owned(),
            perl: side(&perl, dry_run),
            rust: side(&rust, dry_run),
            patch: serde_json::to_value(&cmp.patch).unwrap_or(Value::Null),
            type_only: cmp.type_only.len(),
            type_only_kinds,
            type_only_hits: cmp
                .type_only
                .iter()
                .take(MAX_TYPE_ONLY_LISTED)
                .filter_map(|h| serde_json::to_value(h).ok())
                .collect(),
            masked: cmp.masked.clone(),
            fingerprint: cmp.fingerprint.clone(),
            trace_id: trace.trace_id.clone(),
            bodies,
        })
    }
}

/// PVE's node name of this host: the host name up to the first dot.
pub fn local_node_name() -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let short = host.trim().split('.').next()?.to_owned();
    (!short.is_empty()).then_some(short)
}

/// A digest of the rules in force, stamped on `--output` records.
pub fn rules_digest(files: &[std::path::PathBuf]) -> String {
    let mut text = String::from("pve-migration-rules defaults");
    for f in files {
        text.push('\n');
        text.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    sha256_hex(text.as_bytes())
}

/// What [`load_evidence`] read.
#[derive(Debug, Default)]
pub struct LoadedEvidence {
    /// Records, oldest first.
    pub records: Vec<EvidenceRecord>,
    /// Lines that could not be parsed.
    pub skipped_lines: usize,
}

/// Reads the records of an evidence directory (the gateway's
/// `evidence.dir`) or of a JSON Lines file written by `--output`.
///
/// # Errors
/// When the path does not exist or cannot be read.
pub fn load_evidence(path: &Path) -> Result<LoadedEvidence, ContractError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| usage(format!("--evidence {}: {e}", path.display())))?;
    if meta.is_dir() {
        let read = crate::evidence::read_records(path);
        return Ok(LoadedEvidence {
            records: read.records,
            skipped_lines: read.skipped_lines,
        });
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("--evidence {}: {e}", path.display())))?;
    let mut out = LoadedEvidence::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<EvidenceRecord>(line) {
            Ok(r) => out.records.push(r),
            Err(_) => out.skipped_lines += 1,
        }
    }
    Ok(out)
}

/// One distinct mismatching GET to re-check (records with the same endpoint,
/// path and fingerprint are replayed once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayItem {
    /// The node that recorded it.
    pub node: String,
    /// Endpoint id as recorded.
    pub endpoint: String,
    /// Path and query as recorded.
    pub path: String,
    /// The recorded verdict (of the latest record).
    pub verdict: String,
    /// The recorded fingerprint.
    pub fingerprint: String,
    /// How many records it stands for.
    pub records: usize,
    /// The latest record's time.
    pub last_seen: String,
}

/// A record that is not replayed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySkip {
    /// Endpoint id.
    pub endpoint: String,
    /// Method.
    pub method: String,
    /// Path as recorded.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Selection of [`replay_candidates`].
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Only records at or after this RFC 3339 time (UTC).
    pub since: Option<String>,
    /// Only records of this node.
    pub node: Option<String>,
    /// Only this endpoint id.
    pub endpoint: Option<String>,
}

/// The mismatching GET exchanges worth re-sending, and the mismatching
/// records that are not (writes, redacted paths), each once.
pub fn replay_candidates(
    records: &[EvidenceRecord],
    filter: &ReplayFilter,
) -> (Vec<ReplayItem>, Vec<ReplaySkip>) {
    let mut items: Vec<ReplayItem> = Vec::new();
    let mut index: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut skips: Vec<ReplaySkip> = Vec::new();
    for r in records {
        if !r.is_mismatch()
            || filter
                .since
                .as_ref()
                .is_some_and(|s| r.time.as_str() < s.as_str())
            || filter.node.as_ref().is_some_and(|n| *n != r.node)
            || filter.endpoint.as_ref().is_some_and(|e| *e != r.endpoint)
        {
            continue;
        }
        let skip = if !r.method.eq_ignore_ascii_case("GET") {
            Some("not a GET: recorded writes are never replayed")
        } else if r.path.contains(crate::redact::REDACTED) {
            Some(
                "the recorded path has <redacted> values (secrets are not stored), it cannot be re-sent",
            )
        } else {
            None
        };
        if let Some(reason) = skip {
            let s = ReplaySkip {
                endpoint: r.endpoint.clone(),
                method: r.method.clone(),
                path: r.path.clone(),
                reason: reason.to_owned(),
            };
            if !skips.contains(&s) {
                skips.push(s);
            }
            continue;
        }
        let key = (r.endpoint.clone(), r.path.clone(), r.fingerprint.clone());
        match index.get(&key) {
            Some(&i) => {
                let item = &mut items[i];
                item.records += 1;
                item.verdict.clone_from(&r.verdict);
                item.last_seen.clone_from(&r.time);
            }
            None => {
                index.insert(key, items.len());
                items.push(ReplayItem {
                    node: r.node.clone(),
                    endpoint: r.endpoint.clone(),
                    path: r.path.clone(),
                    verdict: r.verdict.clone(),
                    fingerprint: r.fingerprint.clone(),
                    records: 1,
                    last_seen: r.time.clone(),
                });
            }
        }
    }
    (items, skips)
}

/// An RFC 3339 UTC time `ago` before now, comparable with record times.
pub fn rfc3339_ago(ago: Duration) -> String {
    let t = time::OffsetDateTime::now_utc() - ago;
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: &str, path: &str, data: &[(&str, &str)]) -> RequestSpec {
        RequestSpec {
            name: None,
            method: method.into(),
            path: path.into(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn paths_are_expanded_and_routed() {
        let rules = RuleSet::with_defaults();
        let p = spec("get", "/nodes/{node}/network", &[("type", "bridge")])
            .prepare(&rules, "pve1", false)
            .unwrap();
        assert_eq!(
            p.path_and_query,
            "/api2/json/nodes/pve1/network?type=bridge"
        );
        assert_eq!(p.endpoint, "node.network.list");
        let p = spec("GET", "/api2/extjs/nodes/pve1/network/vmbr0", &[])
            .prepare(&rules, "x", false)
            .unwrap();
        assert_eq!(p.endpoint, "node.network.iface.get");
        assert_eq!(p.format, ApiFormat::Extjs);
        let p = spec("POST", "nodes/{node}/network", &[("iface", "vmbr9")])
            .prepare(&rules, "pve1", true)
            .unwrap();
        assert_eq!(p.form.as_deref(), Some(&b"iface=vmbr9"[..]));
        assert_eq!(p.path_and_query, "/api2/json/nodes/pve1/network");

        let e = spec("GET", "/nodes/{node}/qemu", &[])
            .prepare(&rules, "pve1", false)
            .unwrap_err();
        assert!(matches!(e, ContractError::NoRoute { .. }), "{e}");
        assert!(e.to_string().contains("/api2/json/nodes/pve1/qemu"), "{e}");
        let e = spec("GET", "/nodes/{node}/network/{iface}", &[])
            .prepare(&rules, "pve1", false)
            .unwrap_err();
        assert!(e.to_string().contains("{iface}"), "{e}");
        let e = spec("DELETE", "/nodes/{node}/network", &[])
            .prepare(&rules, "pve1", false)
            .unwrap_err();
        assert!(e.to_string().contains("--dry-run"), "{e}");
    }

    #[test]
    fn suites_parse_with_clear_errors() {
        let s = parse_suite(
            "s.toml",
            "[[request]]\npath = \"/nodes/{node}/network\"\ndata = { type = \"bridge\" }\n\
             [[request]]\nmethod = \"PUT\"\npath = \"/nodes/{node}/network/vmbr0\"\ndata = { autostart = true, mtu = 9000 }\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].method, "GET");
        assert_eq!(
            s[1].data,
            vec![
                ("autostart".into(), "1".into()),
                ("mtu".into(), "9000".into())
            ]
        );
        let e = parse_suite("s.toml", "[[request]]\npath = \"/x\"\nmethd = \"GET\"\n").unwrap_err();
        assert!(e.to_string().contains("methd"), "{e}");
        assert!(parse_suite("s.toml", "").is_err());
    }

    #[test]
    fn tokens_and_users_are_checked_without_echoing_secrets() {
        assert!(Credentials::token("root@pam!ci=abc").is_ok());
        assert!(Credentials::token("PVEAPIToken=root@pam!ci=abc").is_ok());
        let e = Credentials::token("root@pam=topsecret").unwrap_err();
        assert!(!e.to_string().contains("topsecret"));
        let c = Credentials::user("root@pam", Password::new("pw".into())).unwrap();
        assert!(!format!("{c:?}").contains("pw)"));
        assert!(Credentials::user("root", Password::new("pw".into())).is_err());
    }
}
