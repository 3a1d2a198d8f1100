//! pveproxy's authentication as a client sees it: tickets, the CSRF token,
//! the `PVEAuthCookie` cookie and `PVEAPIToken` authorization headers.
//!
//! Tickets are `PVE:<userid>:<8 hex digits timestamp>::<signature>` and CSRF
//! tokens `<8 hex digits timestamp>:<signature>`, like PVE's. The signature is
//! an HMAC with a key shared by every simulator started with the same
//! `auth_key`, so a Perl-flavour and a Rust-flavour instance accept each
//! other's tickets, as the real backends on one node do.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use http::{HeaderMap, Method, header};

/// PVE tickets are valid for two hours (and tolerate small clock skew).
const TICKET_LIFETIME: i64 = 7200;
const CLOCK_SKEW: i64 = 300;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user with a ticket (cookie).
    User(String),
    /// An API token `user@realm!tokenid`.
    Token(String),
    /// Nobody checked (the `auth-bypass` fault).
    Unchecked,
}

impl Principal {
    /// The user id the request acts as (`root@pam` for a token `root@pam!ci`).
    pub fn userid(&self) -> &str {
        match self {
            Principal::User(u) => u,
            Principal::Token(t) => t.split('!').next().unwrap_or(t),
            Principal::Unchecked => "root@pam",
        }
    }
}

/// Why a request is not authenticated; each maps to a 401 with PVE's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No cookie and no token.
    NoTicket,
    /// The ticket is malformed, forged or expired.
    InvalidTicket,
    /// A write with a ticket but without a valid CSRF token.
    InvalidCsrf,
    /// An unknown token or wrong secret.
    InvalidToken,
    /// Wrong user name or password at login.
    LoginFailed,
}

impl AuthError {
    /// The message pveproxy puts in the reason phrase.
    pub fn message(self) -> &'static str {
        match self {
            AuthError::NoTicket => "No ticket",
            AuthError::InvalidTicket => "permission denied - invalid PVE ticket",
            AuthError::InvalidCsrf => "Permission denied - invalid csrf token",
            AuthError::InvalidToken => "invalid token value!",
            AuthError::LoginFailed => "authentication failure",
        }
    }
}

/// What a successful login returns.
#[derive(Debug, Clone)]
pub struct Login {
    /// The user id.
    pub username: String,
    /// The ticket (for the cookie).
    pub ticket: String,
    /// The CSRF token for writes.
    pub csrf: String,
}

/// Users, tokens and the signing key.
pub struct Auth {
    key: hmac::Key,
    users: HashMap<String, String>,
    tokens: HashMap<String, String>,
    pve: Option<PveKeys>,
}

