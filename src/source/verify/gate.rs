//! The daemon's signed-commit gate: whether an environment may move to a new
//! head, decided against a trusted base, never against the head alone.
//!
//! The base (the anchor) is the last commit the environment deployed. Its
//! `verify:` policy and trust list are the ones in force, so a commit can
//! neither switch its own check off nor trust a key it adds itself. Only
//! where the anchor has no policy does the head's own policy apply: the
//! commit that turns verification on must itself be signed by a key it
//! lists. With no anchor at all (the first start, no state kept) that is
//! trust on first use, and [`Basis::FirstUse`] says so; an operator closes
//! it with a trust list from outside the repo (`--verify-signers`).
//!
//! Pure: the caller reads the policies, trust lists and commit checks.

use super::{CommitCheck, Mode, Refused, TrustList, Verified};
use serde::Serialize;

/// An environment's `verify:` policy as read at one commit.
#[derive(Clone, Debug)]
pub struct Policy {
    pub mode: Mode,
    /// The trust list's path in the repo.
    pub signers: String,
    /// The trust list, or why it can't be used.
    pub trust: Result<TrustList, String>,
}

/// Where the policy in force comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Basis {
    /// The last commit the environment deployed.
    Anchor,
    /// The head: the commit turns verification on, and is checked against
    /// the trust list it brings.
    Introduced,
    /// The head, with no deployed commit to trust: trust on first use.
    FirstUse,
    /// A trust list from outside the repo (`--verify-signers`).
    Override,
}

/// The policy an environment's next commit is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Effective<'a> {
    pub mode: Mode,
    /// The trust list's name as shown (a repo path, or the override file).
    pub signers: &'a str,
    pub trust: Result<&'a TrustList, &'a str>,
    pub basis: Basis,
}

/// The trust list from outside the repo, with its name.
#[derive(Clone, Copy, Debug)]
pub struct Override<'a> {
    pub name: &'a str,
    pub trust: &'a TrustList,
}

/// Chooses the policy in force. `anchored`: the environment has a
/// deployed commit; `anchor` is its policy there. `None`: the environment
/// is not gated and moves to the head as it is.
pub fn effective<'a>(
    over: Option<Override<'a>>,
    anchored: bool,
    anchor: Option<&'a Policy>,
    head: Option<&'a Policy>,
) -> Option<Effective<'a>> {
    let in_repo = match anchor {
        Some(p) => Some((p, Basis::Anchor)),
        None if anchored => head.map(|p| (p, Basis::Introduced)),
        None => head.map(|p| (p, Basis::FirstUse)),
    };
    match (over, in_repo) {
        // The override replaces the repo's trust list; the repo still says
        // which environments are gated and in which mode.
        (Some(o), Some((p, _))) => Some(Effective {
            mode: p.mode,
            signers: o.name,
            trust: Ok(o.trust),
            basis: Basis::Override,
        }),
        (None, Some((p, basis))) => Some(Effective {
            mode: p.mode,
            signers: &p.signers,
            trust: p.trust.as_ref().map_err(String::as_str),
            basis,
        }),
        (_, None) => None,
    }
}

/// Whether the head may deploy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum Verdict {
    /// Signed by a trusted key (the head's signer; in mode `all`, every
    /// commit of the range was checked too).
    Verified { signer: Verified },
    /// Not deployed: the first commit of the range that failed.
    Refused {
        commit: String,
        author: String,
        summary: String,
        #[serde(flatten)]
        reason: Refused,
    },
}

impl Verdict {
    /// A refusal that names no commit of the range: the policy itself
    /// can't be applied (its trust list is unreadable, the range too long).
    pub fn refused(head: &str, reason: Refused) -> Verdict {
        Verdict::Refused {
            commit: head.to_string(),
            author: String::new(),
            summary: String::new(),
            reason,
        }
    }
}

/// The verdict from the checked commits (newest first, as
/// [`super::verify_range`] gives them): refused at the oldest failure, so
/// the refusal names the commit that brought the problem in.
pub fn decide(head: &str, checks: &[CommitCheck]) -> Verdict {
    if let Some(bad) = checks.iter().rev().find(|c| c.result.is_err()) {
        let Err(reason) = &bad.result else {
            unreachable!("found by is_err")
        };
        return Verdict::Refused {
            commit: bad.commit.clone(),
            author: bad.author.clone(),
            summary: bad.summary.clone(),
            reason: reason.clone(),
        };
    }
    match checks.iter().find(|c| c.commit == head).map(|c| &c.result) {
        Some(Ok(signer)) => Verdict::Verified {
            signer: signer.clone(),
        },
        _ => Verdict::refused(
            head,
            Refused::Unreadable {
                detail: "the head was not among the commits checked".into(),
            },
        ),
    }
}

