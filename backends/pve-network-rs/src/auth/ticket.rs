//! `PVEAuthCookie` tickets and `CSRFPreventionToken`s as PVE makes and checks
//! them.
//!
//! A ticket is `PVE:USERID:HEXTIME::SIGNATURE`: the part before `::` signed
//! with the cluster's RSA key (`/etc/pve/priv/authkey.key`) as PKCS#1 v1.5
//! over SHA-1 — what PVE's Perl RSA binding does by default — in standard
//! base64 with padding. It is valid from 5 minutes in the future to 2 hours
//! old, and further bounded by the age of the key that verifies it:
//!
//! * the current key (`authkey.pub`, its mtime is its creation time) accepts
//!   no ticket older than the key plus 5 minutes, and once the key is older
//!   than its 24 h lifetime on a quorate cluster, nothing made after that;
//! * the previous key (`authkey.pub.old`, its mtime is the rotation time)
//!   accepts only tickets made before the rotation plus 5 minutes.
//!
//! The CSRF token is `HEXTIME:` and an HMAC-SHA256 of `HEXTIME:USERID`; its
//! key is itself an HMAC-SHA256 (key = the bytes of `priv/pve-www.key`, empty
//! message), both in unpadded base64, as PVE computes them.

use aws_lc_rs::{hmac, signature};
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD_NO_PAD};

/// A ticket's lifetime.
pub const TICKET_LIFETIME: i64 = 7200;
/// How far clocks may disagree.
pub const AUTH_GRACE_PERIOD: i64 = 300;
/// How long a key is used before PVE rotates it.
pub const AUTHKEY_LIFETIME: i64 = 86_400;

/// A public key that verifies tickets, with its file's mtime.
#[derive(Clone, Debug)]
pub struct AuthKey {
    der: Vec<u8>,
    mtime: i64,
}

impl AuthKey {
    /// From a PEM public key (`BEGIN PUBLIC KEY`, as PVE writes it)
    /// and the file's mtime.
    ///
    /// # Errors
    ///
    /// When the text holds no RSA public key.
    pub fn from_pem(pem: &[u8], mtime: i64) -> Result<Self, String> {
        use rustls_pki_types::pem::{PemObject, SectionKind};
        let mut der = None;
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, body) = item.map_err(|e| format!("not a PEM file: {e}"))?;
            if kind == SectionKind::PublicKey {
                der = Some(body);
                break;
            }
        }
        let der = der.ok_or("no public key in the file")?;
        aws_lc_rs::rsa::PublicKey::from_der(&der).map_err(|e| format!("not an RSA key: {e}"))?;
        Ok(Self { der, mtime })
    }

    fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            &self.der,
        )
        .verify(message, sig)
        .is_ok()
    }
}

/// The keys a ticket may be signed with.
#[derive(Clone, Debug, Default)]
pub struct AuthKeys {
    /// `/etc/pve/authkey.pub`.
    pub current: Option<AuthKey>,
    /// `/etc/pve/authkey.pub.old`.
    pub old: Option<AuthKey>,
}

/// Why a ticket was not accepted. All are `401 Authentication failed!` on
/// the wire, except [`TicketError::SecondFactorPending`] (`401 No ticket`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not `PVE:…::SIG`.
    #[error("malformed ticket")]
    Malformed,
    /// No key verifies the signature within its age window.
    #[error("invalid signature or expired")]
    Invalid,
    /// A login that still waits for its second factor.
    #[error("second factor pending")]
    SecondFactorPending,
    /// The user id in the ticket is not a valid user id.
    #[error("invalid user name in ticket")]
    BadUser,
}

/// PVE's key age window for a ticket (`None`: the key verifies nothing).
pub fn age_range(now: i64, key_mtime: i64, rotated: bool, quorate: bool) -> Option<(i64, i64)> {
    let key_age = (now - key_mtime).max(0);
    let mut min = -AUTH_GRACE_PERIOD;
    let mut max = TICKET_LIFETIME;
    if rotated {
        min = key_age - AUTH_GRACE_PERIOD;
    } else {
        if key_age > AUTHKEY_LIFETIME && quorate {
            min = key_age - AUTHKEY_LIFETIME;
        }
        if key_age < TICKET_LIFETIME {
            max = key_age + AUTH_GRACE_PERIOD;
        }
    }
    (min <= TICKET_LIFETIME).then_some((min, max))
}

/// MIME::Base64's lenient decoding: characters outside the alphabet are
/// ignored, decoding stops at the first `=`, padding is optional.
fn decode_base64_lenient(s: &str) -> Vec<u8> {
    let mut clean: String = s
        .chars()
        .take_while(|c| *c != '=')
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .collect();
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(clean).unwrap_or_default()
}

