//! `pacer plan` as a user runs it: the release binary, a config repo of
//! `--apps` apps in one environment (default 200), all in sync in a
//! simulator started in this process.
//!
//! Run with `cargo bench --bench plan` (add `-- --apps 1000 --runs 21`;
//! `-- --bin PATH` times another pacer binary, e.g. an earlier build).
//! Prints medians beside two floors measured in the same run: the binary
//! starting and exiting (`pacer --version`), and one
//! `GET /v2/apps?embed=apps.deployments` of the same simulator with its
//! JSON parse (what any plan must read).

mod common;

use common::{Shape, generate, git, load_sim, start_sim};
use std::process::Command;
use std::time::{Duration, Instant};

struct Opts {
    apps: usize,
    runs: usize,
    bin: String,
}

fn opts() -> Opts {
    let mut o = Opts {
        apps: 200,
        runs: 15,
        bin: env!("CARGO_BIN_EXE_pacer").into(),
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let n = || w[1].parse().expect("a number");
        match w[0].as_str() {
            "--apps" => o.apps = n(),
            "--runs" => o.runs = n(),
            "--bin" => o.bin = w[1].clone(),
            _ => {} // cargo passes --bench
        }
    }
    o
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The median wall time of `runs` runs of the release binary, each of
/// which must end with `code`.
fn binary(bin: &str, runs: usize, args: &[&str], code: i32) -> Duration {
    let mut walls = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(bin)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        walls.push(t.elapsed());
        assert_eq!(
            out.status.code(),
            Some(code),
            "pacer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    median(walls)
}

/// Waits until the simulator runs no deployment.
async fn no_deployments(http: &reqwest::Client, url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let d: serde_json::Value = http
            .get(format!("{url}/v2/deployments"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if d.as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
        assert!(Instant::now() < deadline, "deployments still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let o = opts();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    generate(
        &repo,
        &Shape {
            apps: o.apps,
            envs: 1,
        },
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "synthetic repo"]);
    println!(
        "pacer plan benchmark: {} apps in one environment, in sync in the simulator",
        o.apps
    );
    println!("binary: {}; median of {} runs each\n", o.bin, o.runs);

    let sim_url = start_sim(pacer::sim::Settings {
        start_delay_ms: 0,
        healthy_delay_ms: 0,
        ..pacer::sim::Settings::default()
    })
    .await;
    let http = reqwest::Client::new();

    // Marathon gets what Git says, straight through the API.
    load_sim(&sim_url, &repo).await;
    no_deployments(&http, &sim_url, Duration::from_secs(120)).await;

    let mut floor = Vec::new();
    for _ in 0..o.runs {
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
        assert_eq!(v["apps"].as_array().unwrap().len(), o.apps);
        floor.push(t.elapsed());
    }
    let floor = median(floor);

    // The binary runs while this runtime serves the simulator.
    let (runs, bin) = (o.runs, o.bin.clone());
    let repo_s = repo.to_str().unwrap().to_string();
    let url = sim_url.clone();
    let (start, plan) = tokio::task::spawn_blocking(move || {
        let start = binary(&bin, runs, &["--version"], 0);
        let args = [
            "plan",
            "--repo",
            &repo_s,
            "--rev",
            "HEAD",
            "--marathon",
            &url,
            // Earlier builds need it; this repo has only this environment.
            "--env",
            "env0",
        ];
        // Exit 0: in sync, nothing to change.
        let plan = binary(&bin, runs, &args, 0);
        (start, plan)
    })
    .await
    .unwrap();
    println!(
        "floor: `pacer --version` (start and exit)           {}",
        ms(start)
    );
    println!(
        "floor: GET /v2/apps?embed=apps.deployments + parse  {}",
        ms(floor)
    );
    println!(
        "`pacer plan --rev HEAD`, release binary             {}  (target ≤ 100 ms)",
        ms(plan)
    );
}
