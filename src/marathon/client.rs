//! A typed Marathon client (reqwest, rustls) for the reconciler.
//!
//! - Every request has a timeout ([`ClientConfig::timeout`]).
//! - Reads (GETs) are retried with jittered exponential backoff on
//!   connection errors, timeouts and 5xx. Writes (`PUT`, `DELETE` of an app
//!   or a deployment) are never retried automatically: a retried PUT can
//!   start a second deployment, a retried rollback revert twice, so the
//!   caller re-observes instead.
//! - A write refused with 409 "locked by deployment" waits for the named
//!   deployments to leave `/v2/deployments` (up to [`ClientConfig::lock_wait`])
//!   and is tried once more. Nothing is forced unless asked for: even
//!   `DELETE /v2/apps/{id}`, whose `force` defaults to true in Marathon, is
//!   sent with `force=false`.
//! - Read-only `AppInfo` fields are stripped from every PUT body (a `version`
//!   in a PUT body means "roll back" to Marathon).
//! - Credentials never appear in `Debug`, logs or errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tracing::debug;

use crate::marathon::raw::RawApp;
use crate::marathon::watch::DeploymentWatch;
use crate::model::Secret;

/// How to authenticate to Marathon.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTP basic auth (Marathon's `--http_credentials`).
    Basic {
        user: String,
        password: Secret<String>,
    },
    /// DC/OS ACS token, sent as `Authorization: token=<t>`.
    Token(Secret<String>),
}

#[derive(Clone)]
pub struct ClientConfig {
    /// Marathon's base URL, e.g. `http://marathon.mesos:8080` (a DC/OS
    /// `/service/marathon` prefix is fine). Credentials in the URL
    /// (`http://user:pass@host`) become [`Auth::Basic`] when `auth` is `None`.
    pub url: String,
    pub auth: Auth,
    /// Per request (for the event stream: until the response headers arrive).
    pub timeout: Duration,
    /// Retries of an idempotent request after a transient failure.
    pub max_retries: u32,
    /// Base of the exponential backoff between retries.
    pub backoff: Duration,
    /// The longest a write waits for the deployments that lock its app.
    pub lock_wait: Duration,
    /// Whether deployments are followed through `/v2/events`.
    pub events: bool,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("lock_wait", &self.lock_wait)
            .field("events", &self.events)
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            url: "http://127.0.0.1:8080".into(),
            auth: Auth::None,
            timeout: Duration::from_secs(10),
            max_retries: 4,
            backoff: Duration::from_millis(200),
            lock_wait: Duration::from_secs(300),
            events: true,
        }
    }
}

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

/// One frame of `/v2/events`.
#[derive(Debug, Clone)]
pub struct MarathonEvent {
    /// `deployment_success`, `status_update_event`, …
    pub event_type: String,
    /// The payload (`eventType`, `timestamp`, …).
    pub data: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be built (bad URL, bad credentials).
    #[error("invalid Marathon client configuration: {0}")]
    Config(String),
    #[error("cannot reach Marathon at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("Marathon at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// Any other non-success answer. `message` is Marathon's `message` (and
    /// validation `details`), or the start of the body.
    #[error("Marathon answered {status}: {message}")]
    Status { status: u16, message: String },
    /// 409: the app is locked by these running deployments (and waiting for
    /// them did not help, or took longer than `lock_wait`).
    #[error("the app is locked by deployment(s) {}", deployments.join(", "))]
    Locked { deployments: Vec<String> },
    /// 404 where the thing must exist (an app's versions, deleting an app).
    #[error("not found: {message}")]
    NotFound { message: String },
    /// Marathon answered something that is not what its API promises.
    #[error("unexpected answer from Marathon: {message}")]
    Decode { message: String },
}

impl Error {
    /// Connection errors, timeouts and 5xx: worth retrying later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
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

/// A Marathon client; cheap to clone.
#[derive(Clone)]
pub struct MarathonClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without credentials and without a trailing `/`.
    base: String,
    auth: Auth,
    cfg: ClientConfig,
    /// The event subscription followers share while any is alive.
    watch: parking_lot::Mutex<std::sync::Weak<DeploymentWatch>>,
}

