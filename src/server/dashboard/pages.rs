//! The dashboard's handlers: read the caller's level, take one snapshot,
//! build the page's view ([`super::view`], [`super::app`]) and render it.

use super::super::auth::{self, Level, Need};
use super::super::{Shared, guard, json_write, refuse, session};
use super::{app, view};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use minijinja::value::Serde;
use minijinja::{Environment, context};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

const TEMPLATES: [(&str, &str); 8] = [
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("apps.html", include_str!("templates/apps.html")),
    ("app.html", include_str!("templates/app.html")),
    ("history.html", include_str!("templates/history.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("error.html", include_str!("templates/error.html")),
];

/// The templates, parsed once. Names end in `.html`: minijinja escapes
/// every value for HTML.
fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_filter("when", when);
        for (name, text) in TEMPLATES {
            // The templates are ours and tested: a broken one is a build
            // mistake, caught by the unit tests before it ships.
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("dashboard template {name}: {e}"));
        }
        env
    })
}

/// An RFC 3339 time as people read it (`2026-12-04 18:32:45 UTC`); `—`
/// when absent, the text itself when it is not a time.
fn when(v: Option<String>) -> String {
    let Some(v) = v else { return "—".into() };
    match chrono::DateTime::parse_from_rfc3339(&v) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        Err(_) => v,
    }
}

/// The caller's level: a bearer token, a session, or none.
fn level_of(state: &Shared, headers: &HeaderMap) -> Result<Level, auth::Refusal> {
    auth::decide_request(Need::View, headers, &state.access.tokens, guard::now_s())
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Admin => "admin",
        Level::Read => "read",
        Level::Anonymous => "anonymous",
    }
}

fn signin_on(state: &Shared) -> bool {
    state.access.tokens.admin.is_some() || state.access.tokens.read.is_some()
}

fn html(code: StatusCode, body: String, seq: u64) -> Response {
    (
        code,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                HeaderName::from_static("x-pacer-seq"),
                HeaderValue::from(seq),
            ),
        ],
        body,
    )
        .into_response()
}

use axum::http::HeaderName;

/// Renders `name` with `ctx`: the whole page, or only `<main>`'s content
/// when the script asks for a fragment.
fn render(headers: &HeaderMap, name: &str, ctx: minijinja::Value, seq: u64) -> Response {
    render_with(headers, StatusCode::OK, name, ctx, seq)
}