/// `%XX` decoding (`+` stays `+`).
pub fn uri_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks one key: signature, then the timestamp within the key's window.
fn check_with(
    key: &AuthKey,
    plain: &str,
    sig: &[u8],
    now: i64,
    rotated: bool,
    quorate: bool,
) -> Option<String> {
    let (min, max) = age_range(now, key.mtime, rotated, quorate)?;
    if !key.verifies(plain.as_bytes(), sig) {
        return None;
    }
    // m/^PVE:(?:(\S+):)?([A-Z0-9]{8})$/
    let rest = plain.strip_prefix("PVE:")?;
    let (data, time) = match rest.rsplit_once(':') {
        Some((d, t)) => (Some(d), t),
        None => (None, rest),
    };
    if time.len() != 8
        || !time
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return None;
    }
    // hex() stops at the first non-hex digit; such a time is far in the past
    let ttime = i64::from_str_radix(time, 16).unwrap_or(0);
    let age = now - ttime;
    (age > min && age < max).then(|| data.map(uri_unescape).unwrap_or_else(|| "1".into()))
}

/// Verifies a ticket and returns the user id it was issued to.
///
/// # Errors
///
/// See [`TicketError`].
pub fn verify_ticket(
    ticket: &str,
    keys: &AuthKeys,
    now: i64,
    quorate: bool,
) -> Result<String, TicketError> {
    // m/^(PVE:\S+)::([^:\s]+)$/
    let (plain, sig) = ticket.rsplit_once("::").ok_or(TicketError::Malformed)?;
    let ws = |c: char| c.is_whitespace();
    if !plain.starts_with("PVE:")
        || plain.len() <= 4
        || plain.contains(ws)
        || sig.is_empty()
        || sig.contains(|c: char| c == ':' || c.is_whitespace())
    {
        return Err(TicketError::Malformed);
    }
    let sig = decode_base64_lenient(sig);
    let data = keys
        .current
        .as_ref()
        .and_then(|k| check_with(k, plain, &sig, now, false, quorate))
        .or_else(|| {
            keys.old
                .as_ref()
                .and_then(|k| check_with(k, plain, &sig, now, true, quorate))
        })
        .ok_or(TicketError::Invalid)?;
    if data.starts_with("!tfa!") {
        return Err(TicketError::Invalid);
    }
    if data.starts_with("u2f!") || data.starts_with("tfa!") {
        return Err(TicketError::SecondFactorPending);
    }
    if !super::usercfg::is_userid(&data) {
        return Err(TicketError::BadUser);
    }
    Ok(data)
}

/// Creates tickets: PKCS#1 v1.5 signatures over SHA-1 with the cluster's
/// private key (`/etc/pve/priv/authkey.key`), as PVE's login does.
#[cfg(feature = "sign")]
pub struct TicketSigner {
    key: rsa::RsaPrivateKey,
}

#[cfg(feature = "sign")]
impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSigner(..)")
    }
}

#[cfg(feature = "sign")]
impl TicketSigner {
    /// From the PEM private key (`BEGIN RSA PRIVATE KEY` as PVE writes it, or
    /// PKCS#8 `BEGIN PRIVATE KEY`).
    ///
    /// # Errors
    ///
    /// When the text holds no RSA private key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        use rustls_pki_types::pem::{PemObject, SectionKind};
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = item.map_err(|e| format!("not a PEM file: {e}"))?;
            let key = match kind {
                SectionKind::RsaPrivateKey => rsa::RsaPrivateKey::from_pkcs1_der(&der)
                    .map_err(|e| format!("not an RSA key: {e}"))?,
                SectionKind::PrivateKey => rsa::RsaPrivateKey::from_pkcs8_der(&der)
                    .map_err(|e| format!("not an RSA key: {e}"))?,
                _ => continue,
            };
            return Ok(Self { key });
        }
        Err("no private key in the file".into())
    }

    /// A PVE signature over `message`.
    pub fn signature(&self, message: &[u8]) -> Vec<u8> {
        // DigestInfo of SHA-1 (RFC 8017 §9.2), then the hash
        const SHA1_PREFIX: [u8; 15] = [
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ];
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, message);
        let mut info = SHA1_PREFIX.to_vec();
        info.extend_from_slice(digest.as_ref());
        self.key
            .sign(rsa::Pkcs1v15Sign::new_unprefixed(), &info)
            .expect("a 2048+ bit key signs 35 bytes")
    }

    /// A ticket for `userid` issued at `time`.
    pub fn ticket(&self, userid: &str, time: i64) -> String {
        let plain = ticket_plain(userid, time);
        assemble_ticket(&plain, &self.signature(plain.as_bytes()))
    }
}

/// The text a ticket for `userid` at `time` signs.
pub fn ticket_plain(userid: &str, time: i64) -> String {
    format!("PVE:{}:{time:08X}", userid.replace(':', "%3A"))
}

/// A ticket from its signed text and the signature over it.
pub fn assemble_ticket(plain: &str, signature: &[u8]) -> String {
    format!("{plain}::{}", STANDARD.encode(signature))
}

