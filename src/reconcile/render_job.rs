//! Renders a new head off the reconcile loop, with a deadline on the whole
//! render.
//!
//! Templates come from whoever can push. One that never ends (nested
//! `range` loops) must not wedge the daemon: the render runs on its own
//! thread, and the loop waits for it at most `deadline`. Past it, the loop
//! takes back what the thread has done so far: apps already rendered keep
//! their new version, the app being rendered and those not reached yet stay
//! at their last good version and show as invalid at this commit, and the
//! loop goes on fetching. A thread cannot be killed; the one left behind
//! notices at its next app that it was abandoned and ends there, and the
//! loop never renders that commit again (so at most one thread is left
//! behind per pushed commit).
//!
//! Which apps to render and which to keep is decided by
//! [`render::incremental`]; kept apps are shared with the previous state
//! (one `Arc` each), never copied. The work in progress lives behind one
//! lock ([`Slot`]) that the thread holds only to move results in.

use crate::model::endpoints::Endpoints;
use crate::model::{AppPath, EnvName};
use crate::render::{self, Diagnostic, Diagnostics, RenderedApp, incremental};
use crate::source::delta::Delta;
use crate::source::{RepoLocation, Snapshot};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// What an incremental render produced.
#[derive(Default)]
pub struct Rendered {
    pub envs: BTreeMap<EnvName, render::DesiredEnv>,
    /// Apps that don't render at this commit, with their problems.
    pub invalid: BTreeMap<EnvName, BTreeMap<AppPath, Vec<Diagnostic>>>,
    /// Environments whose desired state changed.
    pub changed: BTreeSet<EnvName>,
    /// Apps that rendered anew, per environment.
    pub rerendered: BTreeMap<EnvName, BTreeSet<AppPath>>,
    /// id → (commit, definition) of the versions re-rendered apps replaced.
    pub replaced: BTreeMap<String, (String, serde_json::Value)>,
    /// Set when the render ran past its deadline: the app it was stuck on.
    pub timed_out: Option<AppPath>,
    /// The new commit's files, to read the next commit from.
    pub snapshot: Option<Arc<Snapshot>>,
}

/// The daemon's desired state per environment before this render.
pub type PreviousState = incremental::Previous;

/// How a render ended.
pub enum Outcome {
    Rendered(Rendered),
    /// The repo as a whole doesn't load (pacer.yaml, an environment file,
    /// or loading ran past the deadline); the previous state stays.
    NotLoaded {
        problems: Vec<Diagnostic>,
    },
}

/// What a render needs.
pub struct Job {
    pub git_dir: PathBuf,
    pub prefix: String,
    pub head: String,
    pub envs_filter: Option<BTreeSet<EnvName>>,
    pub deadline: Duration,
    /// The files of the last commit read, if any: only the trees that
    /// differ from it are read, and apps none of whose inputs changed are
    /// kept without digesting them again.
    pub since: Option<Arc<Snapshot>>,
    /// The live endpoints templates render with (`service()`).
    pub endpoints: Arc<Endpoints>,
    /// Apps rendered again whatever their inputs: the endpoints they name
    /// moved.
    pub force: BTreeMap<EnvName, BTreeSet<AppPath>>,
    /// Environments held at an older commit than `since` (a refused
    /// signature): their apps are compared by their inputs, since what
    /// changed from `since` says nothing about them.
    pub held: BTreeSet<EnvName>,
    /// What sealed secrets open with (the daemon's age identity).
    pub keys: render::SecretKeys,
}

/// Render threads abandoned at their deadline and still running.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// How many abandoned render threads are still running.
pub fn abandoned() -> usize {
    ABANDONED.load(Ordering::Relaxed)
}

enum Slot {
    /// The thread has not loaded the repo yet.
    Previous(PreviousState),
    Working(Box<Work>),
    /// The result went to the loop, or the loop gave up on the thread.
    Taken,
}

struct Work {
    out: Rendered,
    /// Old versions of the apps being re-rendered, kept until their
    /// replacements render (or put back when they don't).
    stale: BTreeMap<(EnvName, AppPath), Arc<RenderedApp>>,
    /// Apps still to render, with their environments.
    todo: BTreeMap<AppPath, Vec<EnvName>>,
    /// The app being rendered now, with its environments.
    current: Option<(AppPath, Vec<EnvName>)>,
}

