//! The deliveries of hot changes: the daemon hands each app's hot update
//! over ([`Tracks::start`]), and it stays `delivering` until every task
//! Marathon runs holds the bundle, or fails ([`super::progress`]). Each
//! resolution is kept for the daemon, which records it in the history.
//!
//! Where the running tasks come from: the config server reads the app
//! (`GET /v2/apps/{id}`, tasks embedded) from the Marathon that vouches for
//! its logins, through the reads it shares with logins (`flight`), at most
//! every [`REFRESH`] and only while a hot delivery is in progress. The
//! daemon's own read of Marathon lists every app without its tasks;
//! embedding them would weigh down every cycle for the few apps a hot
//! change touches. The login checks read the same answer, so a task that
//! may log in is a task the delivery waits for.
//!
//! Pure but for the clock passed in; the reads are [`super::Server`]'s.

use super::bundle::Bundles;
use super::progress::{self, Delivery, Running, State};
use super::reports::Reports;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How old the list of running tasks may be while a delivery is in progress.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Deliveries kept (resolved ones are dropped first).
const MAX_TRACKS: usize = 10_000;
/// Resolutions waiting for the daemon; past it the oldest go.
const MAX_RESOLVED: usize = 10_000;

/// A hot update the daemon applied: its files only, no deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hot {
    pub env: String,
    /// The app's path under `apps/`.
    pub app: String,
    /// Its Marathon id.
    pub id: String,
    pub commit: String,
}

/// How a hot delivery ended, for the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub hot: Hot,
    /// `None`: delivered; else why it failed.
    pub failed: Option<String>,
    pub at_ms: i64,
}

/// Marathon's live tasks of an app, and when they were asked for.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Reports older than this predate the list.
    pub read_ms: i64,
    pub tasks: Vec<String>,
}

#[derive(Clone, Debug)]
struct Track {
    hot: Hot,
    /// The app's index when the daemon handed it over.
    after: u64,
    /// The index to deliver, once the bundle of the commit is seen.
    target: Option<u64>,
    started_ms: i64,
    running: Option<Listed>,
    /// Final: the state and since when.
    resolved: Option<(State, i64)>,
}

/// An app's delivery as the status shows it.
#[derive(Clone, Debug)]
pub struct View {
    pub index: u64,
    pub commit: Option<String>,
    pub delivery: Delivery,
    /// The tasks are Marathon's (a hot delivery), or those reporting.
    pub from_marathon: bool,
}

#[derive(Debug, Default)]
pub struct Tracks {
    by_app: HashMap<String, Track>,
    resolved: VecDeque<Resolution>,
    /// Deliveries a previous run left in progress, until their app's bundle
    /// is served again ([`Tracks::resume`]).
    resumable: Vec<Open>,
}

/// A hot delivery in progress, as kept across a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Open {
    pub env: String,
    pub app: String,
    pub id: String,
    pub commit: String,
    /// When it was handed over, Unix ms: its timeout runs from then.
    pub started_ms: i64,
}

impl Tracks {
    /// Follows `hot` from now on; it replaces an older delivery of the app.
    pub fn start(&mut self, hot: Hot, bundles: &Bundles, now_ms: i64) {
        let Some(b) = bundles.apps.get(&hot.id) else {
            return;
        };
        if b.files.is_empty() {
            return;
        }
        if self.by_app.len() >= MAX_TRACKS && !self.by_app.contains_key(&hot.id) {
            self.by_app.retain(|_, t| t.resolved.is_none());
            if self.by_app.len() >= MAX_TRACKS {
                return;
            }
        }
        let mut t = Track {
            hot,
            after: b.index,
            target: None,
            started_ms: now_ms,
            running: None,
            resolved: None,
        };
        t.find_target(bundles);
        self.by_app.insert(t.hot.id.clone(), t);
    }

    /// The deliveries in progress, to keep across a restart.
    pub fn open(&self) -> Vec<Open> {
        let mut open: Vec<Open> = self
            .by_app
            .values()
            .filter(|t| t.resolved.is_none())
            .map(|t| Open {
                env: t.hot.env.clone(),
                app: t.hot.app.clone(),
                id: t.hot.id.clone(),
                commit: t.hot.commit.clone(),
                started_ms: t.started_ms,
            })
            .chain(self.resumable.iter().cloned())
            .collect();
        open.sort_by(|a, b| a.id.cmp(&b.id));
        open
    }

