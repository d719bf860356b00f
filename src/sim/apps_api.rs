//! `/v2/apps` handlers: list, create, update, delete, and the nested
//! `restart`, `tasks` and `versions` resources.

use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use super::Sim;
use super::commands::Command;
use super::routes::{
    Req, bytes_response, error_response, json_response, method_not_allowed, outcome,
};
use super::state::ApiError;
use super::views::{Embed, LabelSelector, app_info, labels_of, task_json, write_app_list};
use crate::marathon::ids;

pub(super) fn apps_root(sim: &Sim, r: &Req) -> Response {
    match r.method {
        Method::GET => {
            let mut embed = Embed::parse(r.qs("embed"));
            // Always embedded on the list (AppsResource `index`).
            embed.counts = true;
            embed.deployments = true;
            let selector = match r.q("label").map(LabelSelector::parse).transpose() {
                Ok(s) => s,
                Err(e) => return error_response(ApiError::new(400, e)),
            };
            let id_filter = r.q("id").map(str::to_ascii_lowercase);
            let cmd_filter = r.q("cmd");
            let v = sim.with_state(false, |s, _| {
                let apps = s
                    .apps
                    .iter()
                    .filter(|(id, _)| id_filter.as_ref().is_none_or(|f| id.contains(f.as_str())))
                    .filter(|(_, rec)| {
                        cmd_filter.is_none_or(|c| {
                            rec.app
                                .get("cmd")
                                .and_then(Value::as_str)
                                .is_some_and(|x| x.contains(c))
                        })
                    })
                    .filter(|(_, rec)| {
                        selector
                            .as_ref()
                            .is_none_or(|sel| sel.matches(&labels_of(&rec.app)))
                    })
                    .map(|(_, rec)| rec);
                write_app_list(s, apps, embed)
            });
            bytes_response(v.unwrap_or_default())
        }
        Method::POST => match r.json() {
            Ok(body) => outcome(sim, r, Command::CreateApp { body }, Some(())),
            Err(e) => error_response(e),
        },
        Method::PUT | Method::PATCH => match r.json() {
            Ok(Value::Array(bodies)) => {
                let partial = r.flag("partialUpdate", true) || r.method == Method::PATCH;
                outcome(
                    sim,
                    r,
                    Command::PutApps {
                        bodies,
                        partial,
                        force: r.flag("force", false),
                    },
                    Some(()),
                )
            }
            Ok(_) => error_response(ApiError::invalid(
                json!([{"path": "", "errors": ["error.expected.jsarray"]}]),
            )),
            Err(e) => error_response(e),
        },
        _ => method_not_allowed(),
    }
}

/// `/v2/apps/{id...}[/restart|/tasks[/{task}]|/versions[/{v}]]`.
pub(super) fn app_sub(sim: &Sim, r: &Req, rest: &[&str]) -> Response {
    let n = rest.len();
    let last = rest[n - 1];
    let id_of = |k: usize| ids::canonical(&rest[..n - k].join("/"));
    match (last, n) {
        ("restart", 2..) if r.method == Method::POST => {
            let cmd = Command::RestartApp {
                id: id_of(1),
                force: r.flag("force", false),
            };
            return outcome(sim, r, cmd, None);
        }
        ("tasks", 2..) => return app_tasks(sim, r, id_of(1), None),
        ("versions", 2..) if r.method == Method::GET => {
            let id = id_of(1);
            let v = sim.with_state(false, |s, _| {
                s.apps
                    .get(&id)
                    .map(|rec| rec.versions.keys().rev().cloned().collect::<Vec<_>>())
            });
            return match v.ok().flatten() {
                Some(vs) => json_response(200, &json!({"versions": vs})),
                None => error_response(ApiError::not_found_app(&id)),
            };
        }
        ("*", _) if r.method == Method::GET => {
            let gid = ids::canonical(&rest[..n - 1].join("/"));
            let embed = Embed::parse(r.qs("embed"));
            let prefix = if gid == "/" {
                "/".to_string()
            } else {
                format!("{gid}/")
            };
            let v = sim.with_state(false, |s, _| {
                let apps: Vec<Value> = s
                    .apps
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, rec)| app_info(s, rec, embed))
                    .collect();
                apps
            });
            return json_response(200, &json!({"*": v.unwrap_or_default()}));
        }
        _ => {}
    }
    if n >= 3 && rest[n - 2] == "tasks" {
        return app_tasks(sim, r, id_of(2), Some(last.to_string()));
    }
    if n >= 3 && rest[n - 2] == "versions" && r.method == Method::GET {
        let id = id_of(2);
        let v = sim.with_state(false, |s, _| {
            s.apps.get(&id).map(|rec| rec.at_version(last))
        });
        return match v.ok().flatten() {
            Some(Some(app)) => json_response(200, &app),
            Some(None) => error_response(ApiError::new(
                404,
                format!("App '{id}' does not exist in version {last}"),
            )),
            None => error_response(ApiError::not_found_app(&id)),
        };
    }
    let id = id_of(0);
    match r.method {
        Method::GET => {
            let embed = Embed {
                counts: true,
                tasks: true,
                last_task_failure: true,
                deployments: true,
                ..Embed::parse(r.qs("embed"))
            };
            let v = sim.with_state(false, |s, _| {
                s.apps.get(&id).map(|rec| app_info(s, rec, embed))
            });
            match v.ok().flatten() {
                Some(app) => json_response(200, &json!({"app": app})),
                None => error_response(ApiError::not_found_app(&id)),
            }
        }
        Method::PUT | Method::PATCH => match r.json() {
            Ok(body) => {
                let patch = r.method == Method::PATCH;
                let cmd = Command::PutApp {
                    id,
                    body,
                    partial: patch || r.flag("partialUpdate", true),
                    force: r.flag("force", false),
                    allow_create: !patch,
                };
                outcome(sim, r, cmd, Some(()))
            }
            Err(e) => error_response(e),
        },
        // `force` defaults to true for DELETE (also in 1.4).
        Method::DELETE => outcome(
            sim,
            r,
            Command::DeleteApp {
                id,
                force: r.flag("force", true),
            },
            None,
        ),
        _ => method_not_allowed(),
    }
}

fn app_tasks(sim: &Sim, r: &Req, id: String, task: Option<String>) -> Response {
    match r.method {
        Method::GET if task.is_none() => {
            let v = sim.with_state(false, |s, _| {
                s.apps.get(&id).map(|rec| {
                    rec.tasks
                        .iter()
                        .map(|t| task_json(rec, t))
                        .collect::<Vec<_>>()
                })
            });
            match v.ok().flatten() {
                // The text listing is soft-removed in 1.10: `handle` answers
                // `Accept: text/plain` with 406 before this runs.
                Some(tasks) => json_response(200, &json!({"tasks": tasks})),
                None => error_response(ApiError::not_found_app(&id)),
            }
        }
        Method::DELETE => {
            let cmd = Command::KillTasks {
                app: Some(id),
                ids: task.into_iter().collect(),
                host: r.q("host").map(str::to_string),
                scale: r.flag("scale", false),
                force: r.flag("force", false),
            };
            outcome(sim, r, cmd, None)
        }
        _ => method_not_allowed(),
    }
}
