//! The reconciler end to end: a bare Git repo behind `git daemon`, the real
//! `pacer sim` and `pacer serve`, and helpers to wait on conditions with a
//! deadline (never sleep-and-hope).

use super::{GitDaemon, PACER, TestRepo, run_git};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "e2e-webhook-secret";
/// The API tokens every [`Daemon`] gets unless a test says otherwise; its
/// requests carry the admin one.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-3f9a0c7d";
pub const READ_TOKEN: &str = "e2e-read-token-61b8e2a4";

/// A child process, killed and reaped when dropped.
pub struct Proc {
    child: Option<Child>,
    /// Its stderr.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `pacer args`, stderr to `log`, and returns it with its first
    /// stdout line (the rest of stdout is drained by a thread).
    fn spawn(args: &[String], log: &Path) -> (Proc, String) {
        Proc::spawn_env(args, &[], log)
    }

    /// [`Proc::spawn`] with `env` set for the child.
    fn spawn_env(args: &[String], env: &[(&str, &str)], log: &Path) -> (Proc, String) {
        let mut cmd = Command::new(PACER);
        cmd.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("PACER_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        let err = std::fs::File::create(log).expect("creating a log file");
        let mut child = cmd
            .env("NO_COLOR", "1")
            .env("PACER_AGE_KEY_FILE", super::demo_key())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("starting pacer");
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Proc {
            child: Some(child),
            log: log.to_path_buf(),
        };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("reading stdout");
        assert!(
            !line.is_empty(),
            "pacer {args:?} printed nothing and exited:\n{}",
            proc.log_tail()
        );
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        (proc, line.trim().to_string())
    }

    /// The last lines of its stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Its process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM (how Marathon stops a task); true when it exited within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Waits until `cond` gives `Ok`, polling every 25 ms; after `limit` fails
/// the test with `what` and the last `Err` (what was seen instead).
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match cond().await {
            Ok(v) => return v,
            Err(seen) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out after {limit:?} waiting for {what}; last seen:\n{seen}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A real `pacer sim` process.
pub struct Sim {
    pub proc: Proc,
    pub url: String,
    pub port: u16,
    http: reqwest::Client,
}

impl Sim {
    /// Starts the simulator on `port` (0: any), with fast tasks.
    pub async fn start(dir: &Path, port: u16, state: Option<&Path>) -> Sim {
        let mut extra: Vec<String> = Vec::new();
        if let Some(s) = state {
            extra.push("--state".into());
            extra.push(s.display().to_string());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Sim::launch(dir, port, &extra).await
    }

    /// Starts the simulator on any port with extra flags, with fast tasks.
    pub async fn start_with_args(dir: &Path, extra: &[&str]) -> Sim {
        Sim::launch(dir, 0, extra).await
    }

    async fn launch(dir: &Path, port: u16, extra: &[&str]) -> Sim {
        let mut args: Vec<String> =
            vec!["sim".into(), "--listen".into(), format!("127.0.0.1:{port}")];
        args.extend(extra.iter().map(|s| s.to_string()));
        let (proc, line) = Proc::spawn(&args, &dir.join(format!("sim-{}.log", unique())));
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of pacer sim: {line:?}"))
            .to_string();
        let port = url.rsplit(':').next().unwrap().parse().expect("a port");
        let sim = Sim {
            proc,
            url,
            port,
            http: reqwest::Client::new(),
        };
        sim.fast().await;
        sim
    }

    /// Tasks start and get healthy in 20 ms.
    pub async fn fast(&self) {
        let (s, v) = self
            .put(
                "/_sim/settings",
                json!({"taskStartDelayMs": 20, "taskHealthyDelayMs": 20}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }

    /// Versions of `id` from now on never get healthy (see docs/simulator.md).
    pub async fn never_healthy(&self, id: &str) {
        let (s, v) = self
            .post(&format!("/_sim/apps{id}/never-healthy"), json!({}))
            .await;
        assert_eq!(s, 200, "{v}");
    }

    /// Replaces the injected faults (`PUT /_sim/faults`).
    pub async fn faults(&self, faults: Value) {
        let (s, v) = self.put("/_sim/faults", faults).await;
        assert_eq!(s, 200, "{v}");
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.http.get(format!("{}{path}", self.url))).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.http.put(format!("{}{path}", self.url)).json(&body)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.http.post(format!("{}{path}", self.url)).json(&body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        send(self.http.delete(format!("{}{path}", self.url))).await
    }

    /// The live app (`GET /v2/apps/{id}`'s `app`), or `None`.
    pub async fn app(&self, id: &str) -> Option<Value> {
        let (s, v) = self.get(&format!("/v2/apps{id}")).await;
        (s == 200).then(|| v["app"].clone())
    }

    /// `(method, path without query, status)` of every Marathon request logged.
    pub async fn requests(&self) -> Vec<(String, String, u16)> {
        let (s, v) = self.get("/_sim/requests").await;
        assert_eq!(s, 200, "{v}");
        v["requests"]
            .as_array()
            .expect("a request list")
            .iter()
            .map(|e| {
                let uri = e["uri"].as_str().unwrap_or("");
                (
                    e["method"].as_str().unwrap_or("").to_string(),
                    uri.split('?').next().unwrap_or("").to_string(),
                    e["status"].as_u64().unwrap_or(0) as u16,
                )
            })
            .collect()
    }

    /// PUTs to `/v2/apps{id}` that Marathon accepted (2xx): deployments started.
    pub async fn accepted_puts(&self, id: &str) -> usize {
        let path = format!("/v2/apps{id}");
        self.requests()
            .await
            .iter()
            .filter(|(m, p, s)| m == "PUT" && *p == path && (200..300).contains(s))
            .count()
    }

    pub async fn deployments(&self) -> usize {
        let (_, v) = self.get("/v2/deployments").await;
        v.as_array().map_or(0, Vec::len)
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

/// A real `pacer serve` process.
pub struct Daemon {
    pub proc: Proc,
    pub url: String,
    http: reqwest::Client,
    /// Sent with every request of [`Daemon::get`] and the posts.
    token: Option<String>,
}

impl Daemon {
    /// Starts `pacer serve args` with the API tokens [`ADMIN_TOKEN`] and
    /// [`READ_TOKEN`] (in `PACER_ADMIN_TOKEN`, `PACER_READ_TOKEN`); its
    /// requests send the admin one.
    pub fn start(dir: &Path, args: &[String]) -> Daemon {
        let env = [
            ("PACER_ADMIN_TOKEN", ADMIN_TOKEN),
            ("PACER_READ_TOKEN", READ_TOKEN),
        ];
        Daemon::start_env(dir, args, &env, Some(ADMIN_TOKEN))
    }

    /// `pacer serve args` with `env`, its requests sending `token`.
    pub fn start_env(
        dir: &Path,
        args: &[String],
        env: &[(&str, &str)],
        token: Option<&str>,
    ) -> Daemon {
        let mut all: Vec<String> = vec!["serve".into(), "--log".into(), "warn,pacer=debug".into()];
        all.extend(args.iter().cloned());
        let log = dir.join(format!("daemon-{}.log", unique()));
        let (proc, line) = Proc::spawn_env(&all, env, &log);
        let url = line
            .strip_prefix("pacer serve: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of pacer serve: {line:?}"))
            .to_string();
        Daemon {
            proc,
            url,
            http: reqwest::Client::new(),
            token: token.map(String::from),
        }
    }

    fn with_token(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.with_token(self.http.get(format!("{}{path}", self.url)))).await
    }

    /// A GET with `token` (or none) instead of the daemon's own.
    pub async fn get_as(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut rb = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        send(rb).await
    }

    /// A JSON POST with an empty body (what `POST /api/v1/retry` takes).
    pub async fn post(&self, path: &str) -> (u16, Value) {
        send(
            self.with_token(self.http.post(format!("{}{path}", self.url)))
                .header("Content-Type", "application/json"),
        )
        .await
    }

    /// [`Daemon::post`] with `token` (or none) instead of the daemon's own.
    pub async fn post_as(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut rb = self
            .http
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        send(rb).await
    }

    /// A JSON POST with `body`.
    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        send(
            self.with_token(self.http.post(format!("{}{path}", self.url)))
                .json(&body),
        )
        .await
    }

    pub async fn status(&self) -> Value {
        let (s, v) = self.get("/api/v1/status").await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().await.expect("metrics text")
    }

    /// The value of one series (`name{labels}` as printed), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// POSTs a GitHub push webhook for `after` on `main`, signed with `secret`.
    pub async fn github_push(&self, after: &str, secret: &str) -> (u16, Value) {
        use hmac::{Hmac, Mac};
        let body = json!({"ref": "refs/heads/main", "after": after}).to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        send(
            self.http
                .post(format!("{}/hooks/git", self.url))
                .header("X-GitHub-Event", "push")
                .header("X-GitHub-Delivery", format!("e2e-{}", unique()))
                .header("X-Hub-Signature-256", sig)
                .header("Content-Type", "application/json")
                .body(body),
        )
        .await
    }

    /// Waits until every app of `env` has `sync` == `want`.
    pub async fn wait_all(&self, env: &str, want: &str, limit: Duration) -> Value {
        wait_until(&format!("every app of {env} {want}"), limit, || async {
            let s = self.status().await;
            let apps = &s["environments"][env]["apps"];
            let ok = apps
                .as_object()
                .is_some_and(|m| !m.is_empty() && m.values().all(|a| a["sync"] == want));
            if ok {
                Ok(s)
            } else {
                Err(format!("{s:#}\n--- daemon log\n{}", self.proc.log_tail()))
            }
        })
        .await
    }
}

/// The value of `series` in Prometheus text, 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

/// The config repo: a working clone (`repo`) that pushes to a bare repo
/// served by `git daemon`.
pub struct Git {
    pub repo: TestRepo,
    pub base: tempfile::TempDir,
    pub daemon: Option<GitDaemon>,
}

impl Git {
    pub fn examples() -> Git {
        let repo = TestRepo::examples();
        let base = tempfile::tempdir().expect("temp dir");
        run_git(
            base.path(),
            &["clone", "-q", "--bare", repo.path_str(), "config.git"],
        );
        let daemon = Some(GitDaemon::serve(base.path()));
        Git { repo, base, daemon }
    }

    pub fn url(&self) -> String {
        self.daemon
            .as_ref()
            .expect("git daemon running")
            .url("config.git")
    }

    pub fn bare(&self) -> PathBuf {
        self.base.path().join("config.git")
    }

    /// The deployment records the daemon pushed for `commit`, one JSON
    /// object each (none yet: empty).
    pub fn records(&self, commit: &str) -> Vec<Value> {
        let out = std::process::Command::new("git")
            .args(["notes", "--ref=pacer", "show", commit])
            .current_dir(self.bare())
            .output()
            .expect("running git notes");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Brings the records into the working clone, as a user would.
    pub fn fetch_records(&self) {
        let bare = self.bare();
        run_git(
            self.repo.path(),
            &[
                "fetch",
                "-q",
                bare.to_str().unwrap(),
                "+refs/notes/pacer:refs/notes/pacer",
            ],
        );
    }

    /// Commits the working clone and pushes it to the bare repo.
    pub fn commit_push(&self, message: &str) -> String {
        let c = self.repo.commit(message);
        self.push(false);
        c
    }

    pub fn push(&self, force: bool) {
        let bare = self.bare();
        let mut args = vec!["push", "-q"];
        if force {
            args.push("--force");
        }
        args.push(bare.to_str().unwrap());
        args.push("HEAD:main");
        run_git(self.repo.path(), &args);
    }
}

/// Everything one test needs: the repo, the simulator and a scratch dir.
pub struct World {
    pub scratch: tempfile::TempDir,
    pub git: Git,
    pub sim: Sim,
}

impl World {
    pub async fn new() -> World {
        let scratch = tempfile::tempdir().expect("temp dir");
        let git = Git::examples();
        let sim = Sim::start(scratch.path(), 0, None).await;
        World { scratch, git, sim }
    }

    /// `pacer history` of a dev app, from the working clone; `format` is
    /// `text` or `json`.
    pub fn history(&self, app: &str, format: &str) -> super::Run {
        let out = super::pacer(&[
            "history",
            "--repo",
            self.git.repo.path_str(),
            "--marathon",
            &self.sim.url,
            "--env",
            "dev",
            "--app",
            app,
            "--format",
            format,
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        out
    }

    /// `pacer history --format json` of a dev app.
    pub fn history_json(&self, app: &str) -> Value {
        let out = self.history(app, "json");
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("history JSON: {e}: {out:?}"))
    }

    /// `pacer serve` on dev, with a given poll and deploy timeout (seconds)
    /// and any extra flags; its mirror lives in the scratch dir.
    pub fn serve(&self, poll: u64, deploy_timeout: u64, extra: &[&str]) -> Daemon {
        self.serve_from(&self.git.url(), poll, deploy_timeout, extra)
    }

    /// Like [`World::serve`], following the repo at `url`.
    pub fn serve_from(&self, url: &str, poll: u64, deploy_timeout: u64, extra: &[&str]) -> Daemon {
        self.serve_to(url, &self.sim.url, poll, deploy_timeout, extra)
    }

    /// Like [`World::serve_from`], with Marathon at `marathon`.
    pub fn serve_to(
        &self,
        url: &str,
        marathon: &str,
        poll: u64,
        deploy_timeout: u64,
        extra: &[&str],
    ) -> Daemon {
        let mut args = self.serve_args(url, marathon, poll, deploy_timeout, "mirror");
        args.extend(["--env".to_string(), "dev".to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::start(self.scratch.path(), &args)
    }

    /// One of several replicas: its own mirror (`mirror-<name>`) and state,
    /// the environments and other flags in `extra`.
    pub fn serve_replica(&self, name: &str, poll: u64, extra: &[&str]) -> Daemon {
        let mut args = self.serve_args(
            &self.git.url(),
            &self.sim.url,
            poll,
            60,
            &format!("mirror-{name}"),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::start(self.scratch.path(), &args)
    }

    /// `pacer serve`'s flags for dev's Marathon and repo with the webhook
    /// secret and its mirror in `mirror` under the scratch dir; no `--env`.
    pub fn serve_args(
        &self,
        url: &str,
        marathon: &str,
        poll: u64,
        deploy_timeout: u64,
        mirror: &str,
    ) -> Vec<String> {
        [
            "--repo-url",
            url,
            "--marathon",
            marathon,
            "--listen",
            "127.0.0.1:0",
            "--poll",
            &poll.to_string(),
            "--deploy-timeout",
            &deploy_timeout.to_string(),
            "--webhook-secret",
            SECRET,
            "--workdir",
            self.scratch.path().join(mirror).to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}