    /// Takes up the deliveries a previous run left in progress. Each is
    /// followed again once its app's bundle at its commit is served (the
    /// agents re-read it after the restart and report), and still ends by
    /// its first hand-over's time; one whose bundle moved on to another
    /// commit meanwhile is dropped after the timeout, unrecorded.
    pub fn resume(&mut self, open: Vec<Open>) {
        self.resumable = open.into_iter().take(MAX_TRACKS).collect();
    }

    /// Moves the resumable deliveries whose app is served into the
    /// followed ones (a newer hand-over of the app wins); drops those past
    /// `timeout` whose app never came back.
    fn take_up(&mut self, bundles: &Bundles, now_ms: i64, timeout_ms: i64) {
        let mut waiting = Vec::new();
        for o in std::mem::take(&mut self.resumable) {
            if self.by_app.contains_key(&o.id) {
                continue;
            }
            if !bundles.apps.contains_key(&o.id) {
                if now_ms.saturating_sub(o.started_ms) < timeout_ms {
                    waiting.push(o);
                }
                continue;
            }
            let mut t = Track {
                hot: Hot {
                    env: o.env,
                    app: o.app,
                    id: o.id,
                    commit: o.commit,
                },
                // Indexes start over with the run: only the commit's own
                // bundle is the target.
                after: u64::MAX,
                target: None,
                started_ms: o.started_ms,
                running: None,
                resolved: None,
            };
            t.find_target(bundles);
            self.by_app.insert(t.hot.id.clone(), t);
        }
        self.resumable = waiting;
    }

    /// Apps whose delivery is in progress and whose list of running tasks
    /// is older than [`REFRESH`] (or missing): `(env, app id)`.
    pub fn stale(&self, now_ms: i64) -> Vec<(String, String)> {
        let refresh = i64::try_from(REFRESH.as_millis()).unwrap_or(1_000);
        self.by_app
            .values()
            .filter(|t| t.resolved.is_none() && t.target.is_some())
            .filter(|t| {
                t.running
                    .as_ref()
                    .is_none_or(|r| now_ms - r.read_ms >= refresh)
            })
            .map(|t| (t.hot.env.clone(), t.hot.id.clone()))
            .collect()
    }

    /// Whether a delivery is in progress (the clock matters then).
    pub fn busy(&self) -> bool {
        !self.resumable.is_empty() || self.by_app.values().any(|t| t.resolved.is_none())
    }

    /// Marathon's list of `app`'s live tasks.
    pub fn listed(&mut self, app: &str, list: Listed) {
        if let Some(t) = self.by_app.get_mut(app) {
            t.running = Some(list);
        }
    }

    /// Decides the deliveries in progress at `now_ms`; their resolutions
    /// (returned too) wait for [`Tracks::take_resolved`].
    pub fn evaluate(
        &mut self,
        bundles: &Bundles,
        reports: &Reports,
        now_ms: i64,
        timeout: Duration,
    ) -> Vec<Resolution> {
        let mut done = Vec::new();
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        self.take_up(bundles, now_ms, timeout_ms);
        self.by_app.retain(|id, t| {
            // Past its time and never served: a later commit replaced the
            // app's bundle first. No delivery of it to decide (nor record).
            let superseded = t.target.is_none()
                && now_ms.saturating_sub(t.started_ms) >= timeout_ms
                && bundles.apps.get(id).is_none_or(|b| b.index <= t.after);
            if superseded {
                tracing::debug!(app = %id, commit = %t.hot.commit, "hot update superseded before it was served");
            }
            bundles.apps.contains_key(id) && !superseded
        });
        for t in self.by_app.values_mut() {
            if t.resolved.is_some() {
                continue;
            }
            t.find_target(bundles);
            let Some(d) = t.delivery(reports, now_ms, timeout) else {
                continue;
            };
            let failed = match &d.state {
                State::Delivering => continue,
                State::Delivered => None,
                State::Failed { why } => Some(why.clone()),
            };
            t.resolved = Some((d.state.clone(), d.since_ms));
            done.push(Resolution {
                hot: t.hot.clone(),
                failed,
                at_ms: d.since_ms,
            });
        }
        for r in &done {
            match &r.failed {
                None => {
                    tracing::info!(app = %r.hot.id, commit = %r.hot.commit, "hot update delivered to every running task")
                }
                Some(why) => {
                    tracing::warn!(app = %r.hot.id, commit = %r.hot.commit, "hot update not delivered: {why}")
                }
            }
            if self.resolved.len() >= MAX_RESOLVED {
                self.resolved.pop_front();
            }
            self.resolved.push_back(r.clone());
        }
        done
    }

