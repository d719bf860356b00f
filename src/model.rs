//! Plain data shared by every pipeline stage. No I/O, no async.

pub mod endpoints;
pub mod fence;
pub mod file_actions;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// An environment's name as written in `pacer.yaml` (`dev`, `staging`, `prod`).
pub type EnvName = String;

/// An app's path relative to its environment's group (`web`, `payments/api`).
/// It is the directory under `apps/` that holds the app.
pub type AppPath = String;

/// A content digest, written `sha256:<hex>` like Flux's artifact digests so
/// that it names its algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(pub String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// A digest over several named parts. Names and lengths are framed so
    /// that moving bytes from one part to the next changes the digest.
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut h = Sha256::new();
        for (name, bytes) in parts {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The first 12 hex digits: enough to tell versions apart in a label.
    pub fn short(&self) -> &str {
        let hex = self.0.strip_prefix("sha256:").unwrap_or(&self.0);
        &hex[..hex.len().min(12)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value that must never be printed: logs, diffs, plans and errors show
/// `***` instead.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The only way to the value. Callers that print must redact.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn digest_parts_are_framed() {
        let a = Digest::of_parts([("a", b"bc".as_slice()), ("d", b"".as_slice())]);
        let b = Digest::of_parts([("a", b"b".as_slice()), ("d", b"c".as_slice())]);
        assert_ne!(a, b);
        assert!(a.0.starts_with("sha256:"));
        assert_eq!(a.short().len(), 12);
    }
}

/// What applying an environment's plan would do now: its acting steps
/// counted, and a digest of them (each step's app, action and diff), so an
/// operator's apply can name the plan they reviewed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub creates: usize,
    pub updates: usize,
    pub deletes: usize,
    /// Drift put back to Git's version (`selfHeal`).
    pub heals: usize,
    pub digest: String,
}

impl PlanSummary {
    /// The acting steps in all.
    pub fn changes(&self) -> usize {
        self.creates + self.updates + self.deletes + self.heals
    }
}

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
    /// Not known: Marathon is not answering (or not reached yet).
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

    /// The JSON spelling, also used as the `status` label of `pacer_apps`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::InSync => "inSync",
            SyncStatus::Missing => "missing",
            SyncStatus::OutOfSync => "outOfSync",
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
    /// Only hot-reload files changed: sent to the config server without a
    /// deployment. The delivery's end is recorded apart (below); older
    /// records say `hot` alone.
    #[serde(alias = "Hot", alias = "HOT")]
    Hot,
    /// A hot update every running task reported it holds.
    Delivered,
    /// A hot update some running task did not take: a check or reload
    /// refused it, or the delivery timed out.
    DeliveryFailed,
}

impl Outcome {
    /// The JSON spelling, also used as the `outcome` label of
    /// `pacer_deployments_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolledBack",
            Outcome::Hot => "hot",
            Outcome::Delivered => "delivered",
            Outcome::DeliveryFailed => "deliveryFailed",
        }
    }
}
