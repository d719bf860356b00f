//! The config server's side of deliveries: hot updates handed over by
//! the daemon, followed (reports, Marathon's running tasks, the clock) by a
//! task of their own, and shown per app in `/api/v1/status` and `/metrics`.
//! The decisions are [`super::track`]'s and [`super::progress`]'s.

use super::bundle::Bundles;
use super::{OutcomeLabels, Server, flight, login, now_ms, progress, track};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One task's bundle, as its agent last reported it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskHolds {
    pub task: String,
    /// The newest bundle index it applied in full (0: none yet).
    pub index: u64,
    /// The newest it has seen.
    pub latest: u64,
    /// Files of `latest` it could not apply.
    pub failed_files: usize,
    /// Since when it holds `index`, Unix ms.
    pub since_ms: i64,
}

impl Server {
    /// Follows a hot update the daemon applied until every running task
    /// holds it, or it fails (see [`track`]).
    pub fn deliver_hot(&self, hot: track::Hot) {
        let bundles = self.bundles.borrow().clone();
        self.tracks.lock().start(hot, &bundles, now_ms());
        self.wake.notify_one();
    }

    /// The hot deliveries that ended since the last call, for the history.
    pub fn take_delivered(&self) -> Vec<track::Resolution> {
        self.tracks.lock().take_resolved()
    }

    /// Notified when a hot delivery ends.
    pub fn delivered_wake(&self) -> Arc<tokio::sync::Notify> {
        self.delivered.clone()
    }

    /// Each app's delivery (by Marathon app id), as `/api/v1/status` shows
    /// it under the app: its bundle index and commit, how many tasks hold
    /// which index, and the state since when.
    pub fn deliveries(&self) -> HashMap<String, Value> {
        self.views(now_ms())
            .iter()
            .map(|(id, v)| (id.clone(), view_json(v)))
            .collect()
    }

    /// One app's delivery (by its Marathon id), as [`Server::deliveries`]
    /// shows it: a page about one app reads only that app.
    pub fn delivery_of(&self, id: &str) -> Option<Value> {
        let bundles = self.bundles.borrow().clone();
        let reports = self.reports.lock();
        let tracks = self.tracks.lock();
        let v = tracks.view(
            &bundles,
            &reports,
            id,
            now_ms(),
            self.settings.delivery_timeout,
        )?;
        Some(view_json(&v))
    }

    /// The tasks of `app` (its Marathon id) in `env` whose agents report,
    /// with the bundle each holds, by task id: the dashboard's task list.
    pub fn tasks_of(&self, env: &str, app: &str) -> Vec<TaskHolds> {
        self.reports
            .lock()
            .of_app(env, app, now_ms() / 1000)
            .into_iter()
            .map(|(task, r)| TaskHolds {
                task,
                index: r.index,
                latest: r.latest,
                failed_files: r.failed.len(),
                since_ms: r.since_ms,
            })
            .collect()
    }

    pub(super) fn views(&self, now: i64) -> HashMap<String, track::View> {
        let bundles = self.bundles.borrow().clone();
        // Reports before tracks, always: the follower locks them so too.
        let reports = self.reports.lock();
        let tracks = self.tracks.lock();
        tracks.views(&bundles, &reports, now, self.settings.delivery_timeout)
    }

    /// Reads the running tasks of the deliveries in progress whose list is
    /// stale, then decides them.
    pub(super) async fn follow_once(&self) {
        use futures::StreamExt;
        let stale = self.tracks.lock().stale(now_ms());
        let mut reads = futures::stream::iter(stale)
            .map(|(env, app)| async move {
                let list = self.running_tasks(&env, &app).await;
                (app, list)
            })
            .buffer_unordered(MAX_READS);
        while let Some((app, list)) = reads.next().await {
            if let Some(list) = list {
                let live: std::collections::BTreeSet<String> = list.tasks.iter().cloned().collect();
                self.reports.lock().keep_only(&app, &live, list.read_ms);
                self.tracks.lock().listed(&app, list);
            }
        }
        let bundles = self.bundles.borrow().clone();
        let now = now_ms();
        let (ended, open) = {
            let mut reports = self.reports.lock();
            reports.sweep(now / 1000);
            let mut tracks = self.tracks.lock();
            let ended = tracks.evaluate(&bundles, &reports, now, self.settings.delivery_timeout);
            (ended, tracks.open())
        };
        self.keep_open(open).await;
        if !ended.is_empty() {
            self.delivered.notify_one();
        }
        for r in ended {
            let outcome = if r.failed.is_none() {
                "delivered"
            } else {
                "failed"
            };
            self.metrics
                .deliveries
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc();
        }
    }

