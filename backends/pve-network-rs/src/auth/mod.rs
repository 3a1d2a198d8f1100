//! Authentication and authorisation as pveproxy does them.
//!
//! * Credentials come from the `PVEAuthCookie` cookie, else a
//!   `PVEAuthCookie` in `Authorization`, and only without a ticket from
//!   `Authorization: PVEAPIToken=USER@REALM!NAME=SECRET`.
//! * A ticket is verified with `/etc/pve/authkey.pub` (or the rotated
//!   `authkey.pub.old`), see [`ticket`]; writes with a ticket also need a
//!   valid `CSRFPreventionToken`. A token's secret must be in
//!   `/etc/pve/priv/token.cfg`; the token and its owner must exist in
//!   `/etc/pve/user.cfg`, be enabled and not expired.
//! * Every failure is `401` with the reason phrase pveproxy uses (`No
//!   ticket`, `Authentication failed!`, `Permission denied - invalid csrf
//!   token`), an empty body, and the answer delayed by 3 seconds, as
//!   pveproxy delays it. Why it failed is logged, never the credential.
//! * Authorisation ([`acl`]) uses the same `user.cfg`.
//!
//! The files are read again whenever their mtime or size changes, so key
//! rotation and `pveum` edits apply to the next request.

pub mod acl;
pub mod ticket;
pub mod usercfg;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use http::HeaderMap;

use self::ticket::{AuthKey, AuthKeys, TicketError};
use self::usercfg::{TokenSecrets, UserConfig, split_tokenid};

/// How long pveproxy holds back the answer to a failed authentication.
pub const FAILURE_DELAY: Duration = Duration::from_secs(3);

/// The credentials of one request.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    ticket: Option<String>,
    api_token: Option<String>,
    csrf: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the values
        f.debug_struct("Credentials")
            .field("ticket", &self.ticket.is_some())
            .field("api_token", &self.api_token.is_some())
            .field("csrf", &self.csrf.is_some())
            .finish()
    }
}

/// pveproxy's `extract_auth_value`: `KEY=value` or `KEY value` at the start
/// of the header or after whitespace, up to the next `;`, `%XX`-decoded.
fn extract_auth_value(header: &str, key: &str) -> Option<String> {
    let mut search = 0;
    while let Some(pos) = header[search..].find(key) {
        let at = search + pos;
        let before_ok = at == 0 || header[..at].ends_with(|c: char| c.is_whitespace());
        let after = &header[at + key.len()..];
        if before_ok && (after.starts_with('=') || after.starts_with(' ')) {
            let value = &after[1..];
            let value = value.split(';').next().unwrap_or("");
            return (!value.is_empty()).then(|| ticket::uri_unescape(value));
        }
        search = at + key.len();
    }
    None
}

fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

impl Credentials {
    /// The credentials in a request's headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let cookie = joined(headers, "cookie");
        let authorization = joined(headers, "authorization");
        let mut ticket = cookie
            .as_deref()
            .and_then(|c| extract_auth_value(c, "PVEAuthCookie"));
        if ticket.is_none() {
            ticket = authorization
                .as_deref()
                .and_then(|a| extract_auth_value(a, "PVEAuthCookie"));
        }
        let api_token = if ticket.is_none() {
            authorization
                .as_deref()
                .and_then(|a| extract_auth_value(a, "PVEAPIToken"))
        } else {
            None
        };
        Self {
            ticket,
            api_token,
            csrf: joined(headers, "csrfpreventiontoken"),
        }
    }

    /// Credentials with a ticket (and optionally a CSRF token).
    pub fn with_ticket(ticket: impl Into<String>, csrf: Option<String>) -> Self {
        Self {
            ticket: Some(ticket.into()),
            api_token: None,
            csrf,
        }
    }

    /// Credentials with an API token (`USER@REALM!NAME=SECRET`).
    pub fn with_api_token(token: impl Into<String>) -> Self {
        Self {
            ticket: None,
            api_token: Some(token.into()),
            csrf: None,
        }
    }
}

/// How a request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A `PVEAuthCookie` ticket.
    Ticket,
    /// An API token.
    ApiToken,
}

/// Who a request runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id, or for a token the full token id (`user@realm!name`),
    /// which is what permission checks and UPIDs see.
    pub userid: String,
    /// How it authenticated.
    pub method: Method,
}

/// Why authentication failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials (or a half-finished two-factor login).
    NoTicket,
    /// Bad, expired or unknown credentials; the detail is for the log.
    Failed(String),
    /// A ticket write without a valid `CSRFPreventionToken`.
    BadCsrf,
}

