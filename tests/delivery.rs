//! The config server end to end: the real `pacer serve` and `pacer sim`
//! (tasks on loopback hosts, so the address check runs for real: each
//! "task" below sends from its host's address), a real Git repo.

use crate::util::harness::{Daemon, SECRET, World, metric_value, wait_until};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A secret only the api's config file holds.
pub const DB_PASSWORD: &str = "s3cr3t-e2e-7c1f9a";

/// An HTTP client sending from one address, as a task on that host would.
pub struct Agent {
    pub http: reqwest::Client,
    pub base: String,
}

impl Agent {
    pub fn on(host: &str, d: &Daemon) -> Agent {
        let ip: IpAddr = host.parse().expect("a loopback address");
        Agent {
            http: reqwest::Client::builder()
                .local_address(ip)
                .build()
                .expect("an HTTP client"),
            base: d.url.clone(),
        }
    }

    pub async fn login(&self, task: &str, app: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/login", self.base))
            .json(&json!({"taskId": task, "appId": app}))
            .send()
            .await
            .expect("POST /v1/login");
        answer(resp).await
    }

    /// A token from a login that must succeed.
    pub async fn token(&self, task: &str, app: &str) -> String {
        let (s, v) = self.login(task, app).await;
        assert_eq!(s, 200, "login of {task}: {v}");
        v["token"].as_str().expect("a token").to_string()
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        answer(resp).await
    }
}

