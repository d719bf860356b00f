//! Signed commits: whether a commit was signed by a key of a trust list, in
//! process (ssh-key's SshSig for SSH signatures, rpgp for OpenPGP), with no
//! `gpg` or `ssh-keygen` at run time.
//!
//! The caller chooses where the trust list comes from. It must not be the
//! commit being checked: a committer could otherwise trust themselves by
//! adding their key in the same commit. `pacer verify` reads it from a
//! trusted base revision (`--signers-from`) or a file outside the repo.

pub mod gate;
pub mod pgp;
pub mod signers;

pub use signers::{MAX_TRUST_BYTES, MAX_TRUST_ENTRIES, TrustError, TrustList};

use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};
use ssh_key::{HashAlg, PublicKey, SshSig};

/// A `gpgsig` header larger than this is refused unread.
pub const MAX_SIGNATURE_BYTES: usize = 64 * 1024;
/// `mode: all` checks at most this many commits in one range.
pub const MAX_RANGE_COMMITS: usize = 10_000;
/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
pub const GIT_NAMESPACE: &str = "git";

/// Which commits an environment's policy checks.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only the commit being deployed.
    #[default]
    Head,
    /// Every commit since the last one deployed (reachable from the head
    /// and not from the base, merge parents included).
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Ssh,
    Pgp,
}

/// Who signed a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub kind: Kind,
    /// The allowed_signers principals (comma-joined) or the OpenPGP user id.
    pub principal: String,
    /// `SHA256:...` for SSH, upper-case hex for OpenPGP (the key or subkey
    /// that signed).
    pub fingerprint: String,
}

/// Why a commit is not trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Refused {
    #[error("the commit is not signed")]
    Unsigned,
    #[error("signed by a key that is not in the trust list ({fingerprint})")]
    UnknownKey { kind: Kind, fingerprint: String },
    #[error("the signature does not match the commit (changed after signing?), key {fingerprint}")]
    BadSignature { fingerprint: String },
    #[error("signed for the namespace `{namespace}`, not `git`")]
    WrongNamespace { namespace: String },
    #[error("key {fingerprint}: {detail}")]
    Expired { fingerprint: String, detail: String },
    #[error("unsupported signature: {what}")]
    Unsupported { what: String },
    #[error("malformed signature: {detail}")]
    Malformed { detail: String },
    #[error("the trust list cannot be used: {problem}")]
    TrustList { problem: String },
    #[error("the commit cannot be read: {detail}")]
    Unreadable { detail: String },
}

/// The time a key's validity window is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// The commit's committer time, as `git verify-commit` does.
    CommitTime,
    /// Unix seconds.
    Unix(i64),
}

pub(crate) fn show_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// Checks one commit's signature against `trust`.
pub fn verify_commit(
    repo: &Repository,
    oid: Oid,
    trust: &TrustList,
    at: At,
) -> Result<Verified, Refused> {
    let unreadable = |e: git2::Error| Refused::Unreadable {
        detail: e.message().to_string(),
    };
    let commit = repo.find_commit(oid).map_err(unreadable)?;
    let when = match at {
        At::CommitTime => commit.committer().when().seconds(),
        At::Unix(t) => t,
    };
    let (sig, payload) = match repo.extract_signature(&oid, None) {
        Ok(pair) => pair,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(Refused::Unsigned),
        Err(e) => return Err(unreadable(e)),
    };
    verify_signature(&sig, &payload, trust, when)
}

/// Checks a detached signature (the `gpgsig` header) over `payload` (the
/// commit object without it); `when` is the time for validity windows.
pub fn verify_signature(
    sig: &[u8],
    payload: &[u8],
    trust: &TrustList,
    when: i64,
) -> Result<Verified, Refused> {
    if sig.len() > MAX_SIGNATURE_BYTES {
        return Err(Refused::Malformed {
            detail: format!(
                "the signature is {} bytes, over the limit of {MAX_SIGNATURE_BYTES}",
                sig.len()
            ),
        });
    }
    let Ok(text) = std::str::from_utf8(sig) else {
        return Err(Refused::Malformed {
            detail: "the signature is not text".into(),
        });
    };
    let text = text.trim_start();
    if text.starts_with("-----BEGIN SSH SIGNATURE-----") {
        verify_ssh(text, payload, trust, when)
    } else if text.starts_with("-----BEGIN PGP SIGNATURE-----") {
        pgp::verify(text, payload, trust)
    } else {
        let first = text.lines().next().unwrap_or("").chars().take(60).collect();
        Err(Refused::Unsupported { what: first })
    }
}

