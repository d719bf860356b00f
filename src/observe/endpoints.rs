//! Live endpoints, the pure part: reading a service's tasks out of
//! Marathon's app JSON, and deciding when a changed set reaches the
//! templates.
//!
//! Two rules stand between Marathon and a running app's config:
//!
//! - **Quiescence** (consul-template's `wait`): a changed set is released
//!   once it has been stable for `min_wait`, or `max_wait` after its first
//!   change, whichever comes first, so a rolling restart of 50 tasks gives a
//!   few renders, not 50. The first set of a service is never delayed.
//! - **The guard**: a set that becomes empty, or shrinks by more than
//!   `max_shrink` of its tasks in one step, is held back; the last released
//!   set stays, and the hold says why. It ends when the set recovers (a set
//!   the guard passes against the last released one) or an operator
//!   releases it. consul-template renders an empty upstream list into a
//!   running config; pacer must never do that by accident.
//!
//! Time is an argument (milliseconds), as in `apply::rollout`: the follower
//! in `reconcile::endpoints` owns the clock and the I/O.

use crate::model::endpoints::{Endpoint, Hold, ServiceSet};
use serde_json::Value;
use std::sync::Arc;

/// The most tasks one service's set keeps: a template that names a service
/// with more gets the first ones in order, and the status says so.
pub const MAX_TASKS: usize = 10_000;

/// Reads the running (and, where the app has health checks, healthy) tasks
/// out of `GET /v2/apps/{id}`'s app, which embeds its tasks.
///
/// A task counts when its `state` is `TASK_RUNNING` and, if the app
/// defines health checks, it has a result for each and all are alive (a
/// task not checked yet is not healthy: Marathon's own `tasksHealthy`
/// doesn't count it either). Port names come from `portDefinitions`, or
/// the container's `portMappings` under container networking.
pub fn service_set(app: &Value) -> ServiceSet {
    let checks = app
        .get("healthChecks")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let names = |list: Option<&Value>| -> Option<Vec<Option<String>>> {
        let list = list?.as_array()?;
        (!list.is_empty()).then(|| {
            list.iter()
                .map(|p| p.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
    };
    let port_names = names(app.get("portDefinitions"))
        .or_else(|| names(app.pointer("/container/portMappings")))
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for t in app
        .get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if tasks.len() >= MAX_TASKS {
            break;
        }
        if t.get("state").and_then(Value::as_str) != Some("TASK_RUNNING") {
            continue;
        }
        if checks > 0 {
            let results = t.get("healthCheckResults").and_then(Value::as_array);
            let healthy = results.is_some_and(|r| {
                r.len() >= checks
                    && r.iter()
                        .all(|c| c.get("alive").and_then(Value::as_bool) == Some(true))
            });
            if !healthy {
                continue;
            }
        }
        let text = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let Some(host) = t.get("host").and_then(Value::as_str) else {
            continue;
        };
        tasks.push(Endpoint {
            host: host.to_string(),
            ips: t
                .get("ipAddresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.get("ipAddress").and_then(Value::as_str))
                .map(str::to_string)
                .collect(),
            ports: t
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| u16::try_from(p.as_u64()?).ok())
                .collect(),
            task_id: text("id"),
            version: text("version"),
            started_at: text("startedAt"),
        });
    }
    ServiceSet::new(port_names, tasks)
}

/// The environment whose group holds the app `id` (the longest group that
/// is a prefix of it), of `(environment, group)` pairs: its Marathon is
/// the one that runs the service, whoever names it. `None`: an external
/// service, read from the Marathon of the environment that names it.
pub fn owner<'a>(id: &str, groups: impl Iterator<Item = (&'a str, &'a str)>) -> Option<&'a str> {
    groups
        .filter(|(_, g)| {
            let g = g.trim_end_matches('/');
            g.is_empty() || id.strip_prefix(g).is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(_, g)| g.len())
        .map(|(env, _)| env)
}

/// The operator's settings (`pacer serve --endpoints-*`).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// A changed set waits until it has been stable this long…
    pub min_wait_ms: u64,
    /// …but never longer than this after its first change.
    pub max_wait_ms: u64,
    /// A step that loses more than this share of the tasks is held.
    pub max_shrink: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_wait_ms: 2_000,
            max_wait_ms: 10_000,
            max_shrink: 0.5,
        }
    }
}