/// A node's real ticket keys (`/etc/pve/priv/authkey.key`, `authkey.pub`,
/// `priv/pve-www.key`): tickets and CSRF tokens then are PVE's own, so the
/// Rust backend on the same node accepts them, as it accepts pveproxy's.
struct PveKeys {
    signer: pve_network_rs::auth::ticket::TicketSigner,
    csrf_secret: String,
    verifier: pve_network_rs::auth::Authenticator,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print passwords or token secrets.
        f.debug_struct("Auth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes `%XX` escapes (cookies carry the ticket URL-encoded).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Auth {
    /// Users as `(userid, password)`, tokens as `(user@realm!tokenid, secret)`.
    pub fn new(auth_key: &str, users: &[(String, String)], tokens: &[(String, String)]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, auth_key.as_bytes()),
            users: users.iter().cloned().collect(),
            tokens: tokens.iter().cloned().collect(),
            pve: None,
        }
    }

    /// Issues and checks tickets with the node keys in `pve_dir` (a node's
    /// `/etc/pve`) instead of the simulator's own key.
    ///
    /// # Errors
    /// When `priv/authkey.key` or `priv/pve-www.key` cannot be read.
    pub fn with_pve_keys(mut self, pve_dir: &std::path::Path) -> anyhow::Result<Self> {
        let key = std::fs::read(pve_dir.join("priv/authkey.key"))?;
        let www = std::fs::read(pve_dir.join("priv/pve-www.key"))?;
        self.pve = Some(PveKeys {
            signer: pve_network_rs::auth::ticket::TicketSigner::from_pem(&key)
                .map_err(anyhow::Error::msg)?,
            csrf_secret: pve_network_rs::auth::ticket::csrf_secret(&www),
            verifier: pve_network_rs::auth::Authenticator::new(
                pve_network_rs::auth::AuthPaths::in_pve_dir(pve_dir),
            ),
        });
        Ok(self)
    }

    fn sign(&self, data: &str) -> String {
        base64(hmac::sign(&self.key, data.as_bytes()).as_ref())
    }

    /// A ticket for `user` issued at `ts`.
    pub fn ticket(&self, user: &str, ts: i64) -> String {
        if let Some(pve) = &self.pve {
            return pve.signer.ticket(user, ts);
        }
        let plain = format!("PVE:{user}:{ts:08X}");
        let sig = self.sign(&plain);
        format!("{plain}::{sig}")
    }

    /// A CSRF prevention token for `user` issued at `ts`.
    pub fn csrf_token(&self, user: &str, ts: i64) -> String {
        if let Some(pve) = &self.pve {
            return pve_network_rs::auth::ticket::csrf_token(&pve.csrf_secret, user, ts);
        }
        let sig = self.sign(&format!("{ts:08X}:{user}"));
        format!("{ts:08X}:{sig}")
    }

    /// Checks a password and issues a ticket and CSRF token.
    ///
    /// # Errors
    /// [`AuthError::LoginFailed`] for an unknown user or a wrong password.
    pub fn login(&self, username: &str, password: &str) -> Result<Login, AuthError> {
        // PVE appends the default realm when none is given.
        let username = if username.contains('@') {
            username.to_owned()
        } else {
            format!("{username}@pam")
        };
        match self.users.get(&username) {
            Some(p) if p == password => {
                let ts = now();
                Ok(Login {
                    ticket: self.ticket(&username, ts),
                    csrf: self.csrf_token(&username, ts),
                    username,
                })
            }
            _ => Err(AuthError::LoginFailed),
        }
    }

    /// Verifies a ticket (signature and age) and returns its user.
    ///
    /// # Errors
    /// [`AuthError::InvalidTicket`].
    pub fn verify_ticket(&self, ticket: &str) -> Result<String, AuthError> {
        let (plain, sig) = ticket.split_once("::").ok_or(AuthError::InvalidTicket)?;
        let mut parts = plain.split(':');
        let (Some("PVE"), Some(user), Some(ts), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::InvalidTicket);
        };
        let ts = i64::from_str_radix(ts, 16).map_err(|_| AuthError::InvalidTicket)?;
        if self.sign(plain) != sig {
            return Err(AuthError::InvalidTicket);
        }
        let age = now() - ts;
        if !(-CLOCK_SKEW..=TICKET_LIFETIME).contains(&age) {
            return Err(AuthError::InvalidTicket);
        }
        Ok(user.to_owned())
    }

    fn verify_csrf(&self, token: &str, user: &str) -> bool {
        let Some((ts, _)) = token.split_once(':') else {
            return false;
        };
        let Ok(ts) = i64::from_str_radix(ts, 16) else {
            return false;
        };
        let age = now() - ts;
        (-CLOCK_SKEW..=TICKET_LIFETIME).contains(&age) && self.csrf_token(user, ts) == token
    }

    /// Authenticates a request the way pveproxy does: API token first, then
    /// the cookie; writes with a cookie need the CSRF header.
    ///
    /// # Errors
    /// The [`AuthError`] pveproxy would answer 401 with.
    pub fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Principal, AuthError> {
        if let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("PVEAPIToken="))
        {
            // `user@realm!tokenid=secret` (newer clients may use ':' before the secret).
            let (id, secret) = value
                .split_once('=')
                .or_else(|| value.rsplit_once(':'))
                .ok_or(AuthError::InvalidToken)?;
            return match self.tokens.get(id) {
                Some(s) if s == secret => Ok(Principal::Token(id.to_owned())),
                _ => Err(AuthError::InvalidToken),
            };
        }
        let ticket = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix("PVEAuthCookie="))
            .next()
            .map(percent_decode)
            .ok_or(AuthError::NoTicket)?;
        if let Some(pve) = &self.pve {
            let creds = pve_network_rs::auth::Credentials::from_headers(headers);
            return match pve.verifier.authenticate(method, &creds, now()) {
                Ok(id) => Ok(Principal::User(id.userid)),
                Err(pve_network_rs::auth::AuthFailure::BadCsrf) => Err(AuthError::InvalidCsrf),
                Err(pve_network_rs::auth::AuthFailure::NoTicket) => Err(AuthError::NoTicket),
                Err(pve_network_rs::auth::AuthFailure::Failed(_)) => Err(AuthError::InvalidTicket),
            };
        }
        let user = self.verify_ticket(&ticket)?;
        if *method != Method::GET && *method != Method::HEAD {
            let csrf = headers
                .get("csrfpreventiontoken")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !self.verify_csrf(csrf, &user) {
                return Err(AuthError::InvalidCsrf);
            }
        }
        Ok(Principal::User(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth() -> Auth {
        Auth::new(
            "k",
            &[("root@pam".into(), "secret".into())],
            &[("root@pam!ci".into(), "0000-1111".into())],
        )
    }

    #[test]
    fn login_ticket_cookie_and_csrf() {
        let a = auth();
        assert_eq!(
            a.login("root", "wrong").unwrap_err(),
            AuthError::LoginFailed
        );
        let l = a.login("root", "secret").unwrap();
        assert_eq!(l.username, "root@pam");
        assert!(l.ticket.starts_with("PVE:root@pam:"));
        let mut h = HeaderMap::new();
        let cookie = format!("PVEAuthCookie={}", l.ticket.replace(':', "%3A"));
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert_eq!(
            a.authenticate(&Method::GET, &h).unwrap(),
            Principal::User("root@pam".into())
        );
        assert_eq!(
            a.authenticate(&Method::PUT, &h).unwrap_err(),
            AuthError::InvalidCsrf
        );
        h.insert(
            "CSRFPreventionToken",
            HeaderValue::from_str(&l.csrf).unwrap(),
        );
        assert!(a.authenticate(&Method::PUT, &h).is_ok());
        // A ticket from another key is forged.
        let other = Auth::new("other", &[], &[]).ticket("root@pam", now());
        assert_eq!(
            a.verify_ticket(&other).unwrap_err(),
            AuthError::InvalidTicket
        );
        assert_eq!(
            a.authenticate(&Method::GET, &HeaderMap::new()).unwrap_err(),
            AuthError::NoTicket
        );
    }

    #[test]
    fn api_tokens() {
        let a = auth();
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("PVEAPIToken=root@pam!ci=0000-1111"),
        );
        assert_eq!(
            a.authenticate(&Method::POST, &h).unwrap(),
            Principal::Token("root@pam!ci".into())
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("PVEAPIToken=root@pam!ci=nope"),
        );
        assert_eq!(
            a.authenticate(&Method::GET, &h).unwrap_err(),
            AuthError::InvalidToken
        );
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
