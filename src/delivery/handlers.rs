//! The config server's HTTP side: parse, decide (the pure checks in
//! [`super::login`] and [`super::token`]), answer. Bodies and headers are
//! bounded; a watch waits on the bundles' change notification, at most
//! [`MAX_WAIT`] plus jitter, outside the daemon's 30 s request timeout.

use super::bundle::{Bundles, MAX_WAIT, jitter, parse_wait};
use super::liveness::{self, Known, Seen};
use super::login::{self, LoginFacts, LoginRequest, PriorUse, Refusal};
use super::token::{self, Claims, TokenError};
use super::{Server, now_ms};
use crate::render::RenderedApp;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// A login or renew body: two ids, far below this.
const MAX_BODY_BYTES: usize = 4 * 1024;
/// The longest file name asked for.
const MAX_NAME_BYTES: usize = 256;
/// Requests other than a watch end within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a file read waits while the loop renders a new commit.
const RENDER_WAIT: Duration = Duration::from_secs(10);

pub(super) type Shared = Arc<Server>;

/// The config server's routes. The watch (`GET /v1/config`) has its own
/// bound (the capped `wait`); the others the usual request timeout.
pub fn router(server: Arc<Server>) -> Router {
    let bounded = Router::new()
        .route("/v1/login", post(login))
        .route("/v1/token/renew", post(renew))
        // A file's name may hold `/` (`conf.d/site.conf`).
        .route("/v1/config/files/{*name}", get(file))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    Router::new()
        .route("/v1/config", get(config))
        .merge(bounded)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        // Merged after the limits above: a report has its own.
        .merge(super::report::router())
        .with_state(server)
}

/// A refusal: counted, logged without the token, answered as JSON.
pub(super) fn refuse(
    s: &Server,
    r: Refusal,
    task: Option<&str>,
    caller: Option<IpAddr>,
) -> Response {
    s.metrics
        .refusals
        .get_or_create(&super::ReasonLabels {
            reason: r.reason().into(),
        })
        .inc();
    tracing::info!(
        reason = r.reason(),
        task = task.unwrap_or("-"),
        caller = caller.map(|c| c.to_string()).as_deref().unwrap_or("-"),
        "config request refused"
    );
    let code = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut resp = (
        code,
        axum::Json(json!({"message": r.message(), "reason": r.reason()})),
    )
        .into_response();
    if code == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    resp
}

/// A login refused to a caller not on the task's host: counted and logged
/// (warn) with its reason, answered with none.
fn refuse_quietly(s: &Server, r: &Refusal, task: Option<&str>, caller: IpAddr) -> Response {
    s.metrics
        .refusals
        .get_or_create(&super::ReasonLabels {
            reason: r.reason().into(),
        })
        .inc();
    tracing::warn!(
        reason = r.reason(),
        task = task.unwrap_or("-"),
        %caller,
        "a login from off the task's host refused"
    );
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({
            "message": "the login is refused: it must come from the task's host, for a task that runs; the server's log says more",
            "reason": "refused",
        })),
    )
        .into_response()
}

/// A 503 (`busy`): try again shortly.
pub(super) fn unavailable(s: &Server, why: impl Into<String>) -> Response {
    refuse(s, Refusal::Busy(why.into()), None, None)
}

