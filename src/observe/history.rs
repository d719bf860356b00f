//! An app's version history as Marathon keeps it, and what each version
//! was: deployed, scaled, rolled back, put back. The daemon reads it to
//! avoid retrying a definition that failed; `pacer history` joins it with
//! the Git log (see [`crate::record`]).

use crate::marathon::client::{Error as ClientError, MarathonClient};
use crate::render::labels;
use serde::Serialize;
use serde_json::Value;

use super::{app_diff, changed_paths, written_by_pacer};

/// One version of an app, oldest first when in a list.
#[derive(Clone, Debug)]
pub struct Version {
    /// Marathon's version timestamp (also the deployment's `version`).
    pub version: String,
    pub spec: Value,
}

impl Version {
    pub fn commit(&self) -> Option<&str> {
        self.spec.get("labels")?.get(labels::COMMIT)?.as_str()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HistoryOutcome {
    /// Deployed and still, or later superseded normally.
    Succeeded,
    /// Deployed, failed, and put back to the version before it.
    RolledBack,
    /// The version that put a failed one back.
    Rollback,
    /// Only the instance count changed.
    Scaled,
    /// A commit that changed only the app's hot-reload files, recorded as
    /// sent by a pacer from before deliveries were followed to the tasks.
    Hot,
    /// A hot update every running task reported it holds (`appliedAt`:
    /// when the last one did).
    Delivered,
    /// A hot update that did not reach every running task: a check or
    /// reload refused it, or it timed out.
    DeliveryFailed,
    /// A commit that changed only the app's hot-reload files, with no
    /// delivery on record: nothing says the tasks got it.
    Unconfirmed,
    /// The newest version, with a deployment still running.
    InProgress,
    /// Deployed and failed, and the rollback failed too: it still runs
    /// (from the deployment records; Marathon's versions can't tell).
    Failed,
    /// A version pacer didn't write: made in Marathon by hand (or by
    /// another tool), even if it carries pacer's labels.
    Manual,
    /// A commit that changed the app's definition here but that no Marathon
    /// version carries: not applied (yet), held, or folded into a later
    /// deployment.
    NotDeployed,
    /// A commit that touched the app's files but rendered the same here.
    Unchanged,
}

/// What happened to each version, oldest first. A version whose successor
/// brings back the definition before it was rolled back.
pub fn classify(versions: &[Version]) -> Vec<HistoryOutcome> {
    let same = |a: &Value, b: &Value| app_diff(a, b, &[]).is_none();
    let mut out = vec![HistoryOutcome::Succeeded; versions.len()];
    for i in 1..versions.len() {
        let (prev, cur) = (&versions[i - 1], &versions[i]);
        let changed = changed_paths(&cur.spec, &prev.spec, &[]);
        if !changed.is_empty() && changed.iter().all(|p| p == "/instances") {
            out[i] = HistoryOutcome::Scaled;
        }
        // Scaling back down is not a rollback: only a definition change is.
        let scale_only = out[i] == HistoryOutcome::Scaled;
        // Putting back a change made by hand heals drift; a rollback
        // reverts what pacer deployed.
        let by_hand = written_by_pacer(&prev.spec) == Some(false);
        if i >= 2
            && !scale_only
            && !by_hand
            && same(&cur.spec, &versions[i - 2].spec)
            && !same(&cur.spec, &prev.spec)
        {
            out[i - 1] = HistoryOutcome::RolledBack;
            out[i] = HistoryOutcome::Rollback;
        }
    }
    out
}

/// The definition that failed and was rolled back, if the newest version
/// is a rollback: the planner won't try it again.
pub fn failed_definition(versions: &[Version]) -> Option<Value> {
    let outcomes = classify(versions);
    match outcomes.last() {
        Some(HistoryOutcome::Rollback) => versions.get(versions.len() - 2).map(|v| v.spec.clone()),
        _ => None,
    }
}

/// Reads an app's versions, oldest first, at most `limit` of the newest.
pub async fn versions(
    client: &MarathonClient,
    id: &str,
    limit: usize,
) -> Result<Vec<Version>, ClientError> {
    let list = client.newest_versions(id, limit).await?;
    Ok(list
        .into_iter()
        .map(|(version, spec)| Version { version, spec })
        .collect())
}
