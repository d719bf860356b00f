//! How far a bundle has reached an app's tasks: a pure function of the
//! bundle's index, the tasks that run, what each task's agent reported, the
//! clock and the timeout.
//!
//! A delivery is `delivered` when every running task holds the index (or a
//! later one), `failed` at once when a task's check or reload refused a
//! file of it (the agent won't try that content again), or when the
//! timeout passes first; `delivering` until then. A failed write is not
//! final: the agent tries it again, so only the timeout ends it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a file failed, as the agent reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    /// Its `check` refused the new content; the old file stays.
    Check,
    /// Its reload action failed; the previous file was put back.
    Reload,
    /// It could not be written (tried again by the agent).
    Write,
}

impl Stage {
    /// Whether the agent gives the content up (until the bundle changes it).
    pub fn is_final(self) -> bool {
        matches!(self, Stage::Check | Stage::Reload)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Check => "check",
            Stage::Reload => "reload",
            Stage::Write => "write",
        }
    }
}

/// One file an agent could not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedFile {
    pub file: String,
    pub stage: Stage,
}

/// What one task's agent last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The newest bundle index it applied in full (0: none yet).
    pub index: u64,
    /// The newest index it has seen: what `failed` is about.
    pub latest: u64,
    pub failed: Vec<FailedFile>,
    /// When the report came, Unix ms.
    pub at_ms: i64,
    /// Since when the task reports `index` (its first report of it), Unix ms.
    pub since_ms: i64,
}

/// Which tasks a delivery must reach.
#[derive(Clone, Copy, Debug)]
pub enum Running<'a> {
    /// Marathon's list of the app's live tasks.
    Marathon(&'a [String]),
    /// Not read from Marathon: the tasks whose agents report stand in. A
    /// task that runs no agent is not seen this way.
    Reporting,
    /// Marathon's list is wanted but not read yet: never delivered.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Delivering,
    Delivered,
    Failed { why: String },
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Delivering => "delivering",
            State::Delivered => "delivered",
            State::Failed { .. } => "failed",
        }
    }
}

/// A file one task could not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailure {
    pub task: String,
    pub file: String,
    pub stage: Stage,
}

/// The most task failures listed (the reason counts them all).
pub const MAX_LISTED: usize = 20;

/// Where a bundle is among an app's tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub state: State,
    /// Since when the state holds, Unix ms.
    pub since_ms: i64,
    /// The tasks counted.
    pub tasks: usize,
    /// Tasks per index they reported.
    pub by_index: BTreeMap<u64, usize>,
    /// Tasks with no report.
    pub unreported: usize,
    /// Files of the target (or a later) index that tasks could not apply,
    /// at most [`MAX_LISTED`].
    pub failed_files: Vec<TaskFailure>,
}