impl AuthFailure {
    /// The reason phrase of the `401`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::NoTicket => "No ticket",
            AuthFailure::Failed(_) => "Authentication failed!",
            AuthFailure::BadCsrf => "Permission denied - invalid csrf token",
        }
    }

    /// What to log (never a credential).
    pub fn detail(&self) -> &str {
        match self {
            AuthFailure::NoTicket => "no ticket",
            AuthFailure::Failed(d) => d,
            AuthFailure::BadCsrf => "invalid csrf token",
        }
    }
}

/// Where the authentication files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthPaths {
    /// `/etc/pve/user.cfg`.
    pub user_cfg: PathBuf,
    /// `/etc/pve/priv/token.cfg`.
    pub token_cfg: PathBuf,
    /// `/etc/pve/authkey.pub`.
    pub authkey: PathBuf,
    /// `/etc/pve/authkey.pub.old`.
    pub authkey_old: PathBuf,
    /// `/etc/pve/priv/pve-www.key`.
    pub www_key: PathBuf,
    /// `/etc/pve/local`: pmxcfs shows it read-only without quorum.
    pub local: PathBuf,
}

impl AuthPaths {
    /// The paths below a `/etc/pve` directory.
    pub fn in_pve_dir(pve: &Path) -> Self {
        Self {
            user_cfg: pve.join("user.cfg"),
            token_cfg: pve.join("priv/token.cfg"),
            authkey: pve.join("authkey.pub"),
            authkey_old: pve.join("authkey.pub.old"),
            www_key: pve.join("priv/pve-www.key"),
            local: pve.join("local"),
        }
    }
}

/// A file parsed once per change of its mtime and size.
#[derive(Debug)]
struct Cached<T> {
    stamp: Option<(i64, u32, u64)>,
    value: Arc<T>,
}

fn stamp(path: &Path) -> Option<(i64, u32, u64)> {
    let m = std::fs::metadata(path).ok()?;
    let t = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((t.as_secs() as i64, t.subsec_nanos(), m.len()))
}

impl<T> Cached<T> {
    fn new(value: T) -> Self {
        Self {
            stamp: None,
            value: Arc::new(value),
        }
    }

    /// The value for the file's current state, re-parsed when it changed.
    fn get(&mut self, path: &Path, parse: impl FnOnce(Option<Vec<u8>>, i64) -> T) -> Arc<T> {
        let now = stamp(path);
        if now != self.stamp || now.is_none() {
            let bytes = std::fs::read(path).ok();
            self.value = Arc::new(parse(bytes, now.map_or(0, |s| s.0)));
            self.stamp = now;
        }
        self.value.clone()
    }
}

#[derive(Debug)]
struct Caches {
    users: Cached<UserConfig>,
    tokens: Cached<TokenSecrets>,
    key: Cached<Option<AuthKey>>,
    old_key: Cached<Option<AuthKey>>,
    www: Cached<Option<String>>,
}

/// Checks credentials against the node's files.
#[derive(Debug)]
pub struct Authenticator {
    paths: AuthPaths,
    caches: Mutex<Caches>,
}

fn parse_key(bytes: Option<Vec<u8>>, mtime: i64) -> Option<AuthKey> {
    let key = AuthKey::from_pem(&bytes?, mtime);
    if let Err(e) = &key {
        tracing::warn!(error = %e, "unusable ticket key");
    }
    key.ok()
}

