//! Simulator benchmark: 10,000 apps with 30,000 running tasks, in-process.
//!
//! Prints the median of several runs for:
//! - `GET /v2/apps?embed=apps.tasks` latency (target ≤ 300 ms),
//! - single-app `PUT /v2/apps/{id}` throughput (target ≥ 2,000/s on 2 cores),
//! - peak RSS (`VmHWM`, target ≤ 500 MB).
//!
//! Run: `cargo bench --bench sim`.

use std::time::{Duration, Instant};

use pacer::sim::commands::Command;
use pacer::sim::{Settings, Shared, SimConfig};
use serde_json::json;

const APPS: usize = 10_000;
const INSTANCES: usize = 3;
const RUNS: usize = 5;
const PUTS_PER_RUN: usize = 4_000;
const CONCURRENCY: usize = 32;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn proc_status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "n/a".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!(
        "{cores} cores, {cpu}, {mem} RAM, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn main() {
    println!("pacer sim benchmark — {}", machine());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let settings = Settings {
        start_delay_ms: 0,
        healthy_delay_ms: 0,
        max_running_deployments: usize::MAX,
        ..Settings::default()
    };
    let sim = Shared::new(SimConfig {
        settings,
        state_file: None,
    })
    .expect("sim");

    let t = Instant::now();
    sim.with_state(false, |s, now| {
        for i in 0..APPS {
            let body = json!({"id": format!("/bench/group-{}/app-{i}", i % 100), "cmd": "sleep 3600", "instances": INSTANCES,
                "cpus": 0.1, "mem": 64, "labels": {"team": format!("t{}", i % 7)},
                "healthChecks": [{"protocol": "HTTP", "path": "/health"}]});
            s.apply(Command::CreateApp { body }, now).expect("create");
            // As the driver would between requests.
            if i % 100 == 99 {
                s.tick(now);
            }
        }
        for k in 0..10 {
            s.tick(now + k);
        }
    })
    .expect("load");
    let (apps, tasks, deps) = sim
        .with_state(false, |s, _| {
            (s.apps.len(), s.all_tasks().count(), s.deployments.len())
        })
        .unwrap();
    assert_eq!(
        (apps, tasks, deps),
        (APPS, APPS * INSTANCES, 0),
        "loaded and settled"
    );
    println!(
        "loaded {apps} apps / {tasks} running tasks in {:.2}s",
        t.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pacer::sim::serve_sim(listener, sim.clone(), async {
        let _ = stop_rx.await;
    }));
    let http = reqwest::Client::new();

    let mut gets = Vec::new();
    let mut size = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let body = http
            .get(format!("{url}/v2/apps?embed=apps.tasks"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        gets.push(t.elapsed().as_secs_f64() * 1000.0);
        size = body.len();
    }
    let get_ms = median(gets.clone());
    println!(
        "GET /v2/apps?embed=apps.tasks: median {get_ms:.0} ms over {RUNS} runs ({:.1} MB body; runs {:?} ms) — target ≤ 300 ms",
        size as f64 / 1e6,
        gets.iter().map(|g| g.round() as u64).collect::<Vec<_>>()
    );

    let mut rates = Vec::new();
    for run in 0..RUNS {
        let t = Instant::now();
        let mut handles = Vec::new();
        for w in 0..CONCURRENCY {
            let http = http.clone();
            let url = url.clone();
            handles.push(tokio::spawn(async move {
                let mut i = w;
                while i < PUTS_PER_RUN {
                    let app = (run * PUTS_PER_RUN + i) % APPS;
                    let r = http
                        .put(format!("{url}/v2/apps/bench/group-{}/app-{app}?force=true", app % 100))
                        .json(&json!({"labels": {"team": format!("t{}", app % 7), "rev": format!("{run}-{i}")}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    let _ = r.bytes().await;
                    i += CONCURRENCY;
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        rates.push(PUTS_PER_RUN as f64 / t.elapsed().as_secs_f64());
        // Let the rolling restarts finish so runs start from the same state.
        let deadline = Instant::now() + Duration::from_secs(60);
        while sim.with_state(false, |s, _| s.deployments.len()).unwrap() > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let rate = median(rates.clone());
    println!(
        "PUT /v2/apps/{{id}} (config change, {CONCURRENCY} concurrent clients): median {rate:.0}/s over {RUNS} runs of {PUTS_PER_RUN} (runs {:?}/s) — target ≥ 2000/s",
        rates.iter().map(|r| r.round() as u64).collect::<Vec<_>>()
    );
    let tasks = sim.with_state(false, |s, _| s.all_tasks().count()).unwrap();
    println!("tasks after the PUT runs: {tasks}");
    println!(
        "peak RSS (VmHWM): {} (VmRSS now {}) — target ≤ 500 MB",
        proc_status("VmHWM:"),
        proc_status("VmRSS:")
    );
    let _ = stop_tx.send(());
    let _ = server.await;
}
