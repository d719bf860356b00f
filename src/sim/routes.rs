//! The `/v2` HTTP API. One dispatcher instead of axum route patterns, because
//! Marathon's paths are lenient (`//`, trailing `/`, `/service/marathon`
//! prefix) and app ids are nested (`/v2/apps/prod/web/tasks`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use rand::Rng;
use serde_json::{Value, json};

use super::commands::{Command, Outcome};
use super::model::{TaskState, iso};
use super::state::{ApiError, SimState};
use super::views::{TaskView, group_json};
use super::{LogEntry, Sim, apps_api, control, negotiate, stream};
use crate::marathon::ids;

/// The simulator's HTTP API (`/v2`, `/ping`, `/metrics`, `/_sim`).
pub fn router(sim: Sim) -> Router {
    Router::new().fallback(dispatch).with_state(sim)
}

/// Request facts handlers need.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub segs: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    pub remote: String,
    pub accept: String,
    pub uri: String,
    /// `Host` header: what `/v2/leader` and `/v2/info` report as the leader.
    pub host: String,
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
}

impl Req {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn qs(&self, key: &str) -> impl Iterator<Item = &str> {
        self.query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Booleans as clients send them: `true`, `True`, `TRUE`.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        match self.q(key) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            // A bare `?force` means true; other values keep the default.
            Some("") => true,
            _ => default,
        }
    }
    /// The body as JSON, or Marathon's 400 for unparsable JSON.
    /// (1.4 answered JSON-shape errors with 400 too; 1.10 uses 422 once the
    /// text parses, which `prepare` does.)
    pub fn json(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError {
            status: 400,
            body: json!({"message": "Invalid JSON", "details": e.to_string()}),
        })
    }
}

