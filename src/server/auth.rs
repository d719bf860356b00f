//! Who may do what on `pacer serve`'s operator API: a pure decision over
//! the route's need, the request's `Authorization` header and the tokens
//! the operator configured.
//!
//! | need | routes | without a token | read token | admin token |
//! |---|---|---|---|---|
//! | [`Need::Open`] | `/healthz`, `/readyz`, `/metrics` | yes | yes | yes |
//! | [`Need::View`] | `GET /api/v1/status` | the public view | the full view | the full view |
//! | [`Need::Admin`] | `POST /api/v1/retry`, `/apply`, `/endpoints/release` | 401 | 403 | yes |
//!
//! The dashboard's page sends a session as its bearer instead
//! ([`super::session`], read by [`decide_request`]): it grants the level of
//! the token it was signed in with.
//!
//! Webhooks carry their own HMAC or token ([`super::webhook`]) and the
//! config server's task routes their own login tokens ([`crate::delivery`]):
//! neither takes these tokens.
//!
//! With no admin token configured, writes are refused (403, naming the
//! flag): an API that changes Marathon is never open by default. A token
//! that is sent but matches neither is refused (401) even where none is
//! needed, so a client with a stale token learns it at once instead of
//! quietly getting less.
//!
//! Tokens are compared in constant time ([`constant_time_eq`]), both of
//! them on every request, and never appear in a [`Refusal`].

use crate::model::Secret;
use axum::http::{HeaderValue, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The environment variable and the flag that set each token, for messages.
pub const ADMIN_TOKEN_FLAG: &str = "--admin-token-file or PACER_ADMIN_TOKEN";
pub const READ_TOKEN_FLAG: &str = "--read-token-file or PACER_READ_TOKEN";

/// The shortest token accepted: anything shorter is guessable.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The operator's tokens. Either may be absent.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// Writes and everything a read token sees.
    pub admin: Option<Secret<String>>,
    /// The full status; no writes.
    pub read: Option<Secret<String>>,
}

impl Tokens {
    /// Checks the tokens an operator gave: long enough, printable (they
    /// travel in a header), and not the same token twice.
    pub fn new(admin: Option<String>, read: Option<String>) -> Result<Tokens, String> {
        for (t, flag) in [(&admin, ADMIN_TOKEN_FLAG), (&read, READ_TOKEN_FLAG)] {
            if let Some(t) = t {
                check_token(t).map_err(|why| format!("the token of {flag} {why}"))?;
            }
        }
        if admin.is_some() && admin == read {
            return Err("the admin token and the read token are the same: \
                 a read token must not be able to write"
                .into());
        }
        Ok(Tokens {
            admin: admin.map(Secret::new),
            read: read.map(Secret::new),
        })
    }
}

fn check_token(t: &str) -> Result<(), String> {
    if t.len() < MIN_TOKEN_BYTES {
        return Err(format!(
            "is shorter than {MIN_TOKEN_BYTES} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("holds a space or a character that is not printable ASCII".into());
    }
    Ok(())
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone, any token or none (health, readiness, metrics).
    Open,
    /// Anyone; what they see depends on the token (the status).
    View,
    /// The admin token (every write).
    Admin,
}

/// Who the caller is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Anonymous,
    Read,
    Admin,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 401 (no or a bad token: `WWW-Authenticate: Bearer` goes with it)
    /// or 403 (a good token that may not do this, or writes are off).
    pub status: StatusCode,
    /// The `reason` label of `pacer_api_refusals_total` and the answer's.
    pub reason: &'static str,
    pub message: String,
}

/// Every [`Refusal::reason`], so each series shows from the start.
pub const REASONS: [&str; 6] = [
    "missingToken",
    "badToken",
    "badSession",
    "readOnlyToken",
    "writesDisabled",
    "malformedAuthorization",
];

/// The decision: the caller's level, or why not.
pub fn decide(
    need: Need,
    authorization: Option<&HeaderValue>,
    tokens: &Tokens,
) -> Result<Level, Refusal> {
    if need == Need::Open {
        return Ok(Level::Anonymous);
    }
    if need == Need::Admin && tokens.admin.is_none() {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            reason: "writesDisabled",
            message: format!(
                "writes through the API are off: no admin token is configured ({ADMIN_TOKEN_FLAG})"
            ),
        });
    }
    let level = match authorization {
        None => Level::Anonymous,
        Some(value) => {
            let Some(given) = bearer(value) else {
                return Err(Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    reason: "malformedAuthorization",
                    message: "the Authorization header is not `Bearer <token>`".into(),
                });
            };
            // Both compared, whichever matches: the time taken says nothing
            // about which token, if any, was close.
            let is_admin = matches(given, tokens.admin.as_ref());
            let is_read = matches(given, tokens.read.as_ref());
            if is_admin {
                Level::Admin
            } else if is_read {
                Level::Read
            } else {
                return Err(Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    reason: "badToken",
                    message: "the bearer token is not one this daemon knows".into(),
                });
            }
        }
    };
    allow(need, level)
}

