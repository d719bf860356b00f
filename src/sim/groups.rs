//! `/v2/groups` writes: a group body is flattened into app changes of one plan.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::commands::Outcome;
use super::model::Millis;
use super::plan::Change;
use super::state::{ApiError, SimState};
use crate::marathon::ids;

/// Prefix the paths of a 422's details, so errors point into the group body.
fn nest(mut e: ApiError, prefix: &str) -> ApiError {
    if let Some(Value::Array(ds)) = e.body.get_mut("details") {
        for d in ds {
            if let Some(p) = d.get("path").and_then(Value::as_str) {
                d["path"] = json!(format!("{prefix}{p}"));
            }
        }
    }
    e
}

impl SimState {
    /// Apps under a group (`/` = all).
    fn apps_under(&self, group: &str) -> Vec<String> {
        let prefix = if group == "/" {
            "/".to_string()
        } else {
            format!("{group}/")
        };
        self.apps
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn group_exists(&self, group: &str) -> bool {
        group == "/" || !self.apps_under(group).is_empty()
    }

    /// Collect the apps of a group body, ids resolved against their group.
    fn flatten(
        &self,
        body: &Value,
        gid: &str,
        path: &str,
        out: &mut Vec<Change>,
    ) -> Result<(), ApiError> {
        let Some(o) = body.as_object() else {
            return Err(ApiError::invalid(
                json!([{"path": path, "errors": ["error.expected.jsobject"]}]),
            ));
        };
        if let Some(apps) = o.get("apps").and_then(Value::as_array) {
            for (i, app) in apps.iter().enumerate() {
                let rel = app.get("id").and_then(Value::as_str).unwrap_or("");
                if rel.is_empty() {
                    return Err(ApiError::invalid(
                        json!([{"path": format!("{path}/apps/{i}/id"), "errors": ["error.path.missing"]}]),
                    ));
                }
                let id = ids::canonical_in(gid, rel);
                let mut app = app.clone();
                // Relative dependencies resolve against the enclosing group.
                if let Some(Value::Array(deps)) = app.get_mut("dependencies") {
                    for d in deps.iter_mut() {
                        if let Some(s) = d.as_str() {
                            *d = json!(ids::canonical_in(gid, s));
                        }
                    }
                }
                let target = self
                    .prepare(app, Some(&id))
                    .map_err(|e| nest(e, &format!("{path}/apps/{i}")))?;
                out.push(Change {
                    id,
                    target: Some(target),
                    restart: false,
                });
            }
        }
        if let Some(groups) = o.get("groups").and_then(Value::as_array) {
            for (i, g) in groups.iter().enumerate() {
                let rel = g.get("id").and_then(Value::as_str).unwrap_or("");
                let sub = ids::canonical_in(gid, rel);
                if let Err(e) = crate::marathon::validate_path_id(&sub) {
                    return Err(ApiError::invalid(
                        json!([{"path": format!("{path}/groups/{i}/id"), "errors": [e]}]),
                    ));
                }
                self.flatten(g, &sub, &format!("{path}/groups/{i}"), out)?;
            }
        }
        Ok(())
    }

    /// `POST /v2/groups` (`create`) or `PUT /v2/groups/{id}`.
    pub fn put_group(
        &mut self,
        url_id: Option<&str>,
        body: Value,
        create: bool,
        force: bool,
        now: Millis,
    ) -> Result<Outcome, ApiError> {
        let gid = match (url_id, body.get("id").and_then(Value::as_str)) {
            (Some(u), _) if u != "/" && !u.is_empty() => ids::canonical(u),
            (_, Some(b)) => ids::canonical(b),
            (Some(u), None) => ids::canonical(u),
            (None, None) => {
                return Err(ApiError::invalid(
                    json!([{"path": "/id", "errors": ["error.path.missing"]}]),
                ));
            }
        };
        if gid != "/"
            && let Err(e) = crate::marathon::validate_path_id(&gid)
        {
            return Err(ApiError::invalid(json!([{"path": "/id", "errors": [e]}])));
        }
        let existed = self.group_exists(&gid);
        if create && existed && gid != "/" {
            return Err(ApiError::new(
                409,
                format!("Group {gid} is already created. Use PUT to change this group."),
            ));
        }
        if let Some(by) = body.get("scaleBy") {
            let Some(by) = by.as_f64().filter(|b| *b >= 0.0) else {
                return Err(ApiError::invalid(
                    json!([{"path": "/scaleBy", "errors": ["error.min"]}]),
                ));
            };
            if !existed {
                return Err(ApiError::new(404, format!("Group '{gid}' does not exist")));
            }
            let changes = self
                .apps_under(&gid)
                .into_iter()
                .map(|id| {
                    let mut def = self.apps[&id].app.clone();
                    let n = def["instances"].as_f64().unwrap_or(1.0);
                    def["instances"] = json!((n * by).ceil() as u64);
                    Change {
                        id,
                        target: Some(def),
                        restart: false,
                    }
                })
                .collect();
            let result = self.submit(changes, force, now)?;
            return Ok(Outcome::Deployed {
                result,
                created: false,
            });
        }
        if body.get("version").is_some_and(|v| !v.is_null()) {
            // Group version rollback is not simulated (our choice: say so clearly).
            return Err(ApiError::new(
                422,
                "The simulator does not support group rollback by version",
            ));
        }
        let mut changes = Vec::new();
        self.flatten(&body, &gid, "", &mut changes)?;
        let wanted: BTreeSet<String> = changes.iter().map(|c| c.id.clone()).collect();
        let has = |k: &str| body.get(k).is_some_and(Value::is_array);
        // Given `apps` replace the group's own apps; given `groups` replace its subgroups.
        for id in self.apps_under(&gid) {
            let direct = ids::parent(&id) == gid;
            if !wanted.contains(&id) && ((direct && has("apps")) || (!direct && has("groups"))) {
                changes.push(Change {
                    id,
                    target: None,
                    restart: false,
                });
            }
        }
        let result = self.submit(changes, force, now)?;
        Ok(Outcome::Deployed {
            result,
            created: create,
        })
    }

    /// `DELETE /v2/groups/{id}`: remove every app below it.
    pub fn delete_group(
        &mut self,
        gid: &str,
        force: bool,
        now: Millis,
    ) -> Result<Outcome, ApiError> {
        let gid = ids::canonical(gid);
        if !self.group_exists(&gid) {
            return Err(ApiError::new(404, format!("Group '{gid}' does not exist")));
        }
        let changes = self
            .apps_under(&gid)
            .into_iter()
            .map(|id| Change {
                id,
                target: None,
                restart: false,
            })
            .collect();
        let result = self.submit(changes, force, now)?;
        Ok(Outcome::Deployed {
            result,
            created: false,
        })
    }
}
