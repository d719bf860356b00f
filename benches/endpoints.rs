//! Live endpoints at scale: the release `pacer serve` against the simulator
//! holding `--apps` (10,000) apps of `--tasks` (3) tasks each, one of them
//! `db`; `--dependents` (100) of the apps have a hot file that names db's
//! tasks (`addresses("db", port="pg")`), and `--agents` (1,000) of their
//! tasks are logged in and block on `GET /v1/config?index=N&wait=60s`, as
//! `pacer agent` does.
//!
//! Each of `--moves` (7) rounds fails one db task in the simulator (it comes
//! back on another host and port) and times, for every watcher, the moment
//! it read the new manifest. Prints the time from the move until all agents
//! have it (median and worst of the rounds), the per-agent p50 and p99 with
//! the quiet period (`--endpoints-min-wait`, set to `--quiet`, 100 ms)
//! taken out, as the target counts it, and how many apps each move
//! rendered again (`pacer_endpoint_renders_total`): only the dependents,
//! never all 10,000.
//!
//! Run with `cargo bench --bench endpoints` (`-- --apps 2000` for a smaller
//! run).

mod common;

// Shared with the delivery bench, which uses all of it.
#[path = "delivery/load.rs"]
#[allow(dead_code)]
mod load;

use load::{Clients, Daemon, median, percentile};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const SECRET: &str = "bench-webhook-secret";
/// The connection cap's room for connections that aren't watches.
const IDLE: usize = 0;

struct Opts {
    apps: usize,
    tasks: usize,
    dependents: usize,
    agents: usize,
    moves: usize,
    quiet: u64,
}

