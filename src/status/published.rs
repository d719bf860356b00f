//! What the daemon knows, published as read-only snapshots.
//!
//! The reconcile loop is the only writer: it keeps a working copy of the
//! [`Status`] and, each time it changes it, publishes a new [`Published`]
//! through a `tokio::sync::watch` channel. A snapshot holds the desired
//! state per environment at its commit (the `Arc`s render produced: apps
//! and their rendered file bundles, never copied) and the live status.
//!
//! Readers hold a [`Reader`] and take [`Reader::latest`]: one `Arc` clone.
//! They never lock the loop, never copy the apps, and always see one
//! consistent moment. Today the HTTP side reads it (the status, readiness,
//! the retry's name check); next come the config server (each
//! app's hot files at its commit), a dashboard, and follower replicas that
//! serve reads while another replica writes.

use super::Status;
use crate::model::EnvName;
use crate::render::DesiredEnv;
use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// One consistent snapshot of what the daemon knows. Cheap to clone: the
/// desired state and the status are shared.
#[derive(Clone, Debug)]
pub struct Published {
    /// Counts the snapshots published: a newer one has a larger number.
    pub seq: u64,
    /// The commit `desired` was rendered at (the newest that loaded); the
    /// status's `lastGood` says the same in the same snapshot.
    pub commit: Option<String>,
    /// Per environment: its settings and apps, each with its rendered files.
    pub desired: BTreeMap<EnvName, Arc<DesiredEnv>>,
    /// What `/api/v1/status` shows.
    pub status: Arc<Status>,
    /// What `/readyz` answers: `Ok`, or why the daemon is not ready.
    pub ready: Result<(), String>,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            seq: 0,
            commit: None,
            desired: BTreeMap::new(),
            status: Arc::default(),
            ready: Err("the config repo has not been fetched yet".into()),
        }
    }
}

/// A reader's end: cheap to clone, never blocks the writer.
#[derive(Clone, Debug)]
pub struct Reader(watch::Receiver<Arc<Published>>);

impl Reader {
    /// The newest snapshot.
    pub fn latest(&self) -> Arc<Published> {
        self.0.borrow().clone()
    }

    /// The newest snapshot's number, marking it seen: [`Reader::changed`]
    /// then waits for a newer one.
    pub fn seen(&mut self) -> u64 {
        self.0.borrow_and_update().seq
    }

    /// Waits for a snapshot newer than the last one seen; `false` once the
    /// writer is gone.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

/// The writer's end, owned by the reconcile loop.
pub struct Publisher {
    /// The loop's working copy; only the loop locks it.
    working: Mutex<Status>,
    tx: watch::Sender<Arc<Published>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new(Status::default())
    }
}

impl Publisher {
    pub fn new(status: Status) -> Publisher {
        let first = Published {
            status: Arc::new(status.clone()),
            ..Published::default()
        };
        Publisher {
            working: Mutex::new(status),
            tx: watch::Sender::new(Arc::new(first)),
        }
    }

    pub fn reader(&self) -> Reader {
        Reader(self.tx.subscribe())
    }

    /// Changes the status; the change is published when the guard drops.
    pub fn write(&self) -> StatusGuard<'_> {
        StatusGuard {
            status: self.working.lock(),
            tx: &self.tx,
        }
    }

    /// The loop's own view of the status (not a published snapshot).
    pub fn read(&self) -> MutexGuard<'_, Status> {
        self.working.lock()
    }

    /// Publishes the desired state rendered at `commit` and, in the same
    /// snapshot, the status's `lastGood`: a reader never sees a new commit
    /// with the old commit's apps. The maps hold `Arc`s: no app is copied.
    pub fn set_desired(&self, commit: String, desired: BTreeMap<EnvName, Arc<DesiredEnv>>) {
        let mut status = self.working.lock();
        status.repo.last_good = Some(commit.clone());
        let shared = Arc::new(status.clone());
        self.tx.send_modify(|p| {
            *p = Arc::new(Published {
                seq: p.seq + 1,
                commit: Some(commit),
                desired,
                status: shared,
                ready: p.ready.clone(),
            });
        });
    }

    /// Publishes whether the daemon is ready (only when that changes).
    pub fn set_ready(&self, ready: Result<(), String>) {
        self.tx.send_if_modified(|p| {
            if p.ready == ready {
                return false;
            }
            let mut next = (**p).clone();
            next.seq += 1;
            next.ready = ready;
            *p = Arc::new(next);
            true
        });
    }
}

