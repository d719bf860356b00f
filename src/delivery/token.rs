//! Task tokens: what a successful login hands a task, and what every later
//! request carries as `Authorization: Bearer …`.
//!
//! A token is `v1.<payload>.<mac>`, both parts unpadded base64url: the
//! payload is JSON `{"env","app","task","exp","addr"}` (`exp` in Unix
//! seconds; `addr`, the login's address, only with the address check) and
//! the mac is HMAC-SHA256 of `v1.<payload>` under the daemon's key. Nothing
//! is stored per token: any replica holding the key can check one, and a
//! restart with the same key keeps agents logged in.
//!
//! Pure functions; the key is loaded by [`super::keys`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The longest token accepted: a payload of four bounded fields is far
/// shorter; anything longer is refused before it is decoded.
pub const MAX_TOKEN_BYTES: usize = 2048;

const PREFIX: &str = "v1.";

/// What a token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The environment the task runs in.
    pub env: String,
    /// The task's Marathon app id (`/dev/web`).
    pub app: String,
    /// The Mesos task id.
    pub task: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The address the task logged in from, when the address check is on:
    /// renewals and reads must come from it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<std::net::IpAddr>,
}

/// Why a token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of ours: wrong shape, bad signature, too long.
    Invalid,
    /// Ours, but past its expiry.
    Expired,
}

/// The signing key (at least 32 bytes). Never printed.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    /// The shortest key accepted, in bytes.
    pub const MIN_BYTES: usize = 32;

    pub fn new(bytes: Vec<u8>) -> Result<Key, String> {
        if bytes.len() < Self::MIN_BYTES {
            return Err(format!(
                "the token key has {} bytes; it needs at least {}",
                bytes.len(),
                Self::MIN_BYTES
            ));
        }
        Ok(Key(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

/// Signs `claims` into a token.
pub fn sign(key: &Key, claims: &Claims) -> String {
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let mut token = String::with_capacity(PREFIX.len() + payload.len() * 2 + 48);
    token.push_str(PREFIX);
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let mut mac = key.mac();
    mac.update(token.as_bytes());
    let sig = mac.finalize().into_bytes();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    token
}

/// Checks a token's signature, then its expiry against `now` (Unix seconds).
pub fn verify(key: &Key, token: &str, now: i64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES || !token.starts_with(PREFIX) {
        return Err(TokenError::Invalid);
    }
    let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Invalid)?;
    let mut mac = key.mac();
    mac.update(signed.as_bytes());
    // Constant time: a forger learns nothing from how long a refusal took.
    mac.verify_slice(&sig).map_err(|_| TokenError::Invalid)?;
    let payload = URL_SAFE_NO_PAD
        .decode(&signed[PREFIX.len()..])
        .map_err(|_| TokenError::Invalid)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
    if now >= claims.exp {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::new(vec![b; 32]).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            env: "dev".into(),
            app: "/dev/web".into(),
            task: "dev_web.instance-1._app.1".into(),
            exp: 1_000,
            addr: Some("127.0.0.2".parse().unwrap()),
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let t = sign(&key(1), &claims());
        assert!(t.starts_with("v1.") && t.len() < MAX_TOKEN_BYTES, "{t}");
        assert_eq!(verify(&key(1), &t, 999), Ok(claims()));
        assert_eq!(verify(&key(1), &t, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn another_key_or_any_changed_byte_is_refused() {
        let t = sign(&key(1), &claims());
        assert_eq!(verify(&key(2), &t, 0), Err(TokenError::Invalid));
        // Every single-character change of the token is caught.
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(b).unwrap();
            assert!(verify(&key(1), &forged, 0).is_err(), "byte {i}: {forged}");
        }
        // A payload with other claims under the old signature.
        let other = sign(
            &key(1),
            &Claims {
                app: "/dev/api".into(),
                ..claims()
            },
        );
        let (_, sig) = t.rsplit_once('.').unwrap();
        let (payload, _) = other.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&key(1), &format!("{payload}.{sig}"), 0),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn junk_and_oversized_tokens_are_invalid() {
        for junk in ["", "v1.", "v1..", "abc", "v1.%%%.%%%", "v2.e30.AAAA"] {
            assert_eq!(verify(&key(1), junk, 0), Err(TokenError::Invalid), "{junk}");
        }
        let long = format!("v1.{}", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(verify(&key(1), &long, 0), Err(TokenError::Invalid));
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert!(Key::new(vec![0; 31]).is_err());
        assert_eq!(format!("{:?}", key(7)), "Key(***)");
    }
}