/// [`decide`] over a whole request, where the bearer may also be a
/// dashboard session ([`super::session`]) valid at `now_s`.
pub fn decide_request(
    need: Need,
    headers: &axum::http::HeaderMap,
    tokens: &Tokens,
    now_s: i64,
) -> Result<Level, Refusal> {
    let given = headers.get(axum::http::header::AUTHORIZATION);
    if need != Need::Open
        && let Some(value) = given.and_then(bearer)
        && super::session::looks_like_session(value)
    {
        let session = std::str::from_utf8(value).unwrap_or("");
        return match super::session::verify(tokens, session, now_s) {
            Some(level) => allow(need, level),
            None => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                reason: "badSession",
                message: "the session is not valid (expired, or a token changed): sign in again"
                    .into(),
            }),
        };
    }
    decide(need, given, tokens)
}

/// Whether `level` meets `need`.
fn allow(need: Need, level: Level) -> Result<Level, Refusal> {
    match (need, level) {
        (Need::Admin, Level::Anonymous) => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: "missingToken",
            message: "this write needs the admin token: send `Authorization: Bearer <token>`"
                .into(),
        }),
        (Need::Admin, Level::Read) => Err(Refusal {
            status: StatusCode::FORBIDDEN,
            reason: "readOnlyToken",
            message: "the read token may not write: this needs the admin token".into(),
        }),
        _ => Ok(level),
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let v = value.as_bytes();
    let (scheme, rest) = v.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn matches(given: &[u8], want: Option<&Secret<String>>) -> bool {
    // An absent token is compared too (against a value no header can hold),
    // so both comparisons always run.
    let want = want.map_or(&[0u8][..], |s| s.expose().as_bytes());
    constant_time_eq(given, want)
}

type HmacSha256 = Hmac<Sha256>;

/// Compares two byte strings in time independent of their contents and
/// lengths, by comparing their HMACs under a key only this process knows
/// (`verify_slice` is constant-time).
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let key = per_process_key();
    let mut a = HmacSha256::new_from_slice(key).expect("any key length");
    a.update(given);
    let mut b = HmacSha256::new_from_slice(key).expect("any key length");
    b.update(expected);
    a.verify_slice(&b.finalize().into_bytes()).is_ok()
}

