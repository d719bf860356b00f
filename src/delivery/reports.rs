//! What each task's agent last reported (`POST /v1/report`), kept per task
//! id under the app and environment of the token that sent it.
//!
//! Only a task holding a valid token can report, and its entry lives as
//! long as its token: it is dropped when the token expires (renewals move
//! the expiry on), when the task is known dead, and when a read of its
//! app's tasks made after the report no longer lists it. The store is thus
//! bounded by the live tasks, and capped besides.

use super::progress::{FailedFile, Report};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The most tasks whose reports are kept; a report past it is refused
/// (503) rather than another task's forgotten.
pub const MAX_TASKS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    env: String,
    app: String,
    report: Report,
    /// The token's expiry, Unix seconds.
    exp: i64,
}

/// Reports by task, and the tasks of each app.
#[derive(Debug, Default)]
pub struct Reports {
    tasks: HashMap<String, Held>,
    apps: HashMap<String, BTreeSet<String>>,
    /// When [`Reports::sweep`] looks at every entry next, Unix s.
    next_sweep: i64,
}

/// Seconds between sweeps of the expired entries (reads skip them anyway).
const SWEEP_EVERY: i64 = 30;

/// Why a report was not kept.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Reports {
    /// Keeps `report` as `task`'s (of `app` in `env`), its token expiring
    /// at `exp` (Unix s). At `now_s`, expired entries make room first.
    pub fn put(
        &mut self,
        env: &str,
        app: &str,
        task: &str,
        report: Report,
        exp: i64,
        now_s: i64,
    ) -> Result<(), Full> {
        if !self.tasks.contains_key(task) && self.tasks.len() >= MAX_TASKS {
            self.expire(now_s);
            if self.tasks.len() >= MAX_TASKS {
                return Err(Full);
            }
        }
        let mut report = report;
        if let Some(old) = self.tasks.get(task)
            && old.report.index == report.index
        {
            // The same bundle again: held since the first report of it.
            report.since_ms = report.since_ms.min(old.report.since_ms);
        }
        let held = Held {
            env: env.to_string(),
            app: app.to_string(),
            report,
            exp,
        };
        if let Some(old) = self.tasks.insert(task.to_string(), held)
            && old.app != app
        {
            // A task id belongs to one app; a token says which.
            self.unlink(&old.app, task);
        }
        self.apps
            .entry(app.to_string())
            .or_default()
            .insert(task.to_string());
        Ok(())
    }

    /// A renewed token: `task`'s entry lives until `exp`.
    pub fn renewed(&mut self, task: &str, exp: i64) {
        if let Some(h) = self.tasks.get_mut(task) {
            h.exp = h.exp.max(exp);
        }
    }

    /// Forgets `task` (it is gone).
    pub fn remove(&mut self, task: &str) {
        if let Some(old) = self.tasks.remove(task) {
            self.unlink(&old.app, task);
        }
    }

    /// [`Reports::expire`], at most every [`SWEEP_EVERY`] seconds: it
    /// looks at every entry.
    pub fn sweep(&mut self, now_s: i64) {
        if now_s >= self.next_sweep {
            self.next_sweep = now_s + SWEEP_EVERY;
            self.expire(now_s);
        }
    }

    /// Drops the entries whose token expired by `now_s`.
    pub fn expire(&mut self, now_s: i64) {
        let dead: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, h)| h.exp <= now_s)
            .map(|(t, _)| t.clone())
            .collect();
        for t in dead {
            self.remove(&t);
        }
    }

    /// After a read of `app`'s tasks issued at `read_ms` listed `live`:
    /// drops the reports of its other tasks made before the read (a task
    /// that reported since may have started after it).
    pub fn keep_only(&mut self, app: &str, live: &BTreeSet<String>, read_ms: i64) {
        let gone: Vec<String> = self
            .apps
            .get(app)
            .into_iter()
            .flatten()
            .filter(|t| !live.contains(*t))
            .filter(|t| self.tasks.get(*t).is_some_and(|h| h.report.at_ms < read_ms))
            .cloned()
            .collect();
        for t in gone {
            self.remove(&t);
        }
    }

    /// `app`'s reports (of its environment `env`), by task, unexpired at `now_s`.
    pub fn of_app(&self, env: &str, app: &str, now_s: i64) -> BTreeMap<String, Report> {
        self.apps
            .get(app)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let h = self.tasks.get(t)?;
                (h.env == env && h.exp > now_s).then(|| (t.clone(), h.report.clone()))
            })
            .collect()
    }

    /// Tasks with a report.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    fn unlink(&mut self, app: &str, task: &str) {
        if let Some(set) = self.apps.get_mut(app) {
            set.remove(task);
            if set.is_empty() {
                self.apps.remove(app);
            }
        }
    }
}

