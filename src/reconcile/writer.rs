//! What `pacer serve` starts with: the parts the HTTP side and the
//! reconcile loop share, and the [`Writer`] handle that starts and stops
//! the loop's writes to Marathon.
//!
//! The HTTP side reads only the published snapshots ([`Reader`]), the
//! metrics and the loop's liveness; it keeps serving whether the loop
//! writes, is paused, or has not started yet (the mirror still cloning).
//! Pausing is how a replica that loses leadership will stop writing.

use crate::server::{AppState, Metrics, Trigger};
use crate::status::Writes;
use crate::status::health::Health;
use crate::status::published::{Publisher, Reader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// Starts and stops the loop's writes. While paused the loop goes on
/// fetching, rendering, reading Marathon and publishing the status (changes
/// show as `outOfSync`), but sends nothing: no deployment, no rollback. An
/// apply already under way when it pauses runs to its end.
#[derive(Clone)]
pub struct Writer {
    paused: Arc<AtomicBool>,
    /// Where the status says so.
    status: Arc<Publisher>,
    wake: mpsc::Sender<Trigger>,
}

impl Writer {
    pub fn pause(&self) {
        if !self.paused.swap(true, Ordering::SeqCst) {
            self.status.write().writes = Writes::Paused;
            tracing::info!("writing to Marathon paused");
        }
    }

    /// Resumes writing and wakes the loop, so what waited goes out now.
    pub fn resume(&self) {
        if self.paused.swap(false, Ordering::SeqCst) {
            self.status.write().writes = Writes::Active;
            tracing::info!("writing to Marathon resumed");
            // A full channel means a run is queued already.
            let _ = self.wake.try_send(Trigger::Poll);
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
}

/// What the loop and the HTTP side share, made before either starts.
pub struct Parts {
    pub status: Arc<Publisher>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub writer: Writer,
    pub triggers_tx: mpsc::Sender<Trigger>,
    pub(super) triggers: mpsc::Receiver<Trigger>,
    /// The config server, when it runs: the loop hands it the hot updates
    /// to follow and records how their deliveries ended.
    pub delivery: Option<Arc<crate::delivery::Server>>,
    /// Checked before every write to Marathon: open for a single replica,
    /// a lease held only by the leader with `--zk`.
    pub fence: crate::model::fence::Fence,
    /// With `--zk`: tells the leader a push reached this replica.
    pub wake_leader: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Parts {
    pub fn new(cfg: &super::daemon::Config) -> Parts {
        let (tx, rx) = mpsc::channel::<Trigger>(64);
        let status = Arc::new(Publisher::default());
        {
            let mut s = status.write();
            s.repo.url = crate::redact::url(&cfg.remote.url);
            s.repo.branch = cfg.remote.branch.clone();
        }
        Parts {
            status: status.clone(),
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::new(Health::stuck_limit(
                cfg.poll,
                cfg.render_timeout,
            ))),
            writer: Writer {
                paused: Arc::new(AtomicBool::new(false)),
                status,
                wake: tx.clone(),
            },
            triggers_tx: tx,
            triggers: rx,
            delivery: None,
            fence: crate::model::fence::Fence::open(),
            wake_leader: None,
        }
    }

    /// The published snapshots' reader.
    pub fn reader(&self) -> Reader {
        self.status.reader()
    }

    /// What the HTTP side gets: readers and the trigger channel, no more.
    pub fn app_state(&self, cfg: &super::daemon::Config) -> AppState {
        AppState {
            published: self.reader(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            triggers: self.triggers_tx.clone(),
            webhook_secret: cfg.webhook_secret.clone(),
            // `cli::serve` sets the operator's; none means writes are off.
            access: crate::server::Access::default(),
            branch: cfg.remote.branch.clone(),
            allowed_hosts: crate::server::AllowedHosts::new(&cfg.allowed_hosts),
            delivery: None,
            history: None,
            // A share of the listener's connections (see `cli::serve`).
            streams: Arc::new(crate::server::dashboard::Streams::new(
                cfg.http.max_connections / 8,
            )),
        }
    }
}
