//! `/_sim`: script reality (see docs/simulator.md). Never affected by injected
//! faults or outages, so tests can always steer the simulator.

use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use super::commands::{Command, Outcome};
use super::routes::{Req, json_response};
use super::{Faults, Sim};
use crate::marathon::ids;

fn bad(msg: &str) -> Response {
    json_response(400, &json!({"message": msg}))
}

/// The longest injected latency: longer only hangs clients for nothing.
const MAX_LATENCY_MS: u64 = 60_000;

/// The longest delay or timeout a setting takes (a day).
const MAX_DELAY_MS: i64 = 86_400_000;

fn settings_json(sim: &Sim) -> Value {
    let s = sim.state.lock();
    json!({
        "taskStartDelayMs": s.settings.start_delay_ms,
        "taskHealthyDelayMs": s.settings.healthy_delay_ms,
        "deploymentTimeoutMs": s.settings.deployment_timeout_ms,
        "neverHealthy": s.settings.never_healthy,
        "secretsEnabled": s.settings.secrets_enabled,
        "maxApps": s.settings.max_apps,
        "maxTasks": s.settings.max_tasks,
        "taskHosts": s.settings.task_hosts,
    })
}

/// Names the key whose value has the wrong type (serde's message doesn't).
fn check_fault_types(body: &[u8]) -> Result<(), String> {
    let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(body) else {
        return Err("expected a JSON object".into());
    };
    for (k, v) in &b {
        let ok = match k.as_str() {
            "latencyMs" | "errorStatus" => v.is_u64(),
            "errorRate" | "lostAnswerRate" => v.is_number(),
            "down" => v.is_boolean(),
            other => {
                return Err(format!(
                    "unknown fault `{other}`; known: latencyMs, errorRate, errorStatus, lostAnswerRate"
                ));
            }
        };
        if !ok {
            return Err(format!("{k} has the wrong type: {v}"));
        }
    }
    Ok(())
}

/// A checked `PUT /_sim/settings`: only the keys given change.
#[derive(Debug, Default, PartialEq)]
struct SettingsChange {
    start_delay_ms: Option<i64>,
    healthy_delay_ms: Option<i64>,
    deployment_timeout_ms: Option<Option<i64>>,
    secrets_enabled: Option<bool>,
    max_apps: Option<usize>,
    max_tasks: Option<usize>,
    task_hosts: Option<super::state::TaskHosts>,
}

impl SettingsChange {
    fn apply(self, s: &mut super::Settings) {
        if let Some(v) = self.start_delay_ms {
            s.start_delay_ms = v;
        }
        if let Some(v) = self.healthy_delay_ms {
            s.healthy_delay_ms = v;
        }
        if let Some(v) = self.deployment_timeout_ms {
            s.deployment_timeout_ms = v;
        }
        if let Some(v) = self.secrets_enabled {
            s.secrets_enabled = v;
        }
        if let Some(v) = self.max_apps {
            s.max_apps = v;
        }
        if let Some(v) = self.max_tasks {
            s.max_tasks = v;
        }
        if let Some(v) = self.task_hosts {
            s.task_hosts = v;
        }
    }
}

/// Checks every key of a settings body; the error names the key and why.
fn settings_change(b: &serde_json::Map<String, Value>) -> Result<SettingsChange, String> {
    let int = |k: &str, v: &Value, min: i64, max: i64| -> Result<i64, String> {
        match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(n) => Err(format!("{k} must be within {min} to {max}, not {n}")),
            None => Err(format!("{k} must be an integer, not {v}")),
        }
    };
    let mut c = SettingsChange::default();
    for (k, v) in b {
        match k.as_str() {
            "taskStartDelayMs" => c.start_delay_ms = Some(int(k, v, 0, MAX_DELAY_MS)?),
            "taskHealthyDelayMs" => c.healthy_delay_ms = Some(int(k, v, 0, MAX_DELAY_MS)?),
            "deploymentTimeoutMs" => {
                c.deployment_timeout_ms = Some(match v {
                    Value::Null => None,
                    v => Some(int(k, v, 1, MAX_DELAY_MS)?),
                })
            }
            "secretsEnabled" => {
                c.secrets_enabled = Some(
                    v.as_bool()
                        .ok_or_else(|| format!("{k} must be true or false, not {v}"))?,
                )
            }
            "maxApps" => c.max_apps = Some(int(k, v, 1, 1_000_000)? as usize),
            "maxTasks" => c.max_tasks = Some(int(k, v, 1, 10_000_000)? as usize),
            "taskHosts" => {
                c.task_hosts = Some(
                    serde_json::from_value(v.clone())
                        .map_err(|_| format!("{k} must be \"agents\" or \"loopback\", not {v}"))?,
                )
            }
            // Read-only: shown by GET, changed through /_sim/apps/{id}/never-healthy.
            "neverHealthy" => {}
            other => {
                return Err(format!(
                    "unknown setting `{other}`; known: taskStartDelayMs, taskHealthyDelayMs, deploymentTimeoutMs, secretsEnabled, maxApps, maxTasks, taskHosts"
                ));
            }
        }
    }
    Ok(c)
}