fn render_with(
    headers: &HeaderMap,
    code: StatusCode,
    name: &str,
    ctx: minijinja::Value,
    seq: u64,
) -> Response {
    // `base.html` leaves out all but `<main>`'s content for a fragment.
    let fragment = headers.contains_key("x-pacer-fragment");
    let ctx = context! { fragment, ..ctx };
    let out = templates().get_template(name).and_then(|t| t.render(&ctx));
    match out {
        Ok(body) => {
            let mut resp = html(code, body, seq);
            // The script shows who the page speaks to from this.
            if let Some(level) = ctx
                .get_attr("level")
                .ok()
                .and_then(|l| l.as_str().and_then(|s| HeaderValue::from_str(s).ok()))
            {
                resp.headers_mut().insert("x-pacer-level", level);
            }
            resp
        }
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a dashboard page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

fn error_page(
    state: &Shared,
    headers: &HeaderMap,
    level: Level,
    code: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    let ctx = context! {
        level => level_name(level), signin => signin_on(state), page => "",
        seq => 0, title, message,
    };
    render_with(headers, code, "error.html", ctx, 0)
}

pub(super) async fn overview(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let level = match level_of(&state, &headers) {
        Ok(l) => l,
        Err(r) => return guard::refused(&state, "ui", r),
    };
    let snap = state.published.latest();
    let o = view::overview(&snap, level != Level::Anonymous);
    let ctx = context! {
        level => level_name(level), signin => signin_on(&state), page => "overview",
        seq => snap.seq, o => Serde(&o),
    };
    render(&headers, "overview.html", ctx, snap.seq)
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The list's URL with `q`'s filters, for the pager to add `&page=`.
fn list_link(q: &view::Query) -> String {
    let mut link = String::from("/ui/apps?per=");
    link.push_str(&q.per.to_string());
    for (k, v) in [("env", &q.env), ("status", &q.status), ("q", &q.q)] {
        if let Some(v) = v {
            link.push_str(&format!("&{k}={}", encode(v)));
        }
    }
    let sort = match q.sort {
        view::Sort::Attention => "attention",
        view::Sort::Name => "name",
        view::Sort::Recent => "recent",
    };
    link.push_str("&sort=");
    link.push_str(sort);
    link
}

pub(super) async fn apps(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let level = match level_of(&state, &headers) {
        Ok(l) => l,
        Err(r) => return guard::refused(&state, "ui", r),
    };
    let q = match view::parse_query(&params) {
        Ok(q) => q,
        Err(why) => {
            return error_page(
                &state,
                &headers,
                level,
                StatusCode::BAD_REQUEST,
                "Bad filter",
                &why,
            );
        }
    };
    let snap = state.published.latest();
    let p = view::list(&snap, &q);
    let ctx = context! {
        level => level_name(level), signin => signin_on(&state), page => "apps",
        seq => snap.seq, link => list_link(&p.query), p => Serde(&p),
    };
    render(&headers, "apps.html", ctx, snap.seq)
}

pub(super) async fn apps_json(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = level_of(&state, &headers) {
        return guard::refused(&state, "ui", r);
    }
    match view::parse_query(&params) {
        Ok(q) => {
            let snap = state.published.latest();
            axum::Json(view::list(&snap, &q)).into_response()
        }
        Err(why) => refuse(StatusCode::BAD_REQUEST, why),
    }
}

/// An app's page and its history: which app, and the page of its tasks.
#[derive(serde::Deserialize)]
pub(super) struct AppParams {
    env: String,
    app: String,
    tasks: Option<usize>,
}

pub(super) async fn app(
    State(state): State<Shared>,
    headers: HeaderMap,
    params: Result<Query<AppParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let level = match level_of(&state, &headers) {
        Ok(l) => l,
        Err(r) => return guard::refused(&state, "ui", r),
    };
    let Ok(Query(p)) = params else {
        let why = "name the app: /ui/app?env=ENV&app=APP";
        return error_page(
            &state,
            &headers,
            level,
            StatusCode::BAD_REQUEST,
            "Which app?",
            why,
        );
    };
    let snap = state.published.latest();
    let id = snap
        .status
        .environments
        .get(&p.env)
        .and_then(|e| e.apps.get(&p.app))
        .map(|a| a.id.clone());
    let full = level != Level::Anonymous;
    // Task ids are for a session: not read for anyone else.
    let (delivery, tasks) = match (&state.delivery, &id) {
        (Some(d), Some(id)) => (
            d.delivery_of(id),
            if full {
                d.tasks_of(&p.env, id)
            } else {
                Vec::new()
            },
        ),
        _ => (None, Vec::new()),
    };
    let page = p.tasks.unwrap_or(1);
    let Some(a) = app::app_view(&snap, &p.env, &p.app, full, delivery, tasks, page) else {
        let why = "No such app in the environment at the commit the daemon runs.";
        return error_page(
            &state,
            &headers,
            level,
            StatusCode::NOT_FOUND,
            "Not found",
            why,
        );
    };
    let self_link = format!("/ui/app?env={}&app={}", encode(&p.env), encode(&p.app));
    let ctx = context! {
        level => level_name(level), signin => signin_on(&state), page => "app",
        seq => snap.seq, self_link, a => Serde(&a),
    };
    render(&headers, "app.html", ctx, snap.seq)
}

pub(super) async fn history(
    State(state): State<Shared>,
    headers: HeaderMap,
    params: Result<Query<AppParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let level = match level_of(&state, &headers) {
        Ok(l) => l,
        Err(r) => return guard::refused(&state, "ui", r),
    };
    let fragment = |error: Option<String>, entries: &[serde_json::Value]| {
        let body = templates()
            .get_template("history.html")
            .and_then(|t| t.render(context! { error, entries => Serde(entries) }))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "rendering a history");
                "<p>The history could not be shown.</p>".to_string()
            });
        html(StatusCode::OK, body, 0)
    };
    if level == Level::Anonymous {
        return fragment(Some("sign in to see the history".into()), &[]);
    }
    let Ok(Query(p)) = params else {
        return fragment(Some("name the app: ?env=ENV&app=APP".into()), &[]);
    };
    let snap = state.published.latest();
    let known = snap
        .status
        .environments
        .get(&p.env)
        .is_some_and(|e| e.apps.contains_key(&p.app));
    let Some(h) = state.history.as_ref().filter(|_| known) else {
        return fragment(Some("no history is kept for this app here".into()), &[]);
    };
    match h.of(snap.clone(), &p.env, &p.app).await {
        Ok(entries) => fragment(None, &entries),
        Err(why) => fragment(Some(why), &[]),
    }
}