impl std::fmt::Debug for MarathonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarathonClient")
            .field("url", &self.inner.base)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// How a request may be repeated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Idempotent: retry transient failures.
    Transient,
    /// Never repeat.
    Never,
}

/// A finished response: status and body text.
struct Answer {
    status: StatusCode,
    body: String,
}

impl MarathonClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, Error> {
        let mut url =
            Url::parse(cfg.url.trim()).map_err(|e| Error::Config(format!("Marathon URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "Marathon URL must be http or https, not {}",
                url.scheme()
            )));
        }
        let mut auth = cfg.auth.clone();
        if !url.username().is_empty() || url.password().is_some() {
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| Error::Config("credentials in the URL".into()))
            };
            if matches!(auth, Auth::None) {
                auth = Auth::Basic {
                    user: decode(url.username())?,
                    password: Secret::new(decode(url.password().unwrap_or(""))?),
                };
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        url.set_query(None);
        url.set_fragment(None);
        let base = url.as_str().trim_end_matches('/').to_string();
        if let Auth::Token(t) = &auth
            && HeaderValue::from_str(&format!("token={}", t.expose())).is_err()
        {
            return Err(Error::Config(
                "the token has characters not allowed in a header".into(),
            ));
        }
        // No client-wide total timeout: the event stream never ends. Each
        // request sets its own.
        let mut http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("pacer/", env!("CARGO_PKG_VERSION")));
        if url.scheme() == "http" {
            // No TLS to set up: reading the system's CA certificates takes
            // longer than a whole plan's requests. A redirect to https
            // would fail its certificate check, never go unverified.
            http = http.tls_certs_only([]);
        }
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let mut cfg = cfg;
        cfg.url = base.clone();
        cfg.auth = Auth::None;
        Ok(MarathonClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                cfg,
                watch: Default::default(),
            }),
        })
    }

    /// The event stream of this Marathon, shared by every caller; it stays
    /// open while one of them holds it. Needs a Tokio runtime.
    pub fn deployment_watch(&self) -> Arc<DeploymentWatch> {
        let mut slot = self.inner.watch.lock();
        if let Some(w) = slot.upgrade() {
            return w;
        }
        let w = Arc::new(if self.inner.cfg.events {
            DeploymentWatch::start(self)
        } else {
            DeploymentWatch::disabled()
        });
        *slot = Arc::downgrade(&w);
        w
    }

    /// Marathon's base URL, without credentials.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

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

    /// `GET /v2/apps/{id}/versions`: newest first, as Marathon lists them.
    pub async fn app_versions(&self, id: &str) -> Result<Vec<String>, Error> {
        let path = format!("/v2/apps{}/versions", app_path(id));
        let a = self
            .call(Method::GET, &path, None, Retry::Transient)
            .await?;
        if !a.status.is_success() {
            return Err(status_error(&a));
        }
        let body: Value = decode(&a)?;
        match body.get("versions").and_then(Value::as_array) {
            Some(vs) => Ok(vs
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()),
            None => Err(Error::Decode {
                message: format!("GET {path}: no \"versions\" array"),
            }),
        }
    }

    /// `GET /v2/apps/{id}/versions/{version}`: the bare app definition.
    pub async fn app_version(&self, id: &str, version: &str) -> Result<Value, Error> {
        let path = format!(
            "/v2/apps{}/versions/{}",
            app_path(id),
            encode_segment(version)
        );
        let a = self
            .call(Method::GET, &path, None, Retry::Transient)
            .await?;
        if !a.status.is_success() {
            return Err(status_error(&a));
        }
        decode(&a)
    }

    /// The newest `limit` versions of an app, oldest first, each as
    /// `(version, definition)`: the list, then one GET per version kept.
    pub async fn newest_versions(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, Error> {
        let mut list = self.app_versions(id).await?;
        // Marathon lists newest first; its timestamps sort as text.
        list.sort();
        let skip = list.len().saturating_sub(limit);
        let mut out = Vec::with_capacity(list.len() - skip);
        for v in list.into_iter().skip(skip) {
            let spec = self.app_version(id, &v).await?;
            out.push((v, spec));
        }
        Ok(out)
    }

    /// `GET /v2/events` (SSE), filtered to `event_types` (all when empty).
    /// The stream ends when Marathon closes the connection; reconnect and
    /// re-observe then. Marathon's first frame is `event_stream_attached`
    /// (when not filtered out).
    pub async fn events(
        &self,
        event_types: &[&str],
    ) -> Result<impl Stream<Item = Result<MarathonEvent, Error>> + Send + 'static, Error> {
        Ok(self
            .events_as::<Value>(event_types)
            .await?
            .map(|r| r.map(|(event_type, data)| MarathonEvent { event_type, data })))
    }

    /// Like [`events`](Self::events), each payload read as `T`: only what
    /// `T` names is kept. Marathon 1.4–1.7 put the whole root group (every
    /// app) in each deployment event's plan; a reader that wants only ids
    /// shouldn't hold that.
    pub async fn events_as<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        event_types: &[&str],
    ) -> Result<impl Stream<Item = Result<(String, T), Error>> + Send + 'static, Error> {
        let mut url = self.url_for("/v2/events")?;
        if !event_types.is_empty() {
            let mut q = url.query_pairs_mut();
            for t in event_types {
                q.append_pair("event_type", t);
            }
        }
        let timeout = self.inner.cfg.timeout;
        let mut attempt = 0;
        let resp = loop {
            let rb = self
                .authorize(self.inner.http.get(url.clone()))
                .header(ACCEPT, "text/event-stream");
            let started = Instant::now();
            let res = match tokio::time::timeout(timeout, rb.send()).await {
                Ok(r) => r.map_err(|e| self.transport_error(&e)),
                Err(_) => Err(self.timeout_error()),
            };
            let res = match res {
                Ok(r) if r.status().is_success() => Ok(r),
                Ok(r) => {
                    let status = r.status();
                    let body = tokio::time::timeout(timeout, r.text())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    Err(status_error(&Answer { status, body }))
                }
                Err(e) => Err(e),
            };
            debug!(
                path = "/v2/events",
                attempt,
                elapsed_ms = started.elapsed().as_millis() as u64,
                ok = res.is_ok(),
                "marathon event stream"
            );
            match res {
                Ok(r) => break r,
                Err(e) if e.is_transient() && attempt < self.inner.cfg.max_retries => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let base = self.inner.base.clone();
        let stream = resp.bytes_stream().eventsource().filter_map(move |r| {
            let out = match r {
                Ok(ev) => {
                    if ev.data.trim().is_empty() {
                        None
                    } else {
                        match serde_json::from_str::<T>(&ev.data) {
                            Ok(data) => {
                                let event_type = if ev.event.is_empty() || ev.event == "message" {
                                    #[derive(serde::Deserialize)]
                                    struct Kind {
                                        #[serde(rename = "eventType")]
                                        event_type: Option<String>,
                                    }
                                    serde_json::from_str::<Kind>(&ev.data)
                                        .ok()
                                        .and_then(|k| k.event_type)
                                        .unwrap_or_else(|| "message".to_string())
                                } else {
                                    ev.event
                                };
                                Some(Ok((event_type, data)))
                            }
                            Err(e) => Some(Err(Error::Decode {
                                message: format!("event {:?}: {e}", ev.event),
                            })),
                        }
                    }
                }
                Err(eventsource_stream::EventStreamError::Transport(e)) => {
                    Some(Err(Error::Connect {
                        url: base.clone(),
                        message: format!("event stream broken: {}", error_chain(&e)),
                    }))
                }
                Err(e) => Some(Err(Error::Decode {
                    message: format!("event stream: {e}"),
                })),
            };
            futures::future::ready(out)
        });
        Ok(stream)
    }

    // ---- internals ----

    fn url_for(&self, path_and_query: &str) -> Result<Url, Error> {
        Url::parse(&format!("{}{}", self.inner.base, path_and_query))
            .map_err(|e| Error::Config(format!("URL for {path_and_query}: {e}")))
    }

    fn authorize(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.inner.auth {
            Auth::None => rb,
            Auth::Basic { user, password } => rb.basic_auth(user, Some(password.expose())),
            Auth::Token(t) => match HeaderValue::from_str(&format!("token={}", t.expose())) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    rb.header(AUTHORIZATION, v)
                }
                // Checked in `new`.
                Err(_) => rb,
            },
        }
    }

    fn timeout_error(&self) -> Error {
        Error::Timeout {
            url: self.inner.base.clone(),
            timeout: self.inner.cfg.timeout,
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return self.timeout_error();
        }
        // reqwest's message names the URL; ours has no credentials in it.
        Error::Connect {
            url: self.inner.base.clone(),
            message: error_chain(e),
        }
    }

    /// The pause before retry number `attempt + 1`: base·2^attempt, ±50 %,
    /// capped at 30 s.
    fn backoff(&self, attempt: u32) -> Duration {
        jittered(self.inner.cfg.backoff, attempt, Duration::from_secs(30))
    }

    /// One request, sent once.
    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Error> {
        let url = self.url_for(path)?;
        let mut rb = self
            .authorize(self.inner.http.request(method.clone(), url))
            .header(ACCEPT, "application/json")
            .timeout(self.inner.cfg.timeout);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| self.transport_error(&e))?;
        Ok(Answer { status, body })
    }

    /// A request, retried per `retry`. Returns any HTTP answer; transport
    /// failures (and, after the last retry, 5xx answers) as they are.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Answer, Error> {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let res = self.send_once(&method, path, body).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let transient = match &res {
                Ok(a) => {
                    debug!(%method, path, status = a.status.as_u16(), attempt, elapsed_ms, "marathon");
                    a.status.is_server_error()
                }
                Err(e) => {
                    debug!(%method, path, error = %e, attempt, elapsed_ms, "marathon");
                    e.is_transient()
                }
            };
            if !(transient && retry == Retry::Transient && attempt < self.inner.cfg.max_retries) {
                return res;
            }
            let pause = self.backoff(attempt);
            debug!(%method, path, attempt, pause_ms = pause.as_millis() as u64, "marathon: retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// A write to an app: never retried, but a 409 "locked" waits for the
    /// locking deployments to finish and tries once more.
    async fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<DeploymentRef, Error> {
        let a = self.call(method.clone(), path, body, Retry::Never).await?;
        let deployments = match locked_by(&a) {
            Some(ids) => ids,
            None => return deployment_result(&a),
        };
        debug!(%method, path, ?deployments, "marathon: app locked, waiting for deployments");
        self.wait_deployments_gone(&deployments).await?;
        let a = self.call(method, path, body, Retry::Never).await?;
        match locked_by(&a) {
            Some(deployments) => Err(Error::Locked { deployments }),
            None => deployment_result(&a),
        }
    }

    /// Polls `/v2/deployments` until none of `ids` is listed, up to `lock_wait`.
    async fn wait_deployments_gone(&self, ids: &[String]) -> Result<(), Error> {
        let deadline = Instant::now() + self.inner.cfg.lock_wait;
        let cap = Duration::from_secs(5);
        let mut attempt = 0u32;
        loop {
            let running = self.deployments().await?;
            let still: Vec<String> = ids
                .iter()
                .filter(|id| running.iter().any(|d| &d.id == *id))
                .cloned()
                .collect();
            if still.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Locked { deployments: still });
            }
            let pause = jittered(self.inner.cfg.backoff, attempt, cap).min(deadline - now);
            tokio::time::sleep(pause).await;
            attempt = attempt.saturating_add(1);
        }
    }
}

