//! The daemon at monorepo scale: `--apps` × `--envs` apps (default 1,000 ×
//! 10 = 10,000), all in sync in the simulator, reconciled by the release
//! `pacer serve` binary.
//!
//! Run with `cargo bench --bench reconcile` (add `-- --apps 200` for a
//! smaller run). Prints, with medians:
//! - one steady reconcile cycle (fetch, render, observe, diff, plan), from
//!   the daemon's own `cycle done` log lines, against a floor measured in
//!   this process: one `GET /v2/apps` with its JSON parse plus reading the
//!   Git tree;
//! - the daemon's peak RSS;
//! - webhook received → PUT sent for a one-app commit: until the PUT
//!   reaches the simulator (its request log's `received`), and beside it
//!   until the PUT is answered (`at`).

mod common;

use common::{Shape, cycle_ms, generate, git, load_sim, median, start_sim};
use hmac::{Hmac, Mac};
use pacer::source::RepoLocation;
use sha2::Sha256;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-webhook-secret";

struct Opts {
    apps: usize,
    envs: usize,
    cycles: usize,
    webhooks: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        apps: 1000,
        envs: 10,
        cycles: 7,
        webhooks: 7,
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let n = || w[1].parse().expect("a number");
        match w[0].as_str() {
            "--apps" => o.apps = n(),
            "--envs" => o.envs = n(),
            "--cycles" => o.cycles = n(),
            "--webhooks" => o.webhooks = n(),
            _ => {}
        }
    }
    o
}

struct Daemon {
    child: Child,
    cycles: Arc<Mutex<Vec<f64>>>,
    addr: Arc<Mutex<Option<String>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(repo: &Path, marathon: &str, workdir: &Path) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pacer"))
        .args([
            "--log",
            "warn,pacer::reconcile=debug,pacer::server=info,pacer::apply=debug,pacer::marathon=debug",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll",
            "1",
        ])
        .args(["--repo-url", &format!("file://{}", repo.display())])
        .args(["--marathon", marathon, "--webhook-secret", SECRET])
        .args(["--workdir", workdir.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pacer serve");
    let cycles = Arc::new(Mutex::new(Vec::new()));
    let addr = Arc::new(Mutex::new(None));
    let (c, stderr) = (cycles.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        // PACER_BENCH_LOG=FILE keeps the daemon's log, to see where time goes.
        let mut keep =
            std::env::var_os("PACER_BENCH_LOG").and_then(|p| std::fs::File::create(p).ok());
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = keep.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
            if let Some(ms) = cycle_ms(&line) {
                c.lock().unwrap().push(ms);
            }
        }
    });
    let (a, stdout) = (addr.clone(), child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("pacer serve: listening on ") {
                *a.lock().unwrap() = Some(url.to_string());
            }
        }
    });
    Daemon {
        child,
        cycles,
        addr,
    }
}