/// Takes one login or renewal from the caller's budget: a 429 with
/// `Retry-After` when it is spent.
fn throttle(s: &Server, caller: IpAddr) -> Option<Response> {
    let wait = s.limiter.lock().take(caller, std::time::Instant::now());
    wait.err().map(|wait| {
        let mut resp = refuse(s, Refusal::RateLimited, None, Some(caller));
        let secs = super::limit::retry_after_secs(wait);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        resp
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LoginBody {
    task_id: String,
    app_id: String,
}

fn parse_login(body: &[u8]) -> Result<LoginRequest, Refusal> {
    let b: LoginBody = serde_json::from_slice(body)
        .map_err(|_| Refusal::BadRequest("the body is not a login request".into()))?;
    login::check_id("taskId", &b.task_id).map_err(Refusal::BadRequest)?;
    login::check_id("appId", &b.app_id).map_err(Refusal::BadRequest)?;
    Ok(LoginRequest {
        task_id: b.task_id,
        app_id: b.app_id,
    })
}

/// A login or renewal a browser could be made to send from another site.
pub(super) fn cross_site(s: &Server, headers: &HeaderMap, caller: IpAddr) -> Option<Response> {
    let why = super::browser::same_origin(headers).err()?;
    Some(refuse(s, Refusal::CrossSite(why), None, Some(caller)))
}

async fn login(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = peer.ip().to_canonical();
    if let Some(resp) = throttle(&s, caller) {
        return resp;
    }
    if let Some(resp) = cross_site(&s, &headers, caller) {
        return resp;
    }
    // A JSON body needs a CORS preflight, which this server never grants.
    if !super::browser::is_json(&headers) {
        return refuse(&s, Refusal::NotJson, None, Some(caller));
    }
    let req = match parse_login(&body) {
        Ok(r) => r,
        Err(r) => return refuse(&s, r, None, Some(caller)),
    };
    let task = Some(req.task_id.as_str());
    let bundles = s.bundles.borrow().clone();
    let Some(bundle) = bundles.apps.get(&req.app_id).cloned() else {
        return refuse(&s, Refusal::UnknownApp, task, Some(caller));
    };
    // A made-up id costs no Marathon read.
    if !login::task_fits_app(&req.task_id, &req.app_id) {
        return refuse(&s, Refusal::UnknownTask, task, Some(caller));
    }
    let client = match s.marathon_of(&bundle.env) {
        Ok(c) => c,
        Err(r) => return refuse(&s, r, task, Some(caller)),
    };
    let shows = |a: &serde_json::Value| login::app_facts(a, &req.task_id).task.is_some();
    let read = s.app_reads.read(&req.app_id, shows, || async {
        let Ok(_permit) = s.login_checks.try_acquire() else {
            return Err("too many logins at once".to_string());
        };
        client.get_app(&req.app_id).await.map_err(|e| {
            tracing::warn!(error = %e, "config server: Marathon did not answer a login's check");
            "Marathon is not answering".to_string()
        })
    });
    let app = match read.await {
        Ok(a) => a,
        Err(why) => return unavailable(&s, why),
    };
    let facts = app.map(|a| login::app_facts(&a, &req.task_id));
    let mut task_addrs: Vec<IpAddr> = Vec::new();
    if s.settings.check_address
        && let Some(f) = facts.as_ref()
        && let Some(t) = f.task.as_ref()
    {
        let host = s.resolver.addrs(&t.host).await;
        task_addrs = login::task_addresses(f, t, &host);
    }
    let prior = s.used.prior(&req.task_id);
    let now = now_ms();
    let decided = login::decide(&LoginFacts {
        request: &req,
        env: &bundle.env,
        app: facts.as_ref(),
        now_ms: now,
        caller,
        task_addrs: &task_addrs,
        prior: prior.as_ref(),
        grace: s.settings.login_grace,
        check_address: s.settings.check_address,
    });
    if let Err(r) = decided {
        if let (Refusal::Replay, Some(p)) = (&r, &prior) {
            replayed(&req.task_id, p, caller);
        }
        // Only a caller on the task's host learns why: anyone else would
        // learn which task ids exist, their state and age.
        if s.settings.check_address && !task_addrs.contains(&caller) {
            return refuse_quietly(&s, &r, task, caller);
        }
        return refuse(&s, r, task, Some(caller));
    }
    // Recorded durably before the token goes out; the store has the last
    // word when two logins of one id race.
    let used = s.used.clone();
    let (id, first) = (
        req.task_id.clone(),
        PriorUse {
            at_ms: now,
            addr: caller,
        },
    );
    match tokio::task::spawn_blocking(move || used.record(&id, first)).await {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(p))) => {
            replayed(&req.task_id, &p, caller);
            return refuse(&s, Refusal::Replay, task, Some(caller));
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "config server: cannot record a login");
            return unavailable(&s, "the config server cannot record logins now");
        }
        Err(e) => return unavailable(&s, format!("recording the login: {e}")),
    }
    s.remember(&req.task_id, Seen::Live);
    s.metrics.logins.inc();
    tracing::info!(task = %req.task_id, app = %req.app_id, env = %bundle.env, %caller, "task logged in");
    // Bound to the login's address: a token copied off the host is useless.
    let addr = s.settings.check_address.then_some(caller);
    grant(&s, bundle.env.clone(), req.app_id, req.task_id, addr)
}

/// A second login of one task id: someone else may hold its token.
fn replayed(task: &str, prior: &PriorUse, caller: IpAddr) {
    tracing::warn!(
        task,
        first_address = %prior.addr,
        address = %caller,
        "a second login of a task id refused"
    );
}

/// A fresh token for the task, as the answer to a login or a renew.
fn grant(s: &Server, env: String, app: String, task: String, addr: Option<IpAddr>) -> Response {
    // Rounded up to the second: a token lives at least the TTL.
    let ttl_ms = i64::try_from(s.settings.token_ttl.as_millis()).unwrap_or(3_600_000);
    let exp = (now_ms() + ttl_ms + 999) / 1000;
    let claims = Claims {
        env,
        app,
        task,
        exp,
        addr,
    };
    let expires = chrono::DateTime::from_timestamp(exp, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let token = token::sign(&s.key, &claims);
    // The task's report lives as long as its token.
    s.reports.lock().renewed(&claims.task, exp);
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(json!({
            "token": token,
            "expiresAt": expires,
            "env": claims.env,
            "appId": claims.app,
            "taskId": claims.task,
        })),
    )
        .into_response()
}

