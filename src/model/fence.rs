//! The right to write to Marathon, for a replica that may lose it.
//!
//! With one replica there is no fence: writes are always allowed. With
//! several (`pacer serve --zk`), only the leader writes, and only while its
//! lease holds: the lease runs from the moment a round trip to ZooKeeper
//! that found the leader's node was *sent*, for the session timeout less a
//! margin. ZooKeeper can't expire the session, and so no other replica can
//! take over, before that. Time is the monotonic clock, which keeps
//! running while the process is stopped (SIGSTOP, a long pause): a leader
//! that wakes past its lease finds it gone before it sends anything.
//!
//! Marathon takes no conditional writes, so this is the whole fence: each
//! write checks it right before it is sent (`marathon::client`). A write
//! already on the wire when the process stops is the one window it can't
//! close.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

/// How every refusal of the fence starts.
pub const NOT_WRITING: &str = "not writing: ";

/// Whether an apply's message says the fence stopped its write: such a
/// step was not attempted, and is neither a failure nor a record.
pub fn stopped(message: &str) -> bool {
    message.contains(NOT_WRITING)
}

/// Whether writes may go out now. Cheap to clone; clones share the lease.
#[derive(Clone, Debug, Default)]
pub struct Fence(Option<Arc<Mutex<Lease>>>);

#[derive(Debug)]
struct Lease {
    /// The leadership the lease belongs to (its latch node's sequence).
    epoch: u64,
    until: Option<Instant>,
    /// Why there is no lease, for the refusal.
    why: String,
}

impl Fence {
    /// No fence: a single replica always writes.
    pub fn open() -> Fence {
        Fence(None)
    }

    /// A fence with no lease yet: nothing goes out until [`Fence::grant`].
    pub fn closed(why: &str) -> Fence {
        Fence(Some(Arc::new(Mutex::new(Lease {
            epoch: 0,
            until: None,
            why: why.to_string(),
        }))))
    }

    /// Whether a fence applies (the replica is one of several).
    pub fn is_fenced(&self) -> bool {
        self.0.is_some()
    }

    /// The epoch writes go out under, or why none may.
    pub fn check(&self) -> Result<u64, String> {
        self.check_at(Instant::now())
    }

    pub fn check_at(&self, now: Instant) -> Result<u64, String> {
        let Some(lease) = &self.0 else {
            return Ok(0);
        };
        let l = lease.lock();
        match l.until {
            Some(until) if now < until => Ok(l.epoch),
            Some(_) => Err(format!(
                "{NOT_WRITING}the leader's lease (epoch {}) ran out before ZooKeeper confirmed it",
                l.epoch
            )),
            None => Err(format!("{NOT_WRITING}{}", l.why)),
        }
    }

    /// Leadership `epoch` won, its lease running to `until`.
    pub fn grant(&self, epoch: u64, until: Instant) {
        if let Some(lease) = &self.0 {
            let mut l = lease.lock();
            l.epoch = epoch;
            l.until = Some(until);
        }
    }

    /// Extends the lease of `epoch` to `until`; a lease revoked or of
    /// another epoch stays as it is (a late answer never revives one).
    pub fn extend(&self, epoch: u64, until: Instant) {
        if let Some(lease) = &self.0 {
            let mut l = lease.lock();
            if l.epoch == epoch && l.until.is_some_and(|u| u < until) {
                l.until = Some(until);
            }
        }
    }

    /// No more writes until a new grant.
    pub fn revoke(&self, why: &str) {
        if let Some(lease) = &self.0 {
            let mut l = lease.lock();
            l.until = None;
            l.why = why.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_always_writes_and_closed_never_until_granted() {
        assert_eq!(Fence::open().check(), Ok(0));
        let f = Fence::closed("no leader elected yet");
        assert!(f.check().unwrap_err().contains("no leader elected yet"));
        let now = Instant::now();
        f.grant(7, now + Duration::from_secs(5));
        assert_eq!(f.check_at(now), Ok(7));
        // Past the lease (a stopped process woke up): no write.
        assert!(
            f.check_at(now + Duration::from_secs(6))
                .unwrap_err()
                .contains("ran out")
        );
    }

    #[test]
    fn a_late_extension_never_revives_a_revoked_or_older_lease() {
        let f = Fence::closed("x");
        let now = Instant::now();
        f.grant(3, now + Duration::from_secs(5));
        f.extend(3, now + Duration::from_secs(9));
        assert_eq!(f.check_at(now + Duration::from_secs(8)), Ok(3));
        f.extend(2, now + Duration::from_secs(20));
        assert!(f.check_at(now + Duration::from_secs(10)).is_err());
        f.revoke("lost the ZooKeeper session");
        f.extend(3, now + Duration::from_secs(30));
        assert!(
            f.check_at(now)
                .unwrap_err()
                .contains("lost the ZooKeeper session")
        );
        // Clones share the lease.
        let g = f.clone();
        f.grant(4, now + Duration::from_secs(1));
        assert_eq!(g.check_at(now), Ok(4));
    }
}
