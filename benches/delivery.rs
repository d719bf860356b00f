//! The config server at scale: the release `pacer serve` against the
//! simulator (tasks on loopback hosts, so the login's address check runs
//! for real), one config repo whose every app has a `hot` file that reads
//! one environment value.
//!
//! Run with `cargo bench --bench delivery` (add `-- --watchers 1000` for a
//! smaller run). Prints:
//! - **fan-out**: `--watchers` (10,000) tasks, each logged in with its own
//!   token, block on `GET /v1/config?index=N&wait=60s`; one commit changes
//!   the value every bundle reads; the time from the webhook until every
//!   watcher has read the new manifest (median and worst over `--commits`),
//!   the spread from the first watcher to the last, and the server's memory
//!   per watcher (RSS with the watches open minus RSS before, / watchers);
//! - **against etcd**: the same number of watchers on one key through
//!   etcd's v3 JSON gateway (`POST /v3/watch`), one put, the time until all
//!   saw it; the ratio pacer / etcd (skipped, and said so, when no `etcd`
//!   binary is on the PATH: `apt-get install etcd-server`);
//! - **reads**: `GET /v1/config` with token checks from `--conns` (256)
//!   keep-alive connections for `--secs` (5) seconds, against the same load
//!   on `/healthz` as the floor.
//!
//! The tasks spread over `--apps` (100) apps of one environment, not one
//! app: a login reads the task's app from Marathon, tasks and all, so 10,000
//! logins into one 10,000-task app would read 10⁸ task objects before the
//! clock starts. The wake-up path is the same either way: every watch waits
//! on the one change notification of the server's bundles.

mod common;

#[path = "delivery/etcd.rs"]
mod etcd;
#[path = "delivery/load.rs"]
mod load;

use common::git;
use hmac::{Hmac, Mac};
use load::{Clients, Daemon, median, percentile};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const SECRET: &str = "bench-webhook-secret";
/// Idle connections opened to weigh a connection apart from its watch.
const IDLE: usize = 2_000;

pub struct Opts {
    pub watchers: usize,
    pub apps: usize,
    pub commits: usize,
    pub conns: usize,
    pub secs: u64,
    /// `pacer serve --task-recheck`; `None`: its default (30 s).
    pub task_recheck: Option<u64>,
}

fn opts() -> Opts {
    let mut o = Opts {
        watchers: 10_000,
        apps: 100,
        commits: 7,
        conns: 256,
        secs: 5,
        task_recheck: None,
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let n = || w[1].parse().expect("a number");
        match w[0].as_str() {
            "--watchers" => o.watchers = n(),
            "--apps" => o.apps = n(),
            "--commits" => o.commits = n(),
            "--conns" => o.conns = n(),
            "--secs" => o.secs = n() as u64,
            "--task-recheck" => o.task_recheck = Some(n() as u64),
            _ => {}
        }
    }
    o.apps = o.apps.clamp(1, o.watchers.max(1));
    o
}

/// Raises this process's open-file limit to its hard limit (the daemon and
/// etcd inherit it); the limit it got.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// One environment, `apps` apps of `per_app` instances, each with a hot
/// file reading `values.rev` of the environment.
fn generate(root: &Path, apps: usize, per_app: usize) {
    write(
        root,
        "pacer.yaml",
        "version: 1\nenvironments:\n  dev:\n    group: /dev\n    policy: {autoApply: false}\n",
    );
    write(root, "environments/dev.yaml", "values:\n  rev: 0\n");
    for a in 0..apps {
        let app = format!("svc{a:04}");
        write(
            root,
            &format!("apps/{app}/app.yaml"),
            &format!(
                "marathon:\n  cmd: sleep 86400\n  cpus: 0.01\n  mem: 16\n  instances: {per_app}\nfiles:\n  app.conf:\n    path: /etc/{app}/app.conf\n    reload: hot\n"
            ),
        );
        write(
            root,
            &format!("apps/{app}/files/app.conf"),
            "# {{ id }}\nrev = {{ values.rev }}\n",
        );
    }
}

fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn head(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .current_dir(repo)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One figure per commit: webhook → first and → last watcher, in ms, and
/// every watcher's latency.
struct Round {
    first: f64,
    all: f64,
    each: Vec<f64>,
}

/// Commits `rev: k`, sends the webhook, and waits until every watcher has
/// reported the change (at most 60 s).
async fn round(
    k: usize,
    repo: &Path,
    d: &Daemon,
    http: &reqwest::Client,
    seen: &mut mpsc::UnboundedReceiver<Instant>,
    watchers: usize,
) -> Result<Round, String> {
    write(
        repo,
        "environments/dev.yaml",
        &format!("values:\n  rev: {k}\n"),
    );
    git(repo, &["commit", "-q", "-am", "rev"]);
    let body = serde_json::json!({"ref": "refs/heads/main", "after": head(repo)}).to_string();
    let t0 = Instant::now();
    let r = http
        .post(format!("{}/hooks/git", d.url))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", format!("bench-{k}"))
        .header("X-Hub-Signature-256", signature(body.as_bytes()))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status().as_u16() != 202 {
        return Err(format!("the webhook: {}", r.status()));
    }
    let mut each = Vec::with_capacity(watchers);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while each.len() < watchers {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(at)) => each.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0),
            Ok(None) => return Err("the watchers are gone".into()),
            Err(_) => {
                return Err(format!(
                    "only {} of {watchers} watchers saw commit {k} within 60 s",
                    each.len()
                ));
            }
        }
    }
    each.sort_by(f64::total_cmp);
    Ok(Round {
        first: each[0],
        all: each[each.len() - 1],
        each,
    })
}

