//! Several replicas on a real ZooKeeper (Debian's `zookeeper` package):
//! how long a failover takes, and what HA costs on the hot path.
//!
//! Run with `cargo bench --bench ha` (`-- --kills 10 --webhooks 7`).
//! Prints, with medians:
//! - failover: the leader killed (SIGKILL) with a change waiting → the
//!   first write by the new leader, from the simulator's request log, over
//!   `--kills` kills, with the default session timeout (6 s); the goal is
//!   ≤ 10 s;
//! - webhook → PUT for a one-app commit with one replica (no `--zk`) and
//!   with three, in the same run;
//! - the steady reconcile cycle (the daemon's `cycle done` lines) of one
//!   replica alone and of the leader among three.

mod common;

#[path = "../tests/util/zk.rs"]
#[allow(dead_code)]
mod zk;

use common::{cycle_ms, git, git_out, median};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-webhook-secret";
const ADMIN: &str = "bench-admin-token-0123456789";

struct Opts {
    kills: usize,
    webhooks: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        kills: 10,
        webhooks: 7,
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let n = || w[1].parse().expect("a number");
        match w[0].as_str() {
            "--kills" => o.kills = n(),
            "--webhooks" => o.webhooks = n(),
            _ => {}
        }
    }
    o
}

struct Replica {
    child: Child,
    url: String,
    /// Its cycles' durations (ms), from its log.
    cycles: Arc<Mutex<Vec<f64>>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(repo: &Path, sim: &str, workdir: &Path, zk: Option<&str>) -> Replica {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pacer"));
    cmd.args([
        "--log",
        "warn,pacer::reconcile=debug",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--poll",
        "1",
    ])
    .args(["--repo-url", &format!("file://{}", repo.display())])
    .args([
        "--marathon",
        sim,
        "--webhook-secret",
        SECRET,
        "--env",
        "dev",
    ])
    .args(["--workdir", workdir.to_str().unwrap()])
    .env("PACER_ADMIN_TOKEN", ADMIN)
    .env("NO_COLOR", "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(url) = zk {
        cmd.args(["--zk", url]);
    }
    let mut child = cmd.spawn().expect("starting pacer serve");
    let cycles = Arc::new(Mutex::new(Vec::new()));
    let (c, stderr) = (cycles.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(ms) = cycle_ms(&line) {
                c.lock().unwrap().push(ms);
            }
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("pacer serve: listening on ")
        .expect("the listening line")
        .to_string();
    Replica { child, url, cycles }
}

async fn get(http: &reqwest::Client, url: &str, token: bool) -> Value {
    let mut rb = http.get(url);
    if token {
        rb = rb.bearer_auth(ADMIN);
    }
    match rb.send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The index of the replica that leads, once one does.
async fn leader(http: &reqwest::Client, rs: &[Option<Replica>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for (i, r) in rs.iter().enumerate() {
            if let Some(r) = r
                && get(http, &format!("{}/api/v1/status", r.url), true).await["ha"]["role"]
                    == "leader"
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The time of the first PUT to `id` at or after `since`, from the
/// simulator's request log.
async fn first_put(
    http: &reqwest::Client,
    sim: &str,
    id: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let log = get(http, &format!("{sim}/_sim/requests"), false).await;
        let at = log["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["method"] == "PUT"
                    && e["uri"]
                        .as_str()
                        .is_some_and(|u| u.starts_with(&format!("/v2/apps{id}")))
            })
            .filter_map(|e| chrono::DateTime::parse_from_rfc3339(e["at"].as_str()?).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .find(|t| *t >= since);
        if let Some(at) = at {
            return at;
        }
        assert!(Instant::now() < deadline, "no PUT to {id} within 120 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn commit_change(repo: &Path, app: usize, value: &str) -> String {
    let f = repo.join(format!("apps/app{app}/app.yaml"));
    std::fs::write(&f, format!("marathon:\n  cmd: sleep 1000\n  cpus: 0.1\n  mem: 32\n  instances: 1\n  env:\n    RUN: \"{value}\"\n")).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", value]);
    git_out(repo, &["rev-parse", "HEAD"])
}

/// Webhook → PUT for `n` one-app commits, sent to `to`: the median (ms).
async fn webhook_to_put(
    http: &reqwest::Client,
    sim: &str,
    repo: &Path,
    to: &str,
    n: usize,
    tag: &str,
) -> f64 {
    let mut ms = Vec::new();
    for i in 0..n {
        let app = i % 5;
        let after = commit_change(repo, app, &format!("{tag}-{i}"));
        let body = json!({"ref": "refs/heads/main", "after": after}).to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let sent = chrono::Utc::now();
        let r = http
            .post(format!("{to}/hooks/git"))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", format!("{tag}-{i}"))
            .header("X-Hub-Signature-256", sig)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let put = first_put(http, sim, &format!("/dev/app{app}"), sent).await;
        ms.push((put - sent).num_microseconds().unwrap() as f64 / 1000.0);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    median(ms)
}

/// The median of `r`'s next 10 idle cycles.
async fn steady(r: &Replica) -> f64 {
    let from = r.cycles.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = r.cycles.lock().unwrap().clone();
        if c.len() >= from + 10 {
            return median(c[from..from + 10].to_vec());
        }
        assert!(Instant::now() < deadline, "no cycles logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    let o = opts();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("environments")).unwrap();
    std::fs::write(
        repo.join("pacer.yaml"),
        "version: 1\nenvironments:\n  dev:\n    group: /dev\n    policy: {autoApply: true}\n",
    )
    .unwrap();
    std::fs::write(repo.join("environments/dev.yaml"), "values: {}\n").unwrap();
    for a in 0..5 {
        std::fs::create_dir_all(repo.join(format!("apps/app{a}"))).unwrap();
    }
    git(&repo, &["init", "-q", "-b", "main"]);
    for a in 0..5 {
        commit_change(&repo, a, "initial");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = format!("http://{}", listener.local_addr().unwrap());
    let shared = pacer::sim::Shared::new(pacer::sim::SimConfig {
        settings: pacer::sim::Settings {
            start_delay_ms: 0,
            healthy_delay_ms: 0,
            ..pacer::sim::Settings::default()
        },
        state_file: None,
    })
    .unwrap();
    tokio::spawn(pacer::sim::serve_sim(
        listener,
        shared,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let zk = zk::Zk::start();
    let zk_url = zk.url("/pacer-bench");
    println!(
        "pacer HA benchmark: 3 replicas on ZooKeeper 127.0.0.1:{}, 5 apps, default session timeout (6 s)\n",
        zk.port
    );

    // One replica, no ZooKeeper: the baseline.
    let single = replica(&repo, &sim, &dir.path().join("single"), None);
    until("the single replica in sync", || {
        let (http, u) = (http.clone(), single.url.clone());
        async move {
            get(&http, &format!("{u}/api/v1/status"), true).await["environments"]["dev"]["apps"]
                .as_object()
                .is_some_and(|a| a.len() == 5 && a.values().all(|x| x["sync"] == "inSync"))
        }
    })
    .await;
    let base = webhook_to_put(&http, &sim, &repo, &single.url, o.webhooks, "single").await;
    let single_cycle = steady(&single).await;
    drop(single);

    let mut rs: Vec<Option<Replica>> = (0..3)
        .map(|i| {
            Some(replica(
                &repo,
                &sim,
                &dir.path().join(format!("r{i}")),
                Some(&zk_url),
            ))
        })
        .collect();
    let l = leader(&http, &rs).await;
    let ha = webhook_to_put(
        &http,
        &sim,
        &repo,
        &rs[l].as_ref().unwrap().url,
        o.webhooks,
        "ha",
    )
    .await;
    // To a follower: it wakes the leader through ZooKeeper.
    let f = (l + 1) % 3;
    let leader_cycle = steady(rs[l].as_ref().unwrap()).await;
    let via = webhook_to_put(
        &http,
        &sim,
        &repo,
        &rs[f].as_ref().unwrap().url,
        o.webhooks,
        "via",
    )
    .await;
    println!(
        "webhook → PUT, one replica (no --zk)          {base:>7.0} ms   median of {}",
        o.webhooks
    );
    println!(
        "webhook → PUT, three replicas, to the leader  {ha:>7.0} ms   median of {}",
        o.webhooks
    );
    println!(
        "webhook → PUT, three replicas, to a follower  {via:>7.0} ms   median of {}",
        o.webhooks
    );
    println!("steady cycle, one replica                     {single_cycle:>7.1} ms   median of 10");
    println!(
        "steady cycle, the leader of three             {leader_cycle:>7.1} ms   median of 10\n"
    );

    let mut took = Vec::new();
    for k in 0..o.kills {
        let l = leader(&http, &rs).await;
        // A change waits; the leader dies before it can send it.
        rs[l].as_mut().unwrap().child.kill().unwrap();
        let killed = chrono::Utc::now();
        rs[l] = None;
        commit_change(&repo, k % 5, &format!("failover-{k}"));
        let put = first_put(&http, &sim, &format!("/dev/app{}", k % 5), killed).await;
        let s = (put - killed).num_milliseconds() as f64 / 1000.0;
        took.push(s);
        println!("  kill {k}: first write by the new leader after {s:.2} s");
        rs[l] = Some(replica(
            &repo,
            &sim,
            &dir.path().join(format!("r{l}-{k}")),
            Some(&zk_url),
        ));
    }
    let max = took.iter().copied().fold(0.0, f64::max);
    println!(
        "\nfailover (leader killed → first write by the new leader)  median {:.2} s, max {max:.2} s over {} kills; goal ≤ 10 s",
        median(took.clone()),
        took.len()
    );
}
