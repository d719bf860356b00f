//! Dashboard sessions: a person pastes the read or admin token once, and
//! the page then carries a session instead.
//!
//! `POST /ui/session` checks the token and answers a session that holds no
//! token, only the level and an expiry, signed:
//!
//! `v1.<a|r>.<expiry, Unix s>.<HMAC-SHA256, hex>`
//!
//! - The page keeps it in `sessionStorage` (its own origin, scheme, host
//!   and port, and its own tab) and sends it as `Authorization: Bearer`.
//!   Not a cookie: on plain HTTP a cookie goes to every port of the host,
//!   and on a Mesos agent the other ports are other apps' tasks. Nor can
//!   another site's page make the browser send it.
//! - The key is derived from the configured tokens: every replica with the
//!   same tokens accepts the same sessions, and rotating a token ends
//!   every session signed with the old one.
//! - A bad, forged or expired session is refused as a bad token is (401),
//!   and the page asks to sign in again.
//!
//! Pure: time is an argument.

use super::auth::{Level, Tokens};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long a session lasts.
pub const LIFETIME_SECS: i64 = 12 * 3600;

/// The longest cookie value read; anything longer is not a session.
const MAX_VALUE: usize = 256;

type HmacSha256 = Hmac<Sha256>;

/// The signing key, or `None` when no token is configured (then there is
/// nothing to sign in with).
fn key(tokens: &Tokens) -> Option<[u8; 32]> {
    if tokens.admin.is_none() && tokens.read.is_none() {
        return None;
    }
    let mut h = Sha256::new();
    h.update(b"pacer dashboard session v1\0");
    for t in [&tokens.admin, &tokens.read] {
        match t {
            Some(s) => {
                h.update([1u8]);
                h.update((s.expose().len() as u64).to_be_bytes());
                h.update(s.expose().as_bytes());
            }
            None => h.update([0u8]),
        }
    }
    Some(h.finalize().into())
}

fn letter(level: Level) -> Option<char> {
    match level {
        Level::Admin => Some('a'),
        Level::Read => Some('r'),
        Level::Anonymous => None,
    }
}

fn sign(key: &[u8; 32], payload: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

/// A session value for `level` from `now_s`, or `None` for the anonymous
/// level or without tokens.
pub fn issue(tokens: &Tokens, level: Level, now_s: i64) -> Option<String> {
    let key = key(tokens)?;
    let payload = format!("v1.{}.{}", letter(level)?, now_s + LIFETIME_SECS);
    let tag = hex::encode(sign(&key, &payload).finalize().into_bytes());
    Some(format!("{payload}.{tag}"))
}

/// The level a session value grants at `now_s`, if it is one of ours and
/// not expired.
pub fn verify(tokens: &Tokens, value: &str, now_s: i64) -> Option<Level> {
    if value.len() > MAX_VALUE {
        return None;
    }
    let key = key(tokens)?;
    let (payload, tag) = value.rsplit_once('.')?;
    let tag = hex::decode(tag).ok()?;
    sign(&key, payload).verify_slice(&tag).ok()?;
    let mut parts = payload.split('.');
    let (Some("v1"), Some(l), Some(exp), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let exp: i64 = exp.parse().ok()?;
    if exp <= now_s || exp > now_s + LIFETIME_SECS {
        return None;
    }
    match l {
        "a" if tokens.admin.is_some() => Some(Level::Admin),
        "r" if tokens.read.is_some() => Some(Level::Read),
        _ => None,
    }
}

/// Whether a bearer value is shaped as a session (not as a token).
pub fn looks_like_session(value: &[u8]) -> bool {
    value.starts_with(b"v1.") && value.len() <= MAX_VALUE
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-token-0123456789abcdef";
    const READ: &str = "read-token-0123456789abcdef";

    fn tokens() -> Tokens {
        Tokens::new(Some(ADMIN.into()), Some(READ.into())).unwrap()
    }

    #[test]
    fn a_session_grants_its_level_until_it_expires() {
        let t = tokens();
        let a = issue(&t, Level::Admin, 1000).unwrap();
        let r = issue(&t, Level::Read, 1000).unwrap();
        assert_eq!(verify(&t, &a, 1001), Some(Level::Admin));
        assert_eq!(verify(&t, &r, 1001), Some(Level::Read));
        assert_eq!(verify(&t, &a, 1000 + LIFETIME_SECS), None);
        assert!(!a.contains(ADMIN) && !a.contains(READ), "{a}");
        assert_eq!(issue(&t, Level::Anonymous, 1000), None);
    }

    #[test]
    fn a_forged_or_altered_session_grants_nothing() {
        let t = tokens();
        let r = issue(&t, Level::Read, 1000).unwrap();
        // Promoting the level or moving the expiry breaks the signature.
        assert_eq!(verify(&t, &r.replacen(".r.", ".a.", 1), 1001), None);
        let (payload, tag) = r.rsplit_once('.').unwrap();
        let later = payload.replace(&(1000 + LIFETIME_SECS).to_string(), "99999999999");
        assert_eq!(verify(&t, &format!("{later}.{tag}"), 1001), None);
        for junk in ["", "v1", "v1.a.1.zz", "v1.a.x.00", &"a".repeat(10_000)] {
            assert_eq!(verify(&t, junk, 1001), None, "{junk:.20}");
        }
        // Another daemon's tokens, or a rotated one: not ours.
        let other =
            Tokens::new(Some("another-admin-token-0123".into()), Some(READ.into())).unwrap();
        assert_eq!(verify(&other, &r, 1001), None);
        // No tokens at all: nothing to sign in with.
        assert_eq!(issue(&Tokens::default(), Level::Admin, 1000), None);
        assert_eq!(verify(&Tokens::default(), &r, 1001), None);
    }
}
