//! The audit trail. pacer keeps no state of its own: an app's history is
//! rebuilt from Marathon's app versions (each carries the `pacer.commit` it
//! was deployed from) joined with the Git log, so it survives restarts and
//! agrees with what Marathon actually ran.

pub mod notes;

use crate::marathon::client::{Error as ClientError, MarathonClient};
use crate::model::Outcome;
use crate::observe;
use crate::source::RepoLocation;
use serde::Serialize;

pub use crate::observe::history::{HistoryOutcome, Version, classify, failed_definition, versions};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The commit's time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
    /// When Marathon took the version (its version timestamp); for a hot
    /// update, when its delivery ended (every task had it, or it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// Marathon's app version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Marathon's deployment id, from the deployment records in
    /// `refs/notes/pacer` (absent for versions pacer didn't record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Who signed the commit (principal and key fingerprint), as the
    /// environment's `verify:` policy checked it before it deployed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<crate::source::verify::Verified>,
    pub outcome: HistoryOutcome,
}

#[derive(Clone)]
struct CommitMeta {
    author: String,
    message: String,
    time: String,
}

fn commit_meta(repo: &git2::Repository, id: &str) -> Option<CommitMeta> {
    let oid = git2::Oid::from_str(id.trim_end_matches("-dirty")).ok()?;
    let c = repo.find_commit(oid).ok()?;
    let author = c.author();
    let name = author.name().ok().unwrap_or("unknown").to_string();
    let email = author.email().ok().unwrap_or("").to_string();
    let when = chrono::DateTime::from_timestamp(c.time().seconds(), 0)?;
    Some(CommitMeta {
        author: if email.is_empty() {
            name
        } else {
            format!("{name} <{email}>")
        },
        message: c.summary().ok().flatten().unwrap_or("").to_string(),
        // Marathon's own format (ms, Z), so commit and version times sort together.
        time: when.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// Commits that touched `paths` (repo-relative, under the config repo's
/// root), newest first, up to `limit`.
fn commits_touching(
    repo: &git2::Repository,
    prefix: &str,
    paths: &[String],
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut walk) = repo.revwalk() else {
        return out;
    };
    if walk.push_head().is_err() {
        return out;
    }
    let full: Vec<String> = paths
        .iter()
        .map(|p| {
            if prefix.is_empty() {
                p.clone()
            } else {
                format!("{prefix}/{p}")
            }
        })
        .collect();
    for oid in walk.flatten() {
        if out.len() >= limit {
            break;
        }
        let Ok(c) = repo.find_commit(oid) else {
            continue;
        };
        let Ok(tree) = c.tree() else { continue };
        let parent_tree = c.parent(0).ok().and_then(|p| p.tree().ok());
        let id_at = |t: Option<&git2::Tree>, p: &str| {
            t.and_then(|t| t.get_path(std::path::Path::new(p)).ok())
                .map(|e| e.id())
        };
        if full
            .iter()
            .any(|p| id_at(Some(&tree), p) != id_at(parent_tree.as_ref(), p))
        {
            out.push(oid.to_string());
        }
    }
    out
}

/// What history shows as the commit of a version pacer didn't write.
pub const NOT_BY_PACER: &str = "(not deployed by pacer)";

/// What a commit changed for one app in one environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Its Marathon definition (a deployment was due).
    Definition,
    /// Only its hot-reload files.
    Files,
    /// Nothing: it renders the same here.
    Nothing,
}

/// One app of one environment rendered at the commits history asks about,
/// each commit once (a commit is often the parent of the next).
struct Renders<'a> {
    loc: &'a RepoLocation,
    env: &'a str,
    app: &'a str,
    seen: std::collections::HashMap<String, Option<crate::render::RenderedApp>>,
}

