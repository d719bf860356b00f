//! The HTTP side's budgets and write guard against the real binaries: a
//! client that stops reading or sits idle on a kept-alive connection loses
//! its slot within the bound (with one slot, the next client is served), and
//! the daemon answers writes only for host names it knows (DNS rebinding).

use crate::util::harness::{ADMIN_TOKEN, Sim, World};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Longer than the 1 s budgets below plus start-up noise; far shorter than
/// the 30 s header timeout, which must not be what frees a slot.
const BOUND: Duration = Duration::from_secs(10);

/// Sends `request` on a new connection and reads the whole answer
/// (`Connection: close`): status and body.
fn exchange(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("no answer to {request:?} within {BOUND:?}: {e}"));
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// `GET path` with `Connection: close`, timed.
fn get_closing(addr: &str, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let (status, _) = exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    (status, started.elapsed())
}

/// Reads `s` until the server closes it; what it sent.
fn drain_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return seen,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

/// A kept-alive connection that asked `path` once and read the answer up to
/// `ends_with`, then sits idle.
fn idle_connection(addr: &str, path: &str, ends_with: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n").as_bytes())
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).ends_with(ends_with) {
        let n = s.read(&mut buf).expect("the first answer");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_cuts_a_client_that_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start_with_args(
        dir.path(),
        &[
            "--max-connections",
            "1",
            "--write-timeout",
            "1",
            "--idle-timeout",
            "1",
            "--header-timeout",
            "30",
        ],
    )
    .await;
    let addr = sim.url.trim_start_matches("http://").to_string();
    let mut stalled = TcpStream::connect(&addr).expect("connect");
    let mut writer = stalled.try_clone().unwrap();
    let one = format!("GET /v2/info HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // Thousands of pipelined requests, never read past the first line: the
    // answers fill the socket buffers and the simulator's writes stop
    // making progress.
    let pipelined = std::thread::spawn(move || {
        // Fails once the simulator closes the connection.
        let _ = writer.write_all(one.repeat(20_000).as_bytes());
    });
    let a = addr.clone();
    tokio::task::spawn_blocking(move || {
        // Served (once the harness's own kept-alive connection has gone idle
        // for 1 s and freed the slot)...
        stalled.set_read_timeout(Some(BOUND)).unwrap();
        let mut first = [0u8; 12];
        stalled
            .read_exact(&mut first)
            .expect("the first answer starts");
        assert_eq!(&first, b"HTTP/1.1 200");
        // ...then it stops reading, and a new client gets its slot.
        let (status, took) = get_closing(&a, "/v2/info");
        assert_eq!(status, 200);
        assert!(took < BOUND, "served after {took:?}");
        drain_until_closed(&mut stalled);
    })
    .await
    .unwrap();
    pipelined.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_closes_an_idle_keep_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start_with_args(
        dir.path(),
        &[
            "--max-connections",
            "1",
            "--idle-timeout",
            "1",
            "--header-timeout",
            "30",
        ],
    )
    .await;
    let addr = sim.url.trim_start_matches("http://").to_string();
    let a = addr.clone();
    tokio::task::spawn_blocking(move || {
        // Wait for the slot the harness's kept-alive connection holds.
        let mut idle = idle_connection(&a, "/ping", "pong");
        let (status, took) = get_closing(&a, "/ping");
        assert_eq!(status, 200);
        assert!(
            took >= Duration::from_millis(800),
            "the slot was free early ({took:?})"
        );
        assert!(took < BOUND, "served after {took:?}");
        drain_until_closed(&mut idle);
    })
    .await
    .unwrap();
}

const LIMIT: Duration = Duration::from_secs(30);

/// A retry to the daemon at `addr` as a browser at `host` would send it.
fn retry_as(addr: &str, host: &str) -> (u16, String) {
    exchange(
        addr,
        &format!(
            "POST /api/v1/retry HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
             Authorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_answers_writes_only_for_its_own_host_names() {
    let w = World::new().await;
    let d = w.serve(
        60,
        60,
        &[
            "--allowed-host",
            "pacer.test",
            "--max-connections",
            "1",
            "--idle-timeout",
            "1",
            "--header-timeout",
            "30",
        ],
    );
    d.wait_all("dev", "inSync", LIMIT).await;
    let addr = d.url.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        // DNS rebinding: evil.example now resolves to the daemon, and the
        // page there is same-origin as far as the browser knows.
        let (status, body) = retry_as(&addr, &format!("evil.example:{port}"));
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("--allowed-host evil.example"), "{body}");
        for host in [
            format!("pacer.test:{port}"),
            addr.clone(),
            format!("localhost:{port}"),
        ] {
            let (status, body) = retry_as(&addr, &host);
            assert_eq!(status, 202, "Host: {host}: {body}");
        }
        // Reads are not guarded: scrapers use whatever name they were given.
        let (status, _) = exchange(
            &addr,
            "GET /api/v1/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status, 200);
        // The daemon's one slot comes back from an idle kept-alive client too.
        let mut idle = idle_connection(&addr, "/healthz", "ok");
        let (status, took) = get_closing(&addr, "/healthz");
        assert_eq!(status, 200);
        assert!(took < BOUND, "served after {took:?}");
        drain_until_closed(&mut idle);
    })
    .await
    .unwrap();
}

#[test]
fn an_allowed_host_that_is_not_a_host_name_is_a_usage_error() {
    let out = crate::util::pacer(&[
        "serve",
        "--repo-url",
        "file:///nonexistent",
        "--allowed-host",
        "http://pacer.example/",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("--allowed-host") && out.stderr.contains("is not a host name"),
        "{out:?}"
    );
}