/// A change to the status in progress.
pub struct StatusGuard<'a> {
    status: MutexGuard<'a, Status>,
    tx: &'a watch::Sender<Arc<Published>>,
}

impl std::ops::Deref for StatusGuard<'_> {
    type Target = Status;
    fn deref(&self) -> &Status {
        &self.status
    }
}

impl std::ops::DerefMut for StatusGuard<'_> {
    fn deref_mut(&mut self) -> &mut Status {
        &mut self.status
    }
}

impl Drop for StatusGuard<'_> {
    fn drop(&mut self) {
        // One copy per change, made by the writer; readers share it. The
        // copy is shallow: environments and apps are `Arc`s, and a change
        // copies only the ones it touched (`Arc::make_mut`).
        let status = Arc::new(self.status.clone());
        self.tx.send_modify(|p| {
            let mut next = (**p).clone();
            next.seq += 1;
            next.status = status;
            *p = Arc::new(next);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_published_when_the_guard_drops() {
        let p = Publisher::default();
        let r = p.reader();
        let before = r.latest();
        {
            let mut s = p.write();
            s.repo.branch = "main".into();
            // Not yet: readers see whole changes only.
            assert_eq!(r.latest().status.repo.branch, "");
        }
        assert_eq!(r.latest().status.repo.branch, "main");
        // A reader's snapshot never changes under it.
        assert_eq!(before.status.repo.branch, "");
    }

    #[test]
    fn the_desired_state_is_shared_not_copied() {
        let p = Publisher::default();
        let r = p.reader();
        let env = Arc::new(DesiredEnv {
            settings: crate::render::EnvSettings {
                name: "dev".into(),
                group: "/dev".into(),
                marathon: None,
                policy: Default::default(),
            },
            apps: BTreeMap::new(),
        });
        p.set_desired(
            "abc".into(),
            BTreeMap::from([("dev".to_string(), env.clone())]),
        );
        let snap = r.latest();
        assert_eq!(snap.commit.as_deref(), Some("abc"));
        assert!(Arc::ptr_eq(&snap.desired["dev"], &env));
        p.write().repo.head = Some("abc".into());
        assert!(
            Arc::ptr_eq(&r.latest().desired["dev"], &env),
            "a status change keeps the desired state"
        );
    }

    #[test]
    fn a_new_desired_state_and_its_last_good_commit_are_one_snapshot() {
        let p = Publisher::default();
        let r = p.reader();
        let before = r.latest().seq;
        p.set_desired("abc".into(), BTreeMap::new());
        let snap = r.latest();
        // One snapshot, not two: no reader sees `lastGood` at the new
        // commit with the old commit's apps, or the other way round.
        assert_eq!(snap.seq, before + 1);
        assert_eq!(snap.commit.as_deref(), Some("abc"));
        assert_eq!(snap.status.repo.last_good.as_deref(), Some("abc"));
        // The loop's working copy agrees, so a later status change keeps it.
        p.write().repo.head = Some("def".into());
        assert_eq!(r.latest().status.repo.last_good.as_deref(), Some("abc"));
    }

    #[test]
    fn a_change_to_one_app_shares_every_other_app_with_the_last_snapshot() {
        use crate::model::SyncStatus;
        use crate::status::{AppStatus, EnvStatus};
        let p = Publisher::default();
        let r = p.reader();
        {
            let mut s = p.write();
            let mut env = EnvStatus::default();
            for name in ["api", "web"] {
                env.apps.insert(
                    name.into(),
                    Arc::new(AppStatus::new(format!("/dev/{name}"), SyncStatus::InSync)),
                );
            }
            s.environments.insert("dev".into(), Arc::new(env));
        }
        let before = r.latest();
        {
            let mut s = p.write();
            let env = Arc::make_mut(s.environments.get_mut("dev").unwrap());
            Arc::make_mut(env.apps.get_mut("web").unwrap()).sync = SyncStatus::Failed;
        }
        let after = r.latest();
        let (old, new) = (
            &before.status.environments["dev"],
            &after.status.environments["dev"],
        );
        assert_eq!(old.apps["web"].sync, SyncStatus::InSync);
        assert_eq!(new.apps["web"].sync, SyncStatus::Failed);
        assert!(Arc::ptr_eq(&old.apps["api"], &new.apps["api"]));
    }
}
