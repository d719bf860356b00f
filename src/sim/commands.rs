//! `apply`: every mutating API call as a command on the state machine.
//! Parsing of bodies into definitions happens here so the HTTP layer stays thin.

use serde_json::{Value, json};

use super::model::{AppRecord, Millis};
use super::plan::{Change, app_locked};
use super::state::{ApiError, DeploymentResult, SimState};
use super::views::{Embed, app_info, task_json};
use crate::marathon::defaults::{APP_INFO_FIELDS, normalize_app};
use crate::marathon::{ids, validate_app};

#[derive(Debug, Clone)]
pub enum Command {
    /// `POST /v2/apps`.
    CreateApp {
        body: Value,
    },
    /// `PUT` (`allow_create`) or `PATCH` (not) of `/v2/apps/{id}`.
    PutApp {
        id: String,
        body: Value,
        partial: bool,
        force: bool,
        allow_create: bool,
    },
    /// `PUT /v2/apps` with an array.
    PutApps {
        bodies: Vec<Value>,
        partial: bool,
        force: bool,
    },
    DeleteApp {
        id: String,
        force: bool,
    },
    RestartApp {
        id: String,
        force: bool,
    },
    /// Kill tasks by id, or all of `app` (optionally only on `host`).
    KillTasks {
        app: Option<String>,
        ids: Vec<String>,
        host: Option<String>,
        scale: bool,
        force: bool,
    },
    DeleteDeployment {
        id: String,
        force: bool,
    },
    /// `POST /v2/groups` (`create`) or `PUT /v2/groups/{id}`.
    PutGroup {
        id: Option<String>,
        body: Value,
        create: bool,
        force: bool,
    },
    DeleteGroup {
        id: String,
        force: bool,
    },
    /// Control API: a task dies and is replaced elsewhere.
    FailTask {
        id: String,
    },
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// POST echo: AppInfo of the submitted app.
    Created {
        app: Value,
        result: DeploymentResult,
    },
    Deployed {
        result: DeploymentResult,
        created: bool,
    },
    Tasks(Vec<Value>),
    Task(Value),
    /// 202 with an empty body.
    Accepted,
}

fn invalid(path: &str, msg: &str) -> ApiError {
    ApiError::invalid(json!([{"path": path, "errors": [msg]}]))
}

/// App id a task id belongs to (1.10 `<safeId>.instance-<uuid>._app.<n>`, 1.4 `<safeId>.<uuid>`).
pub fn app_of_task(task_id: &str) -> Option<String> {
    let safe = match task_id
        .find(".instance-")
        .or_else(|| task_id.find(".marathon-"))
    {
        Some(i) => &task_id[..i],
        None => task_id.rsplit_once('.')?.0,
    };
    if safe.is_empty() {
        return None;
    }
    Some(format!("/{}", safe.replace('_', "/")))
}

impl SimState {
    /// Check, default and canonicalise a full app definition.
    pub(super) fn prepare(&self, mut body: Value, id: Option<&str>) -> Result<Value, ApiError> {
        let Some(o) = body.as_object_mut() else {
            return Err(invalid("", "error.expected.jsobject"));
        };
        if let Some(id) = id {
            o.insert("id".into(), json!(id));
        }
        o.remove("version");
        o.remove("versionInfo");
        let violations = validate_app(&body);
        if !violations.is_empty() {
            return Err(ApiError::invalid(
                serde_json::to_value(violations).unwrap_or_default(),
            ));
        }
        if !self.settings.secrets_enabled
            && body
                .get("secrets")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        {
            return Err(invalid(
                "/secrets",
                "Feature secrets is not enabled. Enable with --enable_features secrets)",
            ));
        }
        normalize_app(&mut body);
        let id = body["id"].as_str().unwrap_or("/").to_string();
        let role = body.get("role").and_then(Value::as_str).unwrap_or("*");
        let top = id.split('/').nth(1).unwrap_or("");
        if role != "*" && (role != top || ids::parent(&id) == "/") {
            // Only the default role or the top-level group's role (1.9+); wording ours.
            return Err(invalid(
                "/role",
                &format!("got {role}, expected one of: [*, {top}]"),
            ));
        }
        let prefix = format!("{id}/");
        if self
            .apps
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
        {
            return Err(ApiError::new(
                422,
                format!("An app with id [{id}] conflicts with a group of the same name"),
            ));
        }
        // Groups are implicit, so an app cannot sit below another app (wording ours).
        let mut g = ids::parent(&id);
        while g != "/" {
            if self.apps.contains_key(&g) {
                return Err(ApiError::new(
                    422,
                    format!("The group {g} conflicts with an app of the same name"),
                ));
            }
            g = ids::parent(&g);
        }
        Ok(body)
    }

