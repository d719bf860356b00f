//! Apps and deployments: list, read, write, scale, delete, roll back.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::error::{decode, status_error};
use super::transport::Retry;
use super::{Error, MarathonClient};
use crate::marathon::raw::RawApp;

/// What Marathon answers to a write: the deployment it started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRef {
    #[serde(alias = "deployment_id")]
    pub deployment_id: String,
    pub version: String,
}

/// One entry of `GET /v2/deployments`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub version: String,
    #[serde(default, alias = "affected_apps")]
    pub affected_apps: Vec<String>,
    /// 1-based; 0 before the first step starts.
    #[serde(default, alias = "current_step")]
    pub current_step: u32,
    #[serde(default, alias = "total_steps")]
    pub total_steps: u32,
    /// Marathon's raw steps: `[{"actions":[{"action":"ScaleApplication","app":"/x"}]}]`.
    #[serde(default)]
    pub steps: Vec<Value>,
    /// The actions of the current step, raw (with `readinessCheckResults`).
    #[serde(default, alias = "current_actions")]
    pub current_actions: Vec<Value>,
}

/// Fields Marathon computes; a PUT must not send them (a `version` means rollback).
pub const READ_ONLY_FIELDS: [&str; 11] = [
    "version",
    "versionInfo",
    "tasks",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "tasksStats",
    "deployments",
    "lastTaskFailure",
    "readinessCheckResults",
];

/// A copy of `app` without Marathon's read-only fields.
pub fn strip_read_only(app: &Value) -> Value {
    let mut v = app.clone();
    if let Some(o) = v.as_object_mut() {
        for k in READ_ONLY_FIELDS {
            o.remove(k);
        }
    }
    v
}

