//! The listener's budgets against real sockets: each test holds the only
//! connection slot with a misbehaving client and checks that the slot comes
//! back within the bound (a second client gets served), while well-behaved
//! long responses are left alone.

use super::{Limits, serve};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

/// Longer than any budget below, far shorter than the 10 s header timeout
/// the tests leave at its default where it must not be what cuts.
const BOUND: Duration = Duration::from_secs(6);

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hi" }))
        // A body without end: only a reader can make it progress.
        .route(
            "/endless",
            get(|| async {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let s = futures::stream::repeat_with(move || {
                    Ok::<_, std::convert::Infallible>(chunk.clone())
                });
                Body::from_stream(s)
            }),
        )
        // An event stream's pace: a byte every 200 ms for 2 s.
        .route(
            "/drip",
            get(|| async {
                let s = futures::stream::unfold(0, |n| async move {
                    if n == 10 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from_static(b".")),
                        n + 1,
                    ))
                });
                Body::from_stream(s)
            }),
        )
        // A long poll: silent for 2 s, then the answer.
        .route(
            "/wait",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "done"
            }),
        )
}

/// One connection slot, and the given budgets.
fn limits(idle: Duration, write: Duration, header: Duration) -> Limits {
    Limits {
        max_connections: 1,
        header_read_timeout: header,
        idle_timeout: idle,
        write_timeout: write,
    }
}

async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    start_with(limits, router()).await
}

async fn start_with(
    limits: Limits,
    router: Router,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// `GET path` with `Connection: close`; the whole answer, within `within`.
async fn fetch(addr: SocketAddr, path: &str, within: Duration) -> String {
    let ask = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    tokio::time::timeout(within, ask)
        .await
        .unwrap_or_else(|_| panic!("GET {path} not answered within {within:?}"))
}

/// Reads `s` until the server closes it (EOF or reset), within `within`.
async fn wait_closed(s: &mut TcpStream, within: Duration) {
    let drain = async {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, drain)
        .await
        .expect("the server closes the connection");
}

/// Reads from `s` until `needle` arrives; what it read.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    };
    if tokio::time::timeout(BOUND, read).await.is_err() {
        panic!("no {needle:?} in {}", String::from_utf8_lossy(&seen));
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_slot() {
    let (addr, _stop) = start(limits(
        Duration::from_secs(10),
        Duration::from_secs(1),
        Duration::from_secs(10),
    ))
    .await;
    // A small receive window, so the server's buffers fill soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // It reads nothing; the next client waits for its slot.
    let started = Instant::now();
    let answer = fetch(addr, "/hello", BOUND).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hi"),
        "{answer}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the slot was free early"
    );
    wait_closed(&mut stalled, BOUND).await;
}

#[tokio::test]
async fn slow_steady_and_silent_responses_are_not_cut() {
    // Every budget shorter than the responses' pauses and lengths.
    let budget = Duration::from_millis(500);
    let (addr, _stop) = start(Limits {
        max_connections: 4,
        ..limits(budget, budget, budget)
    })
    .await;
    let drip = fetch(addr, "/drip", BOUND).await;
    // Ten chunks of one byte, then the last chunk.
    assert_eq!(drip.matches("\r\n.\r\n").count(), 10, "{drip}");
    assert!(drip.ends_with("0\r\n\r\n"), "{drip}");
    let wait = fetch(addr, "/wait", BOUND).await;
    assert!(wait.ends_with("done"), "{wait}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_loses_its_slot() {
    let (addr, _stop) = start(limits(
        Duration::from_secs(1),
        Duration::from_secs(10),
        Duration::from_secs(10),
    ))
    .await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut idle, "\r\n\r\nhi").await;
    // Kept alive and silent: cut after the idle timeout, long before the
    // 10 s header timeout.
    let started = Instant::now();
    let answer = fetch(addr, "/hello", BOUND).await;
    assert!(answer.ends_with("hi"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the slot was free early"
    );
    wait_closed(&mut idle, BOUND).await;
}

#[tokio::test]
async fn a_kept_alive_connection_serves_the_next_request_and_times_its_head() {
    let (addr, _stop) = start(limits(
        Duration::from_secs(10),
        Duration::from_secs(10),
        Duration::from_secs(1),
    ))
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut s, "\r\n\r\nhi").await;
    }
    // A third head that never ends: cut after the header timeout, though
    // the idle timeout is far longer.
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    wait_closed(&mut s, BOUND).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Tells when it is dropped (with the future or stream holding it).
struct OnDrop(Arc<Notify>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// `/forever`: a handler that never answers; `/silent`: a response whose
/// body never sends a byte; both tell when they start and when dropped.
/// `/slow`: tells when it starts, answers `done` 500 ms later.
fn leaving_router(started: Arc<Notify>, dropped: Arc<Notify>) -> Router {
    let (s2, d2, s3) = (started.clone(), dropped.clone(), started.clone());
    Router::new()
        .route("/hello", get(|| async { "hi" }))
        .route(
            "/forever",
            get(move || async move {
                let _d = OnDrop(dropped);
                started.notify_one();
                std::future::pending::<&str>().await
            }),
        )
        .route(
            "/slow",
            get(move || async move {
                s3.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
        .route(
            "/silent",
            get(move || async move {
                s2.notify_one();
                Body::from_stream(futures::stream::unfold(OnDrop(d2), |d| async move {
                    let _d = d;
                    std::future::pending::<Option<(Result<Bytes, Infallible>, OnDrop)>>().await
                }))
            }),
        )
}

/// A client asks for `path` and, once its handler runs (and, for a
/// response that started, its head came), goes away: the handler or body
/// is dropped at once, and the only connection slot is free again.
async fn leave_during(path: &str, head_first: bool) {
    let (started, dropped) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (addr, _stop) = start_with(
        limits(BOUND * 10, BOUND * 10, BOUND * 10),
        leaving_router(started.clone(), dropped.clone()),
    )
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("the handler runs");
    if head_first {
        read_until(&mut s, "HTTP/1.1 200").await;
    }
    drop(s);
    tokio::time::timeout(BOUND, dropped.notified())
        .await
        .unwrap_or_else(|_| panic!("{path} still runs after its client left"));
    let answer = fetch(addr, "/hello", BOUND).await;
    assert!(answer.ends_with("hi"), "{answer}");
}

#[tokio::test]
async fn a_long_poll_is_dropped_when_its_client_leaves() {
    leave_during("/forever", false).await;
}

#[tokio::test]
async fn a_silent_stream_is_dropped_when_its_client_leaves() {
    leave_during("/silent", true).await;
}

#[tokio::test]
async fn a_request_sent_while_another_runs_is_answered_after_it() {
    let started = Arc::new(Notify::new());
    let router = leaving_router(started.clone(), Arc::new(Notify::new()));
    let (addr, _stop) = start_with(limits(BOUND, BOUND, BOUND), router).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("the handler runs");
    // Sent while /slow runs: bytes wait on the socket, which is a next
    // request, not a client gone.
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let both = read_until(&mut s, "\r\n\r\nhi").await;
    assert!(both.contains("\r\n\r\ndone"), "{both}");
}