pub async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `(id, host)` of the running tasks of `app`, once there are `n`.
pub async fn tasks(w: &World, app: &str, n: usize) -> Vec<(String, String)> {
    wait_until(
        &format!("{n} running tasks of {app}"),
        Duration::from_secs(30),
        || async {
            let (_, v) = w.sim.get(&format!("/v2/apps{app}/tasks")).await;
            let running: Vec<(String, String)> = v["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["state"] == "TASK_RUNNING")
                .map(|t| {
                    (
                        t["id"].as_str().unwrap_or("").to_string(),
                        t["host"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            if running.len() >= n {
                Ok(running)
            } else {
                Err(v.to_string())
            }
        },
    )
    .await
}

/// The examples repo with the api's secret replaced, tasks on loopback
/// hosts, and `pacer serve` on dev once every app runs.
pub async fn world() -> World {
    let w = World::new().await;
    let (s, v) = w
        .sim
        .put("/_sim/settings", json!({"taskHosts": "loopback"}))
        .await;
    assert_eq!(s, 200, "{v}");
    w.git.repo.edit(
        "apps/api/app.yaml",
        "dbPassword: dev-only-not-a-secret",
        &format!("dbPassword: {DB_PASSWORD}"),
    );
    w.git.commit_push("api: a secret of its own");
    w
}

pub fn serve(w: &World, extra: &[&str]) -> Daemon {
    let mut args = vec!["--task-recheck", "1"];
    args.extend_from_slice(extra);
    w.serve(1, 60, &args)
}

pub fn reason(v: &Value) -> &str {
    v["reason"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reads_and_watches_its_own_bundle_only() {
    let w = world().await;
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let (task, host) = &web[0];
    let agent = Agent::on(host, &d);
    let token = agent.token(task, "/dev/web").await;

    // The manifest: each file's path, mode, hash and reload, and the index.
    let (s, m) = agent.get("/v1/config", &token).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["env"], "dev");
    assert_eq!(m["appId"], "/dev/web");
    assert!(m["commit"].as_str().is_some_and(|c| c.len() == 40), "{m}");
    let index = m["index"].as_u64().expect("an index");
    let file = &m["files"][0];
    assert_eq!(file["name"], "nginx.conf");
    assert_eq!(file["path"], "/etc/nginx/nginx.conf");
    assert_eq!(file["reload"], "hot");
    assert_eq!(file["mode"], "0644");

    // The content is the rendered template, and its hash is the manifest's.
    let rendered = crate::util::pacer(&[
        "render",
        "--repo",
        w.git.repo.path_str(),
        "--env",
        "dev",
        "--app",
        "web",
        "--file",
        "nginx.conf",
    ]);
    assert_eq!(rendered.code, 0, "{rendered:?}");
    let resp = agent
        .http
        .get(format!("{}/v1/config/files/nginx.conf", d.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content = resp.bytes().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&content), rendered.stdout);
    assert_eq!(
        file["hash"],
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content))
        )
    );

    // Nothing else: another app's bundle or file, a name not in the bundle.
    let (s, v) = agent.get("/v1/config?appId=/dev/api", &token).await;
    assert_eq!((s, reason(&v)), (403, "otherApp"), "{v}");
    let (s, v) = agent
        .get("/v1/config/files/application.yaml?appId=/dev/api", &token)
        .await;
    assert_eq!((s, reason(&v)), (403, "otherApp"), "{v}");
    let (s, v) = agent.get("/v1/config/files/application.yaml", &token).await;
    assert_eq!(s, 404, "{v}");
    assert!(!v.to_string().contains("jdbc"), "{v}");
    let (s, v) = agent.get("/v1/config", "v1.forged.token").await;
    assert_eq!((s, reason(&v)), (401, "badToken"), "{v}");
    assert!(
        !v.to_string().contains("forged"),
        "never echoes a token: {v}"
    );

    // A renew gives a fresh token; a forged one gets nothing.
    let renewed = agent
        .http
        .post(format!("{}/v1/token/renew", d.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (s, v) = answer(renewed).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().expect("a renewed token").to_string();
    let (s, _) = agent.get("/v1/config", &token).await;
    assert_eq!(s, 200);
    let forged = agent
        .http
        .post(format!("{}/v1/token/renew", d.url))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    let (s, v) = answer(forged).await;
    assert_eq!((s, reason(&v)), (401, "badToken"), "{v}");

    // An index the server never gave (a reset, as in Consul) answers at once.
    let started = Instant::now();
    let (s, v) = agent
        .get(
            &format!("/v1/config?index={}&wait=60s", index + 1_000_000),
            &token,
        )
        .await;
    assert_eq!((s, v["index"].as_u64()), (200, Some(index)), "{v}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A watch with no change returns at its wait, with the same index.
    let started = Instant::now();
    let (s, v) = agent
        .get(&format!("/v1/config?index={index}&wait=1s"), &token)
        .await;
    let took = started.elapsed();
    assert_eq!((s, v["index"].as_u64()), (200, Some(index)), "{v}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A commit changing the hot file wakes a blocked watch at once.
    let watch = {
        let (http, url, token) = (agent.http.clone(), d.url.clone(), token.clone());
        tokio::spawn(async move {
            let resp = http
                .get(format!("{url}/v1/config?index={index}&wait=60s"))
                .bearer_auth(token)
                .send()
                .await
                .expect("the watch");
            let at = Instant::now();
            (answer(resp).await, at)
        })
    };
    w.git.repo.edit(
        "apps/web/files/nginx.conf",
        "keepalive_timeout 65",
        "keepalive_timeout 66",
    );
    let commit = w.git.commit_push("web: a longer keepalive");
    let (s, v) = d.github_push(&commit, SECRET).await;
    assert_eq!(s, 202, "{v}");
    let seen = wait_until(
        "the daemon sees the commit",
        Duration::from_secs(30),
        || async {
            let st = d.status().await;
            if st["repo"]["head"] == commit.as_str() {
                Ok(Instant::now())
            } else {
                Err(st["repo"].to_string())
            }
        },
    )
    .await;
    let ((s, v), woke) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch returns")
        .unwrap();
    assert!(
        woke.saturating_duration_since(seen) < Duration::from_secs(1),
        "woke {:?} after the daemon saw the commit",
        woke.saturating_duration_since(seen)
    );
    assert_eq!(s, 200, "{v}");
    assert!(v["index"].as_u64().unwrap() > index, "{v}");
    assert_ne!(v["files"][0]["hash"], file["hash"]);
    let (_, text) = agent.get("/v1/config/files/nginx.conf", &token).await;
    assert!(
        text.as_str().unwrap_or("").contains("keepalive_timeout 66"),
        "{text}"
    );

    // The api's task reads its secret-bearing file; the log never shows it.
    let api = tasks(&w, "/dev/api", 1).await;
    let api_agent = Agent::on(&api[0].1, &d);
    let api_token = api_agent.token(&api[0].0, "/dev/api").await;
    let (s, m) = api_agent.get("/v1/config", &api_token).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["files"][0]["mode"], "0600", "{m}");
    let (s, text) = api_agent
        .get("/v1/config/files/application.yaml", &api_token)
        .await;
    assert_eq!(s, 200);
    assert!(text.as_str().unwrap().contains(DB_PASSWORD));
    let status = d.status().await;
    assert_eq!(status["configServer"]["addressCheck"], true, "{status}");
    let metrics = d.metrics().await;
    assert_eq!(
        metric_value(&metrics, "pacer_config_refusals_total{reason=\"otherApp\"}"),
        2.0,
        "{metrics}"
    );
    assert_eq!(metric_value(&metrics, "pacer_config_logins_total"), 2.0);
    let log = std::fs::read_to_string(&d.proc.log).unwrap();
    assert!(log.contains("task logged in"), "the log is read: {log}");
    assert!(!log.contains(DB_PASSWORD), "the secret is in the log");
    assert!(
        !log.contains(&api_token) && !log.contains(&token),
        "a token is in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_from_the_wrong_task_place_or_time_are_refused() {
    let w = world().await;
    let mut d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let api = tasks(&w, "/dev/api", 2).await;
    let (task, host) = web[0].clone();
    let agent = Agent::on(&host, &d);

    // A caller not on a running task's host learns no reason (the metric
    // and the log have it).
    let (s, v) = agent
        .login("dev_web.instance-forged._app.1", "/dev/web")
        .await;
    assert_eq!((s, reason(&v)), (403, "refused"), "{v}");
    // Another app's task id: refused by its form, which tells nothing.
    let (s, v) = agent.login(&api[0].0, "/dev/web").await;
    assert_eq!(
        (s, reason(&v)),
        (403, "unknownTask"),
        "another app's task: {v}"
    );
    assert_eq!(
        d.metric("pacer_config_refusals_total{reason=\"unknownTask\"}")
            .await,
        2.0
    );
    let (s, v) = agent.login(&task, "/dev/nothing").await;
    assert_eq!((s, reason(&v)), (403, "unknownApp"), "{v}");
    let (s, v) = Agent::on("127.0.0.99", &d).login(&task, "/dev/web").await;
    assert_eq!((s, reason(&v)), (403, "refused"), "{v}");
    assert!(!v.to_string().contains("addressMismatch"), "{v}");
    assert_eq!(
        d.metric("pacer_config_refusals_total{reason=\"addressMismatch\"}")
            .await,
        1.0
    );
    let (s, v) = agent.login("a\nb", "/dev/web").await;
    assert_eq!((s, reason(&v)), (400, "badRequest"), "{v}");
    // (Its own client: the server closes a connection whose body it refused.)
    let huge = Agent::on(&host, &d)
        .http
        .post(format!("{}/v1/login", d.url))
        .header("Content-Type", "application/json")
        .body(format!("{{\"taskId\": \"{}\"}}", "a".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413, "a login body is small");

    // One login per task id; the second is refused, logged and counted.
    let token = agent.token(&task, "/dev/web").await;
    let (s, v) = agent.login(&task, "/dev/web").await;
    assert_eq!((s, reason(&v)), (403, "replay"), "{v}");
    let (s, _) = agent.get("/v1/config", &token).await;
    assert_eq!(s, 200);
    assert_eq!(
        d.metric("pacer_config_refusals_total{reason=\"replay\"}")
            .await,
        1.0
    );

    // A task Marathon stops: its token dies, and it can't log in again.
    let (dead, dead_host) = api[1].clone();
    let (s, v) = w
        .sim
        .post(&format!("/_sim/tasks/{dead}/kill"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = Agent::on(&dead_host, &d).login(&dead, "/dev/api").await;
    assert_eq!(s, 403, "{v}");
    assert!(["refused", "taskNotRunning"].contains(&reason(&v)), "{v}");
    let (s, v) = w
        .sim
        .post(&format!("/_sim/tasks/{task}/kill"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    wait_until(
        "the dead task's token refused",
        Duration::from_secs(10),
        || async {
            match agent.get("/v1/config", &token).await {
                (401, v) if reason(&v) == "taskGone" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let (s, v) = agent.get("/v1/config", &token).await;
    assert_eq!((s, reason(&v)), (401, "taskGone"), "stays dead: {v}");
    let renew = agent
        .http
        .post(format!("{}/v1/token/renew", d.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (s, v) = answer(renew).await;
    assert_eq!((s, reason(&v)), (401, "taskGone"), "no renew either: {v}");
    let log = std::fs::read_to_string(&d.proc.log).unwrap();
    assert!(
        log.contains("a second login of a task id refused") && log.contains(&host),
        "{log}"
    );

    // After a restart (same state directory) a used id is still refused;
    // a new task logs in; a token past its TTL is refused.
    let api_task = api[0].clone();
    agent_for(&d, &api_task.1)
        .token(&api_task.0, "/dev/api")
        .await;
    assert!(
        d.proc.terminate(Duration::from_secs(15)),
        "the daemon stops"
    );
    let d = serve(&w, &["--token-ttl", "1"]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let (s, v) = agent_for(&d, &api_task.1)
        .login(&api_task.0, "/dev/api")
        .await;
    assert_eq!((s, reason(&v)), (403, "replay"), "after a restart: {v}");
    let fresh = wait_until(
        "the killed web task replaced",
        Duration::from_secs(30),
        || async {
            let now = tasks(&w, "/dev/web", 1).await;
            now.into_iter()
                .find(|(id, _)| *id != task)
                .ok_or_else(|| "only the killed task".to_string())
        },
    )
    .await;
    let fresh_agent = agent_for(&d, &fresh.1);
    let short = fresh_agent.token(&fresh.0, "/dev/web").await;
    wait_until("the token expires", Duration::from_secs(10), || async {
        match fresh_agent.get("/v1/config", &short).await {
            (401, v) if reason(&v) == "expiredToken" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // With the address check off (behind NAT), which the status says, a
    // new task logs in from anywhere.
    drop(d);
    let d = serve(&w, &["--task-address-check", "false"]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let status = d.status().await;
    assert_eq!(status["configServer"]["addressCheck"], false, "{status}");
    let old_worker = tasks(&w, "/dev/worker", 1).await[0].0.clone();
    let (s, v) = w
        .sim
        .post(&format!("/_sim/tasks/{old_worker}/kill"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let worker = wait_until("a new worker task", Duration::from_secs(30), || async {
        let now = tasks(&w, "/dev/worker", 1).await;
        now.into_iter()
            .find(|(id, _)| *id != old_worker)
            .ok_or_else(|| "only the killed task".to_string())
    })
    .await;
    let (s, v) = agent_for(&d, "127.0.0.99")
        .login(&worker.0, "/dev/worker")
        .await;
    assert_eq!(s, 200, "{v}");

    // Past the grace window, a task that never logged in is refused.
    drop(d);
    let d = serve(&w, &["--login-grace", "1"]);
    let api_now = tasks(&w, "/dev/api", 2).await;
    let unused = api_now
        .iter()
        .find(|(id, _)| *id != api_task.0 && *id != dead)
        .expect("the api task launched after the kill")
        .clone();
    let unused_agent = agent_for(&d, &unused.1);
    wait_until(
        "a login past the grace window refused",
        Duration::from_secs(10),
        || async {
            match unused_agent.login(&unused.0, "/dev/api").await {
                (403, v) if reason(&v) == "graceExpired" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

fn agent_for(d: &Daemon, host: &str) -> Agent {
    Agent::on(host, d)
}