impl MarathonClient {
    /// `GET /ping`.
    pub async fn ping(&self) -> Result<(), Error> {
        let a = self
            .call(Method::GET, "/ping", None, Retry::Transient)
            .await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(status_error(&a))
        }
    }

    /// Every app under `group` (`/prod`: `/prod/web`, `/prod/a/b`), raw
    /// `AppInfo` JSON, from one `GET /v2/apps?embed=apps.deployments`.
    /// `""` or `/` lists every app.
    pub async fn list_apps(&self, group: &str) -> Result<Vec<Value>, Error> {
        self.list_apps_raw(group)
            .await?
            .iter()
            .map(RawApp::parse)
            .collect()
    }

    /// Like [`list_apps`](Self::list_apps), each app left unparsed but for
    /// its id and version.
    pub async fn list_apps_raw(&self, group: &str) -> Result<Vec<RawApp>, Error> {
        let a = self
            .call(
                Method::GET,
                "/v2/apps?embed=apps.deployments",
                None,
                Retry::Transient,
            )
            .await?;
        if !a.status.is_success() {
            return Err(status_error(&a));
        }
        let status = a.status.as_u16();
        let apps = RawApp::list(a.body).map_err(|e| Error::Decode {
            message: format!("GET /v2/apps: {e} in a {status} answer"),
        })?;
        let prefix = group_prefix(group);
        Ok(apps
            .into_iter()
            .filter(|app| app.id.starts_with(&prefix))
            .collect())
    }

    /// `GET /v2/apps/{id}`: the raw `AppInfo`, or `None` if there is no such app.
    pub async fn get_app(&self, id: &str) -> Result<Option<Value>, Error> {
        self.get_app_raw(id)
            .await?
            .map(|app| app.parse())
            .transpose()
    }

    /// Like [`get_app`](Self::get_app), left unparsed but for its id and
    /// version.
    pub async fn get_app_raw(&self, id: &str) -> Result<Option<RawApp>, Error> {
        let path = format!("/v2/apps{}", app_path(id));
        let a = self
            .call(Method::GET, &path, None, Retry::Transient)
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(status_error(&a));
        }
        match RawApp::one(a.body) {
            Ok(Some(app)) => Ok(Some(app)),
            Ok(None) => Err(Error::Decode {
                message: format!("GET {path}: the app has no id"),
            }),
            Err(e) => Err(Error::Decode {
                message: format!("GET {path}: no \"app\" object: {e}"),
            }),
        }
    }

    /// `PUT /v2/apps/{id}?partialUpdate=false[&force=true]`: create or
    /// replace the app with `app` (read-only fields stripped, `id` set).
    pub async fn put_app(
        &self,
        id: &str,
        app: &Value,
        force: bool,
    ) -> Result<DeploymentRef, Error> {
        let mut body = strip_read_only(app);
        match body.as_object_mut() {
            Some(o) => {
                o.insert("id".into(), Value::String(canonical_id(id)));
            }
            None => {
                return Err(Error::Config(
                    "an app definition must be a JSON object".into(),
                ));
            }
        }
        let mut path = format!("/v2/apps{}?partialUpdate=false", app_path(id));
        if force {
            path.push_str("&force=true");
        }
        self.write(Method::PUT, &path, Some(&body)).await
    }

    /// A partial `PUT {"instances": n}`: scales without restarting tasks.
    pub async fn scale_app(&self, id: &str, instances: u64) -> Result<DeploymentRef, Error> {
        let path = format!("/v2/apps{}?partialUpdate=true", app_path(id));
        self.write(Method::PUT, &path, Some(&json!({ "instances": instances })))
            .await
    }

    /// `DELETE /v2/apps/{id}?force=false` (Marathon's default would force).
    pub async fn delete_app(&self, id: &str) -> Result<DeploymentRef, Error> {
        let path = format!("/v2/apps{}?force=false", app_path(id));
        self.write(Method::DELETE, &path, None).await
    }

    /// `GET /v2/deployments`.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, Error> {
        let a = self
            .call(Method::GET, "/v2/deployments", None, Retry::Transient)
            .await?;
        if !a.status.is_success() {
            return Err(status_error(&a));
        }
        decode(&a)
    }

    /// `DELETE /v2/deployments/{id}`: roll the deployment back (Marathon
    /// starts a new, forced deployment that reverts it). `None` when the
    /// deployment is already gone (finished).
    pub async fn rollback_deployment(&self, id: &str) -> Result<Option<DeploymentRef>, Error> {
        let path = format!("/v2/deployments/{}", encode_segment(id));
        // Not idempotent in effect: the first DELETE starts the revert and
        // a repeat answers 404. The caller re-reads Marathon instead.
        let a = self.call(Method::DELETE, &path, None, Retry::Never).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(status_error(&a));
        }
        decode(&a).map(Some)
    }
}

/// `"/prod"`, `"prod/"` → `"/prod/"`; `""`, `"/"` → `"/"`.
fn group_prefix(group: &str) -> String {
    let g = group.trim_matches('/');
    if g.is_empty() {
        "/".into()
    } else {
        format!("/{g}/")
    }
}

fn canonical_id(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

/// `"/prod/web"` → `"/prod/web"` with each segment percent-encoded.
pub(super) fn app_path(id: &str) -> String {
    id.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", encode_segment(s)))
        .collect()
}

/// Percent-encodes everything but unreserved characters and `:` (versions
/// are ISO timestamps).
pub(super) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_prefixes() {
        assert_eq!(app_path("/prod/web"), "/prod/web");
        assert_eq!(app_path("prod/web/"), "/prod/web");
        assert_eq!(group_prefix("/prod"), "/prod/");
        assert_eq!(group_prefix("prod/"), "/prod/");
        assert_eq!(group_prefix("/"), "/");
        assert_eq!(
            encode_segment("2026-01-01T00:00:00.000Z"),
            "2026-01-01T00:00:00.000Z"
        );
        assert_eq!(encode_segment("a b"), "a%20b");
    }

    #[test]
    fn read_only_fields_are_stripped() {
        let v = strip_read_only(
            &json!({"id": "/a", "cmd": "x", "version": "v", "versionInfo": {},
            "tasksRunning": 1, "deployments": [], "tasks": [], "lastTaskFailure": {}}),
        );
        assert_eq!(v, json!({"id": "/a", "cmd": "x"}));
    }
}