pub fn json_response(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// 200 with an already-serialised JSON body.
pub(super) fn bytes_response(body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn error_response(e: ApiError) -> Response {
    json_response(e.status, &e.body)
}

/// Collapse `//`, drop a trailing `/` and the DC/OS `/service/marathon` prefix.
pub fn clean_path(raw: &str) -> (String, Vec<String>) {
    let mut segs: Vec<String> = raw
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if segs.len() >= 2 && segs[0] == "service" && segs[1] == "marathon" {
        segs.drain(..2);
    }
    (format!("/{}", segs.join("/")), segs)
}

/// The longest a client may take to send a request body. The listener
/// times only request heads (a handler may run as long as it likes); this
/// keeps a body sent a byte a minute from holding a connection slot.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The whole body (at most 64 MiB) within `limit`.
async fn read_body(body: Body, limit: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(limit, axum::body::to_bytes(body, 64 * 1024 * 1024)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(ApiError::new(413, "Request entity too large")),
        Err(_) => Err(ApiError::new(
            408,
            format!(
                "the request body took longer than {} s to arrive",
                limit.as_secs_f64()
            ),
        )),
    }
}

async fn dispatch(State(sim): State<Sim>, req: Request) -> Response {
    // When the request reached Marathon, before it waits for the state
    // (a long read holds it): what "sent" means to a client.
    let received = super::now_ms();
    let (parts, body) = req.into_parts();
    let body = match read_body(body, BODY_READ_TIMEOUT).await {
        Ok(b) => b,
        Err(e) => return error_response(e),
    };
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let (path, segs) = clean_path(parts.uri.path());
    let query = parts.uri.query().map(url_pairs).unwrap_or_default();
    // Several `Accept` headers count as one list, as HTTP says.
    let accept = parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost:8080")
        .to_string();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let r = Req {
        content_type,
        method: parts.method.clone(),
        path,
        segs,
        query,
        body,
        remote,
        accept,
        uri: parts.uri.to_string(),
        host,
    };
    if r.segs.first().map(String::as_str) == Some("_sim") {
        return control::handle(&sim, &r);
    }
    let faults = sim.faults.lock().clone();
    let resp = if faults.down {
        json_response(
            503,
            &json!({"message": "Marathon is not available (simulated outage)"}),
        )
    } else {
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        if faults.error_rate > 0.0 && rand::rng().random_bool(faults.error_rate.clamp(0.0, 1.0)) {
            json_response(
                faults.error_status,
                &json!({"message": "Simulated failure"}),
            )
        } else {
            let answer = handle(&sim, &r);
            let write = r.method != Method::GET && r.method != Method::HEAD;
            if write
                && faults.lost_answer_rate > 0.0
                && rand::rng().random_bool(faults.lost_answer_rate.clamp(0.0, 1.0))
            {
                json_response(
                    faults.error_status,
                    &json!({"message": "Simulated failure after the request was carried out"}),
                )
            } else {
                answer
            }
        }
    };
    sim.record(LogEntry {
        received: iso(received),
        at: iso(super::now_ms()),
        method: r.method.to_string(),
        uri: r.uri.clone(),
        status: resp.status().as_u16(),
    });
    resp
}

/// Decode `a=1&b=x%20y` (also `+` as space).
pub fn url_pairs(q: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

pub(super) fn method_not_allowed() -> Response {
    json_response(405, &json!({"message": "HTTP 405 Method Not Allowed"}))
}

/// 406, before the resource runs: nothing is read or written.
fn not_acceptable() -> Response {
    json_response(406, &json!({"message": "HTTP 406 Not Acceptable"}))
}

/// 415, before the resource runs (see negotiate.rs).
fn unsupported_media_type() -> Response {
    json_response(415, &json!({"message": "HTTP 415 Unsupported Media Type"}))
}

fn handle(sim: &Sim, r: &Req) -> Response {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    if negotiate::consumes_json(&segs, &r.method) && !negotiate::is_json(r.content_type.as_deref())
    {
        return unsupported_media_type();
    }
    let media = match negotiate::produces(&segs) {
        Some(offered) => match negotiate::choose(&r.accept, offered) {
            Some(media) => media,
            None => return not_acceptable(),
        },
        None => negotiate::JSON,
    };
    // Only `/ping` still answers in text; the tasks lists' text form is
    // soft-removed in 1.10 and answers 406 (see negotiate.rs).
    if media == negotiate::TEXT && segs != ["ping"] {
        return not_acceptable();
    }
    match (segs.as_slice(), &r.method) {
        (["ping"], &Method::GET | &Method::HEAD) => {
            // The JSON form is the string "pong" (ping.raml); the text form
            // has no trailing newline: 1.10 answers from a JAX-RS resource,
            // not the metrics library's ping servlet older releases used.
            let (body, content_type) = if media == negotiate::JSON {
                ("\"pong\"", "application/json")
            } else {
                ("pong", "text/plain")
            };
            let mut resp = Response::new(Body::from(body));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        (["metrics"] | ["v2", "metrics"], &Method::GET) => metrics(sim),
        (["v2", "info"], &Method::GET) => info(r),
        (["v2", "leader"], &Method::GET) => json_response(200, &json!({"leader": host_of(r)})),
        (["v2", "leader"], &Method::DELETE) => {
            // The leader steps down and a new one is elected: clients'
            // event streams on the old leader break, as in Marathon, and
            // the state carries over (it lives in ZooKeeper there).
            sim.closing.send_modify(|n| *n += 1);
            json_response(200, &json!({"message": "Leadership abdicated"}))
        }
        (["v2", "queue"], &Method::GET) => json_response(200, &json!({"queue": []})),
        // No plugins are loaded (plugins.raml's shape, an empty list).
        (["v2", "plugins"], &Method::GET) => json_response(200, &json!({"plugins": []})),
        // A plugin's own paths: with none loaded, every one is unknown. The
        // RAML gives no body; the message is the simulator's.
        (["v2", "plugins", id, ..], _) => json_response(
            404,
            &json!({"message": format!("Plugin {id} does not exist")}),
        ),
        (["v2", "pods"], &Method::GET | &Method::HEAD) => json_response(200, &json!([])),
        (["v2", "events"], &Method::GET) => {
            if !r.accept.contains("text/event-stream")
                && !r.accept.contains("*/*")
                && !r.accept.is_empty()
            {
                return method_not_allowed();
            }
            stream::event_stream(
                sim,
                r.remote.clone(),
                r.qs("event_type").map(str::to_string).collect(),
            )
        }
        (["v2", "apps"], _) => apps_api::apps_root(sim, r),
        (["v2", "apps", rest @ ..], _) => apps_api::app_sub(sim, r, rest),
        (["v2", "deployments"], &Method::GET) => {
            let v = sim.with_state(false, |s, _| {
                Value::Array(s.deployments.iter().map(|d| d.to_json()).collect())
            });
            json_response(200, &v.unwrap_or_default())
        }
        (["v2", "deployments", id], &Method::DELETE) => {
            let cmd = Command::DeleteDeployment {
                id: id.to_string(),
                force: r.flag("force", false),
            };
            outcome(sim, r, cmd, None)
        }
        (["v2", "tasks"], &Method::GET) => {
            let status = r.q("status").map(str::to_ascii_lowercase);
            let v = sim.with_state(false, |s, _| {
                let tasks: Vec<TaskView> = s
                    .all_tasks()
                    .filter(|(_, t)| match status.as_deref() {
                        Some("running") => t.state == TaskState::Running,
                        Some("staging") => t.state == TaskState::Staging,
                        _ => true,
                    })
                    .map(|(rec, t)| TaskView::new(rec, t))
                    .collect();
                let mut out = b"{\"tasks\":".to_vec();
                let _ = serde_json::to_writer(&mut out, &tasks);
                out.push(b'}');
                out
            });
            bytes_response(v.unwrap_or_default())
        }
        (["v2", "tasks", "delete"], &Method::POST) => {
            let body = match r.json() {
                Ok(b) => b,
                Err(e) => return error_response(e),
            };
            let ids: Vec<String> = body
                .get("ids")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let cmd = Command::KillTasks {
                app: None,
                ids,
                host: None,
                scale: r.flag("scale", false),
                force: r.flag("force", false),
            };
            outcome(sim, r, cmd, None)
        }
        (["v2", "groups", ..], &Method::GET) => {
            let gid = ids::canonical(&segs[2..].join("/"));
            let v = sim
                .with_state(false, |s, _| group_json(s, &gid))
                .ok()
                .flatten();
            match v {
                Some(g) => json_response(200, &g),
                None => error_response(ApiError::new(404, format!("Group '{gid}' does not exist"))),
            }
        }
        (["v2", "groups", ..], &Method::POST | &Method::PUT) => {
            let body = match r.json() {
                Ok(b) => b,
                Err(e) => return error_response(e),
            };
            let create = r.method == Method::POST;
            let id = (segs.len() > 2).then(|| segs[2..].join("/"));
            outcome(
                sim,
                r,
                Command::PutGroup {
                    id,
                    body,
                    create,
                    force: r.flag("force", false),
                },
                None,
            )
        }
        (["v2", "groups", _, ..], &Method::DELETE) => {
            let id = segs[2..].join("/");
            outcome(
                sim,
                r,
                Command::DeleteGroup {
                    id,
                    force: r.flag("force", false),
                },
                None,
            )
        }
        // A known resource asked with a method it does not have.
        _ if known_prefix(&segs) => method_not_allowed(),
        // Unknown routes: 500 with this body is what SEMANTICS §1 found in
        // MarathonExceptionMapper (not a 404).
        _ => json_response(500, &json!({"message": "URI not found"})),
    }
}

fn known_prefix(segs: &[&str]) -> bool {
    matches!(
        segs,
        [
            "v2",
            "apps"
                | "deployments"
                | "tasks"
                | "groups"
                | "info"
                | "leader"
                | "queue"
                | "events"
                | "plugins",
            ..
        ] | ["ping"]
    )
}

fn host_of(r: &Req) -> String {
    r.host.clone()
}

fn info(r: &Req) -> Response {
    json_response(
        200,
        &json!({
            "name": "marathon", "version": "1.10.26", "buildref": "pacer-sim", "elected": true,
            "leader": host_of(r), "frameworkId": "pacer-sim-framework-0000",
            "marathon_config": marathon_config(),
            "zookeeper_config": {"zk": "zk://localhost:2181/marathon", "zk_compression": true,
                "zk_compression_threshold": 65536, "zk_connection_timeout": 10000, "zk_max_node_size": 1024000,
                "zk_max_versions": 50, "zk_session_timeout": 10000, "zk_timeout": 10000},
            "http_config": {"http_port": 8080, "https_port": 8443}
        }),
    )
}

/// `marathon_config` with the keys of 1.10's info.json.
fn marathon_config() -> Value {
    json!({
                "access_control_allow_origin": null, "checkpoint": true, "decline_offer_duration": 120000,
                "default_network_name": null, "env_vars_prefix": null, "executor": "//cmd", "failover_timeout": 604800,
                "features": [], "framework_name": "marathon", "ha": false, "hostname": "localhost", "launch_token": 100,
                "launch_token_refresh_interval": 30000, "leader_proxy_connection_timeout_ms": 5000,
                "leader_proxy_read_timeout_ms": 10000, "local_port_max": super::state::PORT_MAX,
                "local_port_min": super::state::PORT_MIN, "master": "zk://localhost:2181/mesos",
                "max_instances_per_offer": 5, "mesos_bridge_name": "mesos-bridge", "mesos_heartbeat_failure_threshold": 5,
                "mesos_heartbeat_interval": 15000, "mesos_leader_ui_url": "http://localhost:5050/", "mesos_role": "*",
                "mesos_user": "root", "min_revive_offers_interval": 5000, "offer_matching_timeout": 3000,
                "on_elected_prepare_timeout": 180000, "reconciliation_initial_delay": 15000,
                "reconciliation_interval": 600000, "scale_apps_initial_delay": 15000, "scale_apps_interval": 300000,
                "store_cache": true, "task_launch_confirm_timeout": 300000, "task_launch_timeout": 300000,
                "task_lost_expunge_initial_delay": 300000, "task_lost_expunge_interval": 30000,
                "task_reservation_timeout": 20000, "webui_url": null})
}

fn metrics(sim: &Sim) -> Response {
    let v = sim.with_state(false, |s, _| {
        let tasks = s.all_tasks().count();
        json!({"version": "4.0.0", "counters": {}, "histograms": {}, "meters": {}, "timers": {},
            "gauges": {"marathon.apps.active.gauge": {"value": s.apps.len()},
                "marathon.deployments.active.gauge": {"value": s.deployments.len()},
                "marathon.instances.running.gauge": {"value": tasks}}})
    });
    json_response(200, &v.unwrap_or_default())
}

/// Turn a command's outcome into Marathon's answer.
pub(super) fn outcome(sim: &Sim, r: &Req, cmd: Command, post_event: Option<()>) -> Response {
    let location = match &cmd {
        Command::PutGroup {
            body, create: true, ..
        } => body
            .get("id")
            .and_then(Value::as_str)
            .map(|id| format!("/v2/groups{}", ids::canonical(id))),
        _ => r
            .segs
            .get(2..)
            .map(|id| format!("/v2/apps/{}", id.join("/"))),
    };
    let res = sim.with_state(true, |s, now| {
        let out = s.apply(cmd, now);
        if post_event.is_some()
            && let Ok(o) = &out
        {
            api_post_event(s, r, o, now);
        }
        out
    });
    let out = match res {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return error_response(e),
        Err(e) => {
            return error_response(ApiError::new(500, format!("Could not persist state: {e}")));
        }
    };
    match out {
        Outcome::Created { app, result } => {
            let id = app["id"].as_str().unwrap_or("/").to_string();
            let mut resp = json_response(201, &app);
            set_header(
                &mut resp,
                header::LOCATION.as_str(),
                &format!("/v2/apps{id}"),
            );
            set_header(&mut resp, "Marathon-Deployment-Id", &result.deployment_id);
            resp
        }
        Outcome::Deployed { result, created } => {
            let mut resp = json_response(if created { 201 } else { 200 }, &result.to_json());
            if created && let Some(loc) = &location {
                set_header(&mut resp, header::LOCATION.as_str(), loc);
            }
            set_header(&mut resp, "Marathon-Deployment-Id", &result.deployment_id);
            resp
        }
        Outcome::Tasks(t) => json_response(200, &json!({"tasks": t})),
        Outcome::Task(t) => json_response(200, &json!({"task": t})),
        Outcome::Accepted => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::ACCEPTED;
            resp
        }
    }
}

fn set_header(resp: &mut Response, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        header::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        resp.headers_mut().insert(n, v);
    }
}

/// `api_post_event` for POST/PUT of apps, with the definition as stored.
fn api_post_event(s: &mut SimState, r: &Req, out: &Outcome, now: i64) {
    if !s.record_events {
        return;
    }
    let ids: Vec<String> = match out {
        Outcome::Created { app, .. } => vec![app["id"].as_str().unwrap_or("/").to_string()],
        Outcome::Deployed { .. } => s
            .deployments
            .last()
            .map(|d| d.affected_apps.clone())
            .unwrap_or_default(),
        _ => vec![],
    };
    for id in ids {
        if let Some(app) = s.apps.get(&id).map(|rec| rec.app.clone()) {
            s.emit(
                "api_post_event",
                now,
                json!({"clientIp": r.remote, "uri": r.path, "appDefinition": app}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_never_ends_is_cut() {
        let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        let limit = Duration::from_millis(100);
        let read = read_body(Body::from_stream(never), limit);
        let e = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the read ends")
            .unwrap_err();
        assert_eq!(e.status, 408);
        let whole = read_body(Body::from("{}"), limit).await.unwrap();
        assert_eq!(&whole[..], b"{}");
    }

    #[test]
    fn lenient_paths() {
        assert_eq!(clean_path("//v2//apps/").0, "/v2/apps");
        assert_eq!(
            clean_path("/service/marathon/v2/apps/a/b").1,
            vec!["v2", "apps", "a", "b"]
        );
    }

    #[test]
    fn query_decoding() {
        let q = url_pairs("label=env%3D%3Dprod&embed=apps.tasks&embed=apps.counts&force=True&x");
        assert_eq!(q[0], ("label".into(), "env==prod".into()));
        assert_eq!(q.len(), 5);
        assert_eq!(q[4], ("x".into(), String::new()));
        assert_eq!(url_pairs("a=%zz%4")[0].1, "%zz%4");
    }
}