/// Renders `job.head`, sharing the apps of `previous` whose inputs are
/// unchanged; never waits longer than `job.deadline`.
pub async fn run(job: Job, previous: PreviousState) -> Outcome {
    let slot = Arc::new(Mutex::new(Slot::Previous(previous)));
    let (tx, mut rx) = oneshot::channel::<Outcome>();
    let deadline = job.deadline;
    let head = job.head.clone();
    let shared = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("pacer-render".into())
        .spawn(move || work(job, shared, tx));
    if let Err(e) = spawned {
        return Outcome::NotLoaded {
            problems: vec![Diagnostic::file(
                "(repo)",
                format!("cannot start a render thread: {e}"),
            )],
        };
    }
    if let Ok(Ok(outcome)) = tokio::time::timeout(deadline, &mut rx).await {
        return outcome;
    }
    // Past the deadline (or the thread died): take back what it has.
    let mut guard = slot.lock();
    match std::mem::replace(&mut *guard, Slot::Taken) {
        Slot::Taken => {
            drop(guard);
            // It finished just now: the result was sent under the lock.
            rx.try_recv().unwrap_or_else(|_| Outcome::NotLoaded {
                problems: vec![Diagnostic::file("(repo)", "the render ended abnormally")],
            })
        }
        Slot::Previous(_) => {
            ABANDONED.fetch_add(1, Ordering::Relaxed);
            Outcome::NotLoaded {
                problems: vec![Diagnostic::file(
                    "(repo)",
                    format!(
                        "loading commit {} did not finish within {} s; the last good commit stays",
                        short(&head),
                        deadline.as_secs_f64()
                    ),
                )],
            }
        }
        Slot::Working(w) => {
            ABANDONED.fetch_add(1, Ordering::Relaxed);
            Outcome::Rendered(abandon(*w, deadline))
        }
    }
}

/// The first 12 characters of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// What the loop keeps of a render it stopped waiting for: the stuck app
/// and the apps not reached yet are invalid, at their last good version.
fn abandon(mut w: Work, deadline: Duration) -> Rendered {
    let secs = deadline.as_secs_f64();
    let mut left: Vec<(AppPath, Vec<EnvName>)> = Vec::new();
    let stuck = w.current.take().map(|(app, envs)| {
        left.push((app.clone(), envs));
        app
    });
    left.extend(std::mem::take(&mut w.todo));
    for (app, envs) in left {
        let message = match &stuck {
            Some(s) if *s == app => format!(
                "rendering did not finish within {secs} s (a template loop that never ends?); the last good version stays"
            ),
            Some(s) => format!(
                "not rendered: rendering `{s}` ran past the {secs} s deadline first; the last good version stays"
            ),
            None => format!("not rendered within {secs} s; the last good version stays"),
        };
        let problem = Diagnostic::file(format!("apps/{app}"), message);
        for env in envs {
            keep_last_good(&mut w, &env, &app, vec![problem.clone()]);
        }
    }
    w.out.timed_out = stuck;
    w.out
}

/// Puts the last good version of `app` back and marks it invalid.
fn keep_last_good(w: &mut Work, env: &EnvName, app: &AppPath, problems: Vec<Diagnostic>) {
    if let Some(old) = w.stale.remove(&(env.clone(), app.clone()))
        && let Some(target) = w.out.envs.get_mut(env)
    {
        target.apps.insert(app.clone(), old);
    }
    w.out
        .invalid
        .entry(env.clone())
        .or_default()
        .insert(app.clone(), problems);
}