    /// The resolutions since the last call.
    pub fn take_resolved(&mut self) -> Vec<Resolution> {
        self.resolved.drain(..).collect()
    }

    /// Every app's delivery: a hot one as followed, any other as its
    /// agents report it (none when none reports).
    pub fn views(
        &self,
        bundles: &Bundles,
        reports: &Reports,
        now_ms: i64,
        timeout: Duration,
    ) -> HashMap<String, View> {
        bundles
            .apps
            .keys()
            .filter_map(|id| {
                let v = self.view(bundles, reports, id, now_ms, timeout)?;
                Some((id.clone(), v))
            })
            .collect()
    }

    /// One app's delivery (by its Marathon id), as [`Tracks::views`] has it.
    pub fn view(
        &self,
        bundles: &Bundles,
        reports: &Reports,
        id: &str,
        now_ms: i64,
        timeout: Duration,
    ) -> Option<View> {
        let b = bundles.apps.get(id)?;
        if b.files.is_empty() {
            return None;
        }
        // A hot delivery shows until the app's bundle moves on after it.
        if let Some(t) = self.by_app.get(id)
            && let Some(target) = t.target
            && (t.resolved.is_none() || target >= b.index)
            && let Some(mut d) = t.delivery(reports, now_ms, timeout)
        {
            if let Some((state, since)) = &t.resolved {
                d.state = state.clone();
                d.since_ms = *since;
            }
            return Some(View {
                index: target,
                commit: Some(t.hot.commit.clone()),
                delivery: d,
                from_marathon: true,
            });
        }
        let mine = reports.of_app(&b.env, id, now_ms / 1000);
        if mine.is_empty() {
            return None;
        }
        let since = i64::try_from(b.since_ms).unwrap_or(now_ms);
        // No time limit here: a task Marathon has replaced keeps its
        // report until its token expires, and must not fail a bundle.
        let d = progress::progress(
            b.index,
            Running::Reporting,
            &mine,
            since,
            now_ms,
            Duration::MAX,
        );
        Some(View {
            index: b.index,
            commit: b.commit.clone(),
            delivery: d,
            from_marathon: false,
        })
    }
}

impl Track {
    /// The index of the commit's bundle: the app's bundle once it is at the
    /// commit, or past the index it had when handed over.
    fn find_target(&mut self, bundles: &Bundles) {
        if self.target.is_some() {
            return;
        }
        if let Some(b) = bundles.apps.get(&self.hot.id)
            && (b.commit.as_deref() == Some(self.hot.commit.as_str()) || b.index > self.after)
        {
            self.target = Some(b.index);
            // From when the server began to hand it out.
            self.started_ms = self
                .started_ms
                .min(i64::try_from(b.since_ms).unwrap_or(i64::MAX));
        }
    }

