//! What the daemon knows about each environment and app, as served by
//! `/api/v1/status` and summarised in `/metrics`. Plain data, written by the
//! reconcile loop and read by the HTTP server.

use crate::model::{AppPath, EnvName};
use crate::render::Diagnostic;
use serde::Serialize;
use std::collections::BTreeMap;

/// How an app's live state relates to Git.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncStatus {
    /// Live matches the desired state.
    InSync,
    /// Git has an app Marathon doesn't.
    Missing,
    /// Git and Marathon differ (a change is waiting to be applied).
    OutOfSync,
    /// Live was changed outside Git.
    Drifted,
    /// Marathon has it under the environment's group, Git doesn't, and the
    /// environment doesn't prune.
    Unmanaged,
    /// A deployment for it is running.
    Progressing,
    /// A change waits for a human: a delete held because the commit would
    /// delete too large a share of the environment (`maxDeleteShare`).
    Held,
    /// The last attempt at the current commit failed and was rolled back;
    /// it is not retried until a new commit or `pacer retry`.
    Failed,
    /// Its config doesn't render at the current commit; it stays at the last
    /// good one.
    Invalid,
    /// Not known yet (Marathon not reached).
    Unknown,
}

impl SyncStatus {
    pub const ALL: [SyncStatus; 10] = [
        SyncStatus::InSync,
        SyncStatus::Missing,
        SyncStatus::OutOfSync,
        SyncStatus::Drifted,
        SyncStatus::Unmanaged,
        SyncStatus::Progressing,
        SyncStatus::Held,
        SyncStatus::Failed,
        SyncStatus::Invalid,
        SyncStatus::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::InSync => "in_sync",
            SyncStatus::Missing => "missing",
            SyncStatus::OutOfSync => "out_of_sync",
            SyncStatus::Drifted => "drifted",
            SyncStatus::Unmanaged => "unmanaged",
            SyncStatus::Progressing => "progressing",
            SyncStatus::Held => "held",
            SyncStatus::Failed => "failed",
            SyncStatus::Invalid => "invalid",
            SyncStatus::Unknown => "unknown",
        }
    }
}

/// How the last action on an app ended.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    // Written camelCase; the other spellings are read so that records
    // written by hand or by older tools still count.
    #[serde(alias = "Succeeded", alias = "SUCCEEDED")]
    Succeeded,
    #[serde(alias = "Failed", alias = "FAILED")]
    Failed,
    #[serde(
        alias = "rolled_back",
        alias = "RolledBack",
        alias = "ROLLED_BACK",
        alias = "rolled-back"
    )]
    RolledBack,
    /// Only hot-reload files changed: delivered without a deployment.
    #[serde(alias = "Hot", alias = "HOT")]
    Hot,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Hot => "hot",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastAction {
    pub outcome: Outcome,
    pub commit: String,
    /// RFC 3339.
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub id: String,
    pub sync: SyncStatus,
    /// The commit the live app was deployed from (its `pacer.commit` label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<LastAction>,
    /// Render problems at the current commit, each at file:line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Diagnostic>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvStatus {
    pub group: String,
    /// The commit this environment was last reconciled at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// RFC 3339 time of the last reconcile that reached Marathon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
    pub apps: BTreeMap<AppPath, AppStatus>,
    /// Problems that are not one app's: Marathon unreachable, the env file broken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoStatus {
    pub url: String,
    pub branch: String,
    /// The newest commit fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The newest commit that rendered; environments stay on it while the
    /// head is broken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_good: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fetch_error: Option<String>,
    /// Deployment records not yet in the config repo's notes.
    pub pending_records: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_record_error: Option<String>,
}

/// The whole of `/api/v1/status`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub repo: RepoStatus,
    pub environments: BTreeMap<EnvName, EnvStatus>,
}
