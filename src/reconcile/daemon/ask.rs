//! An operator's apply of a manual environment's plan (`POST
//! /api/v1/apply`): taken when the trigger arrives, carried out at the
//! environment's next pass only if its plan is still the one reviewed
//! (the same digest), and what became of it is in the status.

use super::*;
use crate::status::{ApplyAsk, AskState};

/// An ask waits at most this long for its environment's next pass.
const ASK_TTL: Duration = Duration::from_secs(600);

impl Daemon {
    /// An operator asked to apply `env`'s plan whose digest is `plan`.
    pub(super) fn ask_apply(&mut self, env: String, plan: String) {
        self.set_ask(&env, &plan, AskState::Queued, None);
        self.apply_asked.insert(env, (plan, Instant::now()));
        // Its environment may be past in this pass.
        self.pass_again = true;
    }

    /// Whether `env`'s plan (digest `digest`) goes out now because an
    /// operator asked for it. `blocked`: why nothing may be sent this pass.
    /// An ask is used once, applied or dropped, and the status says which.
    pub(super) fn take_apply(&mut self, env: &str, digest: &str, blocked: Option<&str>) -> bool {
        let Some((asked, at)) = self.apply_asked.remove(env) else {
            return false;
        };
        let why = if at.elapsed() > ASK_TTL {
            Some(format!(
                "expired: {env} was not reconciled within {} minutes of the ask",
                ASK_TTL.as_secs() / 60
            ))
        } else if asked != digest {
            Some("the plan changed since it was reviewed: review it again".to_string())
        } else {
            blocked.map(String::from)
        };
        match why {
            None => {
                tracing::info!(env = %env, plan = %asked, "applying the plan an operator approved");
                self.set_ask(env, &asked, AskState::Applied, None);
                true
            }
            Some(why) => {
                tracing::warn!(env = %env, plan = %asked, "apply not done: {why}");
                self.set_ask(env, &asked, AskState::Dropped, Some(why));
                false
            }
        }
    }

    fn set_ask(&mut self, env: &str, plan: &str, state: AskState, reason: Option<String>) {
        let ask = ApplyAsk {
            plan: plan.to_string(),
            state,
            reason,
            at: chrono::Utc::now().to_rfc3339(),
        };
        let mut status = self.status.write();
        if let Some(e) = status.environments.get_mut(env) {
            Arc::make_mut(e).apply = Some(ask);
        }
    }
}
