//! A hot change followed to the tasks, with the real daemon, simulator and
//! agent: each agent reports the bundle it holds, the app's `delivery` in
//! `/api/v1/status` goes `delivering` → `delivered` (or `failed`: a check
//! refused it, or a task never got it in time), Marathon sees no
//! deployment, and the history records how the delivery ended.

use crate::agent::{AgentProc, agent};
use crate::delivery::{Agent, answer, reason, serve, tasks, world};
use crate::util::harness::{Daemon, SECRET, metric_value, wait_until};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until web's `delivery` in the status satisfies `want`.
async fn web_delivery(d: &Daemon, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, Duration::from_secs(30), || async {
        let s = d.status().await;
        let v = s["environments"]["dev"]["apps"]["web"]["delivery"].clone();
        if want(&v) {
            Ok(v)
        } else {
            Err(format!("{v:#}\n--- daemon log\n{}", d.proc.log_tail()))
        }
    })
    .await
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// The record of `app` on `commit`, once the daemon pushed it.
async fn record(w: &crate::util::harness::World, commit: &str, app: &str) -> Value {
    wait_until(
        &format!("{app}'s record on {commit}"),
        Duration::from_secs(20),
        || async {
            let r = w.git.records(commit);
            r.iter()
                .find(|x| x["app"] == app)
                .cloned()
                .ok_or_else(|| format!("{r:#?}"))
        },
    )
    .await
}

fn hot_commit(w: &crate::util::harness::World, from: &str, to: &str) -> String {
    w.git.repo.edit(
        "apps/web/files/nginx.conf",
        &format!("keepalive_timeout {from}"),
        &format!("keepalive_timeout {to}"),
    );
    w.git.commit_push(&format!("web: keepalive {to}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_change_reaches_the_app_within_a_second_with_no_deployment_and_shows_delivered() {
    let w = world().await;
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let root = w.scratch.path().join("web-task");
    std::fs::create_dir_all(&root).unwrap();
    let (conf, hups) = (root.join("etc/nginx/nginx.conf"), root.join("hups"));
    let script = format!(
        "echo up > {root}/started; trap 'echo hup >> {hups}' HUP; \
         while kill -0 $PPID 2>/dev/null; do sleep 0.05; done",
        root = root.display(),
        hups = hups.display()
    );
    let log = w.scratch.path().join("agent-web.log");
    let a = AgentProc(
        agent(&d.url, &web[0], "/dev/web", &root, &log)
            .args(["--", "sh", "-c", &script])
            .spawn()
            .unwrap(),
    );
    // Before any hot change, the app shows what its agent reported.
    let first = web_delivery(&d, "the agent's first report", |v| {
        v["state"] == "delivered" && v["tasksFrom"] == "reports"
    })
    .await;
    // The agent reports once the files are written; its child starts
    // right after.
    wait_until("the app started", Duration::from_secs(10), || async {
        if root.join("started").exists() {
            Ok(())
        } else {
            Err(read(&log))
        }
    })
    .await;
    let (_, deployments) = w.sim.get("/v2/deployments").await;
    let version = w.sim.app("/dev/web").await.unwrap()["version"].clone();

    let c1 = hot_commit(&w, "65", "66");
    let (s, v) = d.github_push(&c1, SECRET).await;
    assert_eq!(s, 202, "{v}");
    let answered = Instant::now();
    let took = wait_until("the app's SIGHUP", Duration::from_secs(20), || async {
        match read(&hups).lines().count() {
            1 => Ok(answered.elapsed()),
            n => Err(format!("{n} SIGHUPs\n{}", read(&log))),
        }
    })
    .await;
    eprintln!("SIGHUP {took:?} after the webhook was answered");
    assert!(
        took < Duration::from_secs(1),
        "SIGHUP {took:?} after the webhook was answered"
    );
    assert!(read(&conf).contains("keepalive_timeout 66"));
    let v = web_delivery(&d, "c1 delivered", |v| {
        v["commit"] == c1.as_str() && v["state"] == "delivered"
    })
    .await;
    assert_eq!(v["tasksFrom"], "marathon", "{v:#}");
    assert_eq!(v["tasks"]["count"], 1, "{v:#}");
    let i1 = v["index"].as_u64().unwrap();
    assert!(i1 > first["index"].as_u64().unwrap(), "{v:#} {first:#}");
    assert_eq!(v["tasks"]["byIndex"][i1.to_string()], 1, "{v:#}");

    // The agent holds still: the next change is sent, not yet delivered.
    let pid = a.0.id();
    signal(pid, "-STOP");
    let c2 = hot_commit(&w, "66", "67");
    let (s, v) = d.github_push(&c2, SECRET).await;
    assert_eq!(s, 202, "{v}");
    let v = web_delivery(&d, "c2 delivering", |v| {
        v["commit"] == c2.as_str() && v["state"] == "delivering" && v["tasksFrom"] == "marathon"
    })
    .await;
    assert_eq!(
        v["tasks"]["byIndex"],
        json!({i1.to_string(): 1}),
        "the task is still on c1: {v:#}"
    );
    assert_eq!(v["tasks"]["unreported"], 0, "{v:#}");
    signal(pid, "-CONT");
    let v = web_delivery(&d, "c2 delivered once the agent reported", |v| {
        v["commit"] == c2.as_str() && v["state"] == "delivered"
    })
    .await;
    let i2 = v["index"].as_u64().unwrap();
    assert_eq!(v["tasks"]["byIndex"], json!({i2.to_string(): 1}), "{v:#}");
    // (The app's trap may run a moment after the agent reported.)
    wait_until("the second SIGHUP", Duration::from_secs(5), || async {
        match read(&hups).lines().count() {
            2 => Ok(()),
            n => Err(format!("{n} SIGHUPs")),
        }
    })
    .await;
    assert!(read(&conf).contains("keepalive_timeout 67"));

    // Marathon saw no deployment, and the app's version is the same.
    assert_eq!(w.sim.get("/v2/deployments").await.1, deployments);
    assert_eq!(w.sim.app("/dev/web").await.unwrap()["version"], version);
    assert_eq!(w.sim.accepted_puts("/dev/web").await, 1, "the create only");

    // Each delivery is recorded on its commit, and history shows it.
    for c in [&c1, &c2] {
        let r = record(&w, c, "web").await;
        assert_eq!(r["outcome"], "delivered", "{r:#}");
    }
    w.git.fetch_records();
    let h = w.history_json("web");
    for c in [&c1, &c2] {
        let e = h
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["commit"] == c.as_str())
            .unwrap_or_else(|| panic!("no entry for {c}: {h:#}"));
        assert_eq!(e["outcome"], "delivered", "{h:#}");
    }
    let m = d.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "pacer_config_hot_deliveries_total{outcome=\"delivered\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "pacer_config_delivery_tasks{state=\"delivered\"}"),
        1.0,
        "{m}"
    );
    assert!(metric_value(&m, "pacer_config_reports_total") >= 3.0, "{m}");
}