fn jittered(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let factor: f64 = rand::rng().random_range(0.5..1.5);
    exp.mul_f64(factor).min(cap)
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
fn app_path(id: &str) -> String {
    id.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", encode_segment(s)))
        .collect()
}

/// Percent-encodes everything but unreserved characters and `:` (versions
/// are ISO timestamps).
fn encode_segment(s: &str) -> String {
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

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let h = (bytes[i + 1] as char).to_digit(16)?;
            let l = (bytes[i + 2] as char).to_digit(16)?;
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An error and its sources, without reqwest's URL (ours is in the variant).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        // reqwest's own line ("error sending request for url (…)") adds nothing.
        if !s.starts_with("error sending request") && !parts.contains(&s) {
            parts.push(s);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        "request failed".into()
    } else {
        parts.join(": ")
    }
}

fn decode<T: serde::de::DeserializeOwned>(a: &Answer) -> Result<T, Error> {
    serde_json::from_str(&a.body).map_err(|e| Error::Decode {
        message: format!("{e} in a {} answer", a.status.as_u16()),
    })
}

/// The deployment ids of a 409 "locked by deployment" answer.
fn locked_by(a: &Answer) -> Option<Vec<String>> {
    if a.status != StatusCode::CONFLICT {
        return None;
    }
    let body: Value = serde_json::from_str(&a.body).ok()?;
    let ds = body.get("deployments")?.as_array()?;
    Some(
        ds.iter()
            .filter_map(|d| {
                d.get("id")
                    .and_then(Value::as_str)
                    .or_else(|| d.as_str())
                    .map(str::to_string)
            })
            .collect(),
    )
}

fn deployment_result(a: &Answer) -> Result<DeploymentRef, Error> {
    if a.status.is_success() {
        decode(a)
    } else {
        Err(status_error(a))
    }
}

/// Marathon's `message` (plus validation `details`) or the start of the body.
fn status_error(a: &Answer) -> Error {
    let status = a.status.as_u16();
    let message = match serde_json::from_str::<Value>(&a.body) {
        Ok(v) => {
            let mut m = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match v.get("details") {
                Some(Value::Array(ds)) => {
                    for d in ds {
                        let path = d.get("path").and_then(Value::as_str).unwrap_or("");
                        let errs: Vec<&str> = d
                            .get("errors")
                            .and_then(Value::as_array)
                            .map(|es| es.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        m.push_str(&format!("; {path}: {}", errs.join(", ")));
                    }
                }
                Some(Value::String(s)) => m.push_str(&format!("; {s}")),
                _ => {}
            }
            if m.is_empty() { short(&a.body) } else { m }
        }
        Err(_) => short(&a.body),
    };
    let message = if message.is_empty() {
        a.status.canonical_reason().unwrap_or("").to_string()
    } else {
        message
    };
    if status == 404 {
        return Error::NotFound { message };
    }
    Error::Status { status, message }
}

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = MarathonClient::new(ClientConfig {
            url: "http://alice:hunter2@marathon.example:8080/".into(),
            ..ClientConfig::default()
        })
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(c.url(), "http://marathon.example:8080");
        let cfg = ClientConfig {
            auth: Auth::Token(Secret::new("tok3n".into())),
            url: "https://bob:s3cret@m.example/service/marathon".into(),
            ..ClientConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("tok3n") && !dbg.contains("s3cret"), "{dbg}");
        assert!(
            dbg.contains("https://***@m.example/service/marathon"),
            "{dbg}"
        );
    }

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
        assert_eq!(percent_decode("p%40ss").as_deref(), Some("p@ss"));
    }

    #[test]
    fn read_only_fields_are_stripped() {
        let v = strip_read_only(
            &json!({"id": "/a", "cmd": "x", "version": "v", "versionInfo": {},
            "tasksRunning": 1, "deployments": [], "tasks": [], "lastTaskFailure": {}}),
        );
        assert_eq!(v, json!({"id": "/a", "cmd": "x"}));
    }

    #[test]
    fn status_errors_carry_marathon_messages() {
        let a = Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: r#"{"message":"Object is not valid","details":[{"path":"/cpus","errors":["error.min"]}]}"#.into(),
        };
        let e = status_error(&a);
        assert_eq!(
            e.to_string(),
            "Marathon answered 422: Object is not valid; /cpus: error.min"
        );
        assert!(!e.is_transient());
        let a = Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: "<html>down</html>".into(),
        };
        assert!(status_error(&a).is_transient());
        let a = Answer {
            status: StatusCode::CONFLICT,
            body: r#"{"message":"App is locked","deployments":[{"id":"d1"},{"id":"d2"}]}"#.into(),
        };
        assert_eq!(
            locked_by(&a),
            Some(vec!["d1".to_string(), "d2".to_string()])
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 0..40 {
            let d = jittered(base, attempt, Duration::from_secs(30));
            assert!(d <= Duration::from_secs(30));
            if attempt < 5 {
                let exp = base * (1 << attempt);
                assert!(d >= exp / 2 && d <= exp * 3 / 2, "{attempt}: {d:?}");
            }
        }
    }
}
