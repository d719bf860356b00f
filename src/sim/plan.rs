//! Turning a change of the root group into a deployment plan (SEMANTICS §2–3).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::model::{Action, ActionKind, AppRecord, Deployment, Millis};
use super::state::{ApiError, DeploymentResult, PORT_MAX, PORT_MIN, SimState, service_ports};

/// `--zk_max_versions` default (info.json).
pub const MAX_VERSIONS: usize = 50;

/// One app's desired outcome in a plan.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: String,
    /// Normalised definition without version fields; `None` removes the app.
    pub target: Option<Value>,
    /// Restart even if the definition is unchanged (`/restart`).
    pub restart: bool,
}

/// Marathon's 409 for an app in a running deployment (message from Exception.scala,
/// `<DEPLOYMENT_ID>` is literally in the text).
pub fn app_locked(ids: &[String]) -> ApiError {
    ApiError {
        status: 409,
        body: json!({
            "message": "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
            "deployments": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
        }),
    }
}

/// The definition without what versioning adds, to compare configurations.
fn config_of(app: &Value) -> Value {
    let mut v = app.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
        o.remove("versionInfo");
        o.remove("instances");
    }
    v
}

impl SimState {
    /// Cancel a deployment: it disappears and its listeners hear `deployment_failed`.
    pub fn cancel_deployment(&mut self, id: &str, now: Millis) -> Option<Deployment> {
        let idx = self.deployments.iter().position(|d| d.id == id)?;
        let d = self.deployments.remove(idx);
        self.emit(
            "deployment_failed",
            now,
            json!({"id": d.id, "plan": d.plan_json(), "reason": "The upgrade has been cancelled"}),
        );
        for a in &d.affected_apps {
            self.pending.insert(a.clone());
        }
        Some(d)
    }

    /// Assign service ports that are 0, re-using the old version's ports first
    /// (AssignDynamicServiceLogic), and release ports the new version dropped.
    fn assign_ports(&mut self, old: Option<&Value>, new: &mut Value) -> Result<(), ApiError> {
        let old_ports = old.map(service_ports).unwrap_or_default();
        let host = new.get("portDefinitions").is_some();
        let list = if host {
            new.get_mut("portDefinitions")
        } else {
            new.get_mut("container")
                .and_then(|c| c.get_mut("portMappings"))
        };
        let key = if host { "port" } else { "servicePort" };
        let mut kept: BTreeSet<u16> = BTreeSet::new();
        if let Some(Value::Array(items)) = list {
            let explicit: BTreeSet<u16> = items
                .iter()
                .filter_map(|p| p.get(key).and_then(Value::as_u64))
                .filter(|p| *p != 0)
                .map(|p| p as u16)
                .collect();
            let mut reuse = old_ports.iter().copied().filter(|p| !explicit.contains(p));
            for item in items.iter_mut() {
                let cur = item.get(key).and_then(Value::as_u64).unwrap_or(0) as u16;
                let port = if cur != 0 {
                    self.used_ports.insert(cur);
                    cur
                } else if let Some(p) = reuse.next() {
                    p
                } else {
                    match self.allocate_port() {
                        Some(p) => p,
                        None => {
                            // Marathon fails the deployment; we refuse up front (our choice).
                            return Err(ApiError::new(
                                422,
                                format!(
                                    "All service ports in range [{PORT_MIN}, {PORT_MAX}] are in use"
                                ),
                            ));
                        }
                    }
                };
                kept.insert(port);
                if let Some(o) = item.as_object_mut() {
                    o.insert(key.into(), json!(port));
                }
            }
        }
        for p in old_ports {
            if !kept.contains(&p) {
                self.used_ports.remove(&p);
            }
        }
        Ok(())
    }

