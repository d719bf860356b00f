//! An in-memory Marathon 1.10 simulator (`pacer sim`).
//!
//! - [`state`], [`plan`], [`progress`], [`commands`]: a pure state machine
//!   (`SimState::apply`, `SimState::tick`) driven by an injected clock.
//! - [`routes`]: the `/v2` HTTP API (axum); [`control`]: the `/_sim` API that
//!   scripts reality (delays, failures, faults, outages, request log).
//! - [`persist`]: `--state FILE`, written before a write is acknowledged.
//!
//! See `docs/simulator.md`.

pub mod apps_api;
pub mod capacity;
pub mod commands;
pub mod control;
pub mod groups;
pub mod model;
pub mod negotiate;
pub mod persist;
pub mod plan;
pub mod progress;
pub mod routes;
pub mod state;
pub mod stream;
pub mod table;
pub mod views;

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

pub use routes::router;
pub use state::{Settings, SimState};

use model::{Event, Millis};

/// Arguments of `pacer sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed first).
    #[arg(
        long,
        env = "PACER_SIM_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,
    /// Keep state in FILE across restarts (written before each write is acknowledged).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Milliseconds a task stays TASK_STAGING.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub task_start_delay_ms: i64,
    /// Milliseconds from TASK_RUNNING until health checks pass.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub task_healthy_delay_ms: i64,
    /// Fail deployments that take longer than this.
    #[arg(long, value_name = "MS")]
    pub deployment_timeout_ms: Option<i64>,
    /// Marathon features to enable (comma-separated), e.g. `secrets`.
    #[arg(long, value_delimiter = ',', value_name = "FEATURES")]
    pub enable_features: Vec<String>,
    /// HTTP connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024, value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_connections: u64,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = 10, value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=600))]
    pub header_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, default_value_t = 60, value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout: u64,
    /// Seconds a response may wait for the client to read any of it
    /// (progress, not total time: event streams run on while read).
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub write_timeout: u64,
}

/// In-process configuration of a simulator.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    pub settings: Settings,
    pub state_file: Option<PathBuf>,
}

impl From<&SimArgs> for SimConfig {
    fn from(a: &SimArgs) -> Self {
        SimConfig {
            settings: Settings {
                start_delay_ms: a.task_start_delay_ms.max(0),
                healthy_delay_ms: a.task_healthy_delay_ms.max(0),
                deployment_timeout_ms: a.deployment_timeout_ms,
                secrets_enabled: a.enable_features.iter().any(|f| f == "secrets"),
                ..Settings::default()
            },
            state_file: a.state.clone(),
        }
    }
}

/// One line of the request log (`GET /_sim/requests`). Bodies are not kept,
/// so secrets in app definitions never end up here.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    /// When the request arrived.
    pub received: String,
    /// When it was answered.
    pub at: String,
    pub method: String,
    pub uri: String,
    pub status: u16,
}

/// Faults injected by the control API (HTTP layer, not the state machine).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    #[serde(default)]
    pub latency_ms: u64,
    /// Probability in [0,1] that a `/v2` request answers `error_status`.
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_error_status")]
    pub error_status: u16,
    /// Probability in [0,1] that a `/v2` write (PUT, POST, PATCH, DELETE)
    /// is carried out but answered `error_status`: the answer was lost on
    /// the way back (a proxy timing out, a connection reset).
    #[serde(default)]
    pub lost_answer_rate: f64,
    /// Marathon is "down": every non-control request answers 503.
    #[serde(default)]
    pub down: bool,
}

fn default_error_status() -> u16 {
    503
}

/// Everything the HTTP layer and the driver share.
pub struct Shared {
    pub state: Mutex<SimState>,
    pub events: broadcast::Sender<Arc<Event>>,
    pub faults: Mutex<Faults>,
    pub log: Mutex<VecDeque<LogEntry>>,
    pub state_file: Option<PathBuf>,
    /// Flips to true when the server shuts down or goes "down": event streams end.
    pub closing: watch::Sender<u64>,
}

pub type Sim = Arc<Shared>;

const LOG_CAPACITY: usize = 10_000;

pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

impl Shared {
    pub fn new(config: SimConfig) -> anyhow::Result<Sim> {
        let now = now_ms();
        let state = match &config.state_file {
            Some(p) if p.exists() => persist::load(p, config.settings.clone())?,
            _ => SimState::new(now, config.settings.clone()),
        };
        let (events, _) = broadcast::channel(65_536);
        let (closing, _) = watch::channel(0);
        Ok(Arc::new(Shared {
            state: Mutex::new(state),
            events,
            faults: Mutex::new(Faults {
                error_status: 503,
                ..Faults::default()
            }),
            log: Mutex::new(VecDeque::new()),
            state_file: config.state_file,
            closing,
        }))
    }

    /// Run `f` on the state, publish the events it produced and, if `write`,
    /// persist before returning (so the caller only acknowledges durable writes).
    pub fn with_state<T>(
        &self,
        write: bool,
        f: impl FnOnce(&mut SimState, Millis) -> T,
    ) -> anyhow::Result<T> {
        let mut s = self.state.lock();
        s.record_events = self.events.receiver_count() > 0;
        let out = f(&mut s, now_ms());
        self.publish(&mut s);
        if write && let Some(p) = &self.state_file {
            persist::save(p, &s)?;
        }
        Ok(out)
    }

    fn publish(&self, s: &mut SimState) {
        if self.events.receiver_count() == 0 {
            s.outbox.clear();
            return;
        }
        for e in s.outbox.drain(..) {
            let _ = self.events.send(Arc::new(e));
        }
    }

    pub fn record(&self, entry: LogEntry) {
        let mut log = self.log.lock();
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(entry);
    }

    /// Advance time once.
    pub fn tick(&self) {
        let _ = self.with_state(false, |s, now| s.tick(now));
    }
}

/// How often the driver advances the state machine.
const TICK: Duration = Duration::from_millis(5);

/// Serve the simulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim = Shared::new(config)?;
    serve_sim(listener, sim, shutdown).await
}

/// Like [`serve`] with a simulator built by the caller (to keep a handle on it).
pub async fn serve_sim(
    listener: tokio::net::TcpListener,
    sim: Sim,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_sim_with(listener, sim, crate::listen::Limits::default(), shutdown).await
}

/// Like [`serve_sim`] within given HTTP budgets (timeouts and a
/// connection cap, see [`crate::listen`]).
pub async fn serve_sim_with(
    listener: tokio::net::TcpListener,
    sim: Sim,
    limits: crate::listen::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let driver = tokio::spawn(drive(sim.clone()));
    let app = router(sim.clone());
    let closing = sim.clone();
    let result = crate::listen::serve(listener, app, limits, async move {
        shutdown.await;
        // Event streams never end on their own; end them so shutdown completes.
        closing.closing.send_modify(|n| *n += 1);
    })
    .await;
    driver.abort();
    result.map_err(Into::into)
}

/// The driver: ticks the state machine on a fixed cadence.
async fn drive(sim: Sim) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        sim.tick();
    }
}

/// `pacer sim`.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    let config = SimConfig::from(&args);
    let limits = crate::listen::Limits {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        write_timeout: Duration::from_secs(args.write_timeout),
    };
    serve_sim_with(listener, Shared::new(config)?, limits, shutdown_signal()).await
}

/// Ctrl-C or SIGTERM (how CI and process managers stop the simulator).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod state_tests;
