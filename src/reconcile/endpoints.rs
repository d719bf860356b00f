//! The endpoint follower: keeps the live endpoints of every service that a
//! template names, for all templates at once, and hands the loop a new
//! [`View`] when a set is released (see `observe::endpoints` for the
//! quiescence and the guard, which are pure).
//!
//! - **One event stream per Marathon** (`status_update_event`, the health
//!   events, `app_terminated_event`), however many templates and agents
//!   there are. Agents never talk to Marathon. An event only marks its
//!   app dirty; the set itself is read from `GET /v2/apps/{id}` (tasks
//!   embedded), so nothing is decided from an event alone, and events
//!   arriving together cost one read.
//! - **A periodic full re-sync** reads every followed service again. If it
//!   finds a set changed that no event announced, the stream is taken for
//!   stalled (a half-open connection, a leader that moved without closing
//!   it) and reconnected. A stream that ends reconnects with backoff, and
//!   every service is read again at once: events may have been missed.
//! - **What to follow** comes from the published desired state (each
//!   app's `services`), plus the services a render asked for before it was
//!   published ([`Handle::ensure`]): a render never publishes a set it has
//!   not read.

use crate::marathon::client::MarathonClient;
use crate::model::EnvName;
use crate::model::endpoints::{Endpoints, ServiceSet, ServiceStatus};
use crate::observe::endpoints::{self as pure, Follow, Settings, Step};
use crate::status::published::Reader;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

mod state;
mod stream;

use state::{load_state, save_state};
use stream::{Ev, follow_stream};

/// Reads of Marathon at once while catching up.
const READS_AT_ONCE: usize = 8;

/// The most services followed at once; past it, the status says which are
/// not followed.
pub const MAX_SERVICES: usize = 10_000;

/// What the loop and the status see.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The released sets: what templates render with.
    pub endpoints: Arc<Endpoints>,
    /// Per service: what is followed and why a set is held.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Per Marathon URL (redacted): whether its event stream is connected.
    pub streams: BTreeMap<String, bool>,
}

enum Command {
    /// Follow these (URL, service id) now and answer once each was read.
    Ensure(Vec<(String, String)>, oneshot::Sender<()>),
    /// An operator lets a held set through.
    Release(String),
}

/// The loop's end.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<Arc<View>>,
}

impl Handle {
    pub fn latest(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Follows these services and returns once each has been read (or
    /// `wait` has passed: a Marathon that doesn't answer must not hold a
    /// render up for long).
    pub async fn ensure(&self, wanted: Vec<(String, String)>, wait: Duration) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Ensure(wanted, tx))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(wait, rx).await;
        }
    }

    /// Asks the follower to release a held service (it logs whether one
    /// was held); `false` when the follower is gone or too busy to take
    /// it. Never waits: an HTTP caller must not be able to hold the loop.
    pub fn release(&self, service: &str) -> bool {
        self.commands
            .try_send(Command::Release(service.to_string()))
            .is_ok()
    }
}

/// The Marathon URL of an environment, from its own `marathon:`.
pub type UrlFor = Box<dyn Fn(Option<&str>) -> Option<String> + Send>;
/// The client for a Marathon URL.
pub type ClientFor = Box<dyn FnMut(&str) -> Option<MarathonClient> + Send>;

/// How the follower reaches Marathon.
pub struct Config {
    pub settings: Settings,
    /// How often every followed service is read again.
    pub resync: Duration,
    /// The Marathon URL an environment uses (`--marathon` or its own).
    pub url_for: UrlFor,
    /// The client for a URL.
    pub client_for: ClientFor,
    /// Where the released sets are kept across restarts, so that the guard
    /// still protects a running config after one (a service found empty at
    /// start-up is held, not rendered). `None`: not kept.
    pub state_file: Option<std::path::PathBuf>,
}

