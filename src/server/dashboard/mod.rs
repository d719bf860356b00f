//! The web dashboard, served by `pacer serve` at `/` on the same listener.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the overview: every environment, what needs a human first |
//! | `GET /ui/apps?env=&status=&q=&sort=&page=&per=` | the app list, one page at a time ([`view::list`]) |
//! | `GET /api/v1/apps?…` | the same page as JSON |
//! | `GET /ui/app?env=&app=&tasks=` | one app: status, diff, deployment, bundle, tasks |
//! | `GET /ui/app/history?env=&app=` | its history, loaded after the page (a session only; [`HistorySource`]) |
//! | `GET /ui/events` | server-sent events: `changed` with the snapshot's number |
//! | `GET /ui/signin`, `POST /ui/session`, `POST /ui/signout` | sessions ([`super::session`]) |
//! | `GET /ui/assets/{app.js,style.css}` | built into the binary |
//!
//! Pages are rendered on the server from the published snapshot alone
//! (the history excepted, see [`HistorySource`]): a page of the list costs the
//! same at 10 or 10,000 apps but for one pass over the statuses. The
//! script only keeps a page fresh: on `changed` it fetches the same URL
//! with `X-Pacer-Fragment: 1` and swaps `<main>`. Actions (retry an app,
//! apply an environment's plan) post to the operator API with the admin
//! session and ask for confirmation first.
//!
//! Every answer carries a strict Content-Security-Policy (no inline
//! script, nothing from elsewhere), `X-Content-Type-Options: nosniff`,
//! `frame-ancestors 'none'` and `Cache-Control: no-store`. Every value
//! from the repo or Marathon is escaped by the templates (auto-escape).

pub mod app;
mod pages;
pub mod view;

use super::Shared;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};

/// Where an app's history comes from (`reconcile::history` reads the
/// mirror and Marathon): each entry as `pacer history --format json`
/// shows it, newest first, or why not.
pub trait HistorySource: Send + Sync {
    fn of<'a>(
        &'a self,
        snap: std::sync::Arc<crate::status::published::Published>,
        env: &'a str,
        app: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<std::sync::Arc<Vec<serde_json::Value>>, String>>;
}

/// The most event streams at once; past it, `/ui/events` answers 503 and
/// the page works without live updates.
pub const MAX_STREAMS: usize = 512;

/// The routes; `shared` is the server's state.
pub fn router(shared: Shared) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/ui/apps", get(pages::apps))
        .route("/api/v1/apps", get(pages::apps_json))
        .route("/ui/app", get(pages::app))
        .route("/ui/app/history", get(pages::history))
        .route("/ui/signin", get(pages::signin))
        .route("/ui/session", post(pages::session))
        .route("/ui/signout", post(pages::signout))
        .route("/ui/assets/{name}", get(pages::asset))
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            super::REQUEST_TIMEOUT,
        ));
    // The stream lives for minutes: outside the request timeout, bounded
    // by its own lifetime (see `pages::events`).
    Router::new()
        .merge(pages)
        .route("/ui/events", get(pages::events))
        .layer(axum::middleware::map_response(headers))
        .with_state(shared)
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The headers every dashboard answer carries.
async fn headers(mut resp: axum::response::Response) -> axum::response::Response {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Not `no-referrer`: Chromium then sends `Origin: null` on our own
    // form posts, which the same-origin check must refuse.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    resp
}
