//! The dashboard at scale, with the release `pacer serve`:
//!
//! 1. `--apps` × `--envs` apps (default 1,000 × 10 = 10,000) in sync in the
//!    simulator. The server's time for the app list's first page (the
//!    default order: most urgent first, over all 10,000), the same page as
//!    JSON, a text filter and the overview, against `GET /healthz` on the
//!    same connection as the floor; then in headless Chromium the time
//!    until the list's first row is visible, against `/healthz`'s text.
//! 2. One app of `--tasks` (1,000) tasks, every one logged in to the
//!    config server and reporting its bundle (loopback hosts, as the
//!    config server's own bench): the app page at the server and in the
//!    browser, and the longest task that held the page's main thread.
//!
//! Targets (issue: dashboard): the first page ≤ 100 ms at the server and
//! visible in ≤ 1 s; an app page with 1,000 tasks responsive.
//!
//! Run with `cargo bench --bench dashboard` (`-- --apps 100` for a smaller
//! run, `-- --part apps` or `--part tasks` for one half). The browser half needs Debian's `chromium` and `npm ci --prefix
//! tests/browser`; without them it says so and measures the server only.

mod common;

// The config server's load helpers (logins from loopback hosts); this
// bench uses a few of them.
#[path = "delivery/load.rs"]
#[allow(dead_code)]
mod load;

use common::{generate, git, load_sim, median, start_sim};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `load`'s daemon signs webhooks with it.
pub const SECRET: &str = "bench-webhook-secret";
/// `load`'s connection cap counts this many idle connections.
const IDLE: usize = 0;
const ADMIN: &str = "bench-admin-token-0123456789abcdef";

struct Opts {
    apps: usize,
    envs: usize,
    tasks: usize,
    runs: usize,
    /// `apps`, `tasks` or both (`all`).
    part: String,
}

fn opts() -> Opts {
    let mut o = Opts {
        apps: 1000,
        envs: 10,
        tasks: 1000,
        runs: 50,
        part: "all".into(),
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let n = || w[1].parse().expect("a number");
        match w[0].as_str() {
            "--apps" => o.apps = n(),
            "--envs" => o.envs = n(),
            "--tasks" => o.tasks = n(),
            "--runs" => o.runs = n(),
            "--part" => o.part = w[1].clone(),
            _ => {}
        }
    }
    o
}