fn per_process_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(rand::random)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-token-0123456789abcdef";
    const READ: &str = "read-token-0123456789abcdef";

    fn tokens() -> Tokens {
        Tokens::new(Some(ADMIN.into()), Some(READ.into())).unwrap()
    }

    fn auth(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn the_table() {
        use Level::{Admin as A, Anonymous, Read};
        use Need::{Admin, Open, View};
        let t = tokens();
        let admin = auth(&format!("Bearer {ADMIN}"));
        let read = auth(&format!("bearer  {READ} "));
        let bad = auth("Bearer not-a-token-of-ours-at-all");
        let basic = auth("Basic YWRtaW46YWRtaW4=");
        let cases: Vec<(Need, Option<&HeaderValue>, Result<Level, &str>)> = vec![
            (Open, None, Ok(Anonymous)),
            (Open, Some(&bad), Ok(Anonymous)),
            (View, None, Ok(Anonymous)),
            (View, Some(&read), Ok(Read)),
            (View, Some(&admin), Ok(A)),
            (View, Some(&bad), Err("badToken")),
            (View, Some(&basic), Err("malformedAuthorization")),
            (Admin, None, Err("missingToken")),
            (Admin, Some(&read), Err("readOnlyToken")),
            (Admin, Some(&bad), Err("badToken")),
            (Admin, Some(&admin), Ok(A)),
        ];
        for (need, header, want) in cases {
            let got = decide(need, header, &t);
            let ctx = format!("{need:?} {header:?}: {got:?}");
            match (&got, want) {
                (Ok(l), Ok(w)) => assert_eq!(*l, w, "{ctx}"),
                (Err(r), Err(w)) => {
                    assert_eq!(r.reason, w, "{ctx}");
                    assert!(REASONS.contains(&r.reason), "{ctx}");
                    let want_status = if w == "readOnlyToken" { 403 } else { 401 };
                    assert_eq!(r.status.as_u16(), want_status, "{ctx}");
                    assert!(!r.message.contains(ADMIN) && !r.message.contains(READ));
                }
                _ => panic!("{ctx}: want {want:?}"),
            }
        }
    }

    #[test]
    fn without_an_admin_token_writes_are_off_whatever_is_sent() {
        let t = Tokens::new(None, Some(READ.into())).unwrap();
        for h in [None, Some(auth(&format!("Bearer {READ}")))] {
            let r = decide(Need::Admin, h.as_ref(), &t).unwrap_err();
            assert_eq!((r.status.as_u16(), r.reason), (403, "writesDisabled"));
            assert!(r.message.contains("--admin-token-file"), "{}", r.message);
        }
        // The status still answers, with the read token's view.
        let h = auth(&format!("Bearer {READ}"));
        assert_eq!(decide(Need::View, Some(&h), &t), Ok(Level::Read));
        // No token at all: every view is the public one.
        let none = Tokens::default();
        assert_eq!(decide(Need::View, None, &none), Ok(Level::Anonymous));
        let h = auth("Bearer whatever-someone-sends");
        assert_eq!(
            decide(Need::View, Some(&h), &none).unwrap_err().reason,
            "badToken"
        );
    }

    #[test]
    fn tokens_are_checked_when_given() {
        assert!(Tokens::new(Some("short".into()), None).is_err());
        assert!(Tokens::new(None, Some("has a space in it!!!".into())).is_err());
        let e = Tokens::new(Some(ADMIN.into()), Some(ADMIN.into())).unwrap_err();
        assert!(e.contains("the same"), "{e}");
        assert!(!e.contains(ADMIN), "{e}");
        let e = Tokens::new(Some("short".into()), None).unwrap_err();
        assert!(
            e.contains("--admin-token-file") && !e.contains("short\""),
            "{e}"
        );
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        // A prefix of the token is not the token.
        assert!(!constant_time_eq(&ADMIN.as_bytes()[..20], ADMIN.as_bytes()));
    }

    /// The comparison hashes both sides whole before comparing: a guess
    /// that shares a long prefix with the token does no less work than one
    /// that shares none. Checked by the work done, not the wall clock (a
    /// timing assertion would be flaky on a shared machine): both go through
    /// the same HMAC of the full input, and `verify_slice` compares the two
    /// 32-byte tags with `subtle`'s constant-time equality.
    #[test]
    fn the_comparison_does_not_depend_on_where_the_guess_differs() {
        let token = ADMIN.as_bytes();
        let mut near = token.to_vec();
        *near.last_mut().unwrap() ^= 1;
        let mut far = token.to_vec();
        far[0] ^= 1;
        // Same length and a different first or last byte: both refused, and
        // the compared values (the tags) differ in unpredictable places.
        assert!(!constant_time_eq(&near, token));
        assert!(!constant_time_eq(&far, token));
        let tag = |b: &[u8]| {
            let mut m = HmacSha256::new_from_slice(per_process_key()).unwrap();
            m.update(b);
            m.finalize().into_bytes()
        };
        assert_eq!(tag(&near).len(), 32);
        assert_ne!(tag(&near)[..4], tag(token)[..4]);
    }

    #[test]
    fn a_session_stands_for_its_token_and_a_bad_one_is_refused() {
        use axum::http::{HeaderMap, header::AUTHORIZATION};
        let t = Tokens::new(Some(ADMIN.into()), Some(READ.into())).unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {v}")).unwrap(),
            );
            h
        };
        let read = super::super::session::issue(&t, Level::Read, 100).unwrap();
        let admin = super::super::session::issue(&t, Level::Admin, 100).unwrap();
        assert_eq!(
            decide_request(Need::View, &with(&read), &t, 101),
            Ok(Level::Read)
        );
        assert_eq!(
            decide_request(Need::Admin, &with(&admin), &t, 101),
            Ok(Level::Admin)
        );
        let r = decide_request(Need::Admin, &with(&read), &t, 101).unwrap_err();
        assert_eq!((r.status.as_u16(), r.reason), (403, "readOnlyToken"));
        // Expired, or forged: refused as a bad token is, never "anonymous".
        let later = 100 + super::super::session::LIFETIME_SECS + 1;
        let r = decide_request(Need::View, &with(&read), &t, later).unwrap_err();
        assert_eq!((r.status.as_u16(), r.reason), (401, "badSession"));
        let forged = admin.replacen(".a.", ".r.", 1);
        assert!(decide_request(Need::View, &with(&forged), &t, 101).is_err());
        // Tokens still work beside sessions, and nothing still means anonymous.
        assert_eq!(
            decide_request(Need::Admin, &with(ADMIN), &t, 101),
            Ok(Level::Admin)
        );
        assert_eq!(
            decide_request(Need::View, &HeaderMap::new(), &t, 101),
            Ok(Level::Anonymous)
        );
    }
}