fn vm_hwm_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the simulator runs no deployment.
async fn no_deployments(http: &reqwest::Client, url: &str, what: &str, within: Duration) {
    wait_until(what, within, || async {
        let d: serde_json::Value = http
            .get(format!("{url}/v2/deployments"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        d.as_array().is_some_and(|a| a.is_empty())
    })
    .await;
}

fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::main]
async fn main() {
    let o = opts();
    let total = o.apps * o.envs;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    generate(
        &repo,
        &Shape {
            apps: o.apps,
            envs: o.envs,
        },
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "synthetic repo"]);
    println!(
        "pacer reconcile benchmark: {} apps × {} envs = {total} apps, all in sync in the simulator",
        o.apps, o.envs
    );

    // The simulator, in this process; tasks start at once.
    let sim_url = start_sim(pacer::sim::Settings {
        start_delay_ms: 0,
        healthy_delay_ms: 0,
        // 10,000 apps go in at once; on a busy machine more than
        // Marathon's default 100 deployments are still running, and its
        // 403 would end the bench before it measures anything.
        max_running_deployments: 100_000,
        ..pacer::sim::Settings::default()
    })
    .await;
    let http = reqwest::Client::new();

    // Load Marathon with what Git says, straight through the API.
    let t = Instant::now();
    load_sim(&sim_url, &repo).await;
    let loc = RepoLocation::discover(&repo).unwrap();
    no_deployments(
        &http,
        &sim_url,
        "the initial deployments",
        Duration::from_secs(300),
    )
    .await;
    println!(
        "loaded {total} apps into the simulator in {:.1} s\n",
        t.elapsed().as_secs_f64()
    );

    // The floor: what any reconciler must do each cycle.
    let mut floor = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let body = http
            .get(format!("{sim_url}/v2/apps?embed=apps.deployments"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["apps"].as_array().unwrap().len(), total);
        let tree = loc.at_rev("HEAD").unwrap();
        assert!(tree.entries().len() > total);
        floor.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let floor = median(floor);

    let workdir = dir.path().join("mirror");
    let daemon = start_daemon(&repo, &sim_url, &workdir);
    let pid = daemon.child.id();
    wait_until("the daemon's cycles", Duration::from_secs(600), || {
        let n = daemon.cycles.lock().unwrap().len();
        async move { n > o.cycles }
    })
    .await;
    let addr = daemon
        .addr
        .lock()
        .unwrap()
        .clone()
        .expect("the daemon printed its address");
    let metrics = http
        .get(format!("{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let in_sync: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("pacer_apps{") && l.contains("status=\"inSync\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        in_sync as usize, total,
        "every app must be in sync (no diff flaps)"
    );
    let cycles = daemon.cycles.lock().unwrap().clone();
    let first = cycles[0];
    let steady = median(cycles[1..].to_vec());
    println!("first cycle (clone, full render, observe, plan)    {first:.0} ms");
    println!(
        "steady cycle (fetch, render, observe, diff, plan)  {steady:.0} ms   median of {}; target ≤ 1000 ms",
        cycles.len() - 1
    );
    println!(
        "floor (GET /v2/apps + parse + read the Git tree)    {floor:.0} ms   ratio {:.2}× ; target ≤ 2×",
        steady / floor
    );

    // Webhook → PUT for one-app commits.
    // To the PUT's arrival at Marathon, and (shown beside it) to its
    // answer: the simulator answers a write only once a read holding its
    // state (the daemon's full pass reading 10,000 apps) lets go, which
    // Marathon, answering reads from a snapshot, doesn't make a write wait.
    let mut latencies = Vec::new();
    let mut answered_ms = Vec::new();
    for i in 0..o.webhooks {
        let overlay = repo.join(format!("apps/svc{:04}/env/env0.yaml", (i * 37) % o.apps));
        let text = std::fs::read_to_string(&overlay).unwrap();
        std::fs::write(&overlay, format!("{text}  env:\n    BENCH_RUN: \"{i}\"\n")).unwrap();
        git(&repo, &["commit", "-q", "-am", "one app"]);
        let after = String::from_utf8(
            Command::new("git")
                .current_dir(&repo)
                .args(["rev-parse", "HEAD"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let id = format!("/env0/svc{:04}", (i * 37) % o.apps);
        let body = serde_json::json!({"ref": "refs/heads/main", "after": after.trim()}).to_string();
        let sent = chrono::Utc::now();
        let r = http
            .post(format!("{addr}/hooks/git"))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", format!("bench-{i}"))
            .header("X-Hub-Signature-256", signature(body.as_bytes()))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let deadline = Instant::now() + Duration::from_secs(30);
        let put_at = loop {
            let log: serde_json::Value = http
                .get(format!("{sim_url}/_sim/requests"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let hit = log["requests"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .find(|e| {
                    e["method"] == "PUT"
                        && e["uri"]
                            .as_str()
                            .is_some_and(|u| u.starts_with(&format!("/v2/apps{id}")))
                })
                .and_then(|e| {
                    let t = |k: &str| chrono::DateTime::parse_from_rfc3339(e[k].as_str()?).ok();
                    Some((t("received")?, t("at")?))
                })
                .filter(|(received, _)| *received >= sent - chrono::Duration::milliseconds(5));
            if let Some(times) = hit {
                break Some(times);
            }
            assert!(
                Instant::now() < deadline,
                "no PUT for {id} within 30 s of the webhook"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (received, answered) = put_at.unwrap();
        let ms = |t: chrono::DateTime<chrono::FixedOffset>| {
            (t.with_timezone(&chrono::Utc) - sent)
                .num_microseconds()
                .unwrap() as f64
                / 1000.0
        };
        latencies.push(ms(received));
        answered_ms.push(ms(answered));
        // Let the deployment finish before the next change.
        no_deployments(&http, &sim_url, "the deployment", Duration::from_secs(30)).await;
    }
    println!(
        "webhook received → PUT sent, one-app commit        {:.0} ms   median of {}; target ≤ 50 ms",
        median(latencies.clone()),
        latencies.len()
    );
    println!(
        "  (→ PUT answered by the simulator                 {:.0} ms   median; its writes wait for a read in progress)",
        median(answered_ms.clone()),
    );
    println!(
        "daemon peak RSS                                     {:.0} MB   target ≤ 250 MB",
        vm_hwm_mb(pid)
    );
    drop(daemon);
}
