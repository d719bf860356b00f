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
//! | `GET /ui/signin`, `POST /ui/session` | sessions ([`super::session`]), kept by the page |
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

/// Event streams from one address at once: a person's browser holds one
/// per visible tab.
pub const STREAMS_PER_ADDRESS: usize = 4;

/// The open event streams, bounded in all and per address: a stream holds
/// a connection for minutes, and the listener's connections are shared
/// with health checks, webhooks and the config server.
#[derive(Debug)]
pub struct Streams {
    max: usize,
    open: parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl Streams {
    /// At most `max` streams (`pacer serve` gives them an eighth of
    /// `--max-connections`).
    pub fn new(max: usize) -> Streams {
        Streams {
            max: max.max(1),
            open: Default::default(),
        }
    }

    /// A slot for a stream from `ip`, given back when dropped; `None` when
    /// the server or the address has its fill.
    pub fn take(self: &std::sync::Arc<Self>, ip: std::net::IpAddr) -> Option<Slot> {
        let mut open = self.open.lock();
        let total: usize = open.values().sum();
        let mine = open.get(&ip).copied().unwrap_or(0);
        if total >= self.max || mine >= STREAMS_PER_ADDRESS {
            return None;
        }
        *open.entry(ip).or_default() += 1;
        Some(Slot {
            streams: self.clone(),
            ip,
        })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.lock().values().sum()
    }
}

impl Default for Streams {
    fn default() -> Self {
        Streams::new(32)
    }
}

/// One stream's place in [`Streams`].
pub struct Slot {
    streams: std::sync::Arc<Streams>,
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::Arc;

    #[test]
    fn streams_are_bounded_in_all_and_per_address_and_given_back() {
        let s = Arc::new(Streams::new(6));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mine: Vec<Slot> = (0..STREAMS_PER_ADDRESS).filter_map(|_| s.take(a)).collect();
        assert_eq!(mine.len(), STREAMS_PER_ADDRESS);
        assert!(s.take(a).is_none(), "one address past its share");
        let theirs: Vec<Slot> = (0..4).filter_map(|_| s.take(b)).collect();
        assert_eq!(theirs.len(), 2, "the server past its cap");
        drop(mine);
        assert_eq!(s.open(), 2);
        assert!(s.take(a).is_some());
    }
}
