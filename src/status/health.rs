//! Liveness and readiness of the reconcile loop, as `/healthz` and
//! `/readyz` report them.
//!
//! - **Alive** means the loop still turns: a loop that has not finished a
//!   turn for [`Health::stuck_after`] is stuck (a hung await, a render that
//!   ignores its deadline), and `/healthz` answers 503 with what it was
//!   doing, so Marathon's health check restarts the task.
//! - **Ready** means the loop has a commit that loads and every Marathon it
//!   needs answered on the last turn; otherwise `/readyz` says why.
//!
//! The loop writes, the HTTP side reads; the decisions are pure functions.

use super::Problem;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// The loop's liveness, for `/healthz` (readiness is published with the
/// status, see [`super::published`]).
#[derive(Debug)]
pub struct Health {
    /// A turn that doesn't end within this is a stuck loop.
    pub stuck_after: Duration,
    /// When the last turn ended (the start counts as one).
    last_turn: Mutex<Instant>,
    /// What the loop is doing now, and since when.
    doing: Mutex<(String, Instant)>,
}

impl Health {
    pub fn new(stuck_after: Duration) -> Health {
        let now = Instant::now();
        Health {
            stuck_after,
            last_turn: Mutex::new(now),
            doing: Mutex::new(("starting".into(), now)),
        }
    }

    /// How long a loop may go without a turn for a given poll interval and
    /// render deadline: long enough for a slow fetch, render and Marathon
    /// read, short enough that a wedged daemon is restarted.
    pub fn stuck_limit(poll: Duration, render_deadline: Duration) -> Duration {
        (poll * 5)
            .max(render_deadline * 3)
            .max(Duration::from_secs(180))
    }

    /// The loop finished a turn.
    pub fn turned(&self) {
        *self.last_turn.lock() = Instant::now();
    }

    /// The loop starts on `what` (`rendering commit 1a2b3c4d5e6f`).
    pub fn doing(&self, what: impl Into<String>) {
        *self.doing.lock() = (what.into(), Instant::now());
    }

    /// `Ok` while the loop turns, else why it looks stuck.
    pub fn alive(&self, now: Instant) -> Result<(), String> {
        let last = *self.last_turn.lock();
        let (what, since) = self.doing.lock().clone();
        alive(
            now.saturating_duration_since(last),
            self.stuck_after,
            &what,
            now.saturating_duration_since(since),
        )
    }
}

/// Whether a loop whose last turn ended `idle` ago is alive.
pub fn alive(
    idle: Duration,
    limit: Duration,
    doing: &str,
    doing_for: Duration,
) -> Result<(), String> {
    if idle <= limit {
        return Ok(());
    }
    Err(format!(
        "the reconcile loop has not finished a cycle for {} s (limit {} s); it has been {doing} for {} s",
        idle.as_secs(),
        limit.as_secs(),
        doing_for.as_secs()
    ))
}

/// What readiness depends on, as the loop saw it on its last turn.
#[derive(Debug, Default)]
pub struct Seen<'a> {
    /// A commit has loaded (the daemon has a desired state).
    pub rendered: bool,
    /// The newest commit fetched, when one was.
    pub head: Option<&'a str>,
    /// Why the newest commit isn't running (it doesn't load, a refused rewind).
    pub head_problems: &'a [Problem],
    pub fetch_error: Option<&'a str>,
    /// Marathons that didn't answer on the last turn: (URL, error).
    pub unreachable: &'a [(String, String)],
    /// A Marathon answered at least once.
    pub reached_marathon: bool,
}