    /// Merge an `AppUpdate` into the current definition: given fields replace.
    fn merge(&self, current: &Value, body: &Value) -> Result<Value, ApiError> {
        let Some(b) = body.as_object() else {
            return Err(invalid("", "error.expected.jsobject"));
        };
        let mut merged = current.clone();
        let m = merged.as_object_mut().expect("stored apps are objects");
        if b.contains_key("container") && !b.contains_key("networks") {
            let legacy_net = b
                .get("container")
                .and_then(|c| c.get("docker"))
                .and_then(|d| d.get("network"));
            if legacy_net.is_some() || b.contains_key("ipAddress") {
                m.remove("networks");
            }
        }
        for (k, v) in b {
            if v.is_null() || k == "id" || APP_INFO_FIELDS.contains(&k.as_str()) {
                continue;
            }
            m.insert(k.clone(), v.clone());
        }
        Ok(merged)
    }

    fn target_for_update(
        &self,
        id: &str,
        body: Value,
        partial: bool,
    ) -> Result<(Value, bool), ApiError> {
        let current = self.apps.get(id).map(|r| &r.app);
        match current {
            Some(cur) if partial => {
                if let Some(v) = body.get("version").filter(|v| !v.is_null()) {
                    let extra = body
                        .as_object()
                        .map(|o| o.keys().any(|k| k != "id" && k != "version"))
                        .unwrap_or(false);
                    if extra {
                        return Err(invalid(
                            "",
                            "The 'version' field may only be combined with the 'id' field.",
                        ));
                    }
                    let v = v.as_str().unwrap_or("");
                    let old = self.apps[id].at_version(v).ok_or_else(|| {
                        ApiError::new(404, format!("App '{id}' does not exist in version {v}"))
                    })?;
                    return Ok((old, false));
                }
                let merged = self.merge(cur, &body)?;
                Ok((self.prepare(merged, Some(id))?, false))
            }
            Some(_) => Ok((self.prepare(body, Some(id))?, false)),
            None => Ok((self.prepare(body, Some(id))?, true)),
        }
    }

    fn record(&self, id: &str) -> Result<&AppRecord, ApiError> {
        self.apps.get(id).ok_or_else(|| ApiError::not_found_app(id))
    }

    pub fn apply(&mut self, cmd: Command, now: Millis) -> Result<Outcome, ApiError> {
        match cmd {
            Command::CreateApp { body } => {
                let app = self.prepare(body, None)?;
                let id = app["id"].as_str().unwrap_or("/").to_string();
                if self.apps.contains_key(&id) {
                    return Err(ApiError::new(
                        409,
                        format!("An app with id [{id}] already exists."),
                    ));
                }
                let echo_def = app.clone();
                let result = self.submit(
                    vec![Change {
                        id: id.clone(),
                        target: Some(app),
                        restart: false,
                    }],
                    false,
                    now,
                )?;
                let mut echo = echo_def;
                echo["version"] = json!(result.version);
                let rec = AppRecord {
                    app: echo,
                    versions: Default::default(),
                    tasks: vec![],
                    last_task_failure: None,
                    avoid_host: None,
                };
                let mut info = app_info(
                    self,
                    &rec,
                    Embed {
                        counts: true,
                        ..Embed::default()
                    },
                );
                info["deployments"] = json!([{"id": result.deployment_id}]);
                Ok(Outcome::Created { app: info, result })
            }
            Command::PutApp {
                id,
                body,
                partial,
                force,
                allow_create,
            } => {
                let id = ids::canonical(&id);
                if let Err(e) = crate::marathon::validate_path_id(&id) {
                    return Err(invalid("/id", &e));
                }
                if !allow_create && !self.apps.contains_key(&id) {
                    return Err(ApiError::not_found_app(&id));
                }
                let (target, created) = self.target_for_update(&id, body, partial)?;
                let result = self.submit(
                    vec![Change {
                        id,
                        target: Some(target),
                        restart: false,
                    }],
                    force,
                    now,
                )?;
                Ok(Outcome::Deployed { result, created })
            }
            Command::PutApps {
                bodies,
                partial,
                force,
            } => {
                let mut changes = Vec::new();
                for (i, body) in bodies.into_iter().enumerate() {
                    let Some(id) = body.get("id").and_then(Value::as_str).map(ids::canonical)
                    else {
                        return Err(invalid(&format!("/{i}/id"), "error.path.missing"));
                    };
                    let (target, _) =
                        self.target_for_update(&id, body, partial)
                            .map_err(|mut e| {
                                if let Some(Value::Array(ds)) = e.body.get_mut("details") {
                                    for d in ds {
                                        if let Some(p) = d.get("path").and_then(Value::as_str) {
                                            d["path"] = json!(format!("/{i}{p}"));
                                        }
                                    }
                                }
                                e
                            })?;
                    changes.push(Change {
                        id,
                        target: Some(target),
                        restart: false,
                    });
                }
                let result = self.submit(changes, force, now)?;
                Ok(Outcome::Deployed {
                    result,
                    created: false,
                })
            }
            Command::DeleteApp { id, force } => {
                let id = ids::canonical(&id);
                self.record(&id)?;
                let result = self.submit(
                    vec![Change {
                        id,
                        target: None,
                        restart: false,
                    }],
                    force,
                    now,
                )?;
                Ok(Outcome::Deployed {
                    result,
                    created: false,
                })
            }
            Command::RestartApp { id, force } => {
                let id = ids::canonical(&id);
                let def = self.record(&id)?.app.clone();
                let result = self.submit(
                    vec![Change {
                        id,
                        target: Some(def),
                        restart: true,
                    }],
                    force,
                    now,
                )?;
                Ok(Outcome::Deployed {
                    result,
                    created: false,
                })
            }
            Command::KillTasks {
                app,
                ids: task_ids,
                host,
                scale,
                force,
            } => self.kill_tasks(app, task_ids, host, scale, force, now),
            Command::DeleteDeployment { id, force } => {
                if force {
                    self.cancel_deployment(&id, now).ok_or_else(|| {
                        ApiError::new(404, format!("DeploymentPlan {id} does not exist"))
                    })?;
                    Ok(Outcome::Accepted)
                } else {
                    let result = self.rollback(&id, now)?;
                    Ok(Outcome::Deployed {
                        result,
                        created: false,
                    })
                }
            }
            Command::PutGroup {
                id,
                body,
                create,
                force,
            } => self.put_group(id.as_deref(), body, create, force, now),
            Command::DeleteGroup { id, force } => self.delete_group(&id, force, now),
            Command::FailTask { id } => {
                let app = app_of_task(&id)
                    .ok_or_else(|| ApiError::new(404, format!("Task '{id}' does not exist")))?;
                let t = self
                    .kill_task(&app, &id, true, now)
                    .ok_or_else(|| ApiError::new(404, format!("Task '{id}' does not exist")))?;
                let rec = &self.apps[&app];
                Ok(Outcome::Task(task_json(rec, &t)))
            }
        }
    }