    fn delivery(&self, reports: &Reports, now_ms: i64, timeout: Duration) -> Option<Delivery> {
        let target = self.target?;
        let mine = reports.of_app(&self.hot.env, &self.hot.id, now_ms / 1000);
        let running = match &self.running {
            Some(l) => Running::Marathon(&l.tasks),
            None => Running::Unknown,
        };
        Some(progress::progress(
            target,
            running,
            &mine,
            self.started_ms,
            now_ms,
            timeout,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::bundle::{Bundle, FileMeta};
    use crate::delivery::progress::Report;
    use crate::model::Digest;
    use crate::render::Reload;
    use std::sync::Arc;

    const MIN: Duration = Duration::from_secs(60);

    fn bundles(index: u64, commit: &str, since_ms: u64) -> Bundles {
        let b = Bundle {
            env: "dev".into(),
            app_id: "/dev/web".into(),
            commit: Some(commit.into()),
            index,
            files: vec![FileMeta {
                name: "nginx.conf".into(),
                path: "/etc/nginx/nginx.conf".into(),
                mode: "0644",
                hash: Digest::of(b"x"),
                reload: Reload::Hot,
                actions: Default::default(),
            }],
            digest: Digest::of(b"x"),
            since_ms,
        };
        Bundles {
            apps: [("/dev/web".to_string(), Arc::new(b))].into(),
            marathons: Default::default(),
        }
    }

    fn hot(commit: &str) -> Hot {
        Hot {
            env: "dev".into(),
            app: "web".into(),
            id: "/dev/web".into(),
            commit: commit.into(),
        }
    }

    fn report(reports: &mut Reports, task: &str, index: u64, at_ms: i64) {
        let r = Report {
            index,
            latest: index,
            failed: Vec::new(),
            at_ms,
            since_ms: at_ms,
        };
        reports.put("dev", "/dev/web", task, r, 9_999, 0).unwrap();
    }

    #[test]
    fn a_hot_delivery_resolves_once_when_every_listed_task_holds_it() {
        let (b, mut reports) = (bundles(50, "c2", 1_000), Reports::default());
        let mut t = Tracks::default();
        t.start(hot("c2"), &b, 1_200);
        assert_eq!(t.stale(1_200), [("dev".into(), "/dev/web".into())]);
        // Until Marathon's list is read, no delivery is decided.
        t.evaluate(&b, &reports, 1_300, MIN);
        assert!(t.take_resolved().is_empty() && t.busy());
        let tasks = vec!["a".to_string(), "b".to_string()];
        t.listed(
            "/dev/web",
            Listed {
                read_ms: 1_300,
                tasks: tasks.clone(),
            },
        );
        assert!(t.stale(1_400).is_empty(), "read a moment ago");
        report(&mut reports, "a", 50, 1_400);
        t.evaluate(&b, &reports, 1_500, MIN);
        let v = &t.views(&b, &reports, 1_500, MIN)["/dev/web"];
        assert_eq!(v.delivery.state, State::Delivering);
        assert_eq!(
            v.delivery.since_ms, 1_000,
            "since the bundle was handed out"
        );
        assert!(v.from_marathon);
        report(&mut reports, "b", 50, 1_600);
        t.evaluate(&b, &reports, 1_700, MIN);
        let r = t.take_resolved();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].failed.clone(), r[0].at_ms), (None, 1_600));
        assert_eq!(r[0].hot.commit, "c2");
        assert!(!t.busy());
        // Final: a task that starts later does not undo it.
        t.evaluate(&b, &reports, 99_000, MIN);
        assert!(t.take_resolved().is_empty());
        let v = &t.views(&b, &reports, 99_000, MIN)["/dev/web"];
        assert_eq!(v.delivery.state, State::Delivered);
    }

    #[test]
    fn a_delivery_waits_for_its_commits_bundle_and_times_out() {
        let old = bundles(40, "c1", 500);
        let mut t = Tracks::default();
        let reports = Reports::default();
        // Handed over before the server saw the new bundle.
        t.start(hot("c2"), &old, 1_200);
        assert!(t.stale(1_200).is_empty(), "no target yet");
        let new = bundles(50, "c2", 1_000);
        t.evaluate(&new, &reports, 1_300, MIN);
        t.listed(
            "/dev/web",
            Listed {
                read_ms: 1_300,
                tasks: vec!["a".into()],
            },
        );
        t.evaluate(&new, &reports, 60_999, MIN);
        assert!(t.take_resolved().is_empty());
        t.evaluate(&new, &reports, 61_000, MIN);
        let r = t.take_resolved();
        assert!(
            r[0].failed
                .as_deref()
                .is_some_and(|w| w.contains("never reported")),
            "{r:?}"
        );
    }

