//! The pacer side of the delivery benchmark: the simulator, the daemon,
//! logins, watchers and the read load.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

#[path = "client.rs"]
pub mod client;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `sorted`'s value at `q` (0..=1).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn wait_until<F: std::future::Future<Output = Option<String>>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    loop {
        let Some(last) = f().await else { return };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon's resident memory, in KB.
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

/// The simulator in this process, tasks on loopback hosts starting at
/// once, loaded with the repo's apps; its URL once all `tasks` run.
pub async fn start_sim(repo: &Path, tasks: usize) -> String {
    let url = super::common::start_sim(pacer::sim::Settings {
        start_delay_ms: 0,
        healthy_delay_ms: 0,
        task_hosts: pacer::sim::state::TaskHosts::Loopback,
        // Every app is put at once: Marathon's default of 100 deployments
        // in flight would refuse some (403) while the first ones finish.
        max_running_deployments: 100_000,
        ..pacer::sim::Settings::default()
    })
    .await;
    super::common::load_sim(&url, repo).await;
    let http = reqwest::Client::new();
    wait_until(
        &format!("{tasks} running tasks"),
        Duration::from_secs(300),
        || async {
            let v: Value = http
                .get(format!("{url}/v2/tasks"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let n = running(&v).len();
            (n < tasks).then(|| format!("{n} running"))
        },
    )
    .await;
    url
}

/// `(task id, app id, host)` of the running tasks in a `/v2/tasks` answer.
fn running(v: &Value) -> Vec<(String, String, String)> {
    v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or("").to_string();
            (s("id"), s("appId"), s("host"))
        })
        .collect()
}

/// The release `pacer serve`, killed on drop.
pub struct Daemon {
    child: Child,
    pub url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(
        repo: &Path,
        marathon: &str,
        workdir: &Path,
        watchers: usize,
        task_recheck: Option<u64>,
    ) -> Daemon {
        let recheck: Vec<String> = task_recheck
            .map(|s| vec!["--task-recheck".into(), s.to_string()])
            .unwrap_or_default();
        Self::start_with(repo, marathon, workdir, watchers, &recheck)
    }

