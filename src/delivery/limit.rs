//! A token bucket per source address for `/v1/login` and
//! `/v1/token/renew`: anyone may call them, and one caller looping logins
//! must not take the Marathon reads every starting task needs. The daemon's
//! webhook (`POST /hooks/git`) uses the same buckets with a rate of its own
//! (`server::guard`). Pure: the clock is passed in.
//!
//! IPv6 callers are counted by their /64 (a host has a whole one). The map
//! is bounded: when full, buckets that have refilled (idle callers) are
//! dropped; if it is still full, it starts over, which at worst gives a
//! flood of fresh addresses a fresh burst each. A flood from many sources
//! (a botnet, or one host with many /64s) so costs at most `max_callers`
//! entries, never memory without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The bucket's settings.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Requests at once (the bucket's size): the tasks of a large deploy
    /// starting together on one host.
    pub burst: f64,
    /// Requests per second after that.
    pub per_second: f64,
    /// The most callers tracked at once.
    pub max_callers: usize,
}

/// Logins and renewals: 60 at once per host, then 10 a second.
pub const LOGIN: Rate = Rate {
    burst: 60.0,
    per_second: 10.0,
    max_callers: 10_000,
};

/// A `Retry-After` value for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The buckets.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

/// The key of a caller: its address, or its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Limiter {
    pub fn new(rate: Rate) -> Limiter {
        Limiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes one request from `ip`'s bucket at `now`: `Err(wait)` when it
    /// is empty, `wait` being when the next request will pass.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let k = key(ip);
        let rate = self.rate;
        let level = |(tokens, at): (f64, Instant)| {
            let refill = now.saturating_duration_since(at).as_secs_f64() * rate.per_second;
            (tokens + refill).min(rate.burst)
        };
        if !self.buckets.contains_key(&k) && self.buckets.len() >= rate.max_callers {
            self.buckets.retain(|_, b| level(*b) < rate.burst);
            if self.buckets.len() >= rate.max_callers {
                self.buckets.clear();
            }
        }
        let b = self.buckets.entry(k).or_insert((rate.burst, now));
        let tokens = level(*b);
        if tokens >= 1.0 {
            *b = (tokens - 1.0, now);
            Ok(())
        } else {
            *b = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / rate.per_second))
        }
    }

    /// Callers tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no caller is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 3.0,
        per_second: 2.0,
        max_callers: 4,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_passes_then_the_rate_then_a_wait() {
        let mut l = Limiter::new(RATE);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(ip("10.0.0.1"), t0).is_ok());
        }
        let wait = l.take(ip("10.0.0.1"), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another caller is not held up by the first.
        assert!(l.take(ip("10.0.0.2"), t0).is_ok());
        // Half a second later one more passes, one only.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.take(ip("10.0.0.1"), t1).is_ok());
        assert!(l.take(ip("10.0.0.1"), t1).is_err());
        // The IPv4-mapped spelling is the same caller; a /64 is one caller.
        assert!(l.take(ip("::ffff:10.0.0.1"), t1).is_err());
        for i in 0..3 {
            assert!(l.take(ip(&format!("2001:db8::{i}")), t1).is_ok());
        }
        assert!(l.take(ip("2001:db8::ffff"), t1).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_a_whole_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(500)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut l = Limiter::new(RATE);
        let t0 = Instant::now();
        for i in 0..100 {
            let _ = l.take(ip(&format!("10.0.1.{i}")), t0);
            assert!(l.len() <= RATE.max_callers);
        }
        // An idle caller's bucket is the first to go.
        let mut l = Limiter::new(RATE);
        for _ in 0..3 {
            l.take(ip("10.0.0.1"), t0).unwrap();
        }
        for i in 2..5 {
            l.take(ip(&format!("10.0.0.{i}")), t0).unwrap();
        }
        let later = t0 + Duration::from_secs(10);
        l.take(ip("10.0.0.9"), later).unwrap();
        assert!(l.len() <= RATE.max_callers && !l.is_empty());
    }
}
