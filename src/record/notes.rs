//! Deployment records kept in Git itself, as notes on the commits they
//! deployed (`refs/notes/pacer`).
//!
//! Marathon's app versions say what ran and when; they can't say which
//! deployment rolled a version out, nor what became of a hot update, once
//! the daemon that saw it is gone. Each note holds one JSON line per
//! action taken for its commit, so the audit trail is in the same history
//! as the change itself: `git log --notes=pacer` shows it, and
//! `pacer history` joins it with Marathon's versions.
//!
//! Notes only ever grow: a line already present is not written twice, so
//! merging another writer's notes is appending the lines it lacks.

use crate::model::Outcome;
use crate::source::remote::{self, Mirror, RemoteSpec};
use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const REF: &str = "refs/notes/pacer";

/// One action pacer took for one app at one commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub env: String,
    pub app: String,
    /// Marathon's app id.
    pub id: String,
    pub outcome: Outcome,
    /// Marathon's deployment id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "deploymentId",
        alias = "deployment_id"
    )]
    pub deployment: Option<String>,
    /// The app version the deployment rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The deployment that reverted it, when it failed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "rollbackId",
        alias = "rollback_id"
    )]
    pub rollback: Option<String>,
    /// When the action ended, RFC 3339.
    pub at: String,
    /// Who signed the commit, when the environment's `verify:` policy
    /// checked it before it deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<crate::source::verify::Verified>,
}

impl Record {
    /// What one step of an apply did, ended at `at`.
    pub fn of(
        env: &str,
        r: &crate::apply::StepResult,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Record {
        Record {
            env: env.to_string(),
            app: r.app.clone().unwrap_or_else(|| r.id.clone()),
            id: r.id.clone(),
            outcome: r.outcome,
            deployment: r.deployment_id.clone(),
            version: r.version.clone(),
            rollback: r.rollback_id.clone(),
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            signer: None,
        }
    }
}

/// The records on `commit`, oldest first. Lines that aren't records (a
/// note someone wrote by hand) are skipped.
pub fn read(repo: &Repository, commit: Oid) -> Vec<Record> {
    let Ok(note) = repo.find_note(Some(REF), commit) else {
        return Vec::new();
    };
    note.message()
        .unwrap_or("")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Adds `records` to the note on `commit`, skipping any already there.
/// Returns how many were added.
pub fn append(repo: &Repository, commit: Oid, records: &[Record]) -> Result<usize, git2::Error> {
    let existing = repo
        .find_note(Some(REF), commit)
        .ok()
        .and_then(|n| n.message().ok().map(str::to_string))
        .unwrap_or_default();
    let mut text = existing;
    let mut added = 0;
    for r in records {
        let line = serde_json::to_string(r).map_err(|e| git2::Error::from_str(&e.to_string()))?;
        if text.lines().any(|l| l == line) {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        text.push('\n');
        added += 1;
    }
    if added > 0 {
        let sig = git2::Signature::now("pacer", "pacer@localhost")?;
        repo.note(&sig, &sig, Some(REF), commit, &text, true)?;
    }
    Ok(added)
}

/// Where records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Publish {
    /// Not kept at all.
    Off,
    /// Kept in the daemon's own clone only.
    Local,
    /// Kept in the clone and pushed to the config repo.
    #[default]
    Push,
}

/// Writes `pending` into the mirror's notes and, for [`Publish::Push`],
/// pushes them: the remote's notes are fetched first and ours added on top,
/// so the push is a fast-forward unless another writer pushed meanwhile
/// (then the caller tries again later, keeping `pending`).
pub fn publish(
    mirror: &Mirror,
    spec: &RemoteSpec,
    pending: &[(Oid, Record)],
    how: Publish,
) -> Result<usize, PublishError> {
    if how == Publish::Off || pending.is_empty() {
        return Ok(0);
    }
    if how == Publish::Push {
        mirror.fetch_ref(spec, REF)?;
    }
    let repo = Repository::open_bare(mirror.git_dir()).map_err(PublishError::Notes)?;
    let mut by_commit: BTreeMap<Oid, Vec<Record>> = BTreeMap::new();
    for (c, r) in pending {
        by_commit.entry(*c).or_default().push(r.clone());
    }
    let mut added = 0;
    for (c, rs) in by_commit {
        added += append(&repo, c, &rs).map_err(PublishError::Notes)?;
    }
    if how == Publish::Push {
        mirror.push_ref(spec, REF)?;
    }
    Ok(added)
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Remote(#[from] remote::Error),
    #[error("writing {REF}")]
    Notes(#[source] git2::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with_commit() -> (tempfile::TempDir, Repository, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let oid = {
            let tree = repo.find_tree(tree).unwrap();
            repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap()
        };
        (dir, repo, oid)
    }

    fn record(app: &str, outcome: Outcome) -> Record {
        Record {
            env: "prod".into(),
            app: app.into(),
            id: format!("/prod/{app}"),
            outcome,
            deployment: Some("d-1".into()),
            version: Some("2026-01-01T00:00:00.000Z".into()),
            rollback: None,
            at: "2026-01-01T00:00:05Z".into(),
            signer: None,
        }
    }

    #[test]
    fn records_accumulate_once_each() {
        let (_d, repo, c) = repo_with_commit();
        assert!(read(&repo, c).is_empty());
        let web = record("web", Outcome::Succeeded);
        let api = record("api", Outcome::RolledBack);
        assert_eq!(append(&repo, c, std::slice::from_ref(&web)).unwrap(), 1);
        assert_eq!(append(&repo, c, &[web.clone(), api.clone()]).unwrap(), 1);
        assert_eq!(append(&repo, c, &[web.clone(), api.clone()]).unwrap(), 0);
        assert_eq!(read(&repo, c), [web, api]);
    }

    #[test]
    fn records_in_other_spellings_are_still_read() {
        let (_d, repo, c) = repo_with_commit();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let old = r#"{"env":"prod","app":"web","id":"/prod/web","outcome":"rolled_back","deployment_id":"d-1","version":"2026-01-01T00:00:00.000Z","rollback_id":"d-2","at":"2026-01-01T00:00:05Z"}"#;
        repo.note(&sig, &sig, Some(REF), c, old, false).unwrap();
        let read = read(&repo, c);
        assert_eq!(read.len(), 1, "{read:?}");
        assert_eq!(read[0].outcome, Outcome::RolledBack);
        assert_eq!(read[0].deployment.as_deref(), Some("d-1"));
        assert_eq!(read[0].rollback.as_deref(), Some("d-2"));
        // Written back in the one spelling.
        let line = serde_json::to_string(&read[0]).unwrap();
        assert!(line.contains(r#""outcome":"rolledBack""#), "{line}");
        assert!(line.contains(r#""rollback":"d-2""#), "{line}");
    }

    #[test]
    fn lines_that_are_not_records_are_kept_and_skipped() {
        let (_d, repo, c) = repo_with_commit();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.note(&sig, &sig, Some(REF), c, "reviewed by ops", false)
            .unwrap();
        let web = record("web", Outcome::Hot);
        append(&repo, c, std::slice::from_ref(&web)).unwrap();
        assert_eq!(read(&repo, c), [web]);
        let text = repo.find_note(Some(REF), c).unwrap();
        assert!(text.message().unwrap().starts_with("reviewed by ops\n"));
    }
}