fn opts() -> Opts {
    let mut o = Opts {
        apps: 10_000,
        tasks: 3,
        dependents: 100,
        agents: 1_000,
        moves: 7,
        quiet: 100,
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let n = || w[1].parse().expect("a number");
        match w[0].as_str() {
            "--apps" => o.apps = n(),
            "--tasks" => o.tasks = n(),
            "--dependents" => o.dependents = n(),
            "--agents" => o.agents = n(),
            "--moves" => o.moves = n(),
            "--quiet" => o.quiet = n() as u64,
            _ => {}
        }
    }
    o.dependents = o.dependents.clamp(1, o.apps.saturating_sub(1).max(1));
    o
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// `db`; `dependents` apps of `per_dependent` tasks whose hot file names
/// db's tasks; the rest of `apps` plain, of `tasks` tasks each.
fn generate(root: &Path, o: &Opts, per_dependent: usize) {
    write(
        root,
        "pacer.yaml",
        "version: 1\nenvironments:\n  dev:\n    group: /dev\n    policy: {autoApply: false}\n",
    );
    write(root, "environments/dev.yaml", "values: {}\n");
    let app = |instances: usize| {
        format!(
            "marathon:\n  cmd: sleep 86400\n  cpus: 0.01\n  mem: 16\n  instances: {instances}\n"
        )
    };
    write(
        root,
        "apps/db/app.yaml",
        &format!(
            "{}  portDefinitions:\n    - {{port: 0, name: pg}}\n",
            app(o.tasks)
        ),
    );
    for a in 0..o.dependents {
        let name = format!("svc{a:04}");
        write(
            root,
            &format!("apps/{name}/app.yaml"),
            &format!(
                "{}files:\n  app.conf:\n    path: /etc/{name}/app.conf\n    reload: hot\n",
                app(per_dependent)
            ),
        );
        write(
            root,
            &format!("apps/{name}/files/app.conf"),
            "db = {{ addresses(\"db\", port=\"pg\")|join(\",\") }}\n",
        );
    }
    for a in 0..o.apps.saturating_sub(o.dependents + 1) {
        write(root, &format!("apps/app{a:05}/app.yaml"), &app(o.tasks));
    }
}

async fn metric(http: &reqwest::Client, d: &Daemon, series: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One of db's running tasks.
async fn a_db_task(http: &reqwest::Client, sim: &str) -> String {
    let v: Value = http
        .get(format!("{sim}/v2/apps/dev/db/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["state"] == "TASK_RUNNING")
        .and_then(|t| t["id"].as_str())
        .expect("a running db task")
        .to_string()
}

#[tokio::main]
async fn main() {
    let o = opts();
    let per_dependent = o.agents.div_ceil(o.dependents);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    generate(&repo, &o, per_dependent);
    common::git(&repo, &["init", "-q", "-b", "main"]);
    common::git(&repo, &["add", "-A"]);
    common::git(&repo, &["commit", "-q", "-m", "synthetic repo"]);
    let tasks = o.tasks * (o.apps - o.dependents) + per_dependent * o.dependents;
    println!(
        "pacer live endpoints benchmark: {} apps, {tasks} tasks; {} agents on {} apps name db's {} tasks; quiet period {} ms",
        o.apps, o.agents, o.dependents, o.tasks, o.quiet
    );
    let t = Instant::now();
    let sim = load::start_sim(&repo, tasks).await;
    println!("simulator loaded in {:.1} s", t.elapsed().as_secs_f64());
    let quiet = o.quiet.to_string();
    let extra: Vec<String> = [
        "--endpoints-min-wait",
        &quiet,
        "--endpoints-max-wait",
        &quiet,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let daemon = Daemon::start_with(&repo, &sim, &dir.path().join("mirror"), o.agents, &extra);
    let http = reqwest::Client::new();
    let clients = Arc::new(Clients::loopback());
    let logins = load::log_in_where(&http, &sim, &daemon, &clients, o.agents, |app| {
        app.starts_with("/dev/svc")
    })
    .await;
    let (tx, mut seen) = mpsc::unbounded_channel();
    let errors = Arc::new(load::Errors::default());
    let mut watchers = load::watch_all(&daemon, &logins, tx, &errors);
    load::wait_watchers(&http, &daemon, o.agents).await;
    println!("{} agents watching\n", logins.len());

    let mut all = Vec::new();
    let mut each = Vec::new();
    let mut renders = Vec::new();
    for round in 1..=o.moves {
        let before = metric(&http, &daemon, "pacer_endpoint_renders_total").await;
        let task = a_db_task(&http, &sim).await;
        let t0 = Instant::now();
        let r = http
            .post(format!("{sim}/_sim/tasks/{task}/fail"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "failing {task}: {}", r.status());
        let mut got = Vec::with_capacity(o.agents);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while got.len() < o.agents {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Ok(Some(at)) => got.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3),
                _ => {
                    println!(
                        "move {round}: only {} of {} agents saw it within 60 s",
                        got.len(),
                        o.agents
                    );
                    break;
                }
            }
        }
        if got.len() < o.agents {
            break;
        }
        got.sort_by(f64::total_cmp);
        all.push(got[got.len() - 1]);
        each.extend(got.iter().map(|ms| ms - o.quiet as f64));
        // Every watch back in place, and the counter settled.
        load::wait_watchers(&http, &daemon, o.agents).await;
        renders.push(metric(&http, &daemon, "pacer_endpoint_renders_total").await - before);
    }
    watchers.abort_all();
    while watchers.join_next().await.is_some() {}
    if all.is_empty() {
        println!("no move measured");
        return;
    }
    each.sort_by(f64::total_cmp);
    let worst = all.iter().copied().fold(0.0, f64::max);
    println!(
        "task move → all {} agents have the new file     {:.0} ms median, {worst:.0} ms worst of {} moves (quiet period included)",
        o.agents,
        median(all.clone()),
        all.len()
    );
    println!(
        "  per agent, quiet period taken out            p50 {:.0} ms, p99 {:.0} ms; target p99 ≤ 1000 ms",
        percentile(&each, 0.5),
        percentile(&each, 0.99)
    );
    println!(
        "apps rendered again per move                    {:?} of {} apps ({} name db)",
        renders, o.apps, o.dependents
    );
    println!(
        "  watcher requests that failed (retried)       {}",
        errors.summary()
    );
    drop(daemon);
}