#[tokio::main]
async fn main() {
    let mut o = opts();
    let fds = raise_fd_limit();
    // The bench holds one socket per watcher, the daemon (or etcd) another.
    let room = usize::try_from(fds)
        .unwrap_or(usize::MAX)
        .saturating_sub(1_000);
    if o.watchers > room {
        println!(
            "open-file limit {fds}: {} watchers instead of {} (raise `ulimit -Hn`)",
            room, o.watchers
        );
        o.watchers = room;
    }
    let per_app = o.watchers.div_ceil(o.apps);
    let tasks = per_app * o.apps;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    generate(&repo, o.apps, per_app);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "synthetic repo"]);
    println!(
        "pacer config server benchmark: {} watchers ({} apps × {per_app} tasks), open-file limit {fds}, --task-recheck {}",
        o.watchers,
        o.apps,
        o.task_recheck
            .map_or("30 (default)".into(), |s| s.to_string())
    );

    let sim_url = load::start_sim(&repo, tasks).await;
    let daemon = Daemon::start(
        &repo,
        &sim_url,
        &dir.path().join("mirror"),
        o.watchers,
        o.task_recheck,
    );
    let http = reqwest::Client::new();
    let clients = Arc::new(Clients::loopback());
    let t = Instant::now();
    let logins = load::log_in(&http, &sim_url, &daemon, &clients, o.watchers).await;
    println!(
        "logged in {} tasks in {:.1} s ({:.0}/s)\n",
        logins.len(),
        t.elapsed().as_secs_f64(),
        logins.len() as f64 / t.elapsed().as_secs_f64()
    );

    // Fan-out.
    let rss_before = load::rss_kb(daemon.pid());
    let (tx, mut seen) = mpsc::unbounded_channel();
    let errors = Arc::new(load::Errors::default());
    let mut watchers = load::watch_all(&daemon, &logins, tx, &errors);
    load::wait_watchers(&http, &daemon, o.watchers).await;
    let rss_with = load::rss_kb(daemon.pid());
    let per_watcher = (rss_with.saturating_sub(rss_before)) as f64 * 1024.0 / o.watchers as f64;
    // What a kept-alive connection alone costs, apart from a watch: a few
    // thousand more, opened while the watches wait, so no memory the
    // allocator kept from earlier work is reused.
    let idle = load::idle_connections(&daemon, IDLE).await;
    let per_conn =
        load::rss_kb(daemon.pid()).saturating_sub(rss_with) as f64 * 1024.0 / IDLE as f64;
    drop(idle);
    let mut rounds = Vec::new();
    for k in 1..=o.commits {
        match round(k, &repo, &daemon, &http, &mut seen, o.watchers).await {
            Ok(r) => rounds.push(r),
            Err(e) => {
                println!("fan-out: {e}");
                break;
            }
        }
        // Every watch back in place before the next commit.
        load::wait_watchers(&http, &daemon, o.watchers).await;
    }
    watchers.abort_all();
    while watchers.join_next().await.is_some() {}
    let pacer_all = if rounds.is_empty() {
        None
    } else {
        let all: Vec<f64> = rounds.iter().map(|r| r.all).collect();
        let spread: Vec<f64> = rounds.iter().map(|r| r.all - r.first).collect();
        let first: Vec<f64> = rounds.iter().map(|r| r.first).collect();
        let mut each: Vec<f64> = rounds.iter().flat_map(|r| r.each.iter().copied()).collect();
        each.sort_by(f64::total_cmp);
        let worst = all.iter().copied().fold(0.0, f64::max);
        println!(
            "fan-out, webhook → all {} watchers have it      {:.0} ms median, {worst:.0} ms worst of {} commits; target p99 ≤ 1000 ms",
            o.watchers,
            median(all.clone()),
            all.len()
        );
        println!(
            "  webhook → first watcher (fetch, render)        {:.0} ms median",
            median(first)
        );
        println!(
            "  first → last watcher (the fan-out itself)      {:.0} ms median",
            median(spread)
        );
        println!(
            "  per watcher, over all commits                  p50 {:.0} ms, p99 {:.0} ms",
            percentile(&each, 0.5),
            percentile(&each, 0.99)
        );
        Some(median(all))
    };
    println!(
        "  watcher requests that failed (retried)         {}",
        errors.summary()
    );
    println!(
        "server memory per watcher                        {:.1} KB   (RSS {} → {} MB); target ≤ 16 KB",
        per_watcher / 1024.0,
        rss_before / 1024,
        rss_with / 1024
    );
    println!(
        "  of which an idle kept-alive connection         {:.1} KB   ({IDLE} more, one GET /healthz each, then nothing)",
        per_conn / 1024.0
    );

    // Reads, then the floor.
    let tokens: Vec<load::Login> = logins.iter().take(o.conns).cloned().collect();
    let secs = Duration::from_secs(o.secs);
    let reads = load::read_load(&daemon, &clients, &tokens, "/v1/config", secs).await;
    let floor = load::read_load(&daemon, &clients, &tokens, "/healthz", secs).await;
    println!(
        "\nreads, GET /v1/config with token checks         {:.0}/s  ({} connections, {} s, {} errors); target ≥ 20,000/s",
        reads.per_sec, o.conns, o.secs, reads.errors
    );
    println!(
        "floor, GET /healthz, same load                   {:.0}/s  ratio {:.2}",
        floor.per_sec,
        reads.per_sec / floor.per_sec.max(1.0)
    );
    drop(daemon);

    // Against etcd, with the pacer side's processes gone.
    println!();
    match etcd::fan_out(o.watchers, o.commits, &dir.path().join("etcd")).await {
        Ok(e) => {
            let worst = e.all.iter().copied().fold(0.0, f64::max);
            let etcd_all = median(e.all.clone());
            println!(
                "etcd {}: put → all {} watchers have it        {etcd_all:.0} ms median, {worst:.0} ms worst of {} puts",
                e.version,
                o.watchers,
                e.all.len()
            );
            println!(
                "  etcd memory per watcher                      {:.1} KB",
                e.per_watcher_bytes / 1024.0
            );
            if let Some(p) = pacer_all {
                println!(
                    "pacer / etcd, time until all have it          {:.2}×; goal ≤ 1",
                    p / etcd_all.max(0.001)
                );
            }
        }
        Err(e) => println!("etcd: not measured: {e}"),
    }
}