/// The mode a range is checked in: `all` needs a base to start after, and
/// with none (trust on first use) only the head can be checked.
pub fn range_mode(mode: Mode, anchored: bool) -> Mode {
    if anchored { mode } else { Mode::Head }
}

#[cfg(test)]
mod tests {
    use super::super::Kind;
    use super::*;

    fn list() -> TrustList {
        TrustList::default()
    }

    fn policy(mode: Mode, signers: &str) -> Policy {
        Policy {
            mode,
            signers: signers.into(),
            trust: Ok(list()),
        }
    }

    fn signer(p: &str) -> Verified {
        Verified {
            kind: Kind::Ssh,
            principal: p.into(),
            fingerprint: format!("SHA256:{p}"),
        }
    }

    fn check(commit: &str, result: Result<Verified, Refused>) -> CommitCheck {
        CommitCheck {
            commit: commit.into(),
            author: format!("author of {commit}"),
            summary: format!("summary of {commit}"),
            result,
        }
    }

    #[test]
    fn the_anchor_policy_holds_whatever_the_head_says() {
        let anchor = policy(Mode::All, "anchor-list");
        let head = policy(Mode::Head, "head-list");
        // The head drops its policy: the anchor's still applies.
        let e = effective(None, true, Some(&anchor), None).unwrap();
        assert_eq!(
            (e.basis, e.mode, e.signers),
            (Basis::Anchor, Mode::All, "anchor-list")
        );
        // The head weakens it: the anchor's still applies.
        let e = effective(None, true, Some(&anchor), Some(&head)).unwrap();
        assert_eq!((e.basis, e.signers), (Basis::Anchor, "anchor-list"));
    }

    #[test]
    fn a_policy_the_head_introduces_applies_to_the_head_itself() {
        let head = policy(Mode::Head, "head-list");
        let e = effective(None, true, None, Some(&head)).unwrap();
        assert_eq!((e.basis, e.signers), (Basis::Introduced, "head-list"));
        let e = effective(None, false, None, Some(&head)).unwrap();
        assert_eq!(e.basis, Basis::FirstUse);
        assert!(effective(None, true, None, None).is_none());
        assert!(effective(None, false, None, None).is_none());
    }

    #[test]
    fn the_override_replaces_the_trust_list_not_the_choice_of_environments() {
        let outside = list();
        let o = Override {
            name: "/etc/pacer/signers",
            trust: &outside,
        };
        let anchor = policy(Mode::All, "anchor-list");
        let e = effective(Some(o), true, Some(&anchor), None).unwrap();
        assert_eq!(
            (e.basis, e.mode, e.signers),
            (Basis::Override, Mode::All, "/etc/pacer/signers")
        );
        assert!(std::ptr::eq(e.trust.unwrap(), &outside));
        assert!(effective(Some(o), true, None, None).is_none());
    }

    #[test]
    fn an_unreadable_trust_list_is_carried_not_dropped() {
        let broken = Policy {
            mode: Mode::Head,
            signers: "l".into(),
            trust: Err("line 3: not a key".into()),
        };
        let e = effective(None, true, Some(&broken), None).unwrap();
        assert_eq!(e.trust.unwrap_err(), "line 3: not a key");
    }

    #[test]
    fn the_oldest_failure_of_a_range_is_the_one_named() {
        let checks = vec![
            check("c3", Ok(signer("alice"))),
            check("c2", Err(Refused::Unsigned)),
            check(
                "c1",
                Err(Refused::BadSignature {
                    fingerprint: "f".into(),
                }),
            ),
        ];
        match decide("c3", &checks) {
            Verdict::Refused {
                commit,
                author,
                reason,
                ..
            } => {
                assert_eq!(commit, "c1");
                assert_eq!(author, "author of c1");
                assert!(matches!(reason, Refused::BadSignature { .. }));
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            decide("c3", &checks[..1]),
            Verdict::Verified {
                signer: signer("alice")
            }
        );
        // The head missing from the checks is never a pass.
        assert!(matches!(
            decide("c9", &checks[..1]),
            Verdict::Refused { .. }
        ));
        assert!(matches!(decide("c9", &[]), Verdict::Refused { .. }));
    }

    #[test]
    fn mode_all_without_a_base_checks_the_head() {
        assert_eq!(range_mode(Mode::All, false), Mode::Head);
        assert_eq!(range_mode(Mode::All, true), Mode::All);
        assert_eq!(range_mode(Mode::Head, true), Mode::Head);
    }
}