    #[test]
    fn apps_without_a_hot_delivery_show_what_their_agents_report() {
        let (b, mut reports) = (bundles(50, "c1", 1_000), Reports::default());
        let t = Tracks::default();
        assert!(t.views(&b, &reports, 2_000, MIN).is_empty());
        report(&mut reports, "a", 50, 1_500);
        let v = &t.views(&b, &reports, 2_000, MIN)["/dev/web"];
        assert_eq!(v.delivery.state, State::Delivered);
        assert!(!v.from_marathon);
        assert_eq!(v.commit.as_deref(), Some("c1"));
        // A task behind (say one Marathon replaced, its token alive) keeps
        // it delivering, never failed for time.
        report(&mut reports, "old", 40, 900);
        let v = &t.views(&b, &reports, 9_000_000, MIN)["/dev/web"];
        assert_eq!(v.delivery.state, State::Delivering);
    }

    #[test]
    fn a_delivery_left_open_by_a_previous_run_resumes_and_ends_by_its_first_time() {
        let mut before = Tracks::default();
        before.start(hot("c2"), &bundles(50, "c2", 1_000), 1_200);
        let open = before.open();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].commit.as_str(), open[0].started_ms), ("c2", 1_000));

        // The next run: nothing served yet, then the app at c2 under an
        // index of this run's own (its start's time).
        let mut t = Tracks::default();
        t.resume(open.clone());
        assert!(t.busy(), "the clock matters for a resumable delivery");
        assert_eq!(t.open(), open, "kept again before it is served");
        t.evaluate(&Bundles::default(), &Reports::default(), 2_000, MIN);
        let b = bundles(90_000, "c2", 90_000);
        let mut reports = Reports::default();
        t.evaluate(&b, &reports, 2_100, MIN);
        assert_eq!(t.stale(2_100), [("dev".into(), "/dev/web".into())]);
        t.listed(
            "/dev/web",
            Listed {
                read_ms: 2_100,
                tasks: vec!["a".into()],
            },
        );
        report(&mut reports, "a", 90_000, 2_200);
        t.evaluate(&b, &reports, 2_300, MIN);
        let r = t.take_resolved();
        assert_eq!((r.len(), r[0].failed.clone()), (1, None), "{r:?}");
        assert!(t.open().is_empty());

        // One whose task never reports fails a minute after its first
        // hand-over, not after the restart.
        let mut t = Tracks::default();
        t.resume(vec![Open {
            started_ms: 1_000,
            ..open[0].clone()
        }]);
        t.evaluate(&b, &Reports::default(), 2_000, MIN);
        t.listed(
            "/dev/web",
            Listed {
                read_ms: 2_000,
                tasks: vec!["a".into()],
            },
        );
        t.evaluate(&b, &Reports::default(), 60_999, MIN);
        assert!(t.take_resolved().is_empty());
        t.evaluate(&b, &Reports::default(), 61_000, MIN);
        assert!(t.take_resolved()[0].failed.is_some());

        // Its app at another commit by now: dropped after the timeout.
        let mut t = Tracks::default();
        t.resume(open);
        let moved = bundles(90_000, "c3", 90_000);
        t.evaluate(&moved, &Reports::default(), 2_000, MIN);
        t.evaluate(&moved, &Reports::default(), 61_000, MIN);
        assert!(t.take_resolved().is_empty() && !t.busy());
    }

    #[test]
    fn a_hot_update_whose_bundle_was_replaced_first_is_dropped_unrecorded() {
        let b = bundles(40, "c3", 500);
        let mut t = Tracks::default();
        t.start(hot("c2"), &b, 1_000);
        t.evaluate(&b, &Reports::default(), 60_999, MIN);
        assert!(t.busy());
        let r = t.evaluate(&b, &Reports::default(), 61_000, MIN);
        assert!(r.is_empty() && t.take_resolved().is_empty());
        assert!(!t.busy(), "nothing left to follow");
        assert!(t.views(&b, &Reports::default(), 61_000, MIN).is_empty());
    }
}