/// What the follower does next for one service.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing new for the templates.
    Idle,
    /// A change waits for quiet; ask again at this time.
    WaitUntil(u64),
    /// Templates get this set now.
    Release(Arc<ServiceSet>),
    /// The newest set is held back (new, or still held): see [`Hold`].
    Held(Hold),
}

/// One service followed: what templates see and what Marathon says now.
#[derive(Clone, Debug, Default)]
pub struct Follow {
    /// The set templates see; `None` until the first one is read.
    released: Option<Arc<ServiceSet>>,
    /// A set that differs from `released`, with the times its change began
    /// and last moved.
    pending: Option<(Arc<ServiceSet>, u64, u64)>,
    hold: Option<Hold>,
    /// An operator released the hold: the set pending now goes out.
    override_hold: bool,
}

impl Follow {
    /// A service whose last released set is known from before a restart:
    /// the guard protects it as if it had been released now.
    pub fn resumed(set: ServiceSet) -> Follow {
        Follow {
            released: Some(Arc::new(set)),
            ..Follow::default()
        }
    }

    pub fn released(&self) -> Option<&Arc<ServiceSet>> {
        self.released.as_ref()
    }

    pub fn hold(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }

    /// What Marathon says now.
    pub fn observe(&mut self, set: ServiceSet, now_ms: u64) {
        if self.released.as_deref() == Some(&set) {
            // Back where templates are: nothing waits, nothing is held.
            self.pending = None;
            self.hold = None;
            return;
        }
        match &mut self.pending {
            Some((p, _, last)) if **p == set => {
                let _ = last;
            }
            Some((p, _, last)) => {
                *p = Arc::new(set);
                *last = now_ms;
            }
            None => self.pending = Some((Arc::new(set), now_ms, now_ms)),
        }
    }

    /// When the set waiting now is due, if that is after `now_ms`: a held
    /// service must be looked at again then too, or a set that recovered
    /// inside the quiet period would wait for the next event or re-sync.
    pub fn next_due(&self, now_ms: u64, s: &Settings) -> Option<u64> {
        let (_, first, last) = self.pending.as_ref()?;
        let due = (last + s.min_wait_ms).min(first + s.max_wait_ms);
        (due > now_ms).then_some(due)
    }

    /// An operator lets the held set through.
    pub fn release_hold(&mut self) -> bool {
        let held = self.hold.is_some();
        self.override_hold = held;
        held
    }

    /// Decides at `now_ms`; see the module docs.
    pub fn step(&mut self, now_ms: u64, s: &Settings) -> Step {
        let Some((set, first, last)) = self.pending.clone() else {
            return Step::Idle;
        };
        let Some(released) = self.released.clone() else {
            // The first set is never delayed, nor guarded: there is no
            // running config to protect yet.
            self.released = Some(set.clone());
            self.pending = None;
            return Step::Release(set);
        };
        let due = (last + s.min_wait_ms).min(first + s.max_wait_ms);
        if now_ms < due && !self.override_hold {
            return match &self.hold {
                Some(h) => Step::Held(h.clone()),
                None => Step::WaitUntil(due),
            };
        }
        if !std::mem::take(&mut self.override_hold)
            && let Some(reason) = guard(&released, &set, s.max_shrink)
        {
            let since_ms = self.hold.as_ref().map_or(now_ms, |h| h.since_ms);
            let hold = Hold {
                reason,
                released_tasks: released.tasks.len(),
                held_tasks: set.tasks.len(),
                since_ms,
            };
            self.hold = Some(hold.clone());
            return Step::Held(hold);
        }
        self.hold = None;
        self.released = Some(set.clone());
        self.pending = None;
        Step::Release(set)
    }
}