fn verify_ssh(
    text: &str,
    payload: &[u8],
    trust: &TrustList,
    when: i64,
) -> Result<Verified, Refused> {
    let sig = SshSig::from_pem(text).map_err(|e| Refused::Malformed {
        detail: format!("unreadable SSH signature: {e}"),
    })?;
    if sig.namespace() != GIT_NAMESPACE {
        return Err(Refused::WrongNamespace {
            namespace: sig.namespace().to_string(),
        });
    }
    let key = PublicKey::from(sig.public_key().clone());
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let entries: Vec<_> = trust
        .ssh
        .iter()
        .filter(|s| s.key.key_data() == sig.public_key())
        .collect();
    if entries.is_empty() {
        return Err(Refused::UnknownKey {
            kind: Kind::Ssh,
            fingerprint,
        });
    }
    if let Err(e) = key.verify(GIT_NAMESPACE, payload, &sig) {
        return Err(match e {
            ssh_key::Error::AlgorithmUnknown | ssh_key::Error::AlgorithmUnsupported { .. } => {
                Refused::Unsupported {
                    what: format!("SSH key type {}", key.algorithm()),
                }
            }
            _ => Refused::BadSignature { fingerprint },
        });
    }
    // The same key may be listed more than once (other principals, other
    // windows): any line that allows it is enough.
    let mut why = None;
    for e in entries {
        if !e.allows_namespace(GIT_NAMESPACE) {
            why = Some(Refused::WrongNamespace {
                namespace: format!(
                    "{} (the trust list's `namespaces` for it, at {})",
                    GIT_NAMESPACE, e.at
                ),
            });
            continue;
        }
        if let Some(after) = e.valid_after.filter(|&a| when < a) {
            why = Some(outside(&fingerprint, "valid-after", after, when, &e.at));
            continue;
        }
        if let Some(before) = e.valid_before.filter(|&b| when >= b) {
            why = Some(outside(&fingerprint, "valid-before", before, when, &e.at));
            continue;
        }
        return Ok(Verified {
            kind: Kind::Ssh,
            principal: e.principals.join(","),
            fingerprint,
        });
    }
    Err(why.unwrap_or(Refused::UnknownKey {
        kind: Kind::Ssh,
        fingerprint,
    }))
}

fn outside(fp: &str, option: &str, limit: i64, when: i64, at: &str) -> Refused {
    Refused::Expired {
        fingerprint: fp.to_string(),
        detail: format!(
            "outside its validity window: {option}={} ({at}), commit time {}",
            show_time(limit),
            show_time(when)
        ),
    }
}

/// One commit of a checked range.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitCheck {
    pub commit: String,
    pub author: String,
    pub summary: String,
    #[serde(flatten, with = "outcome")]
    pub result: Result<Verified, Refused>,
}

mod outcome {
    use super::{Refused, Verified};
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        verified: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        signer: Option<&'a Verified>,
        #[serde(skip_serializing_if = "Option::is_none")]
        refused: Option<&'a Refused>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    }

    pub fn serialize<S: serde::Serializer>(
        r: &Result<Verified, Refused>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        Out {
            verified: r.is_ok(),
            signer: r.as_ref().ok(),
            refused: r.as_ref().err(),
            message: r.as_ref().err().map(|e| e.to_string()),
        }
        .serialize(s)
    }
}

/// A range that cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error("more than {limit} commits between the base and the head: verify a shorter range")]
    TooManyCommits { limit: usize },
    #[error("walking the commits")]
    Git(#[from] git2::Error),
}

/// Checks `head` (`Mode::Head`, or `since` is `None`) or every commit
/// reachable from `head` and not from `since` (`Mode::All`), newest first,
/// at most `limit` of them.
pub fn verify_range(
    repo: &Repository,
    mode: Mode,
    since: Option<Oid>,
    head: Oid,
    trust: &TrustList,
    at: At,
    limit: usize,
) -> Result<Vec<CommitCheck>, RangeError> {
    let oids = match (mode, since) {
        (Mode::All, Some(base)) => {
            let mut walk = repo.revwalk()?;
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
            walk.push(head)?;
            walk.hide(base)?;
            let mut oids = Vec::new();
            for oid in walk {
                if oids.len() == limit {
                    return Err(RangeError::TooManyCommits { limit });
                }
                oids.push(oid?);
            }
            oids
        }
        _ => vec![head],
    };
    Ok(oids
        .into_iter()
        .map(|oid| check_one(repo, oid, trust, at))
        .collect())
}

fn check_one(repo: &Repository, oid: Oid, trust: &TrustList, at: At) -> CommitCheck {
    let (author, summary) = repo
        .find_commit(oid)
        .map(|c| {
            let a = c.author();
            let name = String::from_utf8_lossy(a.name_bytes()).into_owned();
            let mail = String::from_utf8_lossy(a.email_bytes()).into_owned();
            let summary = String::from_utf8_lossy(c.message_bytes())
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            (format!("{name} <{mail}>"), summary)
        })
        .unwrap_or_default();
    CommitCheck {
        commit: oid.to_string(),
        author,
        summary,
        result: verify_commit(repo, oid, trust, at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_signatures_are_refused_not_panics() {
        let trust = TrustList::default();
        let big = vec![b'a'; MAX_SIGNATURE_BYTES + 1];
        let cases: [&[u8]; 6] = [
            b"",
            b"\xff\xfe",
            b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
            b"-----BEGIN PGP SIGNATURE-----\n\nzz\n-----END PGP SIGNATURE-----\n",
            b"-----BEGIN SIGNED MESSAGE-----\n",
            &big,
        ];
        for sig in cases {
            assert!(verify_signature(sig, b"tree 0\n", &trust, 0).is_err());
        }
        assert!(matches!(
            verify_signature(b"-----BEGIN SIGNED MESSAGE-----", b"", &trust, 0),
            Err(Refused::Unsupported { .. })
        ));
    }
}