impl Renders<'_> {
    fn at(&mut self, rev: &str) -> Option<crate::render::RenderedApp> {
        if let Some(r) = self.seen.get(rev) {
            return r.clone();
        }
        let rendered = (|| {
            let snap = std::sync::Arc::new(self.loc.at_rev(rev).ok()?);
            let mut diags = crate::render::Diagnostics::default();
            let r = crate::render::Repo::load(snap, &mut diags)?;
            let d = crate::render::render_pairs(
                &r,
                &[(self.env.to_string(), vec![self.app.to_string()])],
                &mut diags,
            );
            d.envs
                .get(self.env)?
                .apps
                .get(self.app)
                .map(|a| (**a).clone())
        })();
        self.seen.insert(rev.to_string(), rendered.clone());
        rendered
    }

    /// Renders the app at `commit` and at its first parent and compares
    /// them. A side that doesn't render counts as a change of definition:
    /// nothing can be said to have reached Marathon.
    fn change_at(&mut self, repo: &git2::Repository, commit: &str) -> Change {
        let parent = git2::Oid::from_str(commit)
            .ok()
            .and_then(|o| repo.find_commit(o).ok())
            .and_then(|c| c.parent_id(0).ok());
        let (Some(now), Some(before)) = (
            self.at(commit),
            parent.and_then(|p| self.at(&p.to_string())),
        ) else {
            return Change::Definition;
        };
        if observe::app_diff(&now.marathon, &before.marathon, &[]).is_some() {
            Change::Definition
        } else if crate::plan::served_digest(&now) != crate::plan::served_digest(&before) {
            Change::Files
        } else {
            Change::Nothing
        }
    }
}