/// The failed files of a report: at most this many.
pub const MAX_FAILED: usize = 64;

/// A report's failed files, checked: bounded in number and name length.
pub fn check_failed(failed: &[FailedFile]) -> Result<(), String> {
    if failed.len() > MAX_FAILED {
        return Err(format!("a report lists at most {MAX_FAILED} failed files"));
    }
    if failed
        .iter()
        .any(|f| f.file.is_empty() || f.file.len() > 256 || f.file.chars().any(char::is_control))
    {
        return Err("a failed file's name is empty, longer than 256 bytes or not printable".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::progress::Stage;

    fn r(index: u64, at_ms: i64) -> Report {
        Report {
            index,
            latest: index,
            failed: Vec::new(),
            at_ms,
            since_ms: at_ms,
        }
    }

    #[test]
    fn a_task_holds_an_index_since_its_first_report_of_it() {
        let mut s = Reports::default();
        s.put("dev", "/dev/web", "t1", r(1, 100), 99, 0).unwrap();
        s.put("dev", "/dev/web", "t1", r(1, 500), 99, 0).unwrap();
        let got = &s.of_app("dev", "/dev/web", 0)["t1"];
        assert_eq!((got.at_ms, got.since_ms), (500, 100));
        s.put("dev", "/dev/web", "t1", r(2, 900), 99, 0).unwrap();
        assert_eq!(s.of_app("dev", "/dev/web", 0)["t1"].since_ms, 900);
    }

    #[test]
    fn reports_live_as_long_as_their_tokens_and_tasks() {
        let mut s = Reports::default();
        s.put("dev", "/dev/web", "t1", r(1, 100), 10, 0).unwrap();
        s.put("dev", "/dev/web", "t2", r(1, 100), 20, 0).unwrap();
        s.put("dev", "/dev/api", "a1", r(1, 100), 20, 0).unwrap();
        assert_eq!(s.of_app("dev", "/dev/web", 0).len(), 2);
        assert!(s.of_app("prod", "/dev/web", 0).is_empty(), "scoped by env");
        // An expired token's report is not counted, then dropped.
        assert_eq!(s.of_app("dev", "/dev/web", 10).len(), 1);
        s.renewed("t2", 40);
        s.expire(30);
        assert_eq!(s.len(), 1);
        assert_eq!(s.of_app("dev", "/dev/web", 30).len(), 1);
        s.remove("t2");
        assert!(s.of_app("dev", "/dev/web", 0).is_empty());
        assert!(s.is_empty());
    }

    #[test]
    fn a_read_of_the_running_tasks_drops_only_older_reports() {
        let mut s = Reports::default();
        s.put("dev", "/dev/web", "old", r(1, 100), 99, 0).unwrap();
        s.put("dev", "/dev/web", "new", r(1, 300), 99, 0).unwrap();
        s.put("dev", "/dev/web", "live", r(1, 100), 99, 0).unwrap();
        let live = BTreeSet::from(["live".to_string()]);
        s.keep_only("/dev/web", &live, 200);
        let left: Vec<String> = s.of_app("dev", "/dev/web", 0).into_keys().collect();
        assert_eq!(left, ["live", "new"]);
    }

    #[test]
    fn the_store_is_capped() {
        let mut s = Reports::default();
        for i in 0..MAX_TASKS {
            s.put("dev", "/dev/web", &format!("t{i}"), r(1, 0), 5, 0)
                .unwrap();
        }
        assert_eq!(
            s.put("dev", "/dev/web", "one-more", r(1, 0), 5, 0),
            Err(Full)
        );
        // A known task may always report again.
        assert!(s.put("dev", "/dev/web", "t1", r(2, 0), 5, 0).is_ok());
        // Expired entries make room.
        assert!(s.put("dev", "/dev/web", "one-more", r(1, 0), 99, 5).is_ok());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn failed_lists_are_bounded() {
        let f = |name: &str| FailedFile {
            file: name.into(),
            stage: Stage::Check,
        };
        assert!(check_failed(&[f("nginx.conf")]).is_ok());
        assert!(check_failed(&vec![f("x"); MAX_FAILED + 1]).is_err());
        assert!(check_failed(&[f("")]).is_err());
        assert!(check_failed(&[f("a\nb")]).is_err());
        assert!(check_failed(&[f(&"x".repeat(257))]).is_err());
    }
}
