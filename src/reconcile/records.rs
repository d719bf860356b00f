//! Deployment records waiting to be written to the config repo's notes:
//! a bounded queue with its own backoff. The daemon pushes what finished
//! steps recorded, asks [`Records::due`] what to write, writes it off the
//! loop, and reports how that went.

use crate::record::notes::{self, Publish};
use std::time::{Duration, Instant};

/// At most this many records wait; a repo that won't take them for long
/// loses the oldest rather than growing without bound.
pub const MAX_PENDING: usize = 10_000;
/// The pause after a first failed write; it doubles on each failure.
pub const FIRST_PAUSE: Duration = Duration::from_secs(30);
/// The longest pause between attempts.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// One record and the commit whose notes it goes into.
pub type Pending = (git2::Oid, notes::Record);

pub struct Records {
    how: Publish,
    pending: Vec<Pending>,
    /// After a failed write: when to try again, and the pause that led
    /// there.
    retry: Option<(Instant, Duration)>,
}

/// What a failed write left.
#[derive(Debug, PartialEq, Eq)]
pub struct Failed {
    /// Until the next attempt.
    pub pause: Duration,
    /// The oldest records dropped to stay within [`MAX_PENDING`].
    pub dropped: usize,
}

impl Records {
    pub fn new(how: Publish) -> Records {
        Records {
            how,
            pending: Vec::new(),
            retry: None,
        }
    }

    pub fn how(&self) -> Publish {
        self.how
    }

    pub fn push(&mut self, commit: git2::Oid, record: notes::Record) {
        self.pending.push((commit, record));
    }

    /// Records not written yet.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// What to write now: `None` when there is nothing, when records are
    /// off (they are dropped), or while backing off after a failure.
    pub fn due(&mut self, now: Instant) -> Option<Vec<Pending>> {
        if self.pending.is_empty() {
            return None;
        }
        if self.how == Publish::Off {
            self.pending.clear();
            return None;
        }
        if self.retry.is_some_and(|(at, _)| now < at) {
            return None;
        }
        Some(self.pending.clone())
    }

    /// The records [`Records::due`] handed out were written.
    pub fn written(&mut self, count: usize) {
        self.pending.drain(..count.min(self.pending.len()));
        self.retry = None;
    }

    /// Writing failed: back off (doubling, up to [`MAX_PAUSE`]) and keep
    /// at most [`MAX_PENDING`] records.
    pub fn failed(&mut self, now: Instant) -> Failed {
        let pause = self
            .retry
            .map_or(FIRST_PAUSE, |(_, p)| (p * 2).min(MAX_PAUSE));
        self.retry = Some((now + pause, pause));
        let dropped = self.pending.len().saturating_sub(MAX_PENDING);
        self.pending.drain(..dropped);
        Failed { pause, dropped }
    }

    /// Tries again at the next [`Records::due`], backoff or not (at
    /// shutdown).
    pub fn retry_now(&mut self) {
        self.retry = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::StepResult;
    use crate::model::Outcome;

    fn record(i: usize) -> Pending {
        let r = StepResult {
            id: format!("/dev/app{i}"),
            app: None,
            outcome: Outcome::Succeeded,
            deployment_id: None,
            version: None,
            rollback_id: None,
            message: None,
        };
        (
            git2::Oid::from_str("1111111111111111111111111111111111111111").unwrap(),
            notes::Record::of("dev", &r, chrono::Utc::now()),
        )
    }

    fn queue(n: usize) -> Records {
        let mut q = Records::new(Publish::Push);
        for i in 0..n {
            let (c, r) = record(i);
            q.push(c, r);
        }
        q
    }

    #[test]
    fn a_failure_backs_off_doubling_up_to_the_cap() {
        let mut q = queue(2);
        let t = Instant::now();
        assert_eq!(q.due(t).map(|v| v.len()), Some(2));
        assert_eq!(q.failed(t).pause, FIRST_PAUSE);
        assert!(q.due(t + FIRST_PAUSE / 2).is_none(), "backing off");
        assert!(q.due(t + FIRST_PAUSE).is_some());
        let mut last = FIRST_PAUSE;
        for _ in 0..10 {
            last = q.failed(t).pause;
        }
        assert_eq!(last, MAX_PAUSE);
        q.written(2);
        assert!(q.is_empty());
        let (c, r) = record(9);
        q.push(c, r);
        assert!(q.due(t).is_some(), "a write that worked ends the backoff");
    }

    #[test]
    fn records_pushed_during_a_write_stay_for_the_next() {
        let mut q = queue(2);
        let out = q.due(Instant::now()).unwrap();
        let (c, r) = record(7);
        q.push(c, r);
        q.written(out.len());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn too_many_waiting_drops_the_oldest() {
        let mut q = queue(MAX_PENDING + 3);
        let f = q.failed(Instant::now());
        assert_eq!(f.dropped, 3);
        assert_eq!(q.len(), MAX_PENDING);
        assert_eq!(q.pending[0].1.id, "/dev/app3", "the oldest went");
    }

    #[test]
    fn records_off_drops_them() {
        let mut q = queue(1);
        q.how = Publish::Off;
        assert!(q.due(Instant::now()).is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn retry_now_skips_the_backoff() {
        let mut q = queue(1);
        let t = Instant::now();
        q.failed(t);
        assert!(q.due(t).is_none());
        q.retry_now();
        assert!(q.due(t).is_some());
    }
}