/// The delivery of bundle `target` to the tasks `running`, `reports` being
/// the app's (by task id), started at `started_ms`, seen at `now_ms`. A
/// `timeout` of `Duration::MAX` never fails it for time.
pub fn progress(
    target: u64,
    running: Running<'_>,
    reports: &BTreeMap<String, Report>,
    started_ms: i64,
    now_ms: i64,
    timeout: Duration,
) -> Delivery {
    let tasks: Vec<&str> = match running {
        Running::Marathon(list) => list.iter().map(String::as_str).collect(),
        Running::Reporting | Running::Unknown => reports.keys().map(String::as_str).collect(),
    };
    let mut d = Delivery {
        state: State::Delivering,
        since_ms: started_ms,
        tasks: tasks.len(),
        by_index: BTreeMap::new(),
        unreported: 0,
        failed_files: Vec::new(),
    };
    let mut holding = 0;
    let mut last_held = started_ms;
    let mut refused: Vec<(&str, &FailedFile, i64)> = Vec::new();
    for task in &tasks {
        let Some(r) = reports.get(*task) else {
            d.unreported += 1;
            continue;
        };
        *d.by_index.entry(r.index).or_default() += 1;
        if r.index >= target {
            holding += 1;
            last_held = last_held.max(r.since_ms);
            continue;
        }
        // Failures of an older bundle say nothing about this one.
        if r.latest < target {
            continue;
        }
        for f in &r.failed {
            if d.failed_files.len() < MAX_LISTED {
                d.failed_files.push(TaskFailure {
                    task: task.to_string(),
                    file: f.file.clone(),
                    stage: f.stage,
                });
            }
            if f.stage.is_final() {
                refused.push((task, f, r.since_ms));
            }
        }
    }
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let deadline = started_ms.saturating_add(timeout_ms);
    if let Some((task, f, at)) = refused.iter().min_by_key(|(_, _, at)| *at) {
        let more = match refused.len() {
            1 => String::new(),
            n => format!(" ({} more refusals)", n - 1),
        };
        let what = match f.stage {
            Stage::Reload => "its reload failed, the previous file is back",
            _ => "its check refused the new content",
        };
        d.state = State::Failed {
            why: format!("task {task}: {}: {what}{more}", f.file),
        };
        d.since_ms = *at;
    } else if !matches!(running, Running::Unknown) && holding == tasks.len() && !tasks.is_empty() {
        d.state = State::Delivered;
        d.since_ms = last_held;
    } else if matches!(running, Running::Marathon(_)) && tasks.is_empty() {
        // No task runs: a task that starts logs in and reads this bundle.
        d.state = State::Delivered;
    } else if now_ms >= deadline {
        let behind = tasks.len() - holding - d.unreported;
        let why = match running {
            Running::Unknown => format!(
                "after {}, Marathon's running tasks could not be read",
                seconds(timeout)
            ),
            _ => format!(
                "after {}, {holding} of {} running tasks hold it: {} never reported (do they run `pacer agent`?), {behind} on an older bundle",
                seconds(timeout),
                tasks.len(),
                d.unreported,
            ),
        };
        d.state = State::Failed { why };
        d.since_ms = deadline;
    }
    d
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn report(index: u64, latest: u64, failed: &[(&str, Stage)], at_ms: i64) -> Report {
        Report {
            index,
            latest,
            failed: failed
                .iter()
                .map(|(f, s)| FailedFile {
                    file: f.to_string(),
                    stage: *s,
                })
                .collect(),
            at_ms,
            since_ms: at_ms,
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn delivered_once_every_running_task_holds_the_index() {
        let running = ids(&["a", "b"]);
        let mut reports = BTreeMap::from([("a".to_string(), report(7, 7, &[], 1_500))]);
        let d = progress(7, Running::Marathon(&running), &reports, 1_000, 2_000, MIN);
        assert_eq!(d.state, State::Delivering);
        assert_eq!(d.since_ms, 1_000);
        assert_eq!((d.tasks, d.unreported), (2, 1));
        assert_eq!(d.by_index, BTreeMap::from([(7, 1)]));
        reports.insert("b".into(), report(8, 8, &[], 1_800));
        // A later index holds it too; the state dates from the last holder.
        let d = progress(7, Running::Marathon(&running), &reports, 1_000, 2_000, MIN);
        assert_eq!(d.state, State::Delivered);
        assert_eq!(d.since_ms, 1_800);
        assert_eq!(d.by_index, BTreeMap::from([(7, 1), (8, 1)]));
        // A report of a task that no longer runs is not counted.
        reports.insert("gone".into(), report(1, 1, &[], 1_000));
        let d = progress(7, Running::Marathon(&running), &reports, 1_000, 2_000, MIN);
        assert_eq!((d.state, d.tasks), (State::Delivered, 2));
    }

    #[test]
    fn a_task_without_an_agent_keeps_it_delivering_until_the_timeout() {
        let running = ids(&["a", "b"]);
        let reports = BTreeMap::from([("a".to_string(), report(7, 7, &[], 1_100))]);
        let at = |now| progress(7, Running::Marathon(&running), &reports, 1_000, now, MIN);
        assert_eq!(at(60_999).state, State::Delivering);
        let d = at(61_000);
        let State::Failed { why } = &d.state else {
            panic!("{d:?}")
        };
        assert!(
            why.contains("1 of 2 running tasks hold it: 1 never reported"),
            "{why}"
        );
        assert_eq!(d.since_ms, 61_000);
    }

    #[test]
    fn a_refused_check_fails_at_once_a_failed_write_waits() {
        let running = ids(&["a", "b"]);
        let mut reports = BTreeMap::from([
            ("a".to_string(), report(7, 7, &[], 1_100)),
            (
                "b".to_string(),
                report(5, 7, &[("nginx.conf", Stage::Write)], 1_200),
            ),
        ]);
        let d = progress(7, Running::Marathon(&running), &reports, 1_000, 2_000, MIN);
        assert_eq!(d.state, State::Delivering, "the agent writes it again");
        assert_eq!(d.failed_files.len(), 1);
        reports.insert(
            "b".into(),
            report(5, 7, &[("nginx.conf", Stage::Check)], 1_300),
        );
        let d = progress(7, Running::Marathon(&running), &reports, 1_000, 2_000, MIN);
        let State::Failed { why } = &d.state else {
            panic!("{d:?}")
        };
        assert!(
            why.contains("task b: nginx.conf: its check refused"),
            "{why}"
        );
        assert_eq!(d.since_ms, 1_300);
        assert_eq!(
            d.failed_files,
            [TaskFailure {
                task: "b".into(),
                file: "nginx.conf".into(),
                stage: Stage::Check
            }]
        );
        // A refusal of an older bundle is not this one's.
        reports.insert(
            "b".into(),
            report(5, 6, &[("nginx.conf", Stage::Check)], 1_300),
        );
        let d = progress(7, Running::Marathon(&running), &reports, 1_000, 2_000, MIN);
        assert_eq!((d.state, d.failed_files.len()), (State::Delivering, 0));
    }

    #[test]
    fn without_marathons_list_a_delivery_is_never_delivered() {
        let reports = BTreeMap::from([("a".to_string(), report(7, 7, &[], 1_100))]);
        let d = progress(7, Running::Unknown, &reports, 1_000, 2_000, MIN);
        assert_eq!(d.state, State::Delivering);
        let d = progress(7, Running::Unknown, &reports, 1_000, 61_000, MIN);
        assert!(
            matches!(&d.state, State::Failed { why } if why.contains("could not be read")),
            "{d:?}"
        );
        // The reporting tasks stand in when Marathon is not asked.
        let d = progress(7, Running::Reporting, &reports, 1_000, 2_000, MIN);
        assert_eq!(d.state, State::Delivered);
        let none = BTreeMap::new();
        let d = progress(7, Running::Reporting, &none, 1_000, 2_000, MIN);
        assert_eq!(d.state, State::Delivering, "nobody reported");
        // No task runs at all: nothing to wait for.
        let d = progress(7, Running::Marathon(&[]), &none, 1_000, 2_000, MIN);
        assert_eq!(d.state, State::Delivered);
    }

    #[test]
    fn failures_listed_are_bounded() {
        let running: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
        let reports: BTreeMap<String, Report> = running
            .iter()
            .map(|t| (t.clone(), report(1, 2, &[("x", Stage::Reload)], 5)))
            .collect();
        let d = progress(2, Running::Marathon(&running), &reports, 0, 10, MIN);
        assert_eq!(d.failed_files.len(), MAX_LISTED);
        assert!(
            matches!(&d.state, State::Failed { why } if why.contains("(49 more refusals)") && why.contains("reload failed")),
            "{d:?}"
        );
    }
}
