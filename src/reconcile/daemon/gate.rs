//! The signed-commit gate in the loop: after a new head renders, each
//! environment with a `verify:` policy moves to it only when the policy in
//! force (see `source::verify::gate`) finds it signed by a trusted key. A
//! refused environment keeps its last good desired state; the others go on.
//!
//! Each environment's anchor (the last commit it took, with its signer) is
//! kept in `<state dir>/verified.json`, so a restart checks the next commit
//! against what was trusted before it, not against the head's own list.

use super::*;
use crate::source::verify::gate::{self, Basis, Override, Policy, Verdict};
use crate::source::verify::{
    At, MAX_RANGE_COMMITS, Mode, Refused, TrustList, Verified, verify_range,
};
use crate::status::{RefusedCommit, VerifiedCommit, VerifyStatus};
use serde::{Deserialize, Serialize};

/// The largest anchors file read back.
const MAX_STATE_BYTES: u64 = 1 << 20;
/// Policies kept per commit read (the anchors' and the head's).
const POLICY_CACHE: usize = 16;

/// Every environment's policy at one commit, or why they can't be read.
type Policies = Arc<Result<BTreeMap<EnvName, Policy>, String>>;

/// The last commit an environment took, and who signed it (`None`: the
/// environment was not gated then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Anchor {
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Verified>,
}

/// The gate's state in the loop.
#[derive(Default)]
pub(super) struct Gate {
    /// Per environment: the commit its desired state is at.
    pub anchors: BTreeMap<EnvName, Anchor>,
    /// Environments held back at their anchor, with the head they refused.
    pub refused: BTreeMap<EnvName, (String, RefusedCommit)>,
    /// The trust list from outside the repo (`--verify-signers`).
    pub outside: Option<(String, TrustList)>,
    /// Policies per commit, with the commit's environments' policies.
    policies: Vec<(String, Policies)>,
    state_file: Option<PathBuf>,
}

/// What the gate found for one environment at a head.
struct Found {
    verdict: Verdict,
    mode: Mode,
    signers: String,
    basis: Basis,
}

impl Gate {
    pub fn new(state_file: Option<PathBuf>, outside: Option<(String, TrustList)>) -> Gate {
        let anchors = state_file.as_deref().map(load).unwrap_or_default();
        Gate {
            anchors,
            outside,
            state_file,
            ..Gate::default()
        }
    }

    /// The commit `env`'s desired state is at: its anchor, or `head`.
    pub fn commit_of<'a>(&'a self, env: &str, head: &'a str) -> &'a str {
        match self.refused.get(env) {
            Some(_) => self.anchors.get(env).map_or(head, |a| a.commit.as_str()),
            None => head,
        }
    }

    /// Who signed `commit`, when the gate verified it for `env`.
    pub fn signer_of(&self, env: &str, commit: &str) -> Option<&Verified> {
        self.anchors
            .get(env)
            .filter(|a| a.commit == commit)
            .and_then(|a| a.signer.as_ref())
    }

    /// The environments held at their anchor: their apps must be compared
    /// by their inputs, not by what changed since the last head read.
    pub fn held(&self) -> BTreeSet<EnvName> {
        self.refused.keys().cloned().collect()
    }

    /// The problem shown on `env` while a commit is refused for it.
    pub fn problem(&self, env: &str) -> Option<Problem> {
        let (_, r) = self.refused.get(env)?;
        Some(Problem {
            file: None,
            line: None,
            column: None,
            message: refusal_line(r),
            hint: Some(
                "sign the commit with a key of the trust list (git commit -S), or fix the trust list in a signed commit; `pacer verify --rev HEAD --signers-from <deployed commit>` shows the same check".into(),
            ),
        })
    }

    fn save(&self) {
        let Some(path) = &self.state_file else { return };
        if let Err(e) = crate::state_file::write_json(path, &self.anchors) {
            tracing::warn!(file = %path.display(), "keeping the verified commits failed: {e}");
        }
    }

    fn cached(&self, commit: &str) -> Option<Policies> {
        self.policies
            .iter()
            .find(|(c, _)| c == commit)
            .map(|(_, p)| p.clone())
    }

    fn cache(&mut self, commit: &str, p: Policies) {
        if self.cached(commit).is_none() {
            if self.policies.len() >= POLICY_CACHE {
                self.policies.remove(0);
            }
            self.policies.push((commit.to_string(), p));
        }
    }
}

