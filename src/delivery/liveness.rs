//! Whether a token's task still runs, from Marathon's answers: pure.
//!
//! Only a terminal answer kills a token: the task in a terminal Mesos
//! state, or absent (its app lists no such task, or Marathon has no such
//! app: a 404) in [`ABSENT_CHECKS`] answers in a row. A Marathon failover,
//! a 404 mid-redeploy or `TASK_UNREACHABLE` is a doubt: reads go on, a
//! renewal waits (503), and the task is asked about again, as a live one
//! is. (A deleted app's tasks are gone after those answers, not at once.)

use super::login;
use serde_json::Value;

/// Answers in a row without the task before it counts as gone.
pub const ABSENT_CHECKS: u32 = 3;

/// States a task never leaves.
const TERMINAL: [&str; 7] = [
    "TASK_KILLED",
    "TASK_FAILED",
    "TASK_FINISHED",
    "TASK_ERROR",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
    "TASK_DROPPED",
];

/// What one Marathon answer says of the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Live,
    /// In a terminal state, or listed under another app.
    Dead,
    /// No such app (404), or the app lists no such task.
    Absent,
    /// A state that may pass (`TASK_UNREACHABLE`, …).
    Unsure,
}

/// What is known of a task: the memory kept per task id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    Live,
    Dead,
    /// Not live in the last answer(s); `absent`: answers in a row without it.
    Doubt {
        absent: u32,
    },
}

/// Reads one answer (`GET /v2/apps/{app}`'s app, `None` for a 404).
pub fn seen(app: Option<&Value>, app_id: &str, task: &str) -> Seen {
    let Some(app) = app else {
        return Seen::Absent;
    };
    let Some(t) = login::app_facts(app, task).task else {
        return Seen::Absent;
    };
    if t.app_id != app_id || TERMINAL.contains(&t.state.as_str()) {
        Seen::Dead
    } else if login::is_live(&t.state) {
        Seen::Live
    } else {
        Seen::Unsure
    }
}

/// What is known after `seen`, given what was known before.
pub fn next(before: Option<Known>, seen: Seen) -> Known {
    let absent_before = match before {
        Some(Known::Dead) => return Known::Dead,
        Some(Known::Doubt { absent }) => absent,
        _ => 0,
    };
    match seen {
        Seen::Live => Known::Live,
        Seen::Dead => Known::Dead,
        Seen::Absent if absent_before + 1 >= ABSENT_CHECKS => Known::Dead,
        Seen::Absent => Known::Doubt {
            absent: absent_before + 1,
        },
        Seen::Unsure => Known::Doubt {
            absent: absent_before,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TASK: &str = "dev_web.instance-1._app.1";

    fn app(state: &str) -> Value {
        json!({"id": "/dev/web", "tasks": [{"id": TASK, "appId": "/dev/web", "state": state}]})
    }

    #[test]
    fn answers_are_live_dead_absent_or_unsure() {
        assert_eq!(
            seen(Some(&app("TASK_RUNNING")), "/dev/web", TASK),
            Seen::Live
        );
        for s in [
            "TASK_KILLED",
            "TASK_FAILED",
            "TASK_FINISHED",
            "TASK_GONE",
            "TASK_DROPPED",
        ] {
            assert_eq!(seen(Some(&app(s)), "/dev/web", TASK), Seen::Dead, "{s}");
        }
        for s in [
            "TASK_UNREACHABLE",
            "TASK_UNKNOWN",
            "TASK_KILLING",
            "TASK_LOST",
        ] {
            assert_eq!(seen(Some(&app(s)), "/dev/web", TASK), Seen::Unsure, "{s}");
        }
        assert_eq!(seen(None, "/dev/web", TASK), Seen::Absent, "a 404");
        let other = json!({"tasks": []});
        assert_eq!(seen(Some(&other), "/dev/web", TASK), Seen::Absent);
        assert_eq!(
            seen(Some(&app("TASK_RUNNING")), "/dev/api", TASK),
            Seen::Dead
        );
    }

    #[test]
    fn one_transient_answer_never_kills_a_token() {
        // A failover's 404, then an unreachable agent, then back.
        let mut k = next(Some(Known::Live), Seen::Unsure);
        assert_eq!(k, Known::Doubt { absent: 0 });
        k = next(Some(k), Seen::Unsure);
        assert_ne!(k, Known::Dead);
        assert_eq!(next(Some(k), Seen::Live), Known::Live);
        // Absent in N answers in a row: gone; a live answer between resets.
        let mut k = Known::Live;
        for _ in 1..ABSENT_CHECKS {
            k = next(Some(k), Seen::Absent);
            assert_ne!(k, Known::Dead);
        }
        assert_eq!(next(Some(k), Seen::Live), Known::Live);
        assert_eq!(next(Some(k), Seen::Absent), Known::Dead);
        // Terminal is at once, and for good.
        assert_eq!(next(Some(Known::Live), Seen::Dead), Known::Dead);
        assert_eq!(next(Some(Known::Dead), Seen::Live), Known::Dead);
    }
}
