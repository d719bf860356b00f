//! The simulated Marathon as a pure state machine.
//!
//! Nothing here reads the clock or does I/O: every mutation takes `now`
//! (milliseconds) and `tick(now)` advances tasks and deployments. Events are
//! appended to an outbox that the driver drains and broadcasts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::model::{AppRecord, Deployment, Event, Millis, Task, iso};
use super::table::AppTable;

/// Service-port range (`--local_port_min/max` defaults, info.json).
pub const PORT_MIN: u16 = 10000;
pub const PORT_MAX: u16 = 20000;

/// Knobs the `/_sim` control API turns; part of the state so `tick` sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Staging → running.
    pub start_delay_ms: i64,
    /// Running → healthy (apps with health checks only).
    pub healthy_delay_ms: i64,
    /// Fail a deployment that has not finished after this long.
    pub deployment_timeout_ms: Option<i64>,
    /// App id → tasks launched for versions at or after this one never become
    /// healthy (`""` = any version).
    pub never_healthy: BTreeMap<String, String>,
    /// Marathon's `--enable_features secrets`.
    pub secrets_enabled: bool,
    /// `--max_running_deployments`.
    pub max_running_deployments: usize,
    /// Apps the simulator holds at most (see [`super::capacity`]).
    #[serde(default = "default_max_apps")]
    pub max_apps: usize,
    /// Tasks (the sum of `instances`) it holds at most.
    #[serde(default = "default_max_tasks")]
    pub max_tasks: usize,
    /// Where tasks run: simulated agents, or loopback addresses a test can
    /// send from (as a task on that host would).
    #[serde(default)]
    pub task_hosts: TaskHosts,
}

/// `taskHosts` of `PUT /_sim/settings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskHosts {
    /// `agent-1.sim.local` … `agent-5.sim.local` (addresses 10.0.0.1 …).
    #[default]
    Agents,
    /// `127.0.0.2` … `127.0.0.6`: real addresses on Linux's loopback.
    Loopback,
}

fn default_max_apps() -> usize {
    super::capacity::DEFAULT_MAX_APPS
}

fn default_max_tasks() -> usize {
    super::capacity::DEFAULT_MAX_TASKS
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            start_delay_ms: 300,
            healthy_delay_ms: 300,
            deployment_timeout_ms: None,
            never_healthy: BTreeMap::new(),
            secrets_enabled: false,
            max_running_deployments: 100,
            max_apps: default_max_apps(),
            max_tasks: default_max_tasks(),
            task_hosts: TaskHosts::Agents,
        }
    }
}

/// An error answer: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({"message": message.into()}),
        }
    }
    pub fn not_found_app(id: &str) -> ApiError {
        ApiError::new(404, format!("App '{id}' does not exist"))
    }
    pub fn invalid(details: Value) -> ApiError {
        ApiError {
            status: 422,
            body: json!({"message": "Object is not valid", "details": details}),
        }
    }
}

/// `{"deploymentId", "version"}` of an accepted change.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentResult {
    pub deployment_id: String,
    pub version: String,
}

impl DeploymentResult {
    pub fn to_json(&self) -> Value {
        json!({"deploymentId": self.deployment_id, "version": self.version})
    }
}

/// The whole simulated cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct SimState {
    pub apps: AppTable,
    pub deployments: Vec<Deployment>,
    pub used_ports: BTreeSet<u16>,
    pub settings: Settings,
    pub last_version_ms: Millis,
    pub leader_since: Millis,
    /// Apps whose tasks may change on the next tick.
    #[serde(default)]
    pub pending: BTreeSet<String>,
    #[serde(skip)]
    pub outbox: VecDeque<Event>,
    #[serde(skip, default = "new_rng")]
    pub rng: StdRng,
    /// False while nobody listens on `/v2/events`: building payloads is then wasted work.
    #[serde(skip, default = "yes")]
    pub record_events: bool,
    /// Where the next service-port search starts (see `allocate_port`).
    #[serde(default)]
    pub port_cursor: u16,
}

fn yes() -> bool {
    true
}

fn new_rng() -> StdRng {
    StdRng::from_os_rng()
}

/// Simulated agents; a replacement task avoids the host its predecessor was on.
pub const HOSTS: [&str; 5] = [
    "agent-1.sim.local",
    "agent-2.sim.local",
    "agent-3.sim.local",
    "agent-4.sim.local",
    "agent-5.sim.local",
];

