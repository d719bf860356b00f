//! What the daemon knows about each environment and app, as served by
//! `/api/v1/status` and summarised in `/metrics`. Plain data, written by the
//! reconcile loop and read by the HTTP server.
//!
//! - [`project`]: the pure rules that turn what a reconcile saw (plan
//!   steps, apply results, an unreachable Marathon) into app statuses.
//! - [`published`]: the snapshots readers take.
//! - [`health`]: liveness and readiness.

use crate::model::{AppPath, EnvName, Outcome, SyncStatus};
use crate::render::Diagnostic;
use serde::Serialize;

pub mod health;
pub mod project;
pub mod published;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A problem as the status shows it: where it is (when known) and what
/// it is. Fields that aren't known are absent, never `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
    /// How to fix it, when pacer can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Problem {
    /// A problem with no place in the repo (Marathon unreachable, a refused
    /// rewind). URLs in it are masked.
    pub fn message(message: impl AsRef<str>) -> Problem {
        Problem {
            file: None,
            line: None,
            column: None,
            message: crate::redact::text(message.as_ref()),
            hint: None,
        }
    }
}

impl From<&Diagnostic> for Problem {
    fn from(d: &Diagnostic) -> Problem {
        Problem {
            // `(repo)` stands for "no file": the commit itself.
            file: Some(d.file.clone()).filter(|f| !f.is_empty() && f != "(repo)"),
            line: d.line,
            column: d.column,
            message: crate::redact::text(&d.message),
            hint: d.hint.clone(),
        }
    }
}

/// `file:line:column: message`, as the log prints it.
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            f.write_str(file)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

#[derive(Clone, Debug, PartialEq, Serialize)]
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
    pub errors: Vec<Problem>,
    /// The running deployment's tasks against its target, while one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Live → desired as the plan shows it (secrets as placeholders), when
    /// they differ. Kept out of `/api/v1/status`, whose size should not
    /// grow with every drifted app; the dashboard's app page shows it to a
    /// read or admin session.
    #[serde(skip)]
    pub diff: Option<Arc<str>>,
}

impl AppStatus {
    /// An app with nothing known of it but its status.
    pub fn new(id: impl Into<String>, sync: SyncStatus) -> AppStatus {
        AppStatus {
            id: id.into(),
            sync,
            live_commit: None,
            last: None,
            errors: Vec::new(),
            rollout: None,
            diff: None,
        }
    }
}

/// A deployment in progress, from Marathon's counts on the app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Marathon's deployment ids touching the app.
    pub deployments: Vec<String>,
    /// The target (`instances`).
    pub instances: u64,
    pub staged: u64,
    pub running: u64,
    pub healthy: u64,
    pub unhealthy: u64,
}

impl Rollout {
    /// The counts of a live app (Marathon's `AppInfo`) with deployments.
    pub fn of(spec: &serde_json::Value, deployments: &[String]) -> Option<Rollout> {
        if deployments.is_empty() {
            return None;
        }
        let n = |k: &str| spec.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        Some(Rollout {
            deployments: deployments.to_vec(),
            instances: n("instances"),
            staged: n("tasksStaged"),
            running: n("tasksRunning"),
            healthy: n("tasksHealthy"),
            unhealthy: n("tasksUnhealthy"),
        })
    }
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
    /// Each app behind its own `Arc`: a one-app change copies one app's
    /// status, not the environment's (see `published`).
    pub apps: BTreeMap<AppPath, Arc<AppStatus>>,
    /// Problems that are not one app's: Marathon unreachable, the env file
    /// broken, a refused rewind.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
    /// Its signed-commit gate (`verify:` in pacer.yaml); absent when the
    /// environment has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Arc<VerifyStatus>>,
    /// What applying its plan would do now (absent before its first
    /// reconcile). Where the policy doesn't apply on its own, these changes
    /// wait for a human.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::model::PlanSummary>,
    /// The last apply an operator asked for (`POST /api/v1/apply`) and
    /// what became of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyAsk>,
    /// Whether its Marathon answered on the last cycle (`None`: not asked
    /// yet). The errors say why not; `/metrics` shows it as
    /// `pacer_marathon_up`.
    #[serde(skip)]
    pub marathon_up: Option<bool>,
}

impl EnvStatus {
    /// Apps per sync status (the `pacer_apps` gauge).
    pub fn sync_counts(&self) -> BTreeMap<SyncStatus, u64> {
        let mut counts: BTreeMap<SyncStatus, u64> = BTreeMap::new();
        for a in self.apps.values() {
            *counts.entry(a.sync).or_default() += 1;
        }
        counts
    }
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
    /// Why the newest commit fetched is not the one running: it doesn't
    /// load (with the first problems at file:line) or is a refused rewind.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
    /// Deployment records not yet in the config repo's notes.
    pub pending_records: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_record_error: Option<String>,
}

/// An operator's apply of a plan, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyAsk {
    /// The digest of the plan approved ([`crate::model::PlanSummary`]).
    pub plan: String,
    pub state: AskState,
    /// Why it was dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339: when it was asked, then when it was applied or dropped.
    pub at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AskState {
    /// Taken by the loop; applied at the environment's next pass.
    Queued,
    /// Its steps started (the apps show how they end).
    Applied,
    /// Not applied: the plan changed, the ask expired, or writes are off.
    Dropped,
}

/// An environment's signed-commit gate, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyStatus {
    pub mode: crate::source::verify::Mode,
    /// The trust list in force: its path in the repo, or the file given
    /// with `--verify-signers`.
    pub signers: String,
    /// Where the policy in force was read.
    pub basis: crate::source::verify::gate::Basis,
    /// The commit the environment deploys, and who signed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedCommit>,
    /// A newer commit that was not deployed, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedCommit>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedCommit {
    pub commit: String,
    pub signer: crate::source::verify::Verified,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedCommit {
    /// The head fetched.
    pub head: String,
    /// The commit that failed the check (the head, or in mode `all` an
    /// older commit of the range).
    pub commit: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub author: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// The refusal's kind (`unsigned`, `unknownKey`, ...), for alerts.
    pub reason: String,
    pub message: String,
}

/// This replica's part, as the status and `/metrics` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HaStatus {
    /// `leader`, `follower`, or `none` while no leader can be known (no
    /// ZooKeeper session).
    pub role: Role,
    pub zk_connected: bool,
    /// This replica's id.
    pub id: String,
    /// The leader's id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The leadership's epoch (its latch node's sequence), on the leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Leader,
    Follower,
    #[default]
    None,
}

/// Whether the daemon sends changes to Marathon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Writes {
    #[default]
    Active,
    /// Plans and shows, sends nothing (see `reconcile::writer`).
    Paused,
}

/// The whole of `/api/v1/status`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub repo: RepoStatus,
    pub writes: Writes,
    /// Each environment behind an `Arc`: publishing a change (see
    /// `published`) copies only the environments it touched.
    pub environments: BTreeMap<EnvName, Arc<EnvStatus>>,
    /// The live endpoints templates follow (`service()`); absent when no
    /// template names one.
    #[serde(skip_serializing_if = "EndpointsStatus::is_empty")]
    pub endpoints: EndpointsStatus,
    /// This replica's part in the election (`--zk`); absent for a single
    /// replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaStatus>,
}

/// The services templates name, and the event streams that follow them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointsStatus {
    /// By Marathon app id.
    pub services: BTreeMap<String, crate::model::endpoints::ServiceStatus>,
    /// Per Marathon URL: whether its event stream is connected now.
    pub streams: BTreeMap<String, bool>,
}

impl EndpointsStatus {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.streams.is_empty()
    }
}
