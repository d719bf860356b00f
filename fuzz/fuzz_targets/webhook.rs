//! The webhook decision: provider headers, signatures, push payloads.
//!
//! Input: an HTTP message without the request line: `Name: value` header
//! lines, an empty line, the body. A header value containing `{SIGN}` gets
//! the body's real HMAC (GitHub, Gitea) in its place and `{SECRET}` in
//! `X-Gitlab-Token` the secret itself, so the fuzzer reaches the payload parser
//! behind authentication.
//!
//! Checked: no panic; a delivery without a valid signature is never
//! accepted; without a secret every delivery is rejected; no decision shows the secret; an accepted commit is a full hex
//! id; a delivery id is short and printable; a reason is bounded and fits on
//! one log line.

#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use pacer::model::Secret;
use pacer::server::webhook::{Decision, decide};
use sha2::Sha256;

const SECRET: &str = "whsec-4b9d2f71";
const BRANCH: &str = "main";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    let mut signed = false;
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(&line[..colon]) else {
            continue;
        };
        let mut value = line[colon + 1..].to_vec();
        if let Some(at) = find(&value, b"{SIGN}") {
            value.splice(at..at + 6, sign(body).into_bytes());
            signed = true;
        }
        // The secret only where GitLab sends it: anywhere else it is the
        // sender, who knows it, echoing it back.
        if let Some(at) = find(&value, b"{SECRET}").filter(|_| name == "x-gitlab-token") {
            value.splice(at..at + 8, SECRET.bytes());
            signed = true;
        }
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        headers.append(name, value);
    }

    let secret = Secret::new(SECRET.to_string());
    let with_secret = decide(&headers, body, Some(&secret), BRANCH);
    check(&with_secret);
    if !signed {
        assert!(
            !matches!(with_secret, Decision::Accepted { .. }),
            "accepted without a signature: {with_secret:?}"
        );
    }
    // Without a secret (or an empty one) there is no way in: every
    // delivery is rejected, signed or not.
    let empty = Secret::new(String::new());
    for none in [None, Some(&empty)] {
        let got = decide(&headers, body, none, BRANCH);
        check(&got);
        assert!(matches!(got, Decision::Rejected { .. }), "{got:?}");
    }
});

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn check(d: &Decision) {
    assert!(
        !format!("{d:?}").contains(SECRET),
        "the secret leaked: {d:?}"
    );
    match d {
        Decision::Accepted {
            delivery, commit, ..
        } => {
            if let Some(c) = commit {
                assert!(c.len() == 40 || c.len() == 64, "{c}");
                assert!(c.bytes().all(|b| b.is_ascii_hexdigit()), "{c}");
            }
            if let Some(id) = delivery {
                assert!(id.len() <= 128, "{id}");
                assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id:?}");
            }
        }
        Decision::Rejected { reason } | Decision::Ignored { reason } => {
            assert!(reason.len() <= 1024, "a {}-byte reason", reason.len());
            assert!(
                !reason.chars().any(char::is_control),
                "a reason with control characters: {reason:?}"
            );
        }
    }
}
