//! Serving HTTP to anyone on the network (the daemon's side and `pacer
//! sim`'s), with two budgets a slow or hostile client can't get around:
//!
//! - **a header read timeout**: a connection that hasn't sent a whole
//!   request head in [`Limits::header_read_timeout`] is closed (slowloris:
//!   partial headers used to hold a connection for good);
//! - **a connection cap**: at most [`Limits::max_connections`] are open at
//!   once. Past it, new connections wait in the kernel's accept queue,
//!   holding no file descriptor of ours, until one closes; a flood can slow
//!   the HTTP side down but never exhaust the descriptors the Git fetch and
//!   the Marathon client need.
//!
//! HTTP/1.1 only: every client pacer has (reqwest over plain HTTP, curl,
//! forges' webhooks, Marathon clients) speaks it, and cleartext HTTP/2 adds
//! ways to hold a connection without a timeout.

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
    /// The longest a client may take to send a request head.
    pub header_read_timeout: Duration,
}

/// How long requests in flight may run on after shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
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
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
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
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req)
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
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
