//! What the simulator holds at most. Marathon's own validation lets
//! `instances: 100000000` through (a real cluster would just lack the
//! offers); a simulator that tried would grow its task list until memory
//! runs out. A change that would take it past [`Settings::max_apps`] or
//! [`Settings::max_tasks`] is refused with 422 and the reason, before
//! anything is stored.
//!
//! [`Settings::max_apps`]: super::state::Settings::max_apps
//! [`Settings::max_tasks`]: super::state::Settings::max_tasks

use super::plan::Change;
use super::state::{ApiError, SimState};
use serde_json::{Value, json};

/// Apps the simulator holds by default (the reconcile benchmark loads 10,000).
pub const DEFAULT_MAX_APPS: usize = 20_000;
/// Tasks (the sum of every app's `instances`) it holds by default.
pub const DEFAULT_MAX_TASKS: usize = 100_000;

fn instances_of(def: &Value) -> u64 {
    def.get("instances").and_then(Value::as_u64).unwrap_or(1)
}

fn refuse(path: &str, message: String) -> ApiError {
    ApiError::invalid(json!([{"path": path, "errors": [message]}]))
}

impl SimState {
    /// `Ok` when the state after `changes` stays within the simulator's
    /// budgets. Counts only what grows, so the common update costs nothing.
    pub(super) fn check_capacity(&self, changes: &[Change]) -> Result<(), ApiError> {
        let (max_apps, max_tasks) = (self.settings.max_apps, self.settings.max_tasks as u64);
        let mut new_apps = 0usize;
        let mut grows = 0u64;
        let mut shrinks = 0u64;
        for c in changes {
            let old = self.apps.get(&c.id).map(|r| r.instances() as u64);
            let new = c.target.as_ref().map(instances_of);
            if old.is_none() && new.is_some() {
                new_apps += 1;
            }
            if let Some(n) = new
                && n > max_tasks
            {
                return Err(refuse(
                    "/instances",
                    format!(
                        "{}: {n} instances is more than the simulator holds ({max_tasks} tasks in all; see /_sim/settings maxTasks)",
                        c.id
                    ),
                ));
            }
            let (o, n) = (old.unwrap_or(0), new.unwrap_or(0));
            grows = grows.saturating_add(n.saturating_sub(o));
            shrinks = shrinks.saturating_add(o.saturating_sub(n));
        }
        if new_apps > 0 && self.apps.len() + new_apps > max_apps {
            return Err(refuse(
                "/id",
                format!(
                    "the simulator holds at most {max_apps} apps ({} now, {new_apps} more asked; see /_sim/settings maxApps)",
                    self.apps.len()
                ),
            ));
        }
        if grows > shrinks {
            let now = self.apps.total_instances();
            let after = now.saturating_add(grows - shrinks);
            if after > max_tasks {
                return Err(refuse(
                    "/instances",
                    format!(
                        "the simulator holds at most {max_tasks} tasks; this change would make {after} (see /_sim/settings maxTasks)"
                    ),
                ));
            }
        }
        Ok(())
    }
}
