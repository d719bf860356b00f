//! Following one deployment, as a pure state machine: each poll of Marathon
//! is an event, and the verdict says whether to keep waiting, call it done,
//! or roll back. Time comes in as an argument, so tests need no clock.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub deployment: String,
    timeout: Duration,
    last_step: Option<(u32, u32)>,
}

/// What one poll of Marathon saw.
#[derive(Clone, Debug, PartialEq)]
pub enum RolloutEvent {
    /// Still listed in `/v2/deployments`, at this step.
    Running { step: u32, of: u32 },
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
            last_step: None,
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
            RolloutEvent::Running { step, of } => {
                let moved = self.last_step != Some((step, of));
                self.last_step = Some((step, of));
                Verdict::Continue(moved.then(|| format!("step {step} of {of}")))
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
        let (r, v) = r.step(RolloutEvent::Running { step: 1, of: 2 }, Duration::ZERO);
        assert_eq!(v, Verdict::Continue(Some("step 1 of 2".into())));
        let (r, v) = r.step(
            RolloutEvent::Running { step: 1, of: 2 },
            Duration::from_secs(1),
        );
        assert_eq!(v, Verdict::Continue(None));
        let (_, v) = r.step(RolloutEvent::Gone { healthy: true }, Duration::from_secs(2));
        assert_eq!(v, Verdict::Succeeded);
    }

    #[test]
    fn a_deployment_past_its_timeout_is_rolled_back() {
        let r = Rollout::new("d".into(), T);
        let (r, v) = r.step(RolloutEvent::Unreachable, Duration::from_secs(59));
        assert_eq!(v, Verdict::Continue(None));
        let (_, v) = r.step(
            RolloutEvent::Running { step: 1, of: 2 },
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
