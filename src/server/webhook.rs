//! Decides what to do with a Git forge's push webhook: a pure function of the
//! request's headers, its raw body, the shared secret and the tracked branch.
//!
//! | provider | event header | authentication | delivery id |
//! |---|---|---|---|
//! | GitHub | `X-GitHub-Event: push` | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>` | `X-GitHub-Delivery` |
//! | GitLab | `X-Gitlab-Event: Push Hook` | `X-Gitlab-Token: <secret>` | `X-Gitlab-Event-UUID` |
//! | Gitea, Forgejo | `X-Gitea-Event: push` | `X-Gitea-Signature: <hex HMAC-SHA256(secret, body)>` | `X-Gitea-Delivery` |
//!
//! Gitea also sends GitHub's headers, so it is recognised first.
//!
//! The order of checks is: recognise the provider, authenticate, and only then
//! look at the event and parse the body. An unauthenticated request learns
//! nothing but "rejected", and no payload is parsed before it is verified.
//!
//! **Without a secret** (or with an empty one) every delivery is rejected,
//! and there is no mode that accepts one unauthenticated: a webhook only
//! asks pacer to fetch sooner, and the poll still runs, so webhooks being
//! off costs at most one poll interval. `pacer serve` says so once at start
//! and in its status (`"webhooks": "off"`).
//!
//! Comparisons are constant-time, and no [`Decision`] ever contains the
//! secret or the signature sent.

use super::auth::constant_time_eq;
use crate::model::Secret;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
}

impl Provider {
    /// The `provider` label in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An authenticated push to the tracked branch: run a reconcile.
    Accepted {
        provider: Provider,
        delivery: Option<String>,
        /// The pushed head, a full commit id. A hint only: the loop fetches
        /// the branch and uses what it finds.
        commit: Option<String>,
    },
    /// Bad or missing signature or token, or not a webhook pacer knows (HTTP 401).
    Rejected { reason: String },
    /// Authenticated, but nothing to do: another branch, a tag, a ping, a
    /// branch deletion, a body that isn't a push payload (HTTP 202).
    Ignored { reason: String },
}

impl Decision {
    /// The `decision` label in metrics and logs: `accepted`, `rejected` or `ignored`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Accepted { .. } => "accepted",
            Decision::Rejected { .. } => "rejected",
            Decision::Ignored { .. } => "ignored",
        }
    }
}

/// Whether deliveries can be accepted at all: a secret is configured, and
/// it is not empty (an empty one would let anyone sign).
pub fn enabled(secret: Option<&Secret<String>>) -> bool {
    secret.is_some_and(|s| !s.expose().is_empty())
}

/// Decides on one webhook delivery. Without a secret, every delivery is
/// rejected.
pub fn decide(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&Secret<String>>,
    branch: &str,
) -> Decision {
    let Some(provider) = provider_of(headers) else {
        return reject(
            "not a recognised webhook: no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header",
        );
    };
    let Some(secret) = secret.filter(|s| enabled(Some(s))) else {
        return reject(
            "webhooks are off: no webhook secret is configured (--webhook-secret or PACER_WEBHOOK_SECRET)",
        );
    };
    if let Err(reason) = authenticate(provider, headers, body, secret.expose().as_bytes()) {
        return Decision::Rejected { reason };
    }

    let event = header(headers, event_header(provider)).unwrap_or_default();
    let is_push = match provider {
        Provider::GitHub | Provider::Gitea => event == "push",
        Provider::GitLab => event == "Push Hook",
    };
    if !is_push {
        return ignore(format!("{provider} `{event}` event, not a push"));
    }
    if is_form_encoded(headers) {
        return ignore(format!(
            "{provider} push sent as form data: set the webhook's content type to application/json"
        ));
    }
    let push: Push = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return ignore(format!("{provider} push payload is not valid JSON: {e}")),
    };
    let Some(git_ref) = push.git_ref else {
        return ignore(format!("{provider} push payload has no `ref`"));
    };
    let Some(pushed) = git_ref.strip_prefix("refs/heads/") else {
        return ignore(format!("push to `{git_ref}`, not a branch"));
    };
    if pushed != branch {
        return ignore(format!(
            "push to branch `{pushed}`, pacer follows `{branch}`"
        ));
    }
    let zero_after = push
        .after
        .as_deref()
        .is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b == b'0'));
    if push.deleted == Some(true) || zero_after {
        return ignore(format!("branch `{branch}` was deleted"));
    }
    let commit = push
        .checkout_sha
        .filter(|c| is_commit_id(c))
        .or(push.after.filter(|c| is_commit_id(c)));
    Decision::Accepted {
        provider,
        delivery: delivery(provider, headers),
        commit,
    }
}