/// The CSRF secret derived from the contents of `priv/pve-www.key`.
pub fn csrf_secret(www_key: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, www_key);
    STANDARD_NO_PAD.encode(hmac::sign(&key, b"").as_ref())
}

fn csrf_digest(secret: &str, stamp: &str, userid: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    STANDARD_NO_PAD.encode(hmac::sign(&key, format!("{stamp}:{userid}").as_bytes()).as_ref())
}

/// A CSRF token for `userid` at `time`.
pub fn csrf_token(secret: &str, userid: &str, time: i64) -> String {
    let stamp = format!("{time:08X}");
    let digest = csrf_digest(secret, &stamp, userid);
    format!("{stamp}:{digest}")
}

/// Whether `token` is a valid CSRF token of `userid` now.
pub fn verify_csrf(secret: &str, userid: &str, token: &str, now: i64) -> bool {
    let Some((stamp, sig)) = token.split_once(':') else {
        return false;
    };
    if stamp.len() != 8
        || !stamp
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        || sig.is_empty()
        || sig.contains(char::is_whitespace)
    {
        return false;
    }
    let ttime = i64::from_str_radix(stamp, 16).unwrap_or(0);
    let age = now - ttime;
    let expected = csrf_digest(secret, stamp, userid);
    // both are public-length base64 strings; the comparison need not hide timing
    // any more than PVE's `eq` does, but it costs nothing to
    let same =
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), sig.as_bytes())
            .is_ok();
    same && age > -AUTH_GRACE_PERIOD && age < TICKET_LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_matches_pves_vector() {
        // from PVE's own code: pve-www.key "example-www-key-content\n",
        // user root@pam, time 0x65A1B2C3
        let secret = csrf_secret(b"example-www-key-content\n");
        assert_eq!(secret, "O+di9TTKOKZO/xZiWRslzA71QCb0PZ9Y0ol0mms8ApU");
        let token = csrf_token(&secret, "root@pam", 0x65A1_B2C3);
        assert_eq!(
            token,
            "65A1B2C3:g4+bnn5h2ribSeF0UfG2HwVLHdnn8LUs9b5jP0v4wUc"
        );
        let t0 = 0x65A1_B2C3;
        assert!(verify_csrf(&secret, "root@pam", &token, t0 + 10));
        assert!(!verify_csrf(&secret, "alice@pve", &token, t0 + 10));
        assert!(!verify_csrf(
            &secret,
            "root@pam",
            &token,
            t0 + TICKET_LIFETIME
        ));
        assert!(!verify_csrf(
            &secret,
            "root@pam",
            &token,
            t0 - AUTH_GRACE_PERIOD
        ));
        assert!(verify_csrf(
            &secret,
            "root@pam",
            &token,
            t0 - AUTH_GRACE_PERIOD + 1
        ));
        assert!(!verify_csrf(&secret, "root@pam", "65a1b2c3:x", t0));
    }

    #[test]
    fn age_windows() {
        let now = 1_000_000;
        // a fresh key: no ticket older than the key (plus grace)
        assert_eq!(age_range(now, now - 100, false, true), Some((-300, 400)));
        assert_eq!(
            age_range(now, now - 10_000, false, true),
            Some((-300, 7200))
        );
        // a key past its lifetime on a quorate cluster
        assert_eq!(
            age_range(now, now - 90_000, false, true),
            Some((90_000 - 86_400, 7200))
        );
        assert_eq!(
            age_range(now, now - 90_000, false, false),
            Some((-300, 7200))
        );
        assert_eq!(age_range(now, now - 100_000, false, true), None);
        // the old key: only tickets made before the rotation (plus grace)
        assert_eq!(age_range(now, now - 1000, true, true), Some((700, 7200)));
        assert_eq!(age_range(now, now - 7600, true, true), None);
    }

    #[test]
    fn lenient_base64_and_unescape() {
        assert_eq!(decode_base64_lenient("aGVsbG8="), b"hello");
        assert_eq!(decode_base64_lenient("aGVs\nbG8"), b"hello");
        assert_eq!(decode_base64_lenient("aGVsbG8=junk"), b"hello");
        assert_eq!(uri_unescape("a%3Ab+c%zz"), "a:b+c%zz");
        assert_eq!(
            ticket_plain("root@pam", 0x65A1_B2C3),
            "PVE:root@pam:65A1B2C3"
        );
    }

    #[test]
    fn malformed_tickets() {
        let keys = AuthKeys::default();
        for t in [
            "",
            "PVE:root@pam:65A1B2C3",
            "XYZ:root@pam:65A1B2C3::c2ln",
            "PVE:a b::c2ln",
        ] {
            assert_eq!(
                verify_ticket(t, &keys, 0, true),
                Err(TicketError::Malformed),
                "{t}"
            );
        }
        assert_eq!(
            verify_ticket("PVE:root@pam:65A1B2C3::c2ln", &keys, 0, true),
            Err(TicketError::Invalid)
        );
    }
}
