//! Following one deployment, as a pure state machine: each poll of Marathon
//! is an event, and the verdict says whether to keep waiting, call it done,
//! or roll back. Time comes in as an argument, so tests need no clock.

use serde_json::Value;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub deployment: String,
    timeout: Duration,
    last: Option<String>,
}

/// The app's tasks against its target instance count, as Marathon counts
/// them: what a hung deployment is waiting for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tasks {
    pub target: u64,
    pub staged: u64,
    pub running: u64,
    /// `None` for an app without health checks.
    pub healthy: Option<u64>,
}

impl Tasks {
    /// From an app as `GET /v2/apps/{id}` gives it.
    pub fn of(app: &Value) -> Tasks {
        let n = |k: &str| app.get(k).and_then(Value::as_u64).unwrap_or(0);
        let checks = app
            .get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        Tasks {
            target: n("instances"),
            staged: n("tasksStaged"),
            running: n("tasksRunning"),
            healthy: checks.then(|| n("tasksHealthy")),
        }
    }
}

impl std::fmt::Display for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.healthy {
            Some(h) => write!(
                f,
                "{h}/{} healthy, {} running, {} staged",
                self.target, self.running, self.staged
            ),
            None => write!(
                f,
                "{}/{} running, {} staged",
                self.running, self.target, self.staged
            ),
        }
    }
}

/// What one poll of Marathon saw.
#[derive(Clone, Debug, PartialEq)]
pub enum RolloutEvent {
    /// Still listed in `/v2/deployments`, at this step; the app's tasks
    /// when they could be read.
    Running {
        step: u32,
        of: u32,
        tasks: Option<Tasks>,
    },
    /// No longer listed; `healthy` says whether the app's tasks are all up.
    Gone { healthy: bool },
    /// Marathon could not be read this time.
    Unreachable,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Keep waiting; a new progress line when something moved.
    Continue(Option<String>),
    Succeeded,
    /// Revert, for this reason.
    RollBack(String),
}

impl Rollout {
    pub fn new(deployment: String, timeout: Duration) -> Self {
        Rollout {
            deployment,
            timeout,
            last: None,
        }
    }

    pub fn step(mut self, event: RolloutEvent, elapsed: Duration) -> (Self, Verdict) {
        let verdict = match event {
            RolloutEvent::Gone { healthy: true } => Verdict::Succeeded,
            // Marathon dropped the deployment without the tasks coming up:
            // it failed (or was cancelled).
            RolloutEvent::Gone { healthy: false } => {
                Verdict::RollBack("the deployment failed: its tasks did not become healthy".into())
            }
            _ if elapsed > self.timeout => Verdict::RollBack(format!(
                "the deployment did not finish within {}s",
                self.timeout.as_secs()
            )),
            RolloutEvent::Running { step, of, tasks } => {
                let line = match tasks {
                    Some(t) => format!("step {step} of {of}: {t}"),
                    None => format!("step {step} of {of}"),
                };
                let moved = self.last.as_ref() != Some(&line);
                if moved {
                    self.last = Some(line.clone());
                }
                Verdict::Continue(moved.then_some(line))
            }
            RolloutEvent::Unreachable => Verdict::Continue(None),
        };
        (self, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn progress_is_reported_once_per_step() {
        let r = Rollout::new("d".into(), T);
        let running = |tasks| RolloutEvent::Running {
            step: 1,
            of: 2,
            tasks,
        };
        let (r, v) = r.step(running(None), Duration::ZERO);
        assert_eq!(v, Verdict::Continue(Some("step 1 of 2".into())));
        let (r, v) = r.step(running(None), Duration::from_secs(1));
        assert_eq!(v, Verdict::Continue(None));
        // Tasks that move are progress too, within one step.
        let staged = Tasks {
            target: 3,
            staged: 1,
            running: 2,
            healthy: Some(1),
        };
        let (r, v) = r.step(running(Some(staged)), Duration::from_secs(1));
        assert_eq!(
            v,
            Verdict::Continue(Some("step 1 of 2: 1/3 healthy, 2 running, 1 staged".into()))
        );
        let (r, v) = r.step(running(Some(staged)), Duration::from_secs(1));
        assert_eq!(v, Verdict::Continue(None));
        let (_, v) = r.step(RolloutEvent::Gone { healthy: true }, Duration::from_secs(2));
        assert_eq!(v, Verdict::Succeeded);
    }

    #[test]
    fn tasks_are_counted_against_the_target() {
        let app = serde_json::json!({"instances": 3, "tasksStaged": 1, "tasksRunning": 2,
            "tasksHealthy": 0, "healthChecks": [{"protocol": "HTTP"}]});
        assert_eq!(
            Tasks::of(&app).to_string(),
            "0/3 healthy, 2 running, 1 staged"
        );
        let app = serde_json::json!({"instances": 2, "tasksStaged": 2, "tasksRunning": 0});
        assert_eq!(Tasks::of(&app).to_string(), "0/2 running, 2 staged");
    }

    #[test]
    fn a_deployment_past_its_timeout_is_rolled_back() {
        let r = Rollout::new("d".into(), T);
        let (r, v) = r.step(RolloutEvent::Unreachable, Duration::from_secs(59));
        assert_eq!(v, Verdict::Continue(None));
        let (_, v) = r.step(
            RolloutEvent::Running {
                step: 1,
                of: 2,
                tasks: None,
            },
            Duration::from_secs(61),
        );
        assert!(matches!(v, Verdict::RollBack(m) if m.contains("within 60s")));
    }

    #[test]
    fn a_deployment_that_ends_unhealthy_is_rolled_back() {
        let r = Rollout::new("d".into(), T);
        let (_, v) = r.step(
            RolloutEvent::Gone { healthy: false },
            Duration::from_secs(1),
        );
        assert!(matches!(v, Verdict::RollBack(_)));
    }
}
