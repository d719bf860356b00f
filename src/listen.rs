//! Serving HTTP to anyone on the network (the daemon's side and `pacer
//! sim`'s), with budgets a slow or hostile client can't get around:
//!
//! - **a header read timeout**: a connection that hasn't sent a whole
//!   request head in [`Limits::header_read_timeout`] is closed (slowloris:
//!   partial headers used to hold a connection for good);
//! - **an idle timeout**: a kept-alive connection that starts no new request
//!   within [`Limits::idle_timeout`] of the last response is closed;
//! - **a write timeout**: a response the client takes no byte of for
//!   [`Limits::write_timeout`] is cut and its connection closed (a client
//!   that sends a request and never reads the answer). It is about progress,
//!   not total duration: event streams and long polls run as long as they
//!   like while the client reads;
//! - **a connection cap**: at most [`Limits::max_connections`] are open at
//!   once. Past it, new connections wait in the kernel's accept queue,
//!   holding no file descriptor of ours, until one closes; a flood can slow
//!   the HTTP side down but never exhaust the descriptors the Git fetch and
//!   the Marathon client need. The timeouts above are what makes every slot
//!   come back.
//!
//! The timers live in [`budget`]. HTTP/1.1 only: every client pacer has
//! (reqwest over plain HTTP, curl, forges' webhooks, Marathon clients)
//! speaks it, and cleartext HTTP/2 adds ways to hold a connection without a
//! timeout.

mod budget;
pub mod origin;
mod stream;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The budgets of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// The longest a client may take to send a request head (from the
    /// accept, or from its first byte on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// The longest a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// The longest a response may wait for the client to take a byte.
    pub write_timeout: Duration,
}

/// A request's client closed the connection before its answer was ready.
#[derive(Debug)]
struct ClientGone;

impl std::fmt::Display for ClientGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client closed the connection before the answer")
    }
}

impl std::error::Error for ClientGone {}

/// How long requests in flight may run on after shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            // Above the 30 s a Prometheus scrape interval usually is, so a
            // scraper keeps its connection between scrapes.
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes, then lets requests in flight finish (at most [`DRAIN`]).
/// Handlers can read the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let room = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's header timer would also count the idle time of a kept-alive
    // connection; `budget` times both apart. hyper doesn't read while a
    // request runs (half-close mode): `stream::gone` watches for the client
    // leaving instead, without a second read buffer per request.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .half_close(true);
    tokio::pin!(shutdown);
    loop {
        // Room first, then accept: a connection past the cap stays in the
        // kernel's queue instead of taking a descriptor here.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = room.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors (or a connection reset before it
                    // was taken): wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let in_flight = budget::InFlight::default();
        let stream = Arc::new(stream);
        let io = budget::Budgeted::new(stream::Shared(stream.clone()), limits, in_flight.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // Counted from the head to the response's last frame: the read
            // timers rest meanwhile.
            let guard = in_flight.start();
            req.extensions_mut().insert(ConnectInfo(peer));
            let answer = router.clone().oneshot(req);
            let stream = stream.clone();
            async move {
                // A handler still working when its client leaves is dropped
                // (an error ends the connection): a long poll frees its
                // place at once, not when its wait runs out.
                let gone = stream::gone(stream.clone());
                let resp = tokio::select! {
                    biased;
                    resp = answer => resp,
                    () = gone => return Err(ClientGone),
                };
                let Ok(resp) = resp;
                Ok(resp.map(|body| budget::Tracked::wrap(body, guard, stream)))
            }
        });
        let conn = http.serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("requests still running at shutdown were cut");
    }
    Ok(())
}