/// The fields pacer reads from all three providers' push payloads.
#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    /// GitLab: the head after the push, `null` when the branch was deleted.
    checkout_sha: Option<String>,
    /// GitHub and Gitea.
    deleted: Option<bool>,
}

/// A non-zero full hex commit id (SHA-1 or SHA-256).
fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes().all(|b| b.is_ascii_hexdigit())
        && s.bytes().any(|b| b != b'0')
}

fn reject(reason: &str) -> Decision {
    Decision::Rejected {
        reason: reason.to_string(),
    }
}

/// Longest reason kept; a reason quotes what the sender wrote (the event
/// name, the ref) and goes into a log line and the answer.
const MAX_REASON: usize = 300;

fn ignore(reason: String) -> Decision {
    // One short line, whatever was sent: control characters escaped, the
    // rest cut off.
    let mut shown = String::new();
    for c in reason.chars() {
        if shown.len() >= MAX_REASON {
            shown.push('…');
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    Decision::Ignored { reason: shown }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Which forge sent a request, from its event header; `None` for anything else.
pub fn provider_of(headers: &HeaderMap) -> Option<Provider> {
    // Gitea (and Forgejo) also send X-GitHub-Event, so look for them first.
    if headers.contains_key("x-gitea-event") {
        Some(Provider::Gitea)
    } else if headers.contains_key("x-gitlab-event") {
        Some(Provider::GitLab)
    } else if headers.contains_key("x-github-event") {
        Some(Provider::GitHub)
    } else {
        None
    }
}

fn event_header(provider: Provider) -> &'static str {
    match provider {
        Provider::GitHub => "x-github-event",
        Provider::GitLab => "x-gitlab-event",
        Provider::Gitea => "x-gitea-event",
    }
}

fn delivery(provider: Provider, headers: &HeaderMap) -> Option<String> {
    let name = match provider {
        Provider::GitHub => "x-github-delivery",
        Provider::GitLab => "x-gitlab-event-uuid",
        Provider::Gitea => "x-gitea-delivery",
    };
    // An id is logged and put in the status: keep it short and printable.
    header(headers, name)
        .filter(|d| !d.is_empty() && d.len() <= 128)
        .map(|d| d.chars().filter(|c| c.is_ascii_graphic()).collect())
}

fn is_form_encoded(headers: &HeaderMap) -> bool {
    header(headers, "content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
}

fn authenticate(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), String> {
    match provider {
        Provider::GitHub => {
            let sig = header(headers, "x-hub-signature-256")
                .ok_or("missing X-Hub-Signature-256 header (is the webhook's secret set?)")?;
            let hex = sig
                .strip_prefix("sha256=")
                .ok_or("X-Hub-Signature-256 is not of the form `sha256=<hex>`")?;
            verify_hmac(secret, body, hex, "X-Hub-Signature-256")
        }
        Provider::Gitea => {
            // Gitea sends both; older versions only X-Gitea-Signature.
            if let Some(hex) = header(headers, "x-gitea-signature") {
                verify_hmac(secret, body, hex, "X-Gitea-Signature")
            } else if let Some(sig) = header(headers, "x-hub-signature-256") {
                let hex = sig
                    .strip_prefix("sha256=")
                    .ok_or("X-Hub-Signature-256 is not of the form `sha256=<hex>`")?;
                verify_hmac(secret, body, hex, "X-Hub-Signature-256")
            } else {
                Err("missing X-Gitea-Signature header (is the webhook's secret set?)".into())
            }
        }
        Provider::GitLab => {
            let token = headers
                .get("x-gitlab-token")
                .ok_or("missing X-Gitlab-Token header (is the webhook's secret token set?)")?;
            if constant_time_eq(token.as_bytes(), secret) {
                Ok(())
            } else {
                Err("X-Gitlab-Token does not match the webhook secret".into())
            }
        }
    }
}

fn verify_hmac(secret: &[u8], body: &[u8], hex_sig: &str, name: &str) -> Result<(), String> {
    let sig = hex::decode(hex_sig).map_err(|_| format!("{name} is not hex"))?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| format!("{name} does not match the body signed with the webhook secret"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    const SECRET: &str = "s3cr3t-webhook-value";
    const HEAD: &str = "0123456789abcdef0123456789abcdef01234567";

    fn sign(body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn push_body(git_ref: &str) -> Vec<u8> {
        serde_json::json!({
            "ref": git_ref,
            "before": "1111111111111111111111111111111111111111",
            "after": HEAD,
            "checkout_sha": HEAD,
            "repository": {"full_name": "ops/config"},
        })
        .to_string()
        .into_bytes()
    }

    #[derive(Clone, Copy, Debug)]
    enum Auth {
        Good,
        Bad,
        Missing,
    }

    /// A delivery as `provider` sends it.
    fn delivery_for(provider: Provider, event: &str, body: &[u8], auth: Auth) -> HeaderMap {
        let sig = match auth {
            Auth::Good => Some(sign(body)),
            Auth::Bad => Some(sign(b"something else")),
            Auth::Missing => None,
        };
        let mut h: Vec<(&str, String)> = vec![("content-type", "application/json".into())];
        match provider {
            Provider::GitHub => {
                h.push(("x-github-event", event.into()));
                h.push(("x-github-delivery", "gh-1".into()));
                if let Some(s) = sig {
                    h.push(("x-hub-signature-256", format!("sha256={s}")));
                }
            }
            Provider::GitLab => {
                h.push(("x-gitlab-event", event.into()));
                h.push(("x-gitlab-event-uuid", "gl-1".into()));
                match auth {
                    Auth::Good => h.push(("x-gitlab-token", SECRET.into())),
                    Auth::Bad => h.push(("x-gitlab-token", "wrong".into())),
                    Auth::Missing => {}
                }
            }
            Provider::Gitea => {
                h.push(("x-gitea-event", event.into()));
                h.push(("x-github-event", event.into()));
                h.push(("x-gitea-delivery", "gt-1".into()));
                if let Some(s) = sig {
                    h.push(("x-gitea-signature", s));
                }
            }
        }
        headers(&h)
    }

    fn push_event(p: Provider) -> &'static str {
        match p {
            Provider::GitLab => "Push Hook",
            _ => "push",
        }
    }

    fn other_event(p: Provider) -> &'static str {
        match p {
            Provider::GitHub => "ping",
            Provider::GitLab => "Merge Request Hook",
            Provider::Gitea => "create",
        }
    }

    #[derive(Debug)]
    enum Want {
        Accepted(&'static str),
        Rejected(&'static str),
        Ignored(&'static str),
    }

    #[test]
    fn decides_each_provider_table() {
        let secret = Secret::new(SECRET.to_string());
        for provider in [Provider::GitHub, Provider::GitLab, Provider::Gitea] {
            let push = push_event(provider);
            let main = push_body("refs/heads/main");
            let cases: Vec<(&str, &str, Vec<u8>, Auth, Want)> = vec![
                (
                    "good signature",
                    push,
                    main.clone(),
                    Auth::Good,
                    Want::Accepted(HEAD),
                ),
                (
                    "bad signature",
                    push,
                    main.clone(),
                    Auth::Bad,
                    Want::Rejected("does not match"),
                ),
                (
                    "missing signature",
                    push,
                    main.clone(),
                    Auth::Missing,
                    Want::Rejected("missing"),
                ),
                (
                    "other branch",
                    push,
                    push_body("refs/heads/feature"),
                    Auth::Good,
                    Want::Ignored("branch `feature`"),
                ),
                (
                    "non-push event",
                    other_event(provider),
                    main.clone(),
                    Auth::Good,
                    Want::Ignored("not a push"),
                ),
                (
                    "tag push",
                    push,
                    push_body("refs/tags/v1.2.0"),
                    Auth::Good,
                    Want::Ignored("not a branch"),
                ),
                (
                    "malformed JSON",
                    push,
                    b"{\"ref\": ".to_vec(),
                    Auth::Good,
                    Want::Ignored("not valid JSON"),
                ),
                (
                    "bad signature, non-push",
                    other_event(provider),
                    main.clone(),
                    Auth::Bad,
                    Want::Rejected("does not match"),
                ),
            ];
            for (name, event, body, auth, want) in cases {
                let h = delivery_for(provider, event, &body, auth);
                let got = decide(&h, &body, Some(&secret), "main");
                let ctx = format!("{provider} / {name}: {got:?}");
                assert!(!format!("{got:?}").contains(SECRET), "{ctx}");
                match (&got, want) {
                    (
                        Decision::Accepted {
                            provider: p,
                            delivery,
                            commit,
                        },
                        Want::Accepted(c),
                    ) => {
                        assert_eq!(*p, provider, "{ctx}");
                        assert_eq!(commit.as_deref(), Some(c), "{ctx}");
                        assert!(delivery.is_some(), "{ctx}");
                    }
                    (Decision::Rejected { reason }, Want::Rejected(s))
                    | (Decision::Ignored { reason }, Want::Ignored(s)) => {
                        assert!(reason.contains(s), "{ctx}: want {s:?}");
                    }
                    (_, want) => panic!("{ctx}: want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn gitlab_tag_push_hook_is_ignored() {
        let secret = Secret::new(SECRET.to_string());
        let body = push_body("refs/tags/v1");
        let h = delivery_for(Provider::GitLab, "Tag Push Hook", &body, Auth::Good);
        assert!(matches!(
            decide(&h, &body, Some(&secret), "main"),
            Decision::Ignored { .. }
        ));
    }

    #[test]
    fn without_a_secret_every_delivery_is_rejected() {
        let body = push_body("refs/heads/main");
        let empty = Secret::new(String::new());
        assert!(!enabled(None) && !enabled(Some(&empty)));
        // Signed or not, with any key: there is nothing to check against.
        for provider in [Provider::GitHub, Provider::GitLab, Provider::Gitea] {
            for auth in [Auth::Missing, Auth::Good, Auth::Bad] {
                let h = delivery_for(provider, push_event(provider), &body, auth);
                for secret in [None, Some(&empty)] {
                    let got = decide(&h, &body, secret, "main");
                    assert!(
                        matches!(&got, Decision::Rejected { reason } if reason.contains("no webhook secret")),
                        "{provider} {auth:?}: {got:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_sender_is_rejected() {
        let secret = Secret::new(SECRET.to_string());
        let body = push_body("refs/heads/main");
        let got = decide(&HeaderMap::new(), &body, Some(&secret), "main");
        assert!(matches!(got, Decision::Rejected { .. }), "{got:?}");
    }

    #[test]
    fn branch_deletion_is_ignored() {
        let secret = Secret::new(SECRET.to_string());
        let zero = "0".repeat(40);
        let gh = serde_json::json!({"ref": "refs/heads/main", "after": zero, "deleted": true})
            .to_string();
        let h = delivery_for(Provider::GitHub, "push", gh.as_bytes(), Auth::Good);
        let got = decide(&h, gh.as_bytes(), Some(&secret), "main");
        assert!(
            matches!(&got, Decision::Ignored { reason } if reason.contains("deleted")),
            "{got:?}"
        );
        let gl = serde_json::json!({"ref": "refs/heads/main", "after": zero, "checkout_sha": null})
            .to_string();
        let h = delivery_for(Provider::GitLab, "Push Hook", gl.as_bytes(), Auth::Good);
        let got = decide(&h, gl.as_bytes(), Some(&secret), "main");
        assert!(
            matches!(&got, Decision::Ignored { reason } if reason.contains("deleted")),
            "{got:?}"
        );
    }

    #[test]
    fn gitea_accepts_hub_signature_when_gitea_signature_is_absent() {
        let secret = Secret::new(SECRET.to_string());
        let body = push_body("refs/heads/main");
        let h = headers(&[
            ("x-gitea-event", "push".into()),
            ("x-hub-signature-256", format!("sha256={}", sign(&body))),
        ]);
        assert!(matches!(
            decide(&h, &body, Some(&secret), "main"),
            Decision::Accepted {
                provider: Provider::Gitea,
                ..
            }
        ));
    }

    #[test]
    fn form_encoded_github_push_is_ignored_with_a_hint() {
        let secret = Secret::new(SECRET.to_string());
        let body = b"payload=%7B%7D".to_vec();
        let mut h = delivery_for(Provider::GitHub, "push", &body, Auth::Good);
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let got = decide(&h, &body, Some(&secret), "main");
        assert!(
            matches!(&got, Decision::Ignored { reason } if reason.contains("application/json")),
            "{got:?}"
        );
    }

    /// Found by fuzzing: an ignored delivery's reason quoted the event
    /// header and the pushed ref as sent, tabs, newlines and megabytes
    /// included, into the log line and the answer.
    #[test]
    fn reasons_are_one_short_line_whatever_was_sent() {
        let secret = Secret::new(SECRET.to_string());
        let event = delivery_for(Provider::GitHub, "pu\tsh", b"{}", Auth::Good);
        let long_ref = format!("refs/tags/v1\nFAKE log line{}", "x".repeat(100_000));
        let body = push_body(&long_ref);
        let git_ref = delivery_for(Provider::GitHub, "push", &body, Auth::Good);
        for (h, body) in [(event, b"{}".to_vec()), (git_ref, body)] {
            let got = decide(&h, &body, Some(&secret), "main");
            let Decision::Ignored { reason } = &got else {
                panic!("{got:?}")
            };
            assert!(reason.len() <= 400, "a {}-byte reason", reason.len());
            assert!(!reason.chars().any(char::is_control), "{reason:?}");
        }
    }
}