/// Web's two tasks: the first runs an agent (no app of its own), the
/// other none. Returns once the agent reported.
async fn one_agent_of_two(w: &crate::util::harness::World, d: &Daemon) -> AgentProc {
    let web = tasks(w, "/dev/web", 2).await;
    let root = w.scratch.path().join("web-task");
    let log = w.scratch.path().join("agent-web.log");
    let a = AgentProc(
        agent(&d.url, &web[0], "/dev/web", &root, &log)
            .spawn()
            .unwrap(),
    );
    web_delivery(d, "the agent's first report", |v| v["state"] == "delivered").await;
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_an_agent_keeps_a_hot_change_delivering_until_it_fails() {
    let w = world().await;
    w.git
        .repo
        .edit("apps/web/env/dev.yaml", "instances: 1", "instances: 2");
    w.git.commit_push("web: two instances in dev");
    let d = serve(&w, &["--delivery-timeout", "3"]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let _a = one_agent_of_two(&w, &d).await;

    let c = hot_commit(&w, "65", "68");
    let (s, v) = d.github_push(&c, SECRET).await;
    assert_eq!(s, 202, "{v}");
    let v = web_delivery(&d, "one task of two has it", |v| {
        v["commit"] == c.as_str() && v["state"] == "delivering" && v["tasks"]["unreported"] == 1
    })
    .await;
    let index = v["index"].as_u64().unwrap().to_string();
    assert_eq!(v["tasks"]["count"], 2, "{v:#}");
    assert_eq!(v["tasks"]["byIndex"], json!({index: 1}), "{v:#}");
    let v = web_delivery(&d, "failed after the timeout", |v| {
        v["commit"] == c.as_str() && v["state"] == "failed"
    })
    .await;
    let why = v["reason"].as_str().unwrap_or("");
    assert!(
        why.contains("after 3s, 1 of 2 running tasks hold it: 1 never reported"),
        "{v:#}"
    );
    let r = record(&w, &c, "web").await;
    assert_eq!(r["outcome"], "deliveryFailed", "{r:#}");
    let m = d.metrics().await;
    assert_eq!(
        metric_value(&m, "pacer_config_delivery_tasks{state=\"failed\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "pacer_config_hot_deliveries_total{outcome=\"failed\"}"),
        1.0,
        "{m}"
    );
    let out = crate::util::pacer(&["status", "--daemon", &d.url, "--app", "web"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("delivery: failed")
            && out
                .stdout
                .contains("1 of 2 tasks hold it, 1 never reported"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_its_check_refuses_shows_in_the_status_and_fails_the_delivery_at_once() {
    let w = world().await;
    w.git.repo.write("apps/web/files/check.conf", "ok 1\n");
    w.git.repo.edit(
        "apps/web/app.yaml",
        "files:\n",
        "files:\n  check.conf:\n    path: /etc/app/check.conf\n    reload: hot\n    check: grep -q ok {path}\n",
    );
    w.git.commit_push("web: a checked file");
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let root = w.scratch.path().join("web-task");
    let log = w.scratch.path().join("agent-web.log");
    let _a = AgentProc(
        agent(&d.url, &web[0], "/dev/web", &root, &log)
            .spawn()
            .unwrap(),
    );
    web_delivery(&d, "the agent's first report", |v| {
        v["state"] == "delivered"
    })
    .await;
    assert_eq!(read(&root.join("etc/app/check.conf")), "ok 1\n");

    w.git.repo.write("apps/web/files/check.conf", "bad 2\n");
    let c = w.git.commit_push("web: content its check refuses");
    let (s, v) = d.github_push(&c, SECRET).await;
    assert_eq!(s, 202, "{v}");
    // At once, not at the (five-minute) timeout.
    let v = web_delivery(&d, "the refusal in the status", |v| {
        v["commit"] == c.as_str() && v["state"] == "failed"
    })
    .await;
    assert_eq!(
        v["failedFiles"],
        json!([{"task": web[0].0, "file": "check.conf", "stage": "check"}]),
        "{v:#}"
    );
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("check.conf: its check refused")),
        "{v:#}"
    );
    assert_eq!(read(&root.join("etc/app/check.conf")), "ok 1\n");
    let r = record(&w, &c, "web").await;
    assert_eq!(r["outcome"], "deliveryFailed", "{r:#}");
}

/// `POST /v1/report` as a task on `agent`'s host would send it.
async fn post_report(
    agent: &Agent,
    token: Option<&str>,
    body: String,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut rb = agent
        .http
        .post(format!("{}/v1/report", agent.base))
        .body(body);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        rb = rb.header("Content-Type", "application/json");
    }
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    answer(rb.send().await.expect("POST /v1/report")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_counts_only_for_its_tokens_own_task_and_app() {
    let w = world().await;
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let api = tasks(&w, "/dev/api", 1).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let agent = Agent::on(&api[0].1, &d);
    let token = agent.token(&api[0].0, "/dev/api").await;
    let (s, m) = agent.get("/v1/config", &token).await;
    assert_eq!(s, 200, "{m}");
    let index = m["index"].as_u64().unwrap();

    let t = Some(token.as_str());
    let none: Vec<(&str, &str)> = Vec::new();
    let refused = [
        (
            json!({"appId": "/dev/web", "index": index}).to_string(),
            t,
            none.clone(),
            403,
            "otherApp",
        ),
        (
            json!({"taskId": web[0].0, "index": index}).to_string(),
            t,
            none.clone(),
            403,
            "otherApp",
        ),
        (
            json!({"index": index}).to_string(),
            None,
            none.clone(),
            401,
            "missingToken",
        ),
        (
            json!({"index": index}).to_string(),
            t,
            vec![("Sec-Fetch-Site", "cross-site")],
            403,
            "crossSite",
        ),
        (
            json!({"index": index}).to_string(),
            t,
            vec![("Content-Type", "text/plain")],
            415,
            "notJson",
        ),
        (
            json!({"index": index, "failed": [{"file": "x", "stage": "guess"}]}).to_string(),
            t,
            none.clone(),
            400,
            "badRequest",
        ),
    ];
    for (body, tok, headers, status, why) in refused {
        let (s, v) = post_report(&agent, tok, body.clone(), &headers).await;
        assert_eq!((s, reason(&v)), (status, why), "{body}: {v}");
    }
    let huge = json!({"index": index, "failed": [{"file": "x".repeat(20_000), "stage": "write"}]});
    let (s, v) = post_report(&agent, Some(&token), huge.to_string(), &[]).await;
    assert_eq!(s, 413, "{v}");
    let status = d.status().await;
    let apps = &status["environments"]["dev"]["apps"];
    assert!(apps["api"].get("delivery").is_none(), "{apps:#}");
    assert!(apps["web"].get("delivery").is_none(), "{apps:#}");
    assert_eq!(d.metric("pacer_config_reports_total").await, 0.0);

    // A failure is listed for the bundle's own files only.
    let behind = json!({"index": 0, "latest": index, "failed": [
        {"file": "no-such.conf", "stage": "check"},
        {"file": "application.yaml", "stage": "write"}]});
    let (s, v) = post_report(&agent, Some(&token), behind.to_string(), &[]).await;
    assert_eq!(s, 204, "{v}");
    let v = d.status().await["environments"]["dev"]["apps"]["api"]["delivery"].clone();
    assert_eq!(
        v["state"], "delivering",
        "a failed write is tried again: {v:#}"
    );
    assert_eq!(
        v["failedFiles"],
        json!([{"task": api[0].0, "file": "application.yaml", "stage": "write"}]),
        "{v:#}"
    );

    // Its own report counts, for its own app only.
    let own = json!({"appId": "/dev/api", "taskId": api[0].0, "index": index, "failed": []});
    let (s, v) = post_report(&agent, Some(&token), own.to_string(), &[]).await;
    assert_eq!(s, 204, "{v}");
    let status = d.status().await;
    let apps = &status["environments"]["dev"]["apps"];
    let v = &apps["api"]["delivery"];
    assert_eq!(v["state"], "delivered", "{v:#}");
    assert_eq!(v["tasksFrom"], "reports", "{v:#}");
    assert_eq!(
        v["tasks"]["byIndex"],
        json!({index.to_string(): 1}),
        "{v:#}"
    );
    assert!(apps["web"].get("delivery").is_none(), "{apps:#}");
    let m = d.metrics().await;
    assert_eq!(metric_value(&m, "pacer_config_reports_total"), 2.0, "{m}");
    assert_eq!(
        metric_value(&m, "pacer_config_refusals_total{reason=\"otherApp\"}"),
        2.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_delivery_in_progress_is_taken_up_again_after_a_restart() {
    let w = world().await;
    w.git
        .repo
        .edit("apps/web/env/dev.yaml", "instances: 1", "instances: 2");
    w.git.commit_push("web: two instances in dev");
    // The same address and state directory across the restart.
    let listen = format!("127.0.0.1:{}", crate::util::free_port());
    let mut args = w.serve_args(&w.git.url(), &w.sim.url, 1, 60, "mirror");
    let at = args.iter().position(|a| a == "127.0.0.1:0").unwrap();
    args[at] = listen;
    args.extend(
        [
            "--env",
            "dev",
            "--task-recheck",
            "1",
            "--delivery-timeout",
            "8",
        ]
        .map(String::from),
    );
    let mut d = Daemon::start(w.scratch.path(), &args);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    // The delivery can't end before its timeout, and fails then.
    let _a = one_agent_of_two(&w, &d).await;
    let c = hot_commit(&w, "65", "70");
    let (s, v) = d.github_push(&c, SECRET).await;
    assert_eq!(s, 202, "{v}");
    web_delivery(&d, "c delivering", |v| {
        v["commit"] == c.as_str() && v["state"] == "delivering"
    })
    .await;

    assert!(
        d.proc.terminate(Duration::from_secs(15)),
        "the daemon stops"
    );
    let d = Daemon::start(w.scratch.path(), &args);
    // Followed again by the next run, and ended by the first run's clock:
    // failed, recorded, where it used to be forgotten (`unconfirmed`).
    let v = web_delivery(&d, "c taken up and failed after its timeout", |v| {
        v["commit"] == c.as_str() && v["state"] == "failed"
    })
    .await;
    assert_eq!(v["tasksFrom"], "marathon", "{v:#}");
    let why = v["reason"].as_str().unwrap_or("");
    assert!(why.contains("1 never reported"), "{v:#}");
    let r = record(&w, &c, "web").await;
    assert_eq!(r["outcome"], "deliveryFailed", "{r:#}");
    let log = read(&d.proc.log);
    assert!(
        log.contains("following the hot deliveries the last run left in progress"),
        "{log}"
    );
}