fn refusal_line(r: &RefusedCommit) -> String {
    let who = if r.author.is_empty() {
        String::new()
    } else {
        format!(" by {}", r.author)
    };
    let of = if r.commit == r.head {
        String::new()
    } else {
        format!(" (in the range up to {})", short(&r.head))
    };
    format!(
        "commit {}{who}{of} not deployed: {}",
        short(&r.commit),
        r.message
    )
}

fn load(path: &std::path::Path) -> BTreeMap<EnvName, Anchor> {
    match crate::state_file::read_json(path, MAX_STATE_BYTES) {
        Ok(Some(m)) => m,
        Ok(None) => BTreeMap::new(),
        Err(e) => {
            // Not fatal: without anchors each gated environment checks its
            // next commit against the head's own list, and says so.
            tracing::warn!(file = %path.display(), "the verified commits can't be read ({e}); starting without them");
            BTreeMap::new()
        }
    }
}

/// Every environment's `verify:` policy in `snap`, each with its trust list
/// read from the same snapshot.
pub(super) fn policies_in(
    snap: &crate::source::Snapshot,
) -> Result<BTreeMap<EnvName, Policy>, String> {
    let found = render::verify_policies(snap).map_err(|d| {
        d.iter()
            .take(3)
            .map(|d| Problem::from(d).to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    Ok(found
        .into_iter()
        .map(|(env, p)| {
            let signers = p.signers.trim_start_matches("./").to_string();
            let trust = snap
                .read_bytes(&signers)
                .map_err(|e| format!("{signers}: {e}"))
                .and_then(|b| {
                    TrustList::parse(&signers, &b).map_err(|errs| {
                        errs.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                });
            (
                env,
                Policy {
                    mode: p.mode,
                    signers,
                    trust,
                },
            )
        })
        .collect())
}

impl Daemon {
    /// Runs the gate on a rendered head: environments whose policy refuses
    /// it get their last good state back in `r`.
    pub(super) async fn gate(&mut self, head: &str, r: &mut render_job::Rendered) {
        let envs: Vec<EnvName> = r.envs.keys().cloned().collect();
        // The policies at the head, and at each anchor the check needs.
        let mut commits: BTreeSet<String> = BTreeSet::from([head.to_string()]);
        for env in &envs {
            if let Some(a) = self.gate.anchors.get(env)
                && a.commit != head
            {
                commits.insert(a.commit.clone());
            }
        }
        let head_snap = r.snapshot.clone();
        for c in commits {
            if self.gate.cached(&c).is_some() {
                continue;
            }
            let snap = match (&head_snap, c == head) {
                (Some(s), true) => Ok(s.clone()),
                _ => {
                    let loc = RepoLocation::bare(self.mirror.git_dir(), &self.cfg.prefix);
                    let rev = c.clone();
                    tokio::task::spawn_blocking(move || loc.at_rev(&rev).map(Arc::new))
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))
                        .and_then(|r| r.map_err(anyhow::Error::from))
                }
            };
            let p = match snap {
                Ok(s) => policies_in(&s),
                Err(e) => Err(format!("commit {} can't be read: {e:#}", short(&c))),
            };
            self.gate.cache(&c, Arc::new(p));
        }
        // The checks themselves read commits and verify signatures: off the loop.
        let mut jobs = Vec::new();
        for env in &envs {
            let anchor = self.gate.anchors.get(env).cloned();
            if anchor.as_ref().is_some_and(|a| a.commit == head) {
                continue;
            }
            if let Some((h, _)) = self.gate.refused.get(env)
                && h == head
            {
                jobs.push((env.clone(), None));
                continue;
            }
            let head_p = self.gate.cached(head).expect("read above");
            let anchor_p = anchor.as_ref().and_then(|a| self.gate.cached(&a.commit));
            jobs.push((env.clone(), Some((anchor, anchor_p, head_p))));
        }
        let git_dir = self.mirror.git_dir().to_path_buf();
        let outside = self.gate.outside.clone();
        let head_s = head.to_string();
        let found = tokio::task::spawn_blocking(move || {
            let repo = git2::Repository::open_bare(&git_dir).ok();
            jobs.into_iter()
                .map(|(env, job)| {
                    let f = job.map(|(anchor, anchor_p, head_p)| {
                        check_env(
                            repo.as_ref(),
                            &env,
                            &head_s,
                            anchor.as_ref(),
                            anchor_p.as_deref(),
                            &head_p,
                            outside.as_ref(),
                        )
                    });
                    (env, f)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut changed = false;
        for (env, f) in found {
            match f {
                // Refused before at this head: still refused.
                None => self.hold(&env, r),
                // Not gated: the environment takes the head as it is.
                Some(None) => {
                    changed |= self.advance_anchor(&env, head, None, None);
                }
                Some(Some(f)) => match f.verdict {
                    Verdict::Verified { signer } => {
                        tracing::info!(
                            env = %env,
                            commit = short(head),
                            signer = %signer.principal,
                            key = %signer.fingerprint,
                            "commit verified"
                        );
                        let status = VerifyStatus {
                            mode: f.mode,
                            signers: f.signers,
                            basis: f.basis,
                            verified: Some(VerifiedCommit {
                                commit: head.to_string(),
                                signer: signer.clone(),
                            }),
                            refused: None,
                        };
                        if f.basis == Basis::FirstUse {
                            tracing::warn!(env = %env, commit = short(head), "no commit was verified for this environment before: the head was checked against its own trust list (trust on first use); give --verify-signers FILE to check it against a list from outside the repo");
                        }
                        changed |= self.advance_anchor(&env, head, Some(signer), Some(status));
                    }
                    Verdict::Refused {
                        commit,
                        author,
                        summary,
                        reason,
                    } => {
                        let refusal = RefusedCommit {
                            head: head.to_string(),
                            commit,
                            author,
                            summary,
                            reason: reason_kind(&reason),
                            message: reason.to_string(),
                        };
                        tracing::warn!(
                            env = %env,
                            commit = short(&refusal.commit),
                            author = %refusal.author,
                            reason = %refusal.reason,
                            "{}; the environment keeps its last good commit",
                            refusal_line(&refusal)
                        );
                        self.metrics.commit_refused(&env, &refusal.reason);
                        // What stays live: the anchor, signed or not.
                        let verified = self.gate.anchors.get(&env).and_then(|a| {
                            Some(VerifiedCommit {
                                commit: a.commit.clone(),
                                signer: a.signer.clone()?,
                            })
                        });
                        let status = VerifyStatus {
                            mode: f.mode,
                            signers: f.signers,
                            basis: f.basis,
                            verified,
                            refused: Some(refusal.clone()),
                        };
                        self.gate
                            .refused
                            .insert(env.clone(), (head.to_string(), refusal));
                        self.set_env_verify(&env, Some(status));
                        self.hold(&env, r);
                    }
                },
            }
        }
        if changed {
            self.gate.save();
        }
        self.render_anchors(r).await;
    }

    /// A held environment the loop has no state for (it just started) is
    /// rendered at its anchor, so that it is reconciled at the commit that
    /// stays live rather than not at all.
    async fn render_anchors(&mut self, r: &mut render_job::Rendered) {
        let mut by_commit: BTreeMap<String, BTreeSet<EnvName>> = BTreeMap::new();
        for env in self.gate.refused.keys() {
            if self.desired.contains_key(env) || r.envs.contains_key(env) {
                continue;
            }
            if let Some(a) = self.gate.anchors.get(env) {
                by_commit
                    .entry(a.commit.clone())
                    .or_default()
                    .insert(env.clone());
            }
        }
        for (commit, envs) in by_commit {
            let job = render_job::Job {
                git_dir: self.mirror.git_dir().to_path_buf(),
                prefix: self.cfg.prefix.clone(),
                head: commit.clone(),
                envs_filter: Some(envs),
                deadline: self.cfg.render_timeout,
                since: None,
                endpoints: self.live.clone(),
                force: BTreeMap::new(),
                held: BTreeSet::new(),
                keys: self.cfg.secret_keys.clone(),
            };
            match render_job::run(job, BTreeMap::new()).await {
                render_job::Outcome::Rendered(at) => {
                    for (env, d) in at.envs {
                        r.envs.insert(env, d);
                    }
                    for (env, i) in at.invalid {
                        r.invalid.insert(env, i);
                    }
                }
                render_job::Outcome::NotLoaded { problems } => {
                    let first = problems.first().map(|d| Problem::from(d).to_string());
                    tracing::warn!(
                        commit = short(&commit),
                        "the last verified commit does not render here; its environments wait for a signed commit: {}",
                        first.unwrap_or_default()
                    );
                }
            }
        }
    }

    /// `env` moves to `head`: its anchor follows, and a refusal ends.
    fn advance_anchor(
        &mut self,
        env: &str,
        head: &str,
        signer: Option<Verified>,
        status: Option<VerifyStatus>,
    ) -> bool {
        if self.gate.refused.remove(env).is_some() {
            tracing::info!(env = %env, commit = short(head), "the environment takes commits again");
        }
        self.set_env_verify(env, status);
        let anchor = Anchor {
            commit: head.to_string(),
            signer,
        };
        self.gate.anchors.insert(env.to_string(), anchor.clone()) != Some(anchor)
    }

    /// Puts `env`'s last good state back in `r`: nothing of the refused
    /// commit reaches it.
    fn hold(&self, env: &str, r: &mut render_job::Rendered) {
        match self.desired.get(env) {
            Some(old) => {
                r.envs.insert(env.to_string(), (**old).clone());
            }
            None => {
                r.envs.remove(env);
            }
        }
        r.changed.remove(env);
        r.rerendered.remove(env);
        match self.invalid.get(env) {
            Some(old) => {
                r.invalid.insert(env.to_string(), old.clone());
            }
            None => {
                r.invalid.remove(env);
            }
        }
    }

    fn env_verify(&self, env: &str) -> Option<Arc<VerifyStatus>> {
        self.status
            .read()
            .environments
            .get(env)
            .and_then(|e| e.verify.clone())
    }

    fn set_env_verify(&self, env: &str, v: Option<VerifyStatus>) {
        let v = v.map(Arc::new);
        if self.env_verify(env) == v {
            return;
        }
        let problem = self.gate.problem(env);
        let mut s = self.status.write();
        let e = Arc::make_mut(s.environments.entry(env.to_string()).or_default());
        e.verify = v;
        // The refusal shows at once, not at the next reconcile.
        e.errors.retain(|p| !is_gate_problem(p));
        e.errors.extend(problem);
    }

    /// `env`'s problems besides its own: the head's, and a refused commit.
    pub(super) fn env_problems(&self, env: &str) -> Vec<Problem> {
        let mut p = self.head_problems.clone();
        p.extend(self.gate.problem(env));
        p
    }
}

fn is_gate_problem(p: &Problem) -> bool {
    p.file.is_none() && p.message.starts_with("commit ") && p.message.contains(" not deployed: ")
}

/// The refusal's kind as serialized (`unsigned`, `unknownKey`, ...).
fn reason_kind(r: &Refused) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.get("reason")?.as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

/// The gate's check of one environment (`None`: not gated).
fn check_env(
    repo: Option<&git2::Repository>,
    env: &str,
    head: &str,
    anchor: Option<&Anchor>,
    anchor_p: Option<&Result<BTreeMap<EnvName, Policy>, String>>,
    head_p: &Result<BTreeMap<EnvName, Policy>, String>,
    outside: Option<&(String, TrustList)>,
) -> Option<Found> {
    let over = outside.map(|(name, trust)| Override { name, trust });
    let refuse = |basis: Basis, mode: Mode, signers: &str, problem: String| {
        Some(Found {
            verdict: Verdict::refused(head, Refused::TrustList { problem }),
            mode,
            signers: signers.to_string(),
            basis,
        })
    };
    // An anchor whose policies can't be read must not pass as "no policy".
    let anchor_policy = match anchor_p {
        Some(Ok(m)) => m.get(env),
        Some(Err(e)) => {
            return refuse(
                Basis::Anchor,
                Mode::Head,
                "",
                format!("the policy at the last deployed commit can't be read: {e}"),
            );
        }
        None if anchor.is_some() => {
            return refuse(
                Basis::Anchor,
                Mode::Head,
                "",
                "the last deployed commit can't be read".into(),
            );
        }
        None => None,
    };
    let head_policy = head_p.as_ref().ok().and_then(|m| m.get(env));
    let e = gate::effective(over, anchor.is_some(), anchor_policy, head_policy)?;
    let trust = match e.trust {
        Ok(t) => t,
        Err(problem) => {
            return refuse(
                e.basis,
                e.mode,
                e.signers,
                format!("{}: {problem}", e.signers),
            );
        }
    };
    let (Some(repo), Ok(head_oid)) = (repo, git2::Oid::from_str(head)) else {
        return refuse(
            e.basis,
            e.mode,
            e.signers,
            "the mirror can't be opened".into(),
        );
    };
    let since = anchor.and_then(|a| git2::Oid::from_str(&a.commit).ok());
    let mode = gate::range_mode(e.mode, since.is_some());
    let verdict = match verify_range(
        repo,
        mode,
        since,
        head_oid,
        trust,
        At::CommitTime,
        MAX_RANGE_COMMITS,
    ) {
        Ok(checks) => gate::decide(head, &checks),
        Err(err) => Verdict::refused(
            head,
            Refused::Unreadable {
                detail: err.to_string(),
            },
        ),
    };
    Some(Found {
        verdict,
        mode: e.mode,
        signers: e.signers.to_string(),
        basis: e.basis,
    })
}