/// `Ok` when the daemon can do its job, else the first reason it can't.
pub fn readiness(s: &Seen) -> Result<(), String> {
    if !s.rendered {
        if let (Some(head), Some(first)) = (s.head, s.head_problems.first()) {
            let more = s.head_problems.len() - 1;
            let more = if more > 0 {
                format!(" (and {more} more problems)")
            } else {
                String::new()
            };
            return Err(format!(
                "commit {} does not load: {first}{more}",
                head.get(..12).unwrap_or(head)
            ));
        }
        if let Some(e) = s.fetch_error {
            return Err(format!("the config repo could not be fetched: {e}"));
        }
        return Err("the config repo has not been fetched yet".into());
    }
    if let Some((url, e)) = s.unreachable.first() {
        return Err(crate::redact::text(&format!(
            "Marathon at {url} is not answering: {e}"
        )));
    }
    if !s.reached_marathon {
        return Err("Marathon has not been reached yet".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_turns_is_alive_and_one_that_doesnt_says_what_it_does() {
        let limit = Duration::from_secs(150);
        assert!(alive(Duration::from_secs(149), limit, "x", Duration::ZERO).is_ok());
        let e = alive(
            Duration::from_secs(400),
            limit,
            "rendering commit 1a2b3c4d5e6f",
            Duration::from_secs(390),
        )
        .unwrap_err();
        assert!(e.contains("400 s (limit 150 s)"), "{e}");
        assert!(e.contains("rendering commit 1a2b3c4d5e6f for 390 s"), "{e}");
    }

    #[test]
    fn health_turns_report_stuck_past_the_limit() {
        let h = Health::new(Duration::from_secs(10));
        h.doing("rendering commit abc");
        let now = Instant::now();
        assert!(h.alive(now).is_ok());
        let e = h.alive(now + Duration::from_secs(11)).unwrap_err();
        assert!(e.contains("rendering commit abc"), "{e}");
        h.turned();
        assert!(h.alive(Instant::now()).is_ok());
    }

    #[test]
    fn the_stuck_limit_covers_slow_polls_and_render_deadlines() {
        let s = Duration::from_secs;
        assert_eq!(Health::stuck_limit(s(2), s(30)), s(180));
        assert_eq!(Health::stuck_limit(s(60), s(30)), s(300));
        assert_eq!(Health::stuck_limit(s(2), s(120)), s(360));
    }

    #[test]
    fn a_first_commit_that_does_not_load_is_the_reason_with_its_place() {
        let problems = vec![
            Problem {
                file: Some("pacer.yaml".into()),
                line: Some(3),
                column: Some(5),
                message: "unknown key `environmnts`".into(),
                hint: None,
            },
            Problem::message("second"),
        ];
        let seen = Seen {
            head: Some("0123456789abcdef"),
            head_problems: &problems,
            reached_marathon: true,
            ..Seen::default()
        };
        assert_eq!(
            readiness(&seen).unwrap_err(),
            "commit 0123456789ab does not load: pacer.yaml:3:5: unknown key `environmnts` (and 1 more problems)"
        );
    }

    #[test]
    fn readiness_reasons_in_order() {
        let fetch = Seen {
            fetch_error: Some("connection refused"),
            ..Seen::default()
        };
        assert!(
            readiness(&fetch)
                .unwrap_err()
                .contains("could not be fetched")
        );
        assert!(
            readiness(&Seen::default())
                .unwrap_err()
                .contains("not been fetched yet")
        );
        let down = [(
            "http://admin:password@m:8080".to_string(),
            "error sending request for url (http://admin:password@m:8080/v2/apps)".to_string(),
        )];
        let seen = Seen {
            rendered: true,
            unreachable: &down,
            reached_marathon: true,
            ..Seen::default()
        };
        let e = readiness(&seen).unwrap_err();
        assert!(!e.contains("password"), "{e}");
        assert!(
            e.starts_with("Marathon at http://***@m:8080 is not answering"),
            "{e}"
        );
        let never = Seen {
            rendered: true,
            ..Seen::default()
        };
        assert_eq!(
            readiness(&never).unwrap_err(),
            "Marathon has not been reached yet"
        );
        let ok = Seen {
            rendered: true,
            reached_marathon: true,
            ..Seen::default()
        };
        assert!(readiness(&ok).is_ok());
    }
}