/// Hosts under `taskHosts: loopback`.
pub const LOOPBACK_HOSTS: [&str; 5] = [
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.4",
    "127.0.0.5",
    "127.0.0.6",
];

impl SimState {
    pub fn new(now: Millis, settings: Settings) -> SimState {
        SimState {
            apps: AppTable::default(),
            deployments: Vec::new(),
            used_ports: BTreeSet::new(),
            settings,
            last_version_ms: 0,
            leader_since: now,
            pending: BTreeSet::new(),
            outbox: VecDeque::new(),
            rng: new_rng(),
            record_events: true,
            port_cursor: PORT_MIN,
        }
    }

    /// Deterministic randomness for unit tests.
    pub fn seeded(now: Millis, settings: Settings, seed: u64) -> SimState {
        let mut s = SimState::new(now, settings);
        s.rng = StdRng::seed_from_u64(seed);
        s
    }

    pub fn emit(&mut self, event_type: &str, now: Millis, payload: Value) {
        if self.record_events {
            self.outbox.push_back(Event::new(event_type, now, payload));
        }
    }

    /// A version strictly after every earlier one, so `/versions` keys stay unique.
    pub fn next_version(&mut self, now: Millis) -> (Millis, String) {
        let t = now.max(self.last_version_ms + 1);
        self.last_version_ms = t;
        (t, iso(t))
    }

    pub fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    /// Deployments that touch `app`.
    pub fn deployments_of(&self, app: &str) -> Vec<&Deployment> {
        self.deployments
            .iter()
            .filter(|d| d.affected_apps.iter().any(|a| a == app))
            .collect()
    }

    /// A free service port, scanning from a cursor so allocation stays O(1) amortised.
    pub fn allocate_port(&mut self) -> Option<u16> {
        let span = (PORT_MAX - PORT_MIN) as u32 + 1;
        for _ in 0..span {
            let p = self.port_cursor.clamp(PORT_MIN, PORT_MAX);
            self.port_cursor = if p == PORT_MAX { PORT_MIN } else { p + 1 };
            if self.used_ports.insert(p) {
                return Some(p);
            }
        }
        None
    }

    pub fn random_host(&mut self, avoid: Option<&str>) -> &'static str {
        let hosts = match self.settings.task_hosts {
            TaskHosts::Agents => &HOSTS,
            TaskHosts::Loopback => &LOOPBACK_HOSTS,
        };
        loop {
            let h = hosts[self.rng.random_range(0..hosts.len())];
            if Some(h) != avoid {
                return h;
            }
        }
    }

    pub fn random_host_port(&mut self) -> u16 {
        self.rng.random_range(31000..32000)
    }

    /// All tasks, for `/v2/tasks`.
    pub fn all_tasks(&self) -> impl Iterator<Item = (&AppRecord, &Task)> {
        self.apps
            .values()
            .flat_map(|r| r.tasks.iter().map(move |t| (r, t)))
    }
}

/// Service ports an app definition carries (host: portDefinitions, else portMappings).
pub fn service_ports(app: &Value) -> Vec<u16> {
    let from = |list: Option<&Value>, key: &str| -> Vec<u16> {
        list.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get(key).and_then(Value::as_u64))
                    .map(|p| p as u16)
                    .collect()
            })
            .unwrap_or_default()
    };
    match app.get("portDefinitions") {
        Some(pd) => from(Some(pd), "port"),
        None => from(
            app.get("container").and_then(|c| c.get("portMappings")),
            "servicePort",
        ),
    }
}

/// Number of host ports a task of this app gets.
pub fn host_port_count(app: &Value) -> usize {
    if let Some(pd) = app.get("portDefinitions").and_then(Value::as_array) {
        return pd.len();
    }
    app.get("container")
        .and_then(|c| c.get("portMappings"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|p| p.get("hostPort").is_some()).count())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_increase() {
        let mut s = SimState::seeded(1000, Settings::default(), 1);
        let (a, _) = s.next_version(5000);
        let (b, _) = s.next_version(5000);
        let (c, _) = s.next_version(10);
        assert!(a < b && b < c);
    }

    #[test]
    fn ports_are_unique_and_exhaust() {
        let mut s = SimState::seeded(0, Settings::default(), 1);
        let mut seen = BTreeSet::new();
        while let Some(p) = s.allocate_port() {
            assert!((PORT_MIN..=PORT_MAX).contains(&p));
            assert!(seen.insert(p));
        }
        assert_eq!(seen.len(), (PORT_MAX - PORT_MIN) as usize + 1);
    }
}