impl Authenticator {
    /// An authenticator reading the given files.
    pub fn new(paths: AuthPaths) -> Self {
        Self {
            paths,
            caches: Mutex::new(Caches {
                users: Cached::new(UserConfig::default()),
                tokens: Cached::new(TokenSecrets::default()),
                key: Cached::new(None),
                old_key: Cached::new(None),
                www: Cached::new(None),
            }),
        }
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current `user.cfg`.
    pub fn user_config(&self) -> Arc<UserConfig> {
        let path = self.paths.user_cfg.clone();
        self.caches().users.get(&path, |b, _| {
            UserConfig::parse(&String::from_utf8_lossy(&b.unwrap_or_default()))
        })
    }

    fn quorate(&self) -> bool {
        use std::os::unix::fs::PermissionsExt;
        // without pmxcfs to ask, the stricter answer
        std::fs::symlink_metadata(&self.paths.local)
            .map(|m| m.permissions().mode() & 0o200 != 0)
            .unwrap_or(true)
    }

    fn user_enabled(cfg: &UserConfig, userid: &str, now: i64) -> Result<(), AuthFailure> {
        let user = cfg
            .users
            .get(userid)
            .ok_or_else(|| AuthFailure::Failed(format!("no such user ('{userid}')")))?;
        if !user.enable {
            return Err(AuthFailure::Failed(format!("user '{userid}' is disabled")));
        }
        if user.expire != 0 && user.expire < now {
            return Err(AuthFailure::Failed(format!(
                "user '{userid}' access expired"
            )));
        }
        Ok(())
    }

    /// Authenticates a request (`method` is the HTTP method: writes with a
    /// ticket need the CSRF token).
    ///
    /// # Errors
    ///
    /// See [`AuthFailure`].
    pub fn authenticate(
        &self,
        method: &http::Method,
        creds: &Credentials,
        now: i64,
    ) -> Result<Identity, AuthFailure> {
        if let Some(token) = &creds.api_token {
            return self.verify_token(token, now);
        }
        let Some(ticket) = &creds.ticket else {
            return Err(AuthFailure::NoTicket);
        };
        let keys = {
            let mut c = self.caches();
            AuthKeys {
                current: (*c.key.get(&self.paths.authkey, parse_key)).clone(),
                old: (*c.old_key.get(&self.paths.authkey_old, parse_key)).clone(),
            }
        };
        let userid = match ticket::verify_ticket(ticket, &keys, now, self.quorate()) {
            Ok(u) => u,
            Err(TicketError::SecondFactorPending) => return Err(AuthFailure::NoTicket),
            Err(e) => return Err(AuthFailure::Failed(format!("invalid ticket ({e})"))),
        };
        Self::user_enabled(&self.user_config(), &userid, now)?;
        if method != http::Method::GET {
            let secret = {
                let path = self.paths.www_key.clone();
                self.caches()
                    .www
                    .get(&path, |b, _| b.map(|b| ticket::csrf_secret(&b)))
            };
            let ok = match (secret.as_deref(), creds.csrf.as_deref()) {
                (Some(secret), Some(token)) => ticket::verify_csrf(secret, &userid, token, now),
                _ => false,
            };
            if !ok {
                return Err(AuthFailure::BadCsrf);
            }
        }
        Ok(Identity {
            userid,
            method: Method::Ticket,
        })
    }

    fn verify_token(&self, value: &str, now: i64) -> Result<Identity, AuthFailure> {
        let (tokenid, secret) = value
            .rsplit_once('=')
            .ok_or_else(|| AuthFailure::Failed("no tokenid specified".into()))?;
        let (owner, name) = split_tokenid(tokenid).ok_or_else(|| {
            AuthFailure::Failed(format!(
                "'{tokenid}' is not a valid token ID - not able to split into user and token parts"
            ))
        })?;
        let cfg = self.user_config();
        Self::user_enabled(&cfg, owner, now)?;
        let token = cfg
            .users
            .get(owner)
            .and_then(|u| u.tokens.get(name))
            .ok_or_else(|| {
                AuthFailure::Failed(format!("no such token '{name}' for user '{owner}'"))
            })?;
        if token.expire != 0 && token.expire < now {
            return Err(AuthFailure::Failed(format!(
                "token '{name}' access expired"
            )));
        }
        let secrets = {
            let path = self.paths.token_cfg.clone();
            self.caches().tokens.get(&path, |b, _| {
                TokenSecrets::parse(&String::from_utf8_lossy(&b.unwrap_or_default()))
            })
        };
        if !secrets.matches(tokenid, secret) {
            return Err(AuthFailure::Failed("invalid token value!".into()));
        }
        Ok(Identity {
            userid: tokenid.to_string(),
            method: Method::ApiToken,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn where_credentials_come_from() {
        let c = Credentials::from_headers(&headers(&[(
            "cookie",
            "a=b; PVEAuthCookie=PVE%3Aroot%40pam%3A1::x+y",
        )]));
        assert_eq!(c.ticket.as_deref(), Some("PVE:root@pam:1::x+y"));
        // no whitespace before the key: pveproxy does not see it
        let c = Credentials::from_headers(&headers(&[("cookie", "a=b;PVEAuthCookie=t")]));
        assert_eq!(c.ticket, None);
        let c = Credentials::from_headers(&headers(&[("authorization", "PVEAuthCookie t")]));
        assert_eq!(c.ticket.as_deref(), Some("t"));
        let c = Credentials::from_headers(&headers(&[(
            "authorization",
            "PVEAPIToken=root@pam!ci=aaaa-bbbb",
        )]));
        assert_eq!(c.api_token.as_deref(), Some("root@pam!ci=aaaa-bbbb"));
        // a ticket hides the token
        let c = Credentials::from_headers(&headers(&[
            ("cookie", "PVEAuthCookie=t"),
            ("authorization", "PVEAPIToken=root@pam!ci=s"),
            ("csrfpreventiontoken", "65A1B2C3:x"),
        ]));
        assert_eq!(
            (c.ticket.as_deref(), c.api_token.as_deref()),
            (Some("t"), None)
        );
        assert_eq!(c.csrf.as_deref(), Some("65A1B2C3:x"));
        assert_eq!(
            format!("{c:?}"),
            "Credentials { ticket: true, api_token: false, csrf: true }"
        );
    }
}