pub(super) async fn signin(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let level = level_of(&state, &headers).unwrap_or(Level::Anonymous);
    let ctx = context! {
        level => level_name(level), signin => signin_on(&state), page => "signin", seq => 0,
    };
    render(&headers, "signin.html", ctx, 0)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignIn {
    token: String,
}

/// `POST /ui/session` `{"token": …}` (same-origin JSON to a host we answer
/// for): the session for the token's level, which the page keeps in its
/// `sessionStorage` (see [`session`]), or 401.
pub(super) async fn session(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let shape = "{\"token\": …}";
    let f: SignIn = match json_write(&state, &headers, body, "a sign-in", shape) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let now = guard::now_s();
    let issued = HeaderValue::from_str(&format!("Bearer {}", f.token.trim()))
        .ok()
        .and_then(|b| auth::decide(Need::View, Some(&b), &state.access.tokens).ok())
        .and_then(|l| Some((session::issue(&state.access.tokens, l, now)?, l)));
    let Some((value, level)) = issued else {
        state.metrics.api_refusal("ui", "badToken");
        tracing::warn!("dashboard sign-in refused: not a token this daemon knows");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "that is not a token this daemon knows",
        );
    };
    let expires = chrono::DateTime::from_timestamp(now + session::LIFETIME_SECS, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    axum::Json(serde_json::json!({
        "session": value,
        "level": level_name(level),
        "expiresAt": expires,
    }))
    .into_response()
}

pub(super) async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.js" => (
            include_str!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "style.css" => (include_str!("assets/style.css"), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            // Set here, so the dashboard's `no-store` doesn't apply.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// A stream ends after this; the browser reconnects on its own.
const STREAM_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Changes within this are one event.
const COALESCE: Duration = Duration::from_millis(200);

pub(super) async fn events(State(state): State<Shared>, req: axum::extract::Request) -> Response {
    let ip = guard::caller(&req);
    let Some(slot) = state.streams.take(ip) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "30")],
            "too many live dashboards; reload later",
        )
            .into_response();
    };
    let mut reader = state.published.clone();
    let end = tokio::time::Instant::now() + STREAM_LIFETIME;
    // The first event says where the server is now: a page rendered from
    // an older snapshot refreshes at once. Later ones come only for a
    // newer snapshot.
    let first = reader.seen();
    let stream = futures::stream::unfold(
        (reader, None::<u64>, slot),
        move |(mut reader, sent, slot)| async move {
            let seq = match sent {
                None => first,
                Some(sent) => loop {
                    let changed = tokio::time::timeout_at(end, reader.changed()).await;
                    if !matches!(changed, Ok(true)) {
                        return None;
                    }
                    tokio::time::sleep(COALESCE).await;
                    let seq = reader.seen();
                    if seq > sent {
                        break seq;
                    }
                },
            };
            let event = Event::default().event("changed").data(seq.to_string());
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (reader, Some(seq), slot),
            ))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