    /// Apply a root-group change and start a deployment for it.
    pub fn submit(
        &mut self,
        changes: Vec<Change>,
        force: bool,
        now: Millis,
    ) -> Result<DeploymentResult, ApiError> {
        let affected: BTreeSet<String> = changes.iter().map(|c| c.id.clone()).collect();
        let conflicts: Vec<String> = self
            .deployments
            .iter()
            .filter(|d| d.affected_apps.iter().any(|a| affected.contains(a)))
            .map(|d| d.id.clone())
            .collect();
        if !conflicts.is_empty() {
            if !force {
                return Err(app_locked(&conflicts));
            }
            for id in &conflicts {
                self.cancel_deployment(id, now);
            }
        }
        self.check_capacity(&changes)?;
        if self.deployments.len() >= self.settings.max_running_deployments {
            // TooManyRunningDeploymentsException → 403; wording is our choice.
            return Err(ApiError::new(
                403,
                format!(
                    "Max number of running deployments is sealed to {}. Scale down other deployments or increase the limit",
                    self.settings.max_running_deployments
                ),
            ));
        }
        let (_, version) = self.next_version(now);
        let mut stops = Vec::new();
        let mut starts = Vec::new();
        let mut rest: Vec<(Action, Vec<String>)> = Vec::new();
        let mut original = BTreeMap::new();
        let mut touched = Vec::new();
        for change in changes {
            let old = self.apps.get(&change.id).map(|r| r.app.clone());
            match (change.target, old) {
                (None, None) => {}
                (None, Some(old)) => {
                    self.remove_app(&change.id, now);
                    original.insert(change.id.clone(), Some(old));
                    stops.push(Action {
                        kind: ActionKind::StopApplication,
                        app: change.id.clone(),
                    });
                    touched.push(change.id);
                }
                (Some(mut target), old) => {
                    if let Some(o) = target.as_object_mut() {
                        o.remove("version");
                        o.remove("versionInfo");
                    }
                    self.assign_ports(old.as_ref(), &mut target)?;
                    let deps: Vec<String> = target
                        .get("dependencies")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|d| d.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let kind = match &old {
                        None => Some(ActionKind::StartApplication),
                        Some(o) if change.restart || config_of(o) != config_of(&target) => {
                            Some(ActionKind::RestartApplication)
                        }
                        Some(o) if o.get("instances") != target.get("instances") => {
                            Some(ActionKind::ScaleApplication)
                        }
                        Some(_) => None,
                    };
                    let Some(kind) = kind else { continue };
                    let (last_config, vi_version) = match kind {
                        ActionKind::ScaleApplication => (
                            old.as_ref()
                                .and_then(|o| o.pointer("/versionInfo/lastConfigChangeAt"))
                                .cloned()
                                .unwrap_or(json!(version)),
                            version.clone(),
                        ),
                        _ => (json!(version), version.clone()),
                    };
                    let t = target.as_object_mut().expect("normalised app is an object");
                    t.insert("version".into(), json!(vi_version));
                    t.insert(
                        "versionInfo".into(),
                        json!({"lastScalingAt": version, "lastConfigChangeAt": last_config}),
                    );
                    original.insert(change.id.clone(), old.clone());
                    let mut rec = self
                        .apps
                        .get_or_insert_with(change.id.clone(), || AppRecord {
                            app: Value::Null,
                            versions: BTreeMap::new(),
                            tasks: Vec::new(),
                            last_task_failure: None,
                            avoid_host: None,
                        });
                    rec.versions.insert(version.clone(), target.to_string());
                    rec.app = target;
                    // Marathon keeps at most `--zk_max_versions` (50) versions per app.
                    while rec.versions.len() > MAX_VERSIONS {
                        rec.versions.pop_first();
                    }
                    if kind == ActionKind::StartApplication {
                        starts.push(Action {
                            kind,
                            app: change.id.clone(),
                        });
                        rest.push((
                            Action {
                                kind: ActionKind::ScaleApplication,
                                app: change.id.clone(),
                            },
                            deps,
                        ));
                    } else {
                        rest.push((
                            Action {
                                kind,
                                app: change.id.clone(),
                            },
                            deps,
                        ));
                    }
                    touched.push(change.id);
                }
            }
        }
        let mut steps = vec![stops, starts];
        steps.extend(dependency_layers(rest));
        steps.retain(|s| !s.is_empty());
        let affected_apps: Vec<String> = {
            let mut seen = BTreeSet::new();
            steps
                .iter()
                .flatten()
                .filter(|a| seen.insert(a.app.clone()))
                .map(|a| a.app.clone())
                .collect()
        };
        let id = self.uuid();
        for a in &touched {
            self.pending.insert(a.clone());
        }
        self.deployments.push(Deployment {
            id: id.clone(),
            version: version.clone(),
            affected_apps,
            steps,
            current: None,
            restarts: BTreeMap::new(),
            original,
            started_at: now,
        });
        self.emit(
            "group_change_success",
            now,
            json!({"groupId": "/", "version": version}),
        );
        self.kick_off(now);
        Ok(DeploymentResult {
            deployment_id: id,
            version,
        })
    }

    /// Drop an app at once: kill its tasks and free its ports.
    fn remove_app(&mut self, id: &str, now: Millis) {
        if let Some(rec) = self.apps.remove(id) {
            for p in service_ports(&rec.app) {
                self.used_ports.remove(&p);
            }
            for t in &rec.tasks {
                self.emit_task_gone(t, "TASK_KILLED", now);
            }
        }
        self.pending.remove(id);
    }

    /// `DELETE /v2/deployments/{id}`: revert exactly that plan's changes
    /// (DeploymentPlanReverter), as a new forced deployment.
    pub fn rollback(&mut self, id: &str, now: Millis) -> Result<DeploymentResult, ApiError> {
        let Some(d) = self.cancel_deployment(id, now) else {
            return Err(ApiError::new(
                404,
                format!("DeploymentPlan {id} does not exist"),
            ));
        };
        let changes = d
            .original
            .into_iter()
            .map(|(id, old)| Change {
                id,
                target: old,
                restart: false,
            })
            .collect();
        self.submit(changes, true, now)
    }
}

/// Order scale/restart actions so an app comes after the apps it depends on.
fn dependency_layers(actions: Vec<(Action, Vec<String>)>) -> Vec<Vec<Action>> {
    let in_plan: BTreeSet<String> = actions.iter().map(|(a, _)| a.app.clone()).collect();
    let mut remaining = actions;
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut layers = Vec::new();
    while !remaining.is_empty() {
        let (ready, blocked): (Vec<_>, Vec<_>) = remaining.into_iter().partition(|(_, deps)| {
            deps.iter()
                .all(|d| !in_plan.contains(d) || done.contains(d))
        });
        if ready.is_empty() {
            // A dependency cycle: Marathon rejects these at validation; run them together.
            layers.push(blocked.into_iter().map(|(a, _)| a).collect());
            break;
        }
        for (a, _) in &ready {
            done.insert(a.app.clone());
        }
        layers.push(ready.into_iter().map(|(a, _)| a).collect());
        remaining = blocked;
    }
    layers
}
