//! Plain data of the simulated cluster: apps, tasks, deployments, events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Wall-clock instant in milliseconds since the epoch; the state machine only
/// ever sees time through this, so tests can drive it with a fake clock.
pub type Millis = i64;

pub fn iso(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    Staging,
    Running,
}

impl TaskState {
    pub fn mesos(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Running => "TASK_RUNNING",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub instance_id: String,
    pub app_id: String,
    pub host: String,
    pub slave_id: String,
    pub ports: Vec<u16>,
    pub service_ports: Vec<u16>,
    pub state: TaskState,
    pub staged_at: Millis,
    pub started_at: Option<Millis>,
    /// The app version the task was launched with.
    pub version: String,
    /// `None` while no health result exists; only meaningful with health checks.
    pub healthy: Option<bool>,
    pub first_success: Option<Millis>,
    /// Set when the simulator was told this task never becomes healthy.
    pub doomed: bool,
    pub role: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionKind {
    StartApplication,
    ScaleApplication,
    RestartApplication,
    StopApplication,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::StartApplication => "StartApplication",
            ActionKind::ScaleApplication => "ScaleApplication",
            ActionKind::RestartApplication => "RestartApplication",
            ActionKind::StopApplication => "StopApplication",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    pub app: String,
}

/// Progress of a rolling restart, fixed when the action starts (SEMANTICS §4).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Restart {
    pub old: BTreeSet<String>,
    pub kill_immediately: usize,
    pub max_capacity: usize,
    pub old_killed: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub version: String,
    pub affected_apps: Vec<String>,
    pub steps: Vec<Vec<Action>>,
    /// Index of the step being executed; `None` before the first starts.
    pub current: Option<usize>,
    /// Per action of the current step: rolling-restart bookkeeping.
    pub restarts: BTreeMap<String, Restart>,
    /// Definitions before this plan (`None` = the app did not exist): what a
    /// rollback restores.
    pub original: BTreeMap<String, Option<Value>>,
    pub started_at: Millis,
}

impl Deployment {
    pub fn steps_json(&self) -> Value {
        Value::Array(
            self.steps
                .iter()
                .map(|s| json!({"actions": s.iter().map(|a| json!({"action": a.kind.name(), "app": a.app})).collect::<Vec<_>>()}))
                .collect(),
        )
    }

    pub fn plan_json(&self) -> Value {
        json!({"id": self.id, "steps": self.steps_json(), "version": self.version})
    }

    pub fn current_step_json(&self) -> Value {
        let actions = self
            .current
            .and_then(|i| self.steps.get(i))
            .map(|s| {
                s.iter()
                    .map(|a| json!({"action": a.kind.name(), "app": a.app}))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        json!({"actions": actions})
    }

    /// `/v2/deployments` item. `currentStep` is 1-based; 0 before the first step.
    pub fn to_json(&self) -> Value {
        let current_actions: Vec<Value> = self
            .current
            .and_then(|i| self.steps.get(i))
            .map(|s| {
                s.iter()
                    .map(|a| json!({"action": a.kind.name(), "app": a.app, "readinessCheckResults": []}))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "id": self.id,
            "version": self.version,
            "affectedApps": self.affected_apps,
            "affectedPods": [],
            "steps": self.steps_json(),
            "currentActions": current_actions,
            "currentStep": self.current.map(|i| i + 1).unwrap_or(0),
            "totalSteps": self.steps.len(),
        })
    }
}

/// One app: its current definition (as GET shows it), older versions and tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    pub app: Value,
    /// version → definition, oldest first.
    /// Kept as JSON text: older versions are rarely read and text is a
    /// fraction of a `Value` tree's size (10,000 apps × 50 versions).
    pub versions: BTreeMap<String, String>,
    pub tasks: Vec<Task>,
    pub last_task_failure: Option<Value>,
    /// Host of the last task lost, so its replacement lands elsewhere.
    #[serde(default)]
    pub avoid_host: Option<String>,
}

impl AppRecord {
    /// The definition stored for `version`.
    pub fn at_version(&self, version: &str) -> Option<Value> {
        self.versions
            .get(version)
            .and_then(|t| serde_json::from_str(t).ok())
    }

    pub fn instances(&self) -> usize {
        self.app
            .get("instances")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize
    }
    pub fn has_health_checks(&self) -> bool {
        self.app
            .get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }
    pub fn version(&self) -> &str {
        self.app
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// Goal running and (no health checks or healthy): Marathon's `consideredHealthy`.
    pub fn considered_healthy(&self, t: &Task) -> bool {
        t.state == TaskState::Running && (!self.has_health_checks() || t.healthy == Some(true))
    }
}

/// An event for `/v2/events`: its type and full payload (with `eventType`, `timestamp`).
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: String,
    pub payload: Value,
}

impl Event {
    pub fn new(event_type: &str, now: Millis, mut payload: Value) -> Event {
        if let Some(o) = payload.as_object_mut() {
            o.insert("eventType".into(), json!(event_type));
            o.insert("timestamp".into(), json!(iso(now)));
        }
        Event {
            event_type: event_type.to_string(),
            payload,
        }
    }

    /// SSE frame as Marathon writes it: `event:` line, one-line `data:`, blank line.
    pub fn frame(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.event_type, self.payload)
    }
}

/// Wall-clock time for frames made outside the state machine (no `now` is passed there).
pub fn wall_clock_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