/// An app's history in one environment, newest first: every version
/// Marathon kept, and the commits that reached the app without one.
pub async fn history(
    client: &MarathonClient,
    loc: &RepoLocation,
    id: &str,
    env: &str,
    app: &str,
    limit: usize,
) -> Result<Vec<Entry>, ClientError> {
    let versions = versions(client, id, limit).await?;
    let outcomes = classify(&versions);
    let deploying = client
        .deployments()
        .await
        .map(|d| d.iter().any(|d| d.affected_apps.iter().any(|a| a == id)))
        .unwrap_or(false);
    let repo = loc.open_git().ok();
    let prefix = loc
        .git
        .as_ref()
        .map(|g| g.prefix.clone())
        .unwrap_or_default();
    // Commits that touched the app, with their metadata, newest first.
    let touching: Vec<(String, CommitMeta)> = match &repo {
        Some(r) => {
            let paths = vec![format!("apps/{app}"), format!("environments/{env}.yaml")];
            commits_touching(r, &prefix, &paths, limit)
                .into_iter()
                .filter_map(|c| commit_meta(r, &c).map(|m| (c, m)))
                .collect()
        }
        None => Vec::new(),
    };
    // A version is credited to the commit on its labels only if pacer
    // wrote it: a hand PUT keeps pacer's labels, but not a matching digest.
    // Versions from before the digest label trust the labels.
    let by_pacer: Vec<bool> = versions
        .iter()
        .map(|v| observe::written_by_pacer(&v.spec) != Some(false))
        .collect();
    let deployed: std::collections::BTreeSet<&str> = versions
        .iter()
        .zip(&by_pacer)
        .filter(|(_, ours)| **ours)
        .filter_map(|(v, _)| v.commit())
        .collect();
    // What pacer recorded for this app, on every commit in question.
    let records: Vec<(String, notes::Record)> = match &repo {
        Some(r) => versions
            .iter()
            .filter_map(|v| v.commit())
            .map(|c| c.to_string())
            .chain(touching.iter().map(|(c, _)| c.clone()))
            .collect::<std::collections::BTreeSet<String>>()
            .into_iter()
            .filter_map(|c| Some((git2::Oid::from_str(c.trim_end_matches("-dirty")).ok()?, c)))
            .flat_map(|(oid, c)| {
                notes::read(r, oid)
                    .into_iter()
                    .filter(|rec| rec.env == env && rec.id == id)
                    .map(move |rec| (c.clone(), rec))
            })
            .collect(),
        None => Vec::new(),
    };
    let recorded_with = |version: &str| {
        records
            .iter()
            .filter(|(_, r)| r.version.as_deref() == Some(version))
            .max_by(|a, b| a.1.at.cmp(&b.1.at))
    };
    let recorded = |version: &str| recorded_with(version).map(|(_, r)| r);
    // Any record of the commit for this app names its signer: the gate
    // checked the commit once, whatever the action.
    let signer_of = |commit: &str| {
        records
            .iter()
            .filter(|(c, _)| c == commit)
            .find_map(|(_, r)| r.signer.clone())
    };
    let mut renders = Renders {
        loc,
        env,
        app,
        seen: Default::default(),
    };
    let mut attributed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut entries: Vec<Entry> = Vec::new();
    for (i, (v, outcome)) in versions.iter().zip(outcomes.iter().copied()).enumerate() {
        let record = recorded(&v.version);
        let outcome = if i + 1 == versions.len() && deploying {
            HistoryOutcome::InProgress
        } else if record.is_some_and(|r| r.outcome == Outcome::Failed)
            && outcome != HistoryOutcome::RolledBack
        {
            HistoryOutcome::Failed
        } else {
            outcome
        };
        // A version that put a failed one back was deployed by the
        // rollback recorded with the failed one.
        let deployment = match outcome {
            HistoryOutcome::Rollback => i
                .checked_sub(1)
                .and_then(|p| recorded(&versions[p].version))
                .and_then(|r| r.rollback.clone()),
            _ => record.and_then(|r| r.deployment.clone()),
        };
        let mut commit = v.commit().map(str::to_string);
        let mut outcome = outcome;
        if !by_pacer[i] {
            commit = None;
            if outcome != HistoryOutcome::InProgress {
                outcome = HistoryOutcome::Manual;
            }
        } else if outcome == HistoryOutcome::Scaled {
            // A scale keeps the labels of the version before it
            // (relabelling would restart the tasks), so its label names an
            // older commit. pacer's record of the scale names the commit
            // that asked for it; without one, the newest commit to the app
            // before the scale that was never deployed itself. Neither (a
            // repo to look in, and no commit asked): scaled by hand.
            // That commit must ask for this instance count: a hot or an
            // unrelated commit doesn't take the credit for a hand scale.
            let asked = recorded_with(&v.version)
                .map(|(c, _)| c.clone())
                .or_else(|| {
                    touching
                        .iter()
                        .find(|(c, m)| {
                            m.time.as_str() <= v.version.as_str()
                                && !deployed.contains(c.as_str())
                                && !attributed.contains(c)
                                && renders.at(c).is_some_and(|a| {
                                    a.marathon.get("instances") == v.spec.get("instances")
                                })
                        })
                        .map(|(c, _)| c.clone())
                });
            match asked {
                Some(c) => {
                    attributed.insert(c.clone());
                    commit = Some(c);
                }
                None if repo.is_some() && v.commit().is_some() => {
                    commit = None;
                    outcome = HistoryOutcome::Manual;
                }
                None => {}
            }
        }
        let commit = commit.unwrap_or_else(|| NOT_BY_PACER.to_string());
        let meta = repo.as_ref().and_then(|r| commit_meta(r, &commit));
        entries.push(Entry {
            author: meta.as_ref().map(|m| m.author.clone()),
            message: meta.as_ref().map(|m| m.message.clone()),
            committed_at: meta.as_ref().map(|m| m.time.clone()),
            signer: signer_of(&commit),
            commit,
            applied_at: Some(v.version.clone()),
            version: Some(v.version.clone()),
            deployment,
            outcome,
        });
    }
    // Commits that touched the app after the first version pacer deployed
    // but never became a Marathon version: hot reloads, changes that
    // rendered the same here, and changes that never reached Marathon.
    let first_deployed = versions
        .iter()
        .zip(&by_pacer)
        .filter(|(_, ours)| **ours)
        .find_map(|(v, _)| v.commit());
    if let Some(first) = first_deployed {
        // By ancestry, not by time: commit times have one-second
        // resolution, and a fix often lands within the second.
        let first = git2::Oid::from_str(first.trim_end_matches("-dirty")).ok();
        let after_first = |c: &str| {
            let (Some(r), Some(first), Ok(c)) = (&repo, first, git2::Oid::from_str(c)) else {
                return false;
            };
            c != first && r.graph_descendant_of(c, first).unwrap_or(false)
        };
        for (c, meta) in &touching {
            if deployed.contains(c.as_str()) || attributed.contains(c) || !after_first(c) {
                continue;
            }
            // How its delivery ended; an older pacer recorded `hot` alone.
            let rank = |o: Outcome| match o {
                Outcome::Delivered | Outcome::DeliveryFailed => 2,
                Outcome::Hot => 1,
                _ => 0,
            };
            let hot = records
                .iter()
                .filter(|(rc, r)| rc == c && rank(r.outcome) > 0)
                .max_by(|a, b| (rank(a.1.outcome), &a.1.at).cmp(&(rank(b.1.outcome), &b.1.at)));
            let outcome = match (hot, repo.as_ref()) {
                (Some((_, r)), _) => match r.outcome {
                    Outcome::Delivered => HistoryOutcome::Delivered,
                    Outcome::DeliveryFailed => HistoryOutcome::DeliveryFailed,
                    _ => HistoryOutcome::Hot,
                },
                (None, Some(r)) => match renders.change_at(r, c) {
                    Change::Definition => HistoryOutcome::NotDeployed,
                    // Files changed, and no delivery was recorded.
                    Change::Files => HistoryOutcome::Unconfirmed,
                    Change::Nothing => HistoryOutcome::Unchanged,
                },
                (None, None) => HistoryOutcome::NotDeployed,
            };
            entries.push(Entry {
                commit: c.clone(),
                author: Some(meta.author.clone()),
                message: Some(meta.message.clone()),
                committed_at: Some(meta.time.clone()),
                applied_at: hot.map(|(_, r)| r.at.clone()),
                version: None,
                deployment: None,
                signer: signer_of(c),
                outcome,
            });
        }
    }
    entries.sort_by(|a, b| {
        let key = |e: &Entry| {
            e.applied_at
                .clone()
                .or(e.committed_at.clone())
                .unwrap_or_default()
        };
        key(b).cmp(&key(a))
    });
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(version: &str, cmd: &str, instances: u64, commit: &str) -> Version {
        Version {
            version: version.into(),
            spec: json!({"id": "/prod/web", "cmd": cmd, "instances": instances, "labels": {"pacer.commit": commit}}),
        }
    }

    #[test]
    fn a_version_put_back_is_a_rollback_and_its_predecessor_rolled_back() {
        let list = [
            v("1", "a", 2, "c1"),
            v("2", "broken", 2, "c2"),
            v("3", "a", 2, "c1"),
        ];
        assert_eq!(
            classify(&list),
            [
                HistoryOutcome::Succeeded,
                HistoryOutcome::RolledBack,
                HistoryOutcome::Rollback
            ]
        );
        assert_eq!(failed_definition(&list).unwrap()["cmd"], "broken");
    }

    #[test]
    fn putting_back_a_hand_edit_is_not_a_rollback() {
        let signed = |mut v: Version| {
            let d = observe::written_digest(&v.spec);
            v.spec["labels"]["pacer.digest"] = json!(d);
            v
        };
        let first = signed(v("1", "a", 2, "c1"));
        // Changed by hand: pacer's labels kept, the digest no longer matches.
        let mut hand = first.clone();
        hand.version = "2".into();
        hand.spec["cmd"] = json!("edited");
        let mut healed = first.clone();
        healed.version = "3".into();
        let list = [first, hand, healed];
        assert_eq!(classify(&list), [HistoryOutcome::Succeeded; 3]);
        assert_eq!(failed_definition(&list), None);
    }

    #[test]
    fn scale_only_versions_are_scaled() {
        let list = [
            v("1", "a", 2, "c1"),
            v("2", "a", 5, "c1"),
            v("3", "b", 5, "c3"),
        ];
        assert_eq!(
            classify(&list),
            [
                HistoryOutcome::Succeeded,
                HistoryOutcome::Scaled,
                HistoryOutcome::Succeeded
            ]
        );
        assert_eq!(failed_definition(&list), None);
    }
}
