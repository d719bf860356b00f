//! The deployment records waiting to be written as Git notes on the commits
//! they deployed, and pushed ([`notes::publish`]). A remote that refuses (a
//! read-only key, a server without push) is asked again with backoff, not on
//! every poll, and a repo that won't take them for long loses the oldest
//! rather than letting the queue grow without bound.
//!
//! The queue's decisions take the clock as an argument; only
//! [`RecordQueue::publish`] does I/O.

use crate::record::notes::{self, Record};
use crate::source::remote::{Mirror, RemoteSpec};
use git2::Oid;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most records kept waiting; past it the oldest go.
pub const MAX_PENDING: usize = 10_000;
/// The pause after the first failed push; doubled on each failure after it.
pub const FIRST_PAUSE: Duration = Duration::from_secs(30);
/// The longest pause between two pushes while they fail.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// Records (with the commit each annotates) not yet written and pushed.
#[derive(Debug)]
pub struct RecordQueue {
    pending: Vec<(Oid, Record)>,
    /// After a failed push: when to try again, and the pause that led there.
    retry: Option<(Instant, Duration)>,
    max_pending: usize,
}

impl Default for RecordQueue {
    fn default() -> Self {
        RecordQueue::with_capacity(MAX_PENDING)
    }
}

/// What a [`RecordQueue::publish`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Nothing was waiting (or records are off and the queue was emptied).
    Nothing,
    /// A recent failure holds the next push back until its pause ends.
    Waiting,
    /// `records` went out, `added` of them new to the notes.
    Written { records: usize, added: usize },
    /// The push failed; the records stay for the next try, in `retry_in`.
    /// `dropped`: the oldest ones let go to stay under the cap.
    Failed {
        error: String,
        retry_in: Duration,
        dropped: usize,
    },
}

impl RecordQueue {
    /// A queue that keeps at most `max_pending` records.
    pub fn with_capacity(max_pending: usize) -> Self {
        RecordQueue {
            pending: Vec::new(),
            retry: None,
            max_pending,
        }
    }

    pub fn push(&mut self, commit: Oid, record: Record) {
        self.pending.push((commit, record));
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether a push may be tried at `now`: no failure holds it back.
    pub fn due(&self, now: Instant) -> bool {
        self.retry.is_none_or(|(at, _)| now >= at)
    }

    /// Forgets the backoff: the next push is tried at once (at shutdown,
    /// the last chance).
    pub fn hurry(&mut self) {
        self.retry = None;
    }

    /// The records went out: the queue empties and the backoff resets.
    pub fn written(&mut self) {
        self.pending.clear();
        self.retry = None;
    }

    /// A push failed at `now`: the pause before the next (30 s, doubled on
    /// each failure, at most 10 min), and how many of the oldest records
    /// were dropped to stay under the cap.
    pub fn failed(&mut self, now: Instant) -> (Duration, usize) {
        let pause = self
            .retry
            .map_or(FIRST_PAUSE, |(_, p)| (p * 2).min(MAX_PAUSE));
        self.retry = Some((now + pause, pause));
        let dropped = self.pending.len().saturating_sub(self.max_pending);
        self.pending.drain(..dropped);
        (pause, dropped)
    }

    /// Writes the waiting records into the mirror's notes (and pushes them,
    /// per `how`), unless a recent failure holds the push back. Blocking Git
    /// work runs off the async runtime.
    pub async fn publish(
        &mut self,
        mirror: &Arc<Mirror>,
        spec: &RemoteSpec,
        how: notes::Publish,
    ) -> Published {
        if self.pending.is_empty() {
            return Published::Nothing;
        }
        if how == notes::Publish::Off {
            self.pending.clear();
            return Published::Nothing;
        }
        if !self.due(Instant::now()) {
            return Published::Waiting;
        }
        let (mirror, spec) = (mirror.clone(), spec.clone());
        let pending = self.pending.clone();
        let outcome =
            tokio::task::spawn_blocking(move || notes::publish(&mirror, &spec, &pending, how))
                .await;
        let error = match outcome {
            Ok(Ok(added)) => {
                let records = self.pending.len();
                self.written();
                return Published::Written { records, added };
            }
            Ok(Err(e)) => crate::redact::text(&format!("{:#}", anyhow::Error::new(e))),
            Err(e) => e.to_string(),
        };
        let (retry_in, dropped) = self.failed(Instant::now());
        Published::Failed {
            error,
            retry_in,
            dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn record(app: &str) -> Record {
        Record {
            env: "prod".into(),
            app: app.into(),
            id: format!("/prod/{app}"),
            outcome: Outcome::Succeeded,
            deployment: None,
            version: None,
            rollback: None,
            at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_cap_and_success_resets() {
        let mut q = RecordQueue::default();
        q.push(Oid::ZERO_SHA1, record("web"));
        let t0 = Instant::now();
        assert!(q.due(t0));
        let mut pauses = Vec::new();
        for _ in 0..8 {
            pauses.push(q.failed(t0).0.as_secs());
        }
        assert_eq!(pauses, [30, 60, 120, 240, 480, 600, 600, 600]);
        assert!(!q.due(t0 + Duration::from_secs(599)));
        assert!(q.due(t0 + Duration::from_secs(600)));
        assert_eq!(q.len(), 1, "a failure keeps the records");
        q.written();
        assert!(q.is_empty());
        assert!(q.due(t0));
        assert_eq!(q.failed(t0).0, FIRST_PAUSE, "the backoff starts over");
    }

    #[test]
    fn hurry_lifts_the_backoff() {
        let mut q = RecordQueue::default();
        let t0 = Instant::now();
        q.failed(t0);
        assert!(!q.due(t0));
        q.hurry();
        assert!(q.due(t0));
    }

    #[test]
    fn a_failure_over_the_cap_drops_the_oldest() {
        let mut q = RecordQueue::with_capacity(2);
        for app in ["a", "b", "c", "d"] {
            q.push(Oid::ZERO_SHA1, record(app));
        }
        let (_, dropped) = q.failed(Instant::now());
        assert_eq!(dropped, 2);
        let left: Vec<&str> = q.pending.iter().map(|(_, r)| r.app.as_str()).collect();
        assert_eq!(left, ["c", "d"]);
        assert_eq!(q.failed(Instant::now()).1, 0);
    }

    #[tokio::test]
    async fn records_off_empties_the_queue_without_touching_git() {
        let mut q = RecordQueue::default();
        q.push(Oid::ZERO_SHA1, record("web"));
        let spec = RemoteSpec {
            url: "file:///nowhere".into(),
            branch: "main".into(),
            auth: crate::source::remote::GitAuth::None,
            ca_file: None,
            known_hosts: None,
        };
        // An empty mirror of a remote that doesn't exist: neither `Off` nor
        // a push held back may reach it.
        let dir = tempfile::tempdir().unwrap();
        let mirror = Arc::new(Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap());
        let out = q.publish(&mirror, &spec, notes::Publish::Off).await;
        assert_eq!(out, Published::Nothing);
        assert!(q.is_empty());
        q.push(Oid::ZERO_SHA1, record("web"));
        q.failed(Instant::now());
        let out = q.publish(&mirror, &spec, notes::Publish::Local).await;
        assert_eq!(out, Published::Waiting);
        assert_eq!(q.len(), 1);
    }
}