    /// Writes the deliveries in progress to the state dir when they
    /// changed, so that a restart takes them up again ([`load_open`]).
    async fn keep_open(&self, open: Vec<track::Open>) {
        if *self.kept_open.lock() == open {
            return;
        }
        let (path, value) = (self.open_file.clone(), open.clone());
        let written =
            tokio::task::spawn_blocking(move || crate::state_file::write_json(&path, &value)).await;
        match written {
            Ok(Ok(())) => *self.kept_open.lock() = open,
            Ok(Err(e)) => tracing::warn!(
                file = %self.open_file.display(),
                "config server: keeping the hot deliveries in progress failed: {e}"
            ),
            Err(_) => {}
        }
    }

    /// `app`'s live tasks, from the Marathon that vouches for `env`'s
    /// logins (see [`track`] for why this source).
    async fn running_tasks(&self, env: &str, app: &str) -> Option<track::Listed> {
        let client = self.marathon_of(env).ok()?;
        // An answer shared with a login may be up to `flight::REUSE` old.
        let read_ms = now_ms() - i64::try_from(flight::REUSE.as_millis()).unwrap_or(1_000);
        let read = self.app_reads.read(
            app,
            |_| true,
            || async { client.get_app(app).await.map_err(|e| e.to_string()) },
        );
        let answer = match read.await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(app, error = %e, "config server: Marathon did not list a delivery's tasks");
                return None;
            }
        };
        let tasks = match answer.as_deref() {
            // No such app: no task of it runs.
            None => Vec::new(),
            // An answer without its tasks says nothing of them.
            Some(a) => a.get("tasks")?.as_array()?.clone(),
        };
        let tasks = tasks
            .iter()
            .filter(|t| t["appId"].as_str() == Some(app))
            .filter(|t| t["state"].as_str().is_some_and(login::is_live))
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        Some(track::Listed { read_ms, tasks })
    }
}

/// Marathon reads of the deliveries in progress at once.
const MAX_READS: usize = 8;

/// How often deliveries in progress are looked at (their timeouts, the
/// running tasks), besides when a report or a hot update comes.
const DELIVERY_TICK: Duration = Duration::from_millis(500);

/// Decides the hot deliveries as reports, bundles and time come, until the
/// server is gone.
pub(super) async fn follow(
    server: std::sync::Weak<Server>,
    wake: Arc<tokio::sync::Notify>,
    mut bundles: watch::Receiver<Arc<Bundles>>,
) {
    loop {
        let busy = match server.upgrade() {
            Some(s) => s.tracks.lock().busy(),
            None => return,
        };
        tokio::select! {
            _ = wake.notified() => {}
            changed = bundles.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(DELIVERY_TICK), if busy => {}
        }
        match server.upgrade() {
            Some(s) => s.follow_once().await,
            None => return,
        }
    }
}

/// An app's delivery in `/api/v1/status`.
fn view_json(v: &track::View) -> Value {
    let d = &v.delivery;
    let by_index: serde_json::Map<String, Value> = d
        .by_index
        .iter()
        .map(|(i, n)| (i.to_string(), json!(n)))
        .collect();
    let since = chrono::DateTime::from_timestamp_millis(d.since_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let mut out = json!({
        "index": v.index,
        "commit": v.commit,
        "state": d.state.as_str(),
        "since": since,
        "tasks": {"count": d.tasks, "byIndex": by_index, "unreported": d.unreported},
        "tasksFrom": if v.from_marathon { "marathon" } else { "reports" },
    });
    if let progress::State::Failed { why } = &d.state {
        out["reason"] = json!(why);
    }
    if !d.failed_files.is_empty() {
        out["failedFiles"] = json!(d.failed_files);
    }
    out
}

/// The largest file of deliveries in progress read back.
const MAX_OPEN_BYTES: u64 = 16 << 20;

/// The deliveries a previous run left in progress, kept in `path`; none
/// when it is missing, and none (said at warn) when it can't be read.
pub(super) fn load_open(path: &std::path::Path) -> Vec<track::Open> {
    crate::state_file::read_json(path, MAX_OPEN_BYTES)
        .unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), "config server: the hot deliveries in progress can't be read ({e}); they show as unconfirmed");
            None
        })
        .unwrap_or_default()
}
