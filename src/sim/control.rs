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

fn settings_json(sim: &Sim) -> Value {
    let s = sim.state.lock();
    json!({
        "taskStartDelayMs": s.settings.start_delay_ms,
        "taskHealthyDelayMs": s.settings.healthy_delay_ms,
        "deploymentTimeoutMs": s.settings.deployment_timeout_ms,
        "neverHealthy": s.settings.never_healthy,
        "secretsEnabled": s.settings.secrets_enabled,
    })
}

pub fn handle(sim: &Sim, r: &Req) -> Response {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    match (&segs[1..], &r.method) {
        (["settings"], &Method::GET) => json_response(200, &settings_json(sim)),
        (["settings"], &Method::PUT | &Method::PATCH | &Method::POST) => {
            let Ok(Value::Object(b)) = r.json() else {
                return bad("expected a JSON object");
            };
            {
                let mut s = sim.state.lock();
                let int = |k: &str| b.get(k).and_then(Value::as_i64).map(|v| v.max(0));
                if let Some(v) = int("taskStartDelayMs") {
                    s.settings.start_delay_ms = v;
                }
                if let Some(v) = int("taskHealthyDelayMs") {
                    s.settings.healthy_delay_ms = v;
                }
                if let Some(v) = b.get("deploymentTimeoutMs") {
                    s.settings.deployment_timeout_ms = v.as_i64();
                }
                if let Some(v) = b.get("secretsEnabled").and_then(Value::as_bool) {
                    s.settings.secrets_enabled = v;
                }
            }
            json_response(200, &settings_json(sim))
        }
        (["apps", rest @ .., "never-healthy"], m) => {
            let id = ids::canonical(&rest.join("/"));
            let mut s = sim.state.lock();
            if m == Method::DELETE {
                s.settings.never_healthy.remove(&id);
                for rec in s.apps.get_mut(&id).into_iter() {
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
            let parsed: Result<Faults, _> = serde_json::from_slice(&r.body);
            match parsed {
                Ok(mut f) => {
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
