//! The fan-out's HTTP client, for pacer's watchers and etcd's alike: one
//! hyper HTTP/1.1 connection per watcher, driven in the watcher's own task,
//! with no pool, no URL parsing and no middleware per request.
//!
//! The load generator shares the machine's two cores with the server it
//! measures. With reqwest it took more of them than the server did (a
//! `perf record -a` of the fan-out rounds: 53 % of the samples in the
//! bench, 38 % in `pacer serve`), so the figure measured the client as much
//! as the server, and pacer's side more than etcd's: a pacer watcher sends
//! a request per change where an etcd watch reads a chunk.

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpSocket;

/// A connection's request side; its driver is the future [`connect`] returns
/// beside it, which must be polled (`select!`ed with the requests) for the
/// connection to make progress.
pub type Sender = SendRequest<Body>;

/// Opens a connection to `to`, from `from` when given (a task's loopback
/// host, for the login address check).
pub async fn connect(
    from: Option<IpAddr>,
    to: SocketAddr,
) -> Result<(Sender, impl Future<Output = hyper::Result<()>>), String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket
        .connect(to)
        .await
        .map_err(|e| format!("connect error ({e})"))?;
    let _ = stream.set_nodelay(true);
    http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake error ({e})"))
}

/// `addr` of an `http://host:port` URL.
pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("an http://ip:port URL")
}

/// Reads a whole response body.
pub async fn body(resp: hyper::Response<hyper::body::Incoming>) -> Result<Bytes, String> {
    resp.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("body error ({e})"))
}
