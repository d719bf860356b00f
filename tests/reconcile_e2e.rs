//! The reconciler end to end with the real binaries: a push to a bare repo
//! behind `git daemon`, a signed GitHub webhook to `pacer serve`, and the
//! change in the simulated Marathon; then `pacer plan` agrees and `pacer
//! history` shows the commit.

use crate::util::harness::{SECRET, World, wait_until};
use crate::util::pacer;
use std::time::Duration;

const DEV_APPS: [&str; 3] = ["/dev/api", "/dev/web", "/dev/worker"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_webhook_deploys_the_new_commit() {
    let w = World::new().await;
    // A long poll: only the webhook can trigger the second run. No task
    // runs `pacer agent`: the hot change's delivery fails after 2 s.
    let d = w.serve(3600, 60, &["--delivery-timeout", "2"]);
    let first = d.wait_all("dev", "inSync", Duration::from_secs(20)).await;
    for id in DEV_APPS {
        let app = w
            .sim
            .app(id)
            .await
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(app["labels"]["pacer.env"], "dev", "{app:#}");
    }
    let head0 = first["repo"]["head"].as_str().expect("a head").to_string();
    assert_eq!(
        w.sim.app("/dev/worker").await.unwrap()["labels"]["pacer.commit"],
        head0.as_str()
    );

    // A config change (an env var) and a scale in one commit.
    w.git.repo.edit(
        "apps/worker/env/dev.yaml",
        "marathon:\n  instances: 1",
        "marathon:\n  instances: 2\n  env:\n    FEATURE_E2E: \"on\"",
    );
    // …and a hot file of web (nginx re-reads it: no deployment).
    w.git.repo.edit(
        "apps/web/files/nginx.conf",
        "keepalive_timeout 65;",
        "keepalive_timeout 75;",
    );
    let commit = w.git.commit_push("dev worker: two instances, FEATURE_E2E");

    // A bad signature is refused and counted, and triggers nothing.
    let (s, v) = d.github_push(&commit, "not-the-secret").await;
    assert_eq!(s, 401, "{v}");
    let rejected = d
        .metric("pacer_webhooks_total{decision=\"rejected\",provider=\"github\"}")
        .await;
    assert_eq!(rejected, 1.0, "{}", d.metrics().await);

    let (s, v) = d.github_push(&commit, SECRET).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["decision"], "accepted", "{v}");

    let app = wait_until(
        "Marathon to run the new commit",
        Duration::from_secs(20),
        || async {
            let app = w.sim.app("/dev/worker").await.unwrap_or_default();
            let done = app["labels"]["pacer.commit"] == commit.as_str()
                && app["env"]["FEATURE_E2E"] == "on"
                && app["instances"] == 2
                && app["tasksHealthy"] == 2;
            if done {
                Ok(app)
            } else {
                Err(format!("{app:#}\n--- daemon log\n{}", d.proc.log_tail()))
            }
        },
    )
    .await;
    assert_eq!(app["labels"]["pacer.env"], "dev");
    // The status follows once the deployment is seen through.
    let status = wait_until(
        "the status to show the commit",
        Duration::from_secs(10),
        || async {
            let s = d.status().await;
            let dev = &s["environments"]["dev"];
            let synced = dev["apps"]
                .as_object()
                .is_some_and(|m| m.values().all(|a| a["sync"] == "inSync"));
            if dev["commit"] == commit.as_str()
                && dev["apps"]["worker"]["last"]["commit"] == commit.as_str()
                && dev["apps"]["web"]["last"]["commit"] == commit.as_str()
                && synced
            {
                Ok(s)
            } else {
                Err(format!("{s:#}"))
            }
        },
    )
    .await;
    assert_eq!(status["repo"]["head"], commit.as_str());
    let worker = &status["environments"]["dev"]["apps"]["worker"];
    assert_eq!(worker["liveCommit"], commit.as_str(), "{worker:#}");
    assert_eq!(worker["last"]["outcome"], "succeeded", "{worker:#}");
    assert_eq!(worker["last"]["commit"], commit.as_str(), "{worker:#}");
    let web = &status["environments"]["dev"]["apps"]["web"];
    assert_eq!(web["last"]["outcome"], "hot", "{web:#}");
    assert_eq!(web["last"]["commit"], commit.as_str(), "{web:#}");
    assert_eq!(
        w.sim.accepted_puts("/dev/web").await,
        1,
        "hot: no deployment"
    );
    assert_eq!(
        d.metric("pacer_deployments_total{env=\"dev\",outcome=\"hot\"}")
            .await,
        1.0
    );
    // Other apps were not redeployed by this commit.
    assert_eq!(
        w.sim.app("/dev/api").await.unwrap()["labels"]["pacer.commit"],
        head0.as_str()
    );
    assert_eq!(
        d.metric("pacer_webhooks_total{decision=\"accepted\",provider=\"github\"}")
            .await,
        1.0
    );
    assert!(
        d.metric("pacer_deployments_total{env=\"dev\",outcome=\"succeeded\"}")
            .await
            >= 4.0,
        "{}",
        d.metrics().await
    );

    // The CLI agrees, from a clone at the same commit.
    let repo = w.git.repo.path_str();
    let plan = pacer(&[
        "plan",
        "--repo",
        repo,
        "--marathon",
        &w.sim.url,
        "--env",
        "dev",
    ]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let history = w.history("worker", "text");
    let newest = history.stdout.lines().nth(1).unwrap_or("");
    assert!(newest.starts_with(&commit[..12]), "{history:?}");
    assert!(
        newest.contains("dev worker: two instances, FEATURE_E2E"),
        "{history:?}"
    );
    assert!(history.stdout.contains(&head0[..12]), "{history:?}");

    // The daemon recorded each action as a note on the commit it deployed
    // and pushed the notes to the config repo: the deployment ids survive
    // the daemon.
    let deployment = worker["last"]["deploymentId"]
        .as_str()
        .expect("the worker's deployment id")
        .to_string();
    let records = wait_until(
        "the records of the commit in the config repo",
        Duration::from_secs(10),
        || async {
            let r = w.git.records(&commit);
            let has = |app: &str| r.iter().any(|x| x["app"] == app);
            if has("worker") && has("web") {
                Ok(r)
            } else {
                Err(format!("{r:#?}\n--- daemon log\n{}", d.proc.log_tail()))
            }
        },
    )
    .await;
    let worker_rec = records.iter().find(|r| r["app"] == "worker").unwrap();
    assert_eq!(worker_rec["env"], "dev");
    assert_eq!(worker_rec["id"], "/dev/worker");
    assert_eq!(worker_rec["outcome"], "succeeded");
    assert_eq!(worker_rec["deployment"], deployment.as_str());
    assert_eq!(worker_rec["version"], app["version"], "{worker_rec:#}");
    // Sent, but no task took it: recorded as such, never as delivered.
    let web_rec = records.iter().find(|r| r["app"] == "web").unwrap();
    assert_eq!(web_rec["outcome"], "deliveryFailed", "{web_rec:#}");
    assert!(web_rec.get("deployment").is_none(), "{web_rec:#}");
    let web = &d.status().await["environments"]["dev"]["apps"]["web"];
    assert_eq!(web["delivery"]["state"], "failed", "{web:#}");
    assert!(
        web["delivery"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("0 of 1 running tasks hold it: 1 never reported")),
        "{web:#}"
    );
    assert!(
        d.metric("pacer_records_written_total").await >= 2.0,
        "{}",
        d.metrics().await
    );

    w.git.fetch_records();
    let h = w.history_json("worker");
    let newest = &h[0];
    assert_eq!(newest["commit"], commit.as_str(), "{h:#}");
    assert_eq!(newest["outcome"], "succeeded", "{h:#}");
    assert_eq!(newest["deployment"], deployment.as_str(), "{h:#}");
    assert_eq!(newest["version"], app["version"], "{h:#}");
    assert_eq!(
        newest["author"], "Test Author <author@example.com>",
        "{h:#}"
    );
    // The first deployment (a create) has its id too.
    let first = h.as_array().unwrap().last().unwrap();
    assert_eq!(first["commit"], head0.as_str(), "{h:#}");
    assert!(
        first["deployment"].as_str().is_some_and(|d| !d.is_empty()),
        "{h:#}"
    );
    // The hot update has no Marathon version, but the time its delivery
    // ended, and history does not claim it reached the task.
    let h = w.history_json("web");
    let hot = h
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["commit"] == commit.as_str())
        .unwrap_or_else(|| panic!("no entry for {commit}: {h:#}"));
    assert_eq!(hot["outcome"], "deliveryFailed", "{h:#}");
    assert_eq!(hot["appliedAt"], web_rec["at"], "{h:#}");
    assert!(hot.get("version").is_none(), "{h:#}");
}