/// Starts the follower; it runs until the handle and the reader are gone.
pub fn spawn(cfg: Config, reader: Reader) -> Handle {
    let (commands, rx) = mpsc::channel(64);
    let (view_tx, view) = watch::channel(Arc::new(View {
        endpoints: Arc::new(Endpoints::live(BTreeMap::new())),
        ..View::default()
    }));
    tokio::spawn(run(cfg, reader, rx, view_tx));
    Handle { commands, view }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A followed service.
#[derive(Default)]
struct Service {
    url: String,
    follow: Follow,
    /// What the last read found, to notice a change no event announced.
    last_read: Option<ServiceSet>,
    error: Option<String>,
    /// Asked for by a render not published yet: kept until the desired
    /// state names it (or a while has passed).
    ensured_at: Option<u64>,
}

struct Stream {
    task: tokio::task::JoinHandle<()>,
    connected: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Follower {
    cfg: Config,
    services: BTreeMap<String, Service>,
    streams: BTreeMap<String, Stream>,
    dirty: BTreeSet<String>,
    /// Events each stream delivered since the last re-sync began (any
    /// app's: on a live cluster a working stream is never silent for long).
    stream_events: HashMap<String, u64>,
    events_tx: mpsc::Sender<Ev>,
    seen_envs: BTreeMap<EnvName, Weak<crate::render::DesiredEnv>>,
    view_tx: watch::Sender<Arc<View>>,
    /// The reads under way are a periodic re-sync.
    resyncing: bool,
    /// When the next held or waiting set must be decided again.
    wake_at: Option<u64>,
}

async fn run(
    cfg: Config,
    mut reader: Reader,
    mut commands: mpsc::Receiver<Command>,
    view_tx: watch::Sender<Arc<View>>,
) {
    let (events_tx, mut events) = mpsc::channel(4096);
    let resync = cfg.resync;
    let mut f = Follower {
        cfg,
        services: BTreeMap::new(),
        streams: BTreeMap::new(),
        dirty: BTreeSet::new(),
        stream_events: HashMap::new(),
        events_tx,
        seen_envs: BTreeMap::new(),
        view_tx,
        resyncing: false,
        wake_at: None,
    };
    let mut next_resync = tokio::time::Instant::now() + resync;
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    if let Some(path) = f.cfg.state_file.clone() {
        let now = now_ms();
        for (id, set) in load_state(&path) {
            f.services.insert(
                id,
                Service {
                    follow: Follow::resumed(set),
                    // Kept until the desired state says who names it.
                    ensured_at: Some(now),
                    ..Service::default()
                },
            );
        }
        if !f.services.is_empty() {
            tracing::info!(
                services = f.services.len(),
                "the endpoints released before the restart are back"
            );
        }
    }
    f.publish();
    f.follow_desired(&reader);
    loop {
        let due = f.next_due();
        tokio::select! {
            c = commands.recv() => match c {
                None => return,
                Some(Command::Ensure(wanted, reply)) => {
                    let now = now_ms();
                    for (url, id) in wanted {
                        f.add(&url, &id, Some(now));
                        f.dirty.insert(id);
                    }
                    waiters.push(reply);
                }
                Some(Command::Release(id)) => {
                    if f.services.get_mut(&id).is_some_and(|s| s.follow.release_hold()) {
                        tracing::warn!(service = %id, "an operator released the held endpoints");
                    } else {
                        tracing::info!(service = %id, "release asked for endpoints that are not held");
                    }
                }
            },
            Some(ev) = events.recv() => {
                let mut streams_moved = f.take_event(ev);
                // Events come in bursts: take what is queued in one go.
                while let Ok(ev) = events.try_recv() {
                    streams_moved |= f.take_event(ev);
                }
                if streams_moved {
                    f.publish();
                }
            }
            alive = reader.changed() => {
                if !alive {
                    return;
                }
                f.follow_desired(&reader);
            }
            _ = tokio::time::sleep_until(next_resync) => {
                next_resync = tokio::time::Instant::now() + resync;
                f.dirty.extend(f.services.keys().cloned());
                f.resyncing = true;
            }
            _ = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        f.read_dirty().await;
        f.step_all();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

impl Follower {
    /// Follows `id` on `url`; `ensured`: asked for by a render at that time.
    fn add(&mut self, url: &str, id: &str, ensured: Option<u64>) {
        if !self.services.contains_key(id) && self.services.len() >= MAX_SERVICES {
            tracing::warn!(service = %id, "not followed: {MAX_SERVICES} services are followed already");
            return;
        }
        let s = self.services.entry(id.to_string()).or_insert_with(|| {
            self.dirty.insert(id.to_string());
            Service {
                url: url.to_string(),
                ..Service::default()
            }
        });
        if ensured.is_some() {
            s.ensured_at = ensured;
        }
        if s.url != url {
            s.url = url.to_string();
            self.dirty.insert(id.to_string());
        }
        self.stream_for(url);
    }

    /// The services the published desired state names, by Marathon.
    fn follow_desired(&mut self, reader: &Reader) {
        let snap = reader.latest();
        if snap.desired.is_empty() && snap.commit.is_some() {
            // Lent to a render: the next snapshot has it back.
            return;
        }
        let same = self.seen_envs.len() == snap.desired.len()
            && snap.desired.iter().all(|(n, e)| {
                self.seen_envs
                    .get(n)
                    .is_some_and(|w| Weak::ptr_eq(w, &Arc::downgrade(e)))
            });
        if same {
            return;
        }
        self.seen_envs = snap
            .desired
            .iter()
            .map(|(n, e)| (n.clone(), Arc::downgrade(e)))
            .collect();
        // Each service is read from the Marathon that runs it: its own
        // environment's, or (external) the one of the app naming it.
        let mut named: BTreeMap<String, String> = BTreeMap::new();
        let groups = || {
            snap.desired
                .iter()
                .map(|(n, e)| (n.as_str(), e.settings.group.as_str()))
        };
        for env in snap.desired.values() {
            for app in env.apps.values() {
                for id in &app.services {
                    if named.contains_key(id) {
                        continue;
                    }
                    let own = pure::owner(id, groups())
                        .and_then(|e| snap.desired.get(e))
                        .unwrap_or(env);
                    if let Some(url) = (self.cfg.url_for)(own.settings.marathon.as_deref()) {
                        named.insert(id.clone(), url);
                    }
                }
            }
        }
        // Services no app names any more are dropped, unless a render
        // asked for them a moment ago (its result isn't published yet).
        let now = now_ms();
        self.services.retain(|id, s| {
            named.contains_key(id) || s.ensured_at.is_some_and(|t| now.saturating_sub(t) < 60_000)
        });
        for (id, url) in named {
            self.add(&url, &id, None);
        }
        let urls: BTreeSet<&String> = self.services.values().map(|s| &s.url).collect();
        self.streams.retain(|u, _| urls.contains(u));
        self.publish();
    }

    /// Takes one event; says whether a stream connected or broke.
    fn take_event(&mut self, ev: Ev) -> bool {
        match ev {
            Ev::App(url, id) => {
                *self.stream_events.entry(url.clone()).or_default() += 1;
                if self.services.get(&id).is_some_and(|s| s.url == url) {
                    self.dirty.insert(id);
                }
                false
            }
            // (Re)connected: events may have been missed, so everything
            // on that Marathon is read again.
            Ev::Connected(url) => {
                let on: Vec<String> = self
                    .services
                    .iter()
                    .filter(|(_, s)| s.url == url)
                    .map(|(id, _)| id.clone())
                    .collect();
                self.dirty.extend(on);
                true
            }
            Ev::Lost => true,
        }
    }

    /// One event stream per Marathon, started on first need.
    fn stream_for(&mut self, url: &str) {
        if self.streams.contains_key(url) {
            return;
        }
        let Some(client) = (self.cfg.client_for)(url) else {
            return;
        };
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(follow_stream(
            client,
            url.to_string(),
            self.events_tx.clone(),
            connected.clone(),
        ));
        self.streams
            .insert(url.to_string(), Stream { task, connected });
    }

    fn next_due(&self) -> Option<tokio::time::Instant> {
        let at = self.wake_at?;
        let wait = Duration::from_millis(at.saturating_sub(now_ms()));
        Some(tokio::time::Instant::now() + wait)
    }

    /// Reads every dirty service from Marathon.
    async fn read_dirty(&mut self) {
        if self.dirty.is_empty() {
            self.resyncing = false;
            return;
        }
        let mut reads = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            let Some(s) = self.services.get(&id) else {
                continue;
            };
            let Some(client) = (self.cfg.client_for)(&s.url) else {
                continue;
            };
            reads.push((id, s.url.clone(), client));
        }
        let results: Vec<_> = futures::stream::iter(reads)
            .map(|(id, url, client)| async move {
                let r = client.get_app(&id).await;
                (id, url, r)
            })
            .buffer_unordered(READS_AT_ONCE)
            .collect()
            .await;
        let now = now_ms();
        let mut stalled: BTreeSet<String> = BTreeSet::new();
        for (id, url, r) in results {
            let Some(s) = self.services.get_mut(&id) else {
                continue;
            };
            let set = match r {
                Ok(Some(app)) => pure::service_set(&app),
                // Gone from Marathon: no tasks (the guard holds that).
                Ok(None) => ServiceSet::default(),
                Err(e) => {
                    let e = crate::redact::text(&e.to_string());
                    if s.error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(service = %id, "reading the endpoints failed, the last good set stays: {e}");
                    }
                    s.error = Some(e);
                    continue;
                }
            };
            s.error = None;
            let moved = s.last_read.as_ref().is_some_and(|old| *old != set);
            // A change the re-sync found while its stream said nothing at
            // all since the last one: the stream is stalled. (Events for
            // this very change may still be queued; they don't count, but a
            // stream that delivered anything at all is alive.)
            if self.resyncing && moved && self.stream_events.get(&url).copied().unwrap_or(0) == 0 {
                stalled.insert(url);
            }
            s.last_read = Some(set.clone());
            s.follow.observe(set, now);
        }
        if self.resyncing {
            self.stream_events.clear();
        }
        self.resyncing = false;
        for url in stalled {
            // The re-sync found what the stream should have said: it is
            // stalled. A new connection, and everything on it read again.
            tracing::warn!(marathon = %crate::redact::url(&url), "the event stream missed a change; reconnecting");
            self.streams.remove(&url);
            self.stream_for(&url);
        }
    }

    /// Decides every service; publishes when a set was released or a hold
    /// changed.
    fn step_all(&mut self) {
        let now = now_ms();
        let mut changed = false;
        let mut wake: Option<u64> = None;
        for (id, s) in &mut self.services {
            let was_held = s.follow.hold().cloned();
            match s.follow.step(now, &self.cfg.settings) {
                Step::Idle => {}
                Step::WaitUntil(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
                Step::Release(set) => {
                    tracing::info!(service = %id, tasks = set.tasks.len(), "endpoints changed");
                    changed = true;
                }
                Step::Held(h) => {
                    if was_held.as_ref().map(|w| &w.reason) != Some(&h.reason) {
                        tracing::warn!(service = %id, "endpoints held back: {}", h.reason);
                        changed = true;
                    }
                }
            }
            if was_held.is_some() && s.follow.hold().is_none() {
                changed = true;
            }
            if let Some(t) = s.follow.next_due(now, &self.cfg.settings) {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        }
        self.wake_at = wake;
        if changed {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let old = self.view_tx.borrow().clone();
        let mut sets = BTreeMap::new();
        let mut services = BTreeMap::new();
        for (id, s) in &self.services {
            if let Some(set) = s.follow.released() {
                // The same `Arc` when unchanged: readers compare pointers.
                let set = match old.endpoints.services.get(id) {
                    Some(o) if o == set => o.clone(),
                    _ => set.clone(),
                };
                sets.insert(id.clone(), set);
            }
            let released = s.follow.released().map_or(0, |r| r.tasks.len());
            services.insert(
                id.clone(),
                ServiceStatus {
                    tasks: released,
                    pending_tasks: s
                        .last_read
                        .as_ref()
                        .map(|r| r.tasks.len())
                        .filter(|n| *n != released || s.follow.hold().is_some()),
                    held: s.follow.hold().cloned(),
                    error: s.error.clone(),
                },
            );
        }
        let streams = self
            .streams
            .iter()
            .map(|(u, st)| {
                (
                    crate::redact::url(u),
                    st.connected.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        let endpoints = if old
            .endpoints
            .changed(&Endpoints::live(sets.clone()))
            .is_empty()
        {
            old.endpoints.clone()
        } else {
            if let Some(path) = &self.cfg.state_file {
                save_state(path, &sets);
            }
            Arc::new(Endpoints::live(sets))
        };
        self.view_tx.send_replace(Arc::new(View {
            endpoints,
            services,
            streams,
        }));
    }
}