pub fn handle(sim: &Sim, r: &Req) -> Response {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    match (&segs[1..], &r.method) {
        (["settings"], &Method::GET) => json_response(200, &settings_json(sim)),
        (["settings"], &Method::PUT | &Method::PATCH | &Method::POST) => {
            let Ok(Value::Object(b)) = r.json() else {
                return bad("expected a JSON object");
            };
            // Every value is checked before any is applied.
            let parsed = match settings_change(&b) {
                Ok(p) => p,
                Err(e) => return bad(&e),
            };
            parsed.apply(&mut sim.state.lock().settings);
            json_response(200, &settings_json(sim))
        }
        (["apps", rest @ .., "never-healthy"], m) => {
            let id = ids::canonical(&rest.join("/"));
            let mut s = sim.state.lock();
            if m == Method::DELETE {
                s.settings.never_healthy.remove(&id);
                if let Some(mut rec) = s.apps.get_mut(&id) {
                    for t in rec.tasks.iter_mut() {
                        t.doomed = false;
                        if t.healthy == Some(false) {
                            t.healthy = None;
                        }
                    }
                }
                s.pending.insert(id.clone());
                return json_response(200, &json!({"app": id, "neverHealthy": false}));
            }
            // Versions after the current one are doomed ("the new version").
            let from = s
                .apps
                .get(&id)
                .map(|r| r.version().to_string())
                .unwrap_or_default();
            s.settings.never_healthy.insert(id.clone(), from.clone());
            json_response(
                200,
                &json!({"app": id, "neverHealthy": true, "afterVersion": from}),
            )
        }
        (["tasks", task, "fail"] | ["tasks", task, "kill"], &Method::POST) => {
            let res = sim.with_state(true, |s, now| {
                s.apply(
                    Command::FailTask {
                        id: task.to_string(),
                    },
                    now,
                )
            });
            match res {
                Ok(Ok(Outcome::Task(t))) => json_response(200, &json!({"task": t})),
                Ok(Ok(_)) => json_response(200, &json!({})),
                Ok(Err(e)) => json_response(e.status, &e.body),
                Err(e) => json_response(500, &json!({"message": e.to_string()})),
            }
        }
        (["faults"], &Method::GET) => json_response(200, &json!(*sim.faults.lock())),
        (["faults"], &Method::PUT | &Method::POST) => {
            if let Err(e) = check_fault_types(&r.body) {
                return bad(&e);
            }
            let parsed: Result<Faults, _> = serde_json::from_slice(&r.body);
            match parsed {
                Ok(mut f) => {
                    if !(400..=599).contains(&f.error_status) {
                        return bad(&format!(
                            "errorStatus must be an HTTP error status (400 to 599), not {}",
                            f.error_status
                        ));
                    }
                    if f.latency_ms > MAX_LATENCY_MS {
                        return bad(&format!(
                            "latencyMs must be at most {MAX_LATENCY_MS} (a minute), not {}",
                            f.latency_ms
                        ));
                    }
                    if !(0.0..=1.0).contains(&f.error_rate) {
                        return bad("errorRate must be within [0, 1]");
                    }
                    if !(0.0..=1.0).contains(&f.lost_answer_rate) {
                        return bad("lostAnswerRate must be within [0, 1]");
                    }
                    let mut cur = sim.faults.lock();
                    f.down = cur.down;
                    *cur = f;
                    json_response(200, &json!(*cur))
                }
                Err(e) => bad(&format!("invalid faults: {e}")),
            }
        }
        (["faults"], &Method::DELETE) => {
            let mut cur = sim.faults.lock();
            *cur = Faults {
                error_status: 503,
                down: cur.down,
                ..Faults::default()
            };
            json_response(200, &json!(*cur))
        }
        (["down"], &Method::POST) => {
            sim.faults.lock().down = true;
            // Connected event streams break, as they would with a dead leader.
            sim.closing.send_modify(|n| *n += 1);
            json_response(200, &json!({"down": true}))
        }
        (["up"], &Method::POST) => {
            sim.faults.lock().down = false;
            json_response(200, &json!({"down": false}))
        }
        (["requests"], &Method::GET) => {
            let log: Vec<Value> = sim.log.lock().iter().map(|e| json!(e)).collect();
            json_response(200, &json!({"requests": log}))
        }
        (["requests"], &Method::DELETE) => {
            sim.log.lock().clear();
            json_response(200, &json!({"requests": []}))
        }
        (["state"], &Method::GET) => {
            let s = sim.state.lock();
            let tasks = s.all_tasks().count();
            json_response(
                200,
                &json!({"apps": s.apps.len(), "tasks": tasks, "deployments": s.deployments.len()}),
            )
        }
        _ => json_response(
            404,
            &json!({"message": "unknown control endpoint; see docs/simulator.md"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(v: Value) -> Result<SettingsChange, String> {
        settings_change(v.as_object().expect("an object"))
    }

    #[test]
    fn settings_are_checked_before_any_applies() {
        let c =
            change(json!({"taskStartDelayMs": 20, "deploymentTimeoutMs": null, "maxTasks": 500}))
                .unwrap();
        assert_eq!(c.start_delay_ms, Some(20));
        assert_eq!(c.deployment_timeout_ms, Some(None));
        assert_eq!(c.max_tasks, Some(500));
        let c = change(json!({"taskHosts": "loopback"})).unwrap();
        assert_eq!(c.task_hosts, Some(super::super::state::TaskHosts::Loopback));
        for (body, want) in [
            (
                json!({"taskStartDelayMs": -5}),
                "taskStartDelayMs must be within",
            ),
            (json!({"taskHealthyDelayMs": "soon"}), "must be an integer"),
            (json!({"taskStartDelayMs": 1.5}), "must be an integer"),
            (
                json!({"deploymentTimeoutMs": 0}),
                "deploymentTimeoutMs must be within",
            ),
            (json!({"secretsEnabled": "yes"}), "true or false"),
            (json!({"maxTasks": 0}), "maxTasks must be within"),
            (json!({"taskHosts": "mars"}), "\"agents\" or \"loopback\""),
            (
                json!({"taskStartDelay": 5}),
                "unknown setting `taskStartDelay`",
            ),
        ] {
            let e = change(body.clone()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }
}