async fn renew(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let caller = peer.ip().to_canonical();
    if let Some(resp) = throttle(&s, caller) {
        return resp;
    }
    // (No body, so no Content-Type: its Bearer header already needs a
    // preflight a browser never gets.)
    if let Some(resp) = cross_site(&s, &headers, caller) {
        return resp;
    }
    match authenticate(&s, &headers, caller, true).await {
        Ok(c) => grant(&s, c.env, c.app, c.task, c.addr),
        Err(resp) => resp,
    }
}

/// The token's claims, once its signature, expiry and task are checked.
/// `recheck`: ask Marathon now rather than trust a recent answer.
pub(super) async fn authenticate(
    s: &Server,
    headers: &HeaderMap,
    caller: IpAddr,
    recheck: bool,
) -> Result<Claims, Response> {
    authenticate_bearer(s, bearer(headers), caller, recheck).await
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?;
    value.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// [`authenticate`] of the token `raw` (`None`: none was sent).
async fn authenticate_bearer(
    s: &Server,
    raw: Option<&str>,
    caller: IpAddr,
    recheck: bool,
) -> Result<Claims, Response> {
    let Some(raw) = raw else {
        return Err(refuse(s, Refusal::MissingToken, None, None));
    };
    let claims = match token::verify(&s.key, raw, now_ms() / 1000) {
        Ok(c) => c,
        Err(TokenError::Invalid) => return Err(refuse(s, Refusal::BadToken, None, None)),
        Err(TokenError::Expired) => return Err(refuse(s, Refusal::ExpiredToken, None, None)),
    };
    // A token without an address was issued with the check off.
    if s.settings.check_address && claims.addr.is_some_and(|a| a != caller) {
        return Err(refuse(
            s,
            Refusal::AddressMismatch,
            Some(&claims.task),
            Some(caller),
        ));
    }
    let known = s.liveness.lock().get(&claims.task).copied();
    match known {
        Some((_, Known::Dead)) => {
            return Err(refuse(s, Refusal::TaskGone, Some(&claims.task), None));
        }
        // A doubt is asked about again on the same schedule as a live task.
        Some((at, _)) if !recheck && at.elapsed() < s.settings.task_recheck => {
            return Ok(claims);
        }
        _ => {}
    }
    let client = match s.marathon_of(&claims.env) {
        Ok(c) => c,
        Err(r) => return Err(refuse(s, r, Some(&claims.task), None)),
    };
    // A renewal reuses an answer of the last second that shows the task
    // live, and shares a read in flight.
    let shows_live =
        |a: &serde_json::Value| liveness::seen(Some(a), &claims.app, &claims.task) == Seen::Live;
    let read = s.app_reads.read(&claims.app, shows_live, || async {
        client.get_app(&claims.app).await.map_err(|e| e.to_string())
    });
    match read.await {
        Ok(app) => {
            let seen = liveness::seen(app.as_deref(), &claims.app, &claims.task);
            match s.remember(&claims.task, seen) {
                Known::Live => Ok(claims),
                Known::Dead => Err(refuse(s, Refusal::TaskGone, Some(&claims.task), None)),
                // A read goes on; a token is extended only for a live task.
                Known::Doubt { .. } if !recheck => Ok(claims),
                Known::Doubt { .. } => Err(unavailable(
                    s,
                    "Marathon does not list the task as running now",
                )),
            }
        }
        // A read is served on a good token while Marathon is away; a token
        // is extended only when Marathon says the task runs.
        Err(e) if !recheck => {
            tracing::debug!(error = %e, "config server: Marathon did not answer a liveness check");
            Ok(claims)
        }
        Err(e) => {
            tracing::warn!(error = %e, "config server: Marathon did not answer a renew's check");
            Err(unavailable(s, "Marathon is not answering"))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigQuery {
    index: Option<u64>,
    wait: Option<String>,
    /// The app the caller thinks it is: refused when it is not the token's.
    app_id: Option<String>,
}

/// The token's claims, checked against the app the caller names.
async fn caller(
    s: &Server,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: Result<Query<ConfigQuery>, QueryRejection>,
) -> Result<(Claims, ConfigQuery), Response> {
    let Ok(Query(q)) = query else {
        return Err(refuse(
            s,
            Refusal::BadRequest("the query takes index, wait and appId only".into()),
            None,
            None,
        ));
    };
    let claims = authenticate(s, headers, peer.ip().to_canonical(), false).await?;
    if q.app_id.as_ref().is_some_and(|a| *a != claims.app) {
        return Err(refuse(s, Refusal::OtherApp, Some(&claims.task), None));
    }
    Ok((claims, q))
}

/// Counts a blocked watch while it waits.
struct Watching<'a>(&'a Server);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.metrics.watchers.dec();
    }
}

async fn config(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<ConfigQuery>, QueryRejection>,
) -> Response {
    // The checks are boxed: a watch's future keeps the size of its largest
    // state for as long as it waits, and the checks' (a Marathon read) are
    // several times the size of the wait's.
    let (claims, q) = match Box::pin(caller(&s, peer, &headers, query)).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let wait = match q.wait.as_deref().map(parse_wait).transpose() {
        Ok(w) => w.unwrap_or(MAX_WAIT),
        Err(why) => return refuse(&s, Refusal::BadRequest(why), Some(&claims.task), None),
    };
    // The request's header values are slices of the buffer hyper read them
    // into: holding them through a wait of minutes would pin that buffer
    // (8 KB) per watcher, beside the fresh one hyper reads the next request
    // into. The token is all a wait needs again.
    let token = bearer(&headers).map(str::to_owned);
    drop(headers);
    let mut rx = s.bundles.clone();
    if let Some(n) = q.index.filter(|n| *n > 0) {
        let Some(_slot) = s.watches.enter(&claims.task) else {
            let mut resp = refuse(&s, Refusal::TooManyWatches, Some(&claims.task), None);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return resp;
        };
        s.metrics.watchers.inc();
        let _counted = Watching(&s);
        let mut stopping = s.stopping.subscribe();
        let deadline = tokio::time::Instant::now() + wait + jitter(wait);
        let mut waited = false;
        loop {
            // An index past N, or below it (Consul: a reset), answers now.
            let current = rx
                .borrow_and_update()
                .apps
                .get(&claims.app)
                .map(|b| b.index);
            if current != Some(n) || *stopping.borrow_and_update() {
                break;
            }
            waited = true;
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                _ = stopping.changed() => {},
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        // Minutes may have passed: the token may have expired, or its task
        // ended, meanwhile.
        if waited
            && let Err(resp) = Box::pin(authenticate_bearer(
                &s,
                token.as_deref(),
                peer.ip().to_canonical(),
                false,
            ))
            .await
        {
            return resp;
        }
    }
    let bundles: Arc<Bundles> = rx.borrow().clone();
    match bundles.apps.get(&claims.app) {
        Some(b) if b.env == claims.env => {
            let index = HeaderValue::from(b.index);
            (
                [
                    (header::HeaderName::from_static("x-pacer-index"), index),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                axum::Json(&**b),
            )
                .into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": format!("no config bundle for {} in {}", claims.app, claims.env)})),
        )
            .into_response(),
    }
}

async fn file(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<ConfigQuery>, QueryRejection>,
) -> Response {
    let (claims, _) = match caller(&s, peer, &headers, query).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if name.len() > MAX_NAME_BYTES {
        return refuse(
            &s,
            Refusal::BadRequest(format!("a file name is at most {MAX_NAME_BYTES} bytes")),
            Some(&claims.task),
            None,
        );
    }
    let mut reader = s.published.clone();
    let deadline = tokio::time::Instant::now() + RENDER_WAIT;
    let snap = loop {
        let snap = reader.latest();
        // While a render has the desired state on loan, wait for it.
        if !(snap.desired.is_empty() && snap.commit.is_some()) {
            break snap;
        }
        tokio::select! {
            alive = reader.changed() => if !alive { break snap },
            _ = tokio::time::sleep_until(deadline) => {
                return unavailable(&s, "a new commit is being rendered");
            }
        }
    };
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"message": format!("{}'s bundle has no file of that name", claims.app)}),
            ),
        )
            .into_response()
    };
    let Some(env) = snap.desired.get(&claims.env) else {
        return not_found();
    };
    let group = env.settings.group.trim_end_matches('/');
    let Some(path) = claims
        .app
        .strip_prefix(group)
        .and_then(|p| p.strip_prefix('/'))
    else {
        return not_found();
    };
    let Some(app) = env.apps.get(path) else {
        return not_found();
    };
    let app: &RenderedApp = app;
    let Some(f) = app.files.get(&name) else {
        return not_found();
    };
    let hash = HeaderValue::from_str(&f.digest.0).unwrap_or(HeaderValue::from_static(""));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::HeaderName::from_static("x-pacer-hash"), hash),
        ],
        Bytes::copy_from_slice(&f.content),
    )
        .into_response()
}
