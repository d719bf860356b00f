//! The same fan-out against etcd: `watchers` streams on one key through
//! etcd's v3 JSON gateway (`POST /v3/watch`, one HTTP/1 connection each, on
//! the same client as pacer's watchers), one put, the time until every
//! stream has the event.

use super::load::{client, rss_kb};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

pub struct Figures {
    pub version: String,
    /// Put sent → every watcher has the event, ms, per put.
    pub all: Vec<f64>,
    pub per_watcher_bytes: f64,
}

/// etcd on 127.0.0.1 with its data in `dir`, killed on drop.
struct Etcd {
    child: Child,
    url: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path) -> Result<(Etcd, String), String> {
    let version = Command::new("etcd")
        .arg("--version")
        .output()
        .map_err(|e| format!("no etcd binary ({e}); `apt-get install etcd-server`"))?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("etcd Version: "))
        .unwrap_or("?")
        .to_string();
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "bench", "--data-dir", dir.to_str().unwrap()])
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting etcd: {e}"))?;
    Ok((Etcd { child, url }, version))
}

/// Reads one watch stream: counts its `created` answer, then reports every
/// event with when it arrived.
async fn watch(
    to: std::net::SocketAddr,
    key: String,
    created: Arc<AtomicUsize>,
    seen: mpsc::UnboundedSender<Instant>,
    mut permit: Option<OwnedSemaphorePermit>,
) {
    let Ok((mut send, conn)) = client::connect(None, to).await else {
        return;
    };
    let body = json!({"create_request": {"key": key}}).to_string();
    let read = async {
        let req = hyper::Request::post("/v3/watch")
            .header(hyper::header::HOST, "etcd")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        let Ok(r) = send.send_request(req).await else {
            return;
        };
        let mut stream = r.into_body();
        let mut buf = Vec::new();
        while let Some(Ok(frame)) = stream.frame().await {
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if v["result"]["created"] == true {
                    created.fetch_add(1, Ordering::Relaxed);
                    drop(permit.take());
                }
                if v["result"]["events"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty())
                {
                    let _ = seen.send(Instant::now());
                }
            }
        }
    };
    tokio::select! {
        _ = conn => {}
        () = read => {}
    }
}

pub async fn fan_out(watchers: usize, puts: usize, dir: &Path) -> Result<Figures, String> {
    let (etcd, version) = start(dir)?;
    let http = reqwest::Client::new();
    let key = B64.encode("/pacer/bench");
    let put = |n: usize| {
        let (http, url) = (http.clone(), etcd.url.clone());
        let body = json!({"key": key.clone(), "value": B64.encode(format!("rev {n}"))});
        async move {
            http.post(format!("{url}/v3/kv/put"))
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    r.status()
                        .is_success()
                        .then_some(())
                        .ok_or_else(|| format!("put: {}", r.status()))
                })
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while put(0).await.is_err() {
        if Instant::now() > deadline {
            return Err("etcd did not answer within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_before = rss_kb(etcd.child.id());
    let created = Arc::new(AtomicUsize::new(0));
    let (tx, mut seen) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(256));
    let mut set = JoinSet::new();
    for _ in 0..watchers {
        let (to, key) = (client::addr_of(&etcd.url), key.clone());
        let (created, tx, gate) = (created.clone(), tx.clone(), gate.clone());
        set.spawn(async move {
            // Connect a few hundred at a time; the permit goes once the
            // watch is created.
            let permit = gate.acquire_owned().await.unwrap();
            watch(to, key, created, tx, Some(permit)).await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while created.load(Ordering::Relaxed) < watchers {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {watchers} etcd watches created within 120 s",
                created.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_with = rss_kb(etcd.child.id());
    let mut all = Vec::new();
    for n in 1..=puts {
        let t0 = Instant::now();
        put(n).await?;
        let mut got = 0;
        let mut last = t0;
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        while got < watchers {
            match tokio::time::timeout_at(until, seen.recv()).await {
                Ok(Some(at)) => {
                    got += 1;
                    last = last.max(at);
                }
                _ => {
                    return Err(format!(
                        "only {got} of {watchers} etcd watchers saw put {n}"
                    ));
                }
            }
        }
        all.push(last.duration_since(t0).as_secs_f64() * 1000.0);
    }
    set.abort_all();
    while set.join_next().await.is_some() {}
    Ok(Figures {
        version,
        all,
        per_watcher_bytes: rss_with.saturating_sub(rss_before) as f64 * 1024.0 / watchers as f64,
    })
}