/// The release `pacer serve` with the admin token, killed on drop.
struct Serve {
    child: std::process::Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(repo: &Path, marathon: &str, workdir: &Path) -> Serve {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pacer"))
        .args([
            "--log",
            "warn",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll",
            "5",
        ])
        .args(["--repo-url", &format!("file://{}", repo.display())])
        .args(["--marathon", marathon, "--webhook-secret", SECRET])
        .args(["--workdir", workdir.to_str().unwrap()])
        .env("PACER_ADMIN_TOKEN", ADMIN)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting pacer serve");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("pacer serve: listening on ")
        .expect("the daemon printed its address")
        .to_string();
    Serve { child, url }
}

/// Median and 99th percentile of `runs` GETs of `path`, ms, on one
/// kept-alive connection; each answer must be 200.
async fn time_get(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    runs: usize,
    token: Option<&str>,
) -> (f64, f64, usize) {
    let mut ms = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs + 1 {
        let t = Instant::now();
        let mut rb = http.get(format!("{url}{path}"));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        bytes = r.bytes().await.unwrap().len();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.remove(0); // the first warms up
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = load::percentile(&sorted, 0.99);
    (median(ms), p99, bytes)
}

/// Runs `tests/browser/bench.mjs` on `pages`: one JSON line per page, or
/// why not.
fn browser(
    url: &str,
    pages: &Value,
    runs: usize,
    token: Option<&str>,
) -> Result<Vec<Value>, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err("playwright-core is not installed (`npm ci --prefix tests/browser`)".into());
    }
    let chromium = std::env::var("PACER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "no Chromium at {chromium} (`apt-get install chromium`)"
        ));
    }
    let mut cmd = Command::new("node");
    cmd.arg("bench.mjs")
        .current_dir(&dir)
        .env("PACER_URL", url)
        .env("PACER_PAGES", pages.to_string())
        .env("PACER_RUNS", runs.to_string())
        .env("PACER_CHROMIUM", &chromium);
    if let Some(t) = token {
        cmd.env("PACER_TOKEN", t);
    }
    let out = cmd.output().map_err(|e| format!("node: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn print_browser(what: &str, r: Result<Vec<Value>, String>) {
    match r {
        Ok(lines) => {
            for l in lines {
                println!(
                    "  browser, {:<28} median {:>6.1} ms, worst {:>6.1} ms, longest main-thread task {:.0} ms",
                    l["name"].as_str().unwrap_or("?"),
                    l["median_ms"].as_f64().unwrap_or(f64::NAN),
                    l["max_ms"].as_f64().unwrap_or(f64::NAN),
                    l["longest_task_ms"].as_f64().unwrap_or(0.0),
                );
            }
        }
        Err(why) => println!("  browser, {what}: not measured: {why}"),
    }
}

async fn many_apps(o: &Opts) {
    let total = o.apps * o.envs;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    generate(
        &repo,
        &common::Shape {
            apps: o.apps,
            envs: o.envs,
        },
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "synthetic repo"]);
    let sim = start_sim(pacer::sim::Settings {
        start_delay_ms: 0,
        healthy_delay_ms: 0,
        max_running_deployments: 100_000,
        ..pacer::sim::Settings::default()
    })
    .await;
    load_sim(&sim, &repo).await;
    let d = serve(&repo, &sim, &dir.path().join("mirror"));
    let http = reqwest::Client::new();
    // Every app reconciled: none unknown, all counted.
    load::wait_until(
        "every app in the status",
        Duration::from_secs(300),
        || async {
            let v: Value = http
                .get(format!("{}/api/v1/apps?per=1", d.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let unknown = v["counts"]
                .as_array()?
                .iter()
                .any(|c| c["status"] == "unknown" || c["status"] == "progressing");
            (v["total"].as_u64() != Some(total as u64) || unknown).then(|| v["counts"].to_string())
        },
    )
    .await;
    println!(
        "1. {total} apps ({} × {} environments), reconciled; {} runs each",
        o.apps, o.envs, o.runs
    );
    let (floor, floor99, _) = time_get(&http, &d.url, "/healthz", o.runs, Some(ADMIN)).await;
    println!(
        "  server, GET /healthz (floor)           median {floor:>6.2} ms, p99 {floor99:>6.2} ms"
    );
    for (name, path) in [
        ("app list, first page", "/ui/apps"),
        ("the same, JSON", "/api/v1/apps"),
        ("app list, text filter", "/ui/apps?q=svc0999"),
        ("app list, one status", "/ui/apps?status=inSync&sort=recent"),
        ("overview", "/"),
    ] {
        let (m, p99, bytes) = time_get(&http, &d.url, path, o.runs, Some(ADMIN)).await;
        println!(
            "  server, {name:<30} median {m:>6.2} ms, p99 {p99:>6.2} ms ({:.1}× floor, {} KB)",
            m / floor,
            bytes / 1024
        );
    }
    let pages = json!([
        {"name": "/healthz (floor)", "path": "/healthz", "selector": "body"},
        {"name": "app list, first page", "path": "/ui/apps", "selector": "table.apps tbody tr"},
        // Signed in, the page shows the public rows, then its session's.
        {"name": "the same, session's view", "path": "/ui/apps",
         "selector": "body:not(.upgrading) .pill.admin"},
        {"name": "overview", "path": "/", "selector": ".card"},
    ]);
    print_browser("10,000 apps", browser(&d.url, &pages, 10, Some(ADMIN)));
}

/// One environment, one app of `tasks` instances with a hot file.
fn one_big_app(root: &Path, tasks: usize) {
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "pacer.yaml",
        "version: 1\nenvironments:\n  dev:\n    group: /dev\n    policy: {autoApply: false}\n",
    );
    write("environments/dev.yaml", "values:\n  rev: 0\n");
    write(
        "apps/big/app.yaml",
        &format!(
            "marathon:\n  cmd: sleep 86400\n  cpus: 0.01\n  mem: 16\n  instances: {tasks}\nfiles:\n  app.conf:\n    path: /etc/big/app.conf\n    reload: hot\n"
        ),
    );
    write("apps/big/files/app.conf", "rev = {{ values.rev }}\n");
}

async fn many_tasks(o: &Opts) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    one_big_app(&repo, o.tasks);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one big app"]);
    let sim = load::start_sim(&repo, o.tasks).await;
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN).unwrap();
    let extra = [
        "--admin-token-file".to_string(),
        token_file.display().to_string(),
    ];
    let d = load::Daemon::start_with(&repo, &sim, &dir.path().join("mirror"), 100, &extra);
    let http = reqwest::Client::new();
    let clients = Arc::new(load::Clients::loopback());
    let logins = load::log_in(&http, &sim, &d, &clients, o.tasks).await;
    // Each task reports the bundle it holds, as its agent would.
    let mut reports = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    for l in logins {
        let (clients, url, limit) = (clients.clone(), d.url.clone(), limit.clone());
        reports.spawn(async move {
            let _p = limit.acquire_owned().await.unwrap();
            let http = clients.on(&l.host);
            let m: Value = http
                .get(format!("{url}/v1/config"))
                .bearer_auth(&l.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let index = m["index"].as_u64().expect("a manifest's index");
            let r = http
                .post(format!("{url}/v1/report"))
                .bearer_auth(&l.token)
                .json(&json!({"index": index}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "report: {}", r.status());
        });
    }
    while let Some(r) = reports.join_next().await {
        r.unwrap();
    }
    // The task list (task ids and bundles) is for a session.
    let path = "/ui/app?env=dev&app=big";
    let r = http
        .get(format!("{}{path}", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()
            .get("x-pacer-level")
            .and_then(|l| l.to_str().ok()),
        Some("admin"),
        "the admin token is not taken"
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains(&format!("{} task(s) report", o.tasks)),
        "the app page does not list the tasks:\n{}",
        &body[body.find("<main").unwrap_or(0)..]
    );
    println!(
        "\n2. one app of {} tasks, each reporting its bundle",
        o.tasks
    );
    let (floor, _, _) = time_get(&http, &d.url, "/healthz", o.runs, Some(ADMIN)).await;
    let (m, p99, bytes) = time_get(&http, &d.url, path, o.runs, Some(ADMIN)).await;
    println!(
        "  server, app page                       median {m:>6.2} ms, p99 {p99:>6.2} ms ({:.1}× the {floor:.2} ms floor, {} KB)",
        m / floor,
        bytes / 1024
    );
    let pages = json!([
        // The task table comes with the session's view.
        {"name": format!("app page, {} tasks", o.tasks), "path": path,
         "selector": "table.tasks tbody tr"},
    ]);
    print_browser("the app page", browser(&d.url, &pages, 10, Some(ADMIN)));
}

#[tokio::main]
async fn main() {
    let o = opts();
    println!("pacer dashboard benchmark (release build; medians)\n");
    if o.part != "tasks" {
        many_apps(&o).await;
    }
    if o.part != "apps" {
        many_tasks(&o).await;
    }
}