/// Why going from `from` to `to` in one step is held back, if it is.
pub fn guard(from: &ServiceSet, to: &ServiceSet, max_shrink: f64) -> Option<String> {
    let (a, b) = (from.tasks.len(), to.tasks.len());
    if a > 0 && b == 0 {
        return Some(format!(
            "no running, healthy task left (was {a}); the last good endpoints stay"
        ));
    }
    if b < a {
        let lost = (a - b) as f64 / a as f64;
        if lost > max_shrink {
            return Some(format!(
                "the set shrank from {a} to {b} tasks in one step, more than the {:.0} % allowed; the last good endpoints stay",
                max_shrink * 100.0
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(ports: &[u16]) -> ServiceSet {
        ServiceSet::new(
            vec![],
            ports
                .iter()
                .map(|p| Endpoint {
                    host: "h".into(),
                    ips: vec![],
                    ports: vec![*p],
                    task_id: format!("t{p}"),
                    version: String::new(),
                    started_at: String::new(),
                })
                .collect(),
        )
    }

    const S: Settings = Settings {
        min_wait_ms: 100,
        max_wait_ms: 1_000,
        max_shrink: 0.5,
    };

    #[test]
    fn running_healthy_tasks_are_read_with_their_port_names() {
        let app = json!({
            "id": "/p/db",
            "healthChecks": [{"protocol": "HTTP"}],
            "portDefinitions": [{"port": 0, "name": "pg"}, {"port": 0}],
            "tasks": [
                {"id": "b", "host": "h2", "state": "TASK_RUNNING", "ports": [2, 3],
                 "ipAddresses": [{"ipAddress": "10.0.0.2"}], "version": "v", "startedAt": "s",
                 "healthCheckResults": [{"alive": true}]},
                {"id": "a", "host": "h1", "state": "TASK_RUNNING", "ports": [1, 4],
                 "healthCheckResults": [{"alive": true}]},
                {"id": "sick", "host": "h3", "state": "TASK_RUNNING", "ports": [5],
                 "healthCheckResults": [{"alive": false}]},
                {"id": "unchecked", "host": "h4", "state": "TASK_RUNNING", "ports": [6]},
                {"id": "staging", "host": "h5", "state": "TASK_STAGING", "ports": [7]},
                {"id": "nohost", "state": "TASK_RUNNING", "healthCheckResults": [{"alive": true}]},
            ]
        });
        let s = service_set(&app);
        assert_eq!(s.port_names, vec![Some("pg".to_string()), None]);
        let ids: Vec<&str> = s.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(
            ids,
            ["a", "b"],
            "sorted by host; sick, unchecked, staging left out"
        );
        assert_eq!(s.tasks[1].ips, ["10.0.0.2"]);
        assert_eq!(s.tasks[1].ports, [2, 3]);
        // Without health checks, running is enough.
        let plain = json!({"tasks": [{"id": "x", "host": "h", "state": "TASK_RUNNING"}],
                           "container": {"portMappings": [{"name": "http"}]}});
        let s = service_set(&plain);
        assert_eq!(s.tasks.len(), 1);
        assert_eq!(s.port_index("http"), Some(0));
        // Nonsense reads as no tasks, never a panic.
        assert!(service_set(&json!({"tasks": "no"})).tasks.is_empty());
        assert!(service_set(&json!([1, 2])).tasks.is_empty());
    }

    #[test]
    fn a_service_belongs_to_the_environment_whose_group_holds_it() {
        let groups = [
            ("dev", "/dev"),
            ("prod", "/prod"),
            ("prod-eu", "/prod/eu"),
            ("all", "/"),
        ];
        let of = |id| owner(id, groups.iter().copied());
        assert_eq!(of("/prod/db"), Some("prod"));
        assert_eq!(of("/prod/eu/db"), Some("prod-eu"), "the longest group");
        assert_eq!(
            of("/production/db"),
            Some("all"),
            "a group is a path, not a prefix"
        );
        assert_eq!(owner("/shared/pg", groups[..3].iter().copied()), None);
    }

    #[test]
    fn the_first_set_goes_out_at_once() {
        let mut f = Follow::default();
        assert_eq!(f.step(0, &S), Step::Idle);
        f.observe(set(&[1]), 0);
        assert!(matches!(f.step(0, &S), Step::Release(_)));
        assert_eq!(f.step(1, &S), Step::Idle);
    }

    #[test]
    fn a_burst_of_changes_is_one_release_after_quiet_or_the_max_wait() {
        let mut f = Follow::default();
        f.observe(set(&[1, 2, 3]), 0);
        f.step(0, &S);
        // A rolling restart: a change every 50 ms, never quiet for 100.
        let mut releases = 0;
        for i in 1..40u64 {
            let now = i * 50;
            f.observe(set(&[1, 2, 3 + (i as u16)]), now);
            if let Step::Release(_) = f.step(now, &S) {
                releases += 1;
            }
        }
        // 39 changes over 1,950 ms with a 1 s max wait: at most two renders.
        assert!((1..=2).contains(&releases), "{releases}");
        // Quiet for min_wait: the last set goes out.
        let mut f = Follow::default();
        f.observe(set(&[1]), 0);
        f.step(0, &S);
        f.observe(set(&[2]), 10);
        assert_eq!(f.step(50, &S), Step::WaitUntil(110));
        assert!(matches!(f.step(110, &S), Step::Release(s) if s.tasks[0].ports == [2]));
        // A change that goes back before it is due is no change.
        f.observe(set(&[3]), 200);
        f.observe(set(&[2]), 250);
        assert_eq!(f.step(400, &S), Step::Idle);
    }

    #[test]
    fn an_empty_or_halved_set_is_held_until_it_recovers_or_is_released() {
        let mut f = Follow::default();
        f.observe(set(&[1, 2, 3, 4]), 0);
        f.step(0, &S);
        // Scaled to 0: held, and the released set stays.
        f.observe(set(&[]), 10);
        let Step::Held(h) = f.step(200, &S) else {
            panic!("held")
        };
        assert!(
            h.reason.contains("no running, healthy task"),
            "{}",
            h.reason
        );
        assert_eq!((h.released_tasks, h.held_tasks, h.since_ms), (4, 0, 200));
        assert_eq!(f.released().unwrap().tasks.len(), 4);
        // Still held later, with its first time.
        assert!(matches!(f.step(5_000, &S), Step::Held(h) if h.since_ms == 200));
        // Losing 3 of 4 in one step is held too.
        f.observe(set(&[1]), 5_010);
        assert!(matches!(f.step(5_200, &S), Step::Held(h) if h.reason.contains("from 4 to 1")));
        // Recovering to 3 of 4 passes, and the hold ends.
        f.observe(set(&[1, 2, 5]), 5_300);
        assert!(matches!(f.step(5_400, &S), Step::Release(_)));
        assert!(f.hold().is_none());
        // An operator lets a held set through.
        f.observe(set(&[]), 6_000);
        assert!(matches!(f.step(6_200, &S), Step::Held(_)));
        assert!(f.release_hold());
        assert!(matches!(f.step(6_201, &S), Step::Release(s) if s.tasks.is_empty()));
        assert!(!f.release_hold(), "nothing held now");
        // Growing back from empty is never held.
        f.observe(set(&[9]), 7_000);
        assert!(matches!(f.step(7_100, &S), Step::Release(_)));
    }

    #[test]
    fn a_hold_is_looked_at_again_when_the_set_that_recovered_is_due() {
        let mut f = Follow::default();
        f.observe(set(&[1]), 0);
        f.step(0, &S);
        f.observe(set(&[]), 0);
        assert!(matches!(f.step(150, &S), Step::Held(_)));
        // The task is back on a new port, inside the quiet period.
        f.observe(set(&[2]), 200);
        assert!(matches!(f.step(210, &S), Step::Held(_)));
        assert_eq!(f.next_due(210, &S), Some(300), "woken when it is due");
        assert!(matches!(f.step(300, &S), Step::Release(s) if s.tasks[0].ports == [2]));
        assert_eq!(f.next_due(300, &S), None);
        // Past the max wait from the first change, a recovered set goes
        // out at once.
        f.observe(set(&[]), 400);
        assert!(matches!(f.step(600, &S), Step::Held(_)));
        f.observe(set(&[3]), 1_450);
        assert!(matches!(f.step(1_451, &S), Step::Release(_)));
    }

    #[test]
    fn a_set_known_from_before_a_restart_is_guarded() {
        let mut f = Follow::resumed(set(&[1, 2]));
        f.observe(set(&[]), 0);
        assert!(matches!(f.step(5_000, &S), Step::Held(_)));
        assert_eq!(f.released().unwrap().tasks.len(), 2);
    }

    #[test]
    fn the_guard_allows_what_it_should() {
        assert_eq!(guard(&set(&[]), &set(&[]), 0.5), None);
        assert_eq!(
            guard(&set(&[1, 2]), &set(&[1]), 0.5),
            None,
            "half is allowed"
        );
        assert!(guard(&set(&[1, 2, 3]), &set(&[1]), 0.5).is_some());
        assert_eq!(guard(&set(&[1]), &set(&[2, 3]), 0.0), None);
    }
}