/// `pacer apply` follows a deployment through Marathon's event stream:
/// woken by the deployment's own events, it reads `/v2/deployments` a
/// handful of times however long the rollout takes, where polling alone
/// reads it every quarter second. The baseline runs in the same test with
/// the stream turned off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_follows_a_deployment_through_the_event_stream() {
    async fn deploy_worker(events: bool) -> (usize, usize) {
        let w = World::new().await;
        // A rollout of about three seconds.
        let (s, v) = w
            .sim
            .put(
                "/_sim/settings",
                serde_json::json!({"taskStartDelayMs": 3000, "taskHealthyDelayMs": 20}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let repo = w.git.repo.path_str().to_string();
        let url = w.sim.url.clone();
        let flag = events.to_string();
        let out = tokio::task::spawn_blocking(move || {
            pacer(&[
                "apply",
                "--repo",
                &repo,
                "--marathon",
                &url,
                "--env",
                "dev",
                "--app",
                "worker",
                "--yes",
                "--marathon-events",
                &flag,
            ])
        })
        .await
        .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("succeeded"), "{out:?}");
        let requests = w.sim.requests().await;
        let count = |path: &str| {
            requests
                .iter()
                .filter(|(m, p, _)| m == "GET" && p == path)
                .count()
        };
        (count("/v2/deployments"), count("/v2/events"))
    }
    let (polls_with_events, streams) = deploy_worker(true).await;
    let (polls_alone, no_streams) = deploy_worker(false).await;
    assert_eq!(streams, 1, "one event stream");
    assert_eq!(no_streams, 0, "no event stream when turned off");
    // Polling alone: about 3 s / 250 ms. With events: the first read, one
    // per deployment event, and a safety poll every 2 s.
    assert!(
        polls_alone >= 10,
        "polling alone read /v2/deployments {polls_alone} times"
    );
    assert!(
        polls_with_events * 2 <= polls_alone,
        "with events {polls_with_events} reads of /v2/deployments, polling alone {polls_alone}"
    );
}