    fn kill_tasks(
        &mut self,
        app: Option<String>,
        task_ids: Vec<String>,
        host: Option<String>,
        scale: bool,
        force: bool,
        now: Millis,
    ) -> Result<Outcome, ApiError> {
        let mut targets: Vec<(String, String)> = Vec::new();
        if let Some(app) = &app {
            let rec = self.record(app)?;
            if task_ids.is_empty() {
                targets.extend(
                    rec.tasks
                        .iter()
                        .filter(|t| host.as_ref().is_none_or(|h| &t.host == h))
                        .map(|t| (app.clone(), t.id.clone())),
                );
            } else {
                for tid in &task_ids {
                    if !rec
                        .tasks
                        .iter()
                        .any(|t| &t.id == tid || &t.instance_id == tid)
                    {
                        return Err(ApiError::new(404, format!("Task '{tid}' does not exist")));
                    }
                    targets.push((app.clone(), tid.clone()));
                }
            }
        } else {
            for tid in &task_ids {
                let a = app_of_task(tid)
                    .ok_or_else(|| ApiError::new(400, format!("Invalid task id {tid}")))?;
                if self
                    .apps
                    .get(&a)
                    .is_some_and(|r| r.tasks.iter().any(|t| &t.id == tid))
                {
                    targets.push((a, tid.clone()));
                }
            }
        }
        let apps: std::collections::BTreeSet<String> =
            targets.iter().map(|(a, _)| a.clone()).collect();
        if scale && !force {
            let locked: Vec<String> = self
                .deployments
                .iter()
                .filter(|d| d.affected_apps.iter().any(|a| apps.contains(a)))
                .map(|d| d.id.clone())
                .collect();
            if !locked.is_empty() {
                return Err(app_locked(&locked));
            }
        }
        let mut killed = Vec::new();
        for (a, tid) in &targets {
            if let Some(t) = self.kill_task(a, tid, false, now) {
                let rec = &self.apps[a];
                killed.push((a.clone(), task_json(rec, &t)));
            }
        }
        if scale {
            let mut changes = Vec::new();
            for a in &apps {
                let n = killed.iter().filter(|(x, _)| x == a).count() as u64;
                let rec = &self.apps[a];
                let mut def = rec.app.clone();
                let cur = def["instances"].as_u64().unwrap_or(1);
                def["instances"] = json!(cur.saturating_sub(n));
                changes.push(Change {
                    id: a.clone(),
                    target: Some(def),
                    restart: false,
                });
            }
            let result = self.submit(changes, true, now)?;
            return Ok(Outcome::Deployed {
                result,
                created: false,
            });
        }
        let single = !task_ids.is_empty() && app.is_some() && task_ids.len() == 1;
        let mut tasks: Vec<Value> = killed.into_iter().map(|(_, t)| t).collect();
        if single && let Some(t) = tasks.pop() {
            return Ok(Outcome::Task(t));
        }
        Ok(Outcome::Tasks(tasks))
    }
}