    /// [`Daemon::start`] with `extra` flags for `pacer serve`.
    pub fn start_with(
        repo: &Path,
        marathon: &str,
        workdir: &Path,
        watchers: usize,
        extra: &[String],
    ) -> Daemon {
        // Blocking watches may fill half the connection cap (the other half
        // stays for everything else), so the cap is twice the watchers.
        let conns = (2 * watchers + 1_000 + super::IDLE).to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pacer"))
            .args(["--log", "warn", "serve", "--listen", "127.0.0.1:0"])
            .args(["--poll", "1", "--max-connections", &conns])
            // Logging in is set-up, not measured: it may take a while.
            .args(["--login-grace", "3600", "--token-ttl", "3600"])
            // 10,000 tasks on five loopback hosts log in at once: far past
            // the default 60 per host, which the bench doesn't measure.
            .args(["--login-burst", "100000"])
            .args(["--repo-url", &format!("file://{}", repo.display())])
            .args(["--marathon", marathon, "--webhook-secret", super::SECRET])
            .args(["--workdir", workdir.to_str().unwrap()])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting pacer serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("pacer serve: listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the daemon printed its address");
        Daemon { child, url }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// One HTTP client per loopback task host, sending from its address.
pub struct Clients {
    by_host: Vec<(String, reqwest::Client)>,
    other: reqwest::Client,
}

impl Clients {
    pub fn loopback() -> Clients {
        let by_host = pacer::sim::state::LOOPBACK_HOSTS
            .iter()
            .map(|h| {
                let ip: IpAddr = h.parse().unwrap();
                let c = reqwest::Client::builder()
                    .local_address(ip)
                    .build()
                    .unwrap();
                (h.to_string(), c)
            })
            .collect();
        Clients {
            by_host,
            other: reqwest::Client::new(),
        }
    }

    pub fn on(&self, host: &str) -> &reqwest::Client {
        self.by_host
            .iter()
            .find(|(h, _)| h == host)
            .map_or(&self.other, |(_, c)| c)
    }
}

#[derive(Clone)]
pub struct Login {
    pub token: String,
    pub host: String,
}

/// Logs in `n` running tasks, as many at once as the server checks (32),
/// retrying while it is busy or has not published the bundles yet.
pub async fn log_in(
    http: &reqwest::Client,
    sim: &str,
    d: &Daemon,
    clients: &Arc<Clients>,
    n: usize,
) -> Vec<Login> {
    log_in_where(http, sim, d, clients, n, |_| true).await
}

/// [`log_in`], of the tasks of the apps `keep` takes (by app id).
pub async fn log_in_where(
    http: &reqwest::Client,
    sim: &str,
    d: &Daemon,
    clients: &Arc<Clients>,
    n: usize,
    keep: impl Fn(&str) -> bool,
) -> Vec<Login> {
    let v: Value = http
        .get(format!("{sim}/v2/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tasks: Vec<_> = running(&v)
        .into_iter()
        .filter(|(_, app, _)| keep(app))
        .collect();
    assert!(
        tasks.len() >= n,
        "{} running tasks, {n} wanted",
        tasks.len()
    );
    let limit = Arc::new(Semaphore::new(32));
    let mut set = JoinSet::new();
    for (task, app, host) in tasks.into_iter().take(n) {
        let (limit, clients, url) = (limit.clone(), clients.clone(), d.url.clone());
        set.spawn(async move {
            let _p = limit.acquire_owned().await.unwrap();
            let http = clients.on(&host);
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let r = http
                    .post(format!("{url}/v1/login"))
                    .json(&json!({"taskId": task, "appId": app}))
                    .send()
                    .await
                    .expect("POST /v1/login");
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                match status {
                    200 => {
                        return Login {
                            token: v["token"].as_str().unwrap().to_string(),
                            host,
                        };
                    }
                    // Busy, or the first render not published yet.
                    503 | 403 if v["reason"] != "replay" && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => panic!("login of {task}: {status} {v}"),
                }
            }
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(l) = set.join_next().await {
        out.push(l.unwrap());
    }
    out
}

/// Starts one watcher per login, each on its own connection from its
/// task's host: a first read for the index, then blocking queries; each
/// change it reads is reported on `seen` with when.
pub fn watch_all(
    d: &Daemon,
    logins: &[Login],
    seen: mpsc::UnboundedSender<Instant>,
    errors: &Arc<Errors>,
) -> JoinSet<()> {
    // The first reads go a few hundred at a time, so 10,000 connects don't
    // overflow the listener's accept queue.
    let gate = Arc::new(Semaphore::new(256));
    let to = client::addr_of(&d.url);
    let mut set = JoinSet::new();
    for l in logins {
        let (gate, seen, errors) = (gate.clone(), seen.clone(), errors.clone());
        let from: IpAddr = l.host.parse().expect("a loopback task host");
        let bearer = format!("Bearer {}", l.token);
        set.spawn(async move {
            let mut permit = Some(gate.acquire_owned().await.unwrap());
            let mut index = 0;
            loop {
                let (mut send, conn) = match client::connect(Some(from), to).await {
                    Ok(c) => c,
                    Err(e) => {
                        errors.add(e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let session = async {
                    loop {
                        // The first read has no index: it learns it.
                        let uri = match permit {
                            Some(_) => "/v1/config".to_string(),
                            None => format!("/v1/config?index={index}&wait=60s"),
                        };
                        let req = hyper::Request::get(uri)
                            .header(hyper::header::HOST, "pacer")
                            .header(hyper::header::AUTHORIZATION, &bearer)
                            .body(axum::body::Body::empty())
                            .unwrap();
                        send.ready()
                            .await
                            .map_err(|e| format!("request error ({e})"))?;
                        let r = send
                            .send_request(req)
                            .await
                            .map_err(|e| format!("request error ({e})"))?;
                        let status = r.status();
                        let i = r
                            .headers()
                            .get("x-pacer-index")
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        client::body(r).await?;
                        let i = match i {
                            Some(i) if status.is_success() => i,
                            _ if !status.is_success() => {
                                errors.add(format!("HTTP {}", status.as_u16()));
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                            _ => return Err::<(), String>("no X-Pacer-Index".into()),
                        };
                        // The long polls hold no permit.
                        if permit.take().is_none() && i != index {
                            let _ = seen.send(Instant::now());
                        }
                        index = i;
                    }
                };
                let ended = tokio::select! {
                    r = conn => format!("connection ended ({r:?})"),
                    r = session => r.err().unwrap_or_default(),
                };
                errors.add(ended);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    set
}

/// Failed requests, by kind.
#[derive(Default)]
pub struct Errors(std::sync::Mutex<std::collections::BTreeMap<String, u64>>);

impl Errors {
    fn add(&self, what: String) {
        *self.0.lock().unwrap().entry(what).or_default() += 1;
    }

    pub fn summary(&self) -> String {
        let m = self.0.lock().unwrap();
        if m.is_empty() {
            return "0".into();
        }
        m.iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Opens `n` connections that each send one `GET /healthz` and then stay
/// open, idle: what a connection alone costs the server.
pub async fn idle_connections(d: &Daemon, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: bench\r\n\r\n")
            .await
            .unwrap();
        // The whole answer is small: one read holds its head.
        let mut buf = [0u8; 1024];
        let got = s.read(&mut buf).await.unwrap();
        assert!(buf[..got].starts_with(b"HTTP/1.1 200"), "GET /healthz");
        out.push(s);
    }
    out
}

/// The daemon's `pacer_config_watchers`.
async fn watching(http: &reqwest::Client, d: &Daemon) -> Option<u64> {
    let text = http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("pacer_config_watchers "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `n` watches are blocked in the server.
pub async fn wait_watchers(http: &reqwest::Client, d: &Daemon, n: usize) {
    wait_until(
        &format!("{n} blocked watches"),
        Duration::from_secs(120),
        || async {
            let w = watching(http, d).await;
            (w < Some(n as u64)).then(|| format!("{w:?} now"))
        },
    )
    .await;
}

pub struct Throughput {
    pub per_sec: f64,
    pub errors: u64,
}

/// One keep-alive connection per login, each sending `GET path` with its
/// token back to back: 1 s of warm-up, then `secs` counted.
pub async fn read_load(
    d: &Daemon,
    clients: &Arc<Clients>,
    logins: &[Login],
    path: &str,
    secs: Duration,
) -> Throughput {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = JoinSet::new();
    for l in logins {
        let (ok, errors, counting, stop) =
            (ok.clone(), errors.clone(), counting.clone(), stop.clone());
        let (url, l, clients) = (format!("{}{path}", d.url), l.clone(), clients.clone());
        set.spawn(async move {
            let http = clients.on(&l.host);
            while !stop.load(Ordering::Relaxed) {
                let r = http.get(&url).bearer_auth(&l.token).send().await;
                let good = match r {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if counting.load(Ordering::Relaxed) {
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    counting.store(true, Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(secs).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
    Throughput {
        per_sec: ok.load(Ordering::Relaxed) as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
    }
}