/// The render thread.
fn work(job: Job, slot: Arc<Mutex<Slot>>, tx: oneshot::Sender<Outcome>) {
    // Where a render's time goes, at debug: reading the commit, loading
    // the repo, planning what to render, rendering.
    let started = std::time::Instant::now();
    let loc = RepoLocation::bare(&job.git_dir, &job.prefix);
    // The same commit again (the endpoints moved): its files are at hand.
    let same = job
        .since
        .as_ref()
        .filter(|s| s.revision.commit.as_deref() == Some(job.head.as_str()));
    let read = match (same, &job.since) {
        (Some(s), _) => Ok((s.clone(), Delta::nothing())),
        (None, Some(prev)) => loc
            .at_rev_since(&job.head, prev)
            .map(|(s, d)| (Arc::new(s), d)),
        (None, None) => loc
            .at_rev(&job.head)
            .map(|s| (Arc::new(s), Delta::everything())),
    };
    let read_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut delta = Delta::everything();
    let mut snapshot = None;
    let loaded = match read {
        Ok((s, d)) => {
            delta = d;
            snapshot = Some(s.clone());
            let mut diags = Diagnostics::default();
            match render::Repo::load_keyed(s, &render::Budgets::default(), &job.keys, &mut diags) {
                Some(mut r) if diags.is_empty() => {
                    r.set_endpoints(job.endpoints.clone());
                    Ok(r)
                }
                _ => Err(diags.finish()),
            }
        }
        Err(e) => Err(vec![Diagnostic::file("(repo)", e.to_string())]),
    };
    let repo = match loaded {
        Ok(r) => r,
        Err(problems) => {
            let mut g = slot.lock();
            match std::mem::replace(&mut *g, Slot::Taken) {
                Slot::Previous(_) => {
                    let _ = tx.send(Outcome::NotLoaded { problems });
                }
                _ => {
                    ABANDONED.fetch_sub(1, Ordering::Relaxed);
                }
            }
            return;
        }
    };
    {
        let mut g = slot.lock();
        let previous = match std::mem::replace(&mut *g, Slot::Taken) {
            Slot::Previous(p) => p,
            _ => {
                ABANDONED.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        let load_ms = started.elapsed().as_secs_f64() * 1000.0 - read_ms;
        let mut w = partition(&repo, &previous, &job, &delta);
        tracing::debug!(
            read_ms = format!("{read_ms:.1}"),
            load_ms = format!("{load_ms:.1}"),
            plan_ms = format!(
                "{:.1}",
                started.elapsed().as_secs_f64() * 1000.0 - read_ms - load_ms
            ),
            apps = w.todo.len(),
            "render job: commit read, repo loaded, work planned"
        );
        w.out.snapshot = snapshot;
        *g = Slot::Working(Box::new(w));
    }
    loop {
        // Take the next app under the lock; render it without.
        let (app, envs) = {
            let mut g = slot.lock();
            let Slot::Working(w) = &mut *g else {
                // The loop gave up on this render meanwhile.
                drop(g);
                ABANDONED.fetch_sub(1, Ordering::Relaxed);
                return;
            };
            let Some((app, envs)) = w.todo.pop_first() else {
                break;
            };
            w.current = Some((app.clone(), envs.clone()));
            (app, envs)
        };
        let pairs: Vec<(EnvName, Vec<AppPath>)> = envs
            .iter()
            .map(|e| (e.clone(), vec![app.clone()]))
            .collect();
        let mut diags = Diagnostics::default();
        let d = render::render_pairs(&repo, &pairs, &mut diags);
        let mut g = slot.lock();
        let Slot::Working(w) = &mut *g else {
            drop(g);
            ABANDONED.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        w.current = None;
        if diags.is_empty() {
            for (env, e) in d.envs {
                for (name, a) in e.apps {
                    if let Some(old) = w.stale.remove(&(env.clone(), name.clone())) {
                        w.out
                            .replaced
                            .insert(old.id.clone(), incremental::replaced(&old));
                    }
                    w.out
                        .rerendered
                        .entry(env.clone())
                        .or_default()
                        .insert(name.clone());
                    if let Some(target) = w.out.envs.get_mut(&env) {
                        target.apps.insert(name, a);
                    }
                }
            }
        } else {
            let diags = diags.finish();
            for env in envs {
                keep_last_good(w, &env, &app, diags.clone());
            }
        }
    }
    let mut g = slot.lock();
    match std::mem::replace(&mut *g, Slot::Taken) {
        Slot::Working(w) => {
            let _ = tx.send(Outcome::Rendered(w.out));
        }
        _ => {
            ABANDONED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The kept apps in place, the rest to render (see [`incremental`]).
fn partition(repo: &render::Repo, previous: &PreviousState, job: &Job, delta: &Delta) -> Work {
    let p = incremental::plan(
        repo,
        previous,
        job.envs_filter.as_ref(),
        delta,
        &job.force,
        &job.held,
    );
    Work {
        out: Rendered {
            envs: p.envs,
            changed: p.changed,
            ..Rendered::default()
        },
        stale: p.stale,
        todo: p.todo,
        current: None,
    }
}
