//! `pacer serve` when Marathon or a deployment goes wrong, with the real
//! binaries and the simulator's control API: failing and slow deployments,
//! flaky, restarting, dead and answer-losing Marathons, a killed daemon that
//! adopts what runs, drift and pruning. The set-up and waits are shared
//! (`util::scenario`); each test states what differs.

use crate::util::harness::{Sim, World, wait_until};
use crate::util::run_git;
use crate::util::scenario::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deployment_is_rolled_back_and_not_retried_in_a_loop() {
    let (w, d, good) = start(1).await;
    let before = w.sim.app("/dev/worker").await.unwrap();

    w.sim.never_healthy("/dev/worker").await;
    let bad = push_worker(&w, "on", "dev worker: a version that never gets healthy");

    wait_app(&d, "worker", "the worker failed and rolled back", |a| {
        a["sync"] == "failed" && a["last"]["outcome"] == "rolledBack" && a["last"]["commit"] == bad
    })
    .await;
    // The fault stays on: like Marathon, the simulator brings the reverted
    // definition's tasks up.
    // Back at its previous definition in Marathon.
    let app = wait_live(&w, &d, "/dev/worker", &good).await;
    assert!(app["env"].get("FEATURE_E2E").is_none(), "{app:#}");
    assert_eq!(app["env"], before["env"]);
    assert!(
        d.metric("pacer_deployments_total{env=\"dev\",outcome=\"rolledBack\"}")
            .await
            >= 1.0,
        "{}",
        d.metrics().await
    );

    // The history tells it too.
    let history = w.history("worker", "text");
    let line = |c: &str| {
        history
            .stdout
            .lines()
            .find(|l| l.starts_with(&c[..12]) && !l.contains("rollback "))
            .unwrap_or("")
            .to_string()
    };
    assert!(line(&bad).contains("rolledBack"), "{history:?}");

    // The record of the failure names both deployments: the one that
    // failed and the one that reverted it; history joins them with
    // Marathon's versions.
    let rec = wait_until("the failure's record in the config repo", LIMIT, || async {
        let r = w.git.records(&bad);
        match r.iter().find(|x| x["app"] == "worker") {
            Some(x) => Ok(x.clone()),
            None => Err(format!("{r:#?}\n--- daemon log\n{}", d.proc.log_tail())),
        }
    })
    .await;
    assert_eq!(rec["outcome"], "rolledBack", "{rec:#}");
    let (failed_dep, rollback_dep) = (
        rec["deployment"].as_str().expect("the failed deployment"),
        rec["rollback"].as_str().expect("the rollback deployment"),
    );
    assert_ne!(failed_dep, rollback_dep);
    w.git.fetch_records();
    let h = w.history_json("worker");
    let entries = h.as_array().unwrap();
    let failed = entries
        .iter()
        .find(|e| e["outcome"] == "rolledBack")
        .unwrap_or_else(|| panic!("{h:#}"));
    assert_eq!(failed["commit"], bad.as_str(), "{h:#}");
    assert_eq!(failed["deployment"], failed_dep, "{h:#}");
    let revert = entries
        .iter()
        .find(|e| e["outcome"] == "rollback")
        .unwrap_or_else(|| panic!("{h:#}"));
    assert_eq!(revert["commit"], good.as_str(), "{h:#}");
    assert_eq!(revert["deployment"], rollback_dep, "{h:#}");

    // The same commit is not tried again, however many polls pass.
    let puts = w.sim.accepted_puts("/dev/worker").await;
    wait_cycles(&d, 3.0).await;
    assert_eq!(w.sim.accepted_puts("/dev/worker").await, puts);
    let s = d.status().await;
    assert_eq!(
        s["environments"]["dev"]["apps"]["worker"]["sync"], "failed",
        "{s:#}"
    );

    // The cause is fixed, and an operator's retry tries again (and
    // succeeds).
    w.sim.delete("/_sim/apps/dev/worker/never-healthy").await;
    let (st, v) = d.post("/api/v1/retry?env=dev&app=worker").await;
    assert_eq!(st, 202, "{v}");
    let app = wait_live(&w, &d, "/dev/worker", &bad).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "on");
    assert_eq!(w.sim.accepted_puts("/dev/worker").await, puts + 1);
    wait_app(&d, "worker", "the retried worker in sync", |a| {
        a["sync"] == "inSync" && a["last"]["outcome"] == "succeeded"
    })
    .await;
}

/// An app's own `deployTimeoutSeconds` bounds its rollouts, whatever the
/// daemon's default: here 1 s against 600 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_own_deploy_timeout_overrides_the_default() {
    let (w, d, _) = start(600).await;
    w.sim.never_healthy("/dev/worker").await;
    change_worker(&w, "slow");
    let path = "apps/worker/env/dev.yaml";
    let text = w.git.repo.read(path);
    w.git
        .repo
        .write(path, &format!("deployTimeoutSeconds: 1\n{text}"));
    let bad = w.git.commit_push("dev worker: one second to deploy");
    let s = wait_app(&d, "worker", "the worker timed out and rolled back", |a| {
        a["last"]["outcome"] == "rolledBack" && a["last"]["commit"] == bad
    })
    .await;
    let worker = &s["environments"]["dev"]["apps"]["worker"];
    let message = worker["last"]["message"].as_str().unwrap_or("");
    assert!(message.contains("1s"), "{worker:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_marathon_converges_without_duplicate_deployments() {
    let w = World::new().await;
    w.sim
        .faults(json!({"errorRate": 0.3, "errorStatus": 503}))
        .await;
    let (w, d, head) = start_in(w, 60, &[]).await;
    for id in ["/dev/api", "/dev/web", "/dev/worker"] {
        wait_live(&w, &d, id, &head).await;
        assert_eq!(w.sim.accepted_puts(id).await, 1, "{id}: one create");
    }
    let c = push_worker(&w, "flaky", "dev worker: a change through a flaky Marathon");
    wait_live(&w, &d, "/dev/worker", &c).await;
    wait_app(&d, "worker", "the worker in sync", |a| {
        a["sync"] == "inSync" && a["last"]["commit"] == c
    })
    .await;
    assert_eq!(
        w.sim.accepted_puts("/dev/worker").await,
        2,
        "create + one change"
    );
    assert_eq!(w.sim.accepted_puts("/dev/api").await, 1);
    assert_eq!(w.sim.accepted_puts("/dev/web").await, 1);
    // The faults did hit (or this test proves nothing).
    let failed = w.sim.requests().await.iter().filter(|r| r.2 == 503).count();
    assert!(failed > 0, "no injected 503 was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marathon_restarting_mid_deploy_is_recovered_from() {
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("sim-state.json");
    let mut w = World::new().await;
    // Replace the plain simulator with one that keeps its state.
    w.sim = Sim::start(scratch.path(), 0, Some(&state)).await;
    let (mut w, d, _) = start_in(w, 60, &[]).await;

    // A slow deployment, then Marathon dies under it.
    let (st, _) = w
        .sim
        .put("/_sim/settings", json!({"taskStartDelayMs": 600_000}))
        .await;
    assert_eq!(st, 200);
    let c = push_worker(
        &w,
        "restart",
        "dev worker: deployed across a Marathon restart",
    );
    wait_deploying(&w, "/dev/worker", &c).await;
    let port = w.sim.port;
    w.sim.proc.kill();
    w.sim = Sim::start(scratch.path(), port, Some(&state)).await;

    let app = wait_live(&w, &d, "/dev/worker", &c).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "restart");
    assert_eq!(app["tasksHealthy"], app["instances"], "{app:#}");
    d.wait_all("dev", "inSync", LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marathon_down_is_reported_and_recovered_from() {
    let (w, d, _) = start(60).await;
    let errors = d.metric("pacer_marathon_errors_total").await;

    let (st, _) = w.sim.post("/_sim/down", json!({})).await;
    assert_eq!(st, 200);
    let c = push_worker(
        &w,
        "after-outage",
        "dev worker: pushed while Marathon is down",
    );
    wait_until("the outage in the status and metrics", LIMIT, || async {
        let s = d.status().await;
        let errs = s["environments"]["dev"]["errors"].to_string();
        let counted = d.metric("pacer_marathon_errors_total").await;
        if errs.contains("Marathon") && counted > errors {
            Ok(())
        } else {
            Err(format!("{s:#}\nerrors counted: {counted}"))
        }
    })
    .await;
    let (st, _) = d.get("/healthz").await;
    assert_eq!(st, 200, "the daemon keeps serving while Marathon is down");

    let (st, _) = w.sim.post("/_sim/up", json!({})).await;
    assert_eq!(st, 200);
    let app = wait_live(&w, &d, "/dev/worker", &c).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "after-outage");
    wait_until("the error to clear", LIMIT, || async {
        let s = d.status().await;
        let dev = &s["environments"]["dev"];
        let synced = dev["apps"]
            .as_object()
            .is_some_and(|m| m.values().all(|a| a["sync"] == "inSync"));
        if dev.get("errors").is_none() && synced {
            Ok(())
        } else {
            Err(format!("{s:#}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_while_marathon_is_down_becomes_ready_when_it_is_back() {
    let w = World::new().await;
    w.sim.post("/_sim/down", json!({})).await;
    let d = w.serve(1, 60, &[]);
    wait_env_error(&d, "the outage to show", "Marathon").await;
    let (st, v) = d.get("/readyz").await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["ready"], false, "{v}");
    assert_eq!(d.get("/healthz").await.0, 200);
    assert!(d.metric("pacer_marathon_errors_total").await >= 1.0);

    w.sim.post("/_sim/up", json!({})).await;
    d.wait_all("dev", "inSync", LIMIT).await;
    let (st, v) = d.get("/readyz").await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_apply_adopts_the_running_deployment() {
    let (w, mut d, _) = start(60).await;

    // Hold the deployment (the new version never gets healthy) until the
    // restarted daemon has seen it.
    w.sim.never_healthy("/dev/worker").await;
    let c = push_worker(&w, "adopted", "dev worker: a deployment the daemon dies in");
    wait_deploying(&w, "/dev/worker", &c).await;
    d.proc.kill();
    assert_eq!(
        w.sim.accepted_puts("/dev/worker").await,
        2,
        "create + change"
    );

    let d = w.serve(1, 60, &[]);
    wait_log(
        &d,
        "the restarted daemon to adopt the deployment",
        "adopting the running deployment",
    )
    .await;
    w.sim.delete("/_sim/apps/dev/worker/never-healthy").await;
    let app = wait_live(&w, &d, "/dev/worker", &c).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "adopted");
    d.wait_all("dev", "inSync", LIMIT).await;
    assert_eq!(
        w.sim.accepted_puts("/dev/worker").await,
        2,
        "the restarted daemon started a second deployment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_shows_a_deployment_in_progress() {
    let (w, d, _) = start(60).await;
    w.sim.never_healthy("/dev/worker").await;
    let c = push_worker(&w, "slow", "dev worker: a slow deployment");
    wait_deploying(&w, "/dev/worker", &c).await;
    // While it runs, the status must not claim the old state is in sync.
    wait_app(&d, "worker", "the worker shown progressing", |a| {
        a["sync"] == "progressing"
    })
    .await;
    w.sim.delete("/_sim/apps/dev/worker/never-healthy").await;
    wait_app(&d, "worker", "the worker in sync", |a| {
        a["sync"] == "inSync" && a["last"]["commit"] == c.as_str()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_deployment_that_fails_is_rolled_back_to_the_version_before_it() {
    let (w, mut d, good) = start(60).await;
    w.sim.never_healthy("/dev/worker").await;
    let c = push_worker(
        &w,
        "adopted-then-failed",
        "dev worker: a deployment that will fail",
    );
    wait_deploying(&w, "/dev/worker", &c).await;
    d.proc.kill();
    let d = w.serve(1, 60, &[]);
    wait_log(
        &d,
        "the restarted daemon to adopt the deployment",
        "adopting the running deployment",
    )
    .await;
    // Marathon gives up on the deployment (the new version never got healthy).
    w.sim
        .put("/_sim/settings", json!({"deploymentTimeoutMs": 300}))
        .await;
    wait_app(&d, "worker", "the adopted deployment rolled back", |a| {
        a["last"]["outcome"] == "rolledBack"
    })
    .await;
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(
        app["labels"]["pacer.commit"],
        good.as_str(),
        "not rolled back to the version before: {app:#}"
    );
    assert!(app["env"].get("FEATURE_E2E").is_none(), "{app:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_marathon_did_not_take_is_not_reported_as_rolled_back() {
    let (w, d, _) = start(1).await;
    w.sim.never_healthy("/dev/worker").await;
    let c = push_worker(
        &w,
        "lost-rollback",
        "dev worker: Marathon goes away mid-deploy",
    );
    wait_deploying(&w, "/dev/worker", &c).await;
    // Marathon is gone past the deploy timeout: the rollback can't be sent.
    w.sim.post("/_sim/down", json!({})).await;
    let s = wait_app(&d, "worker", "the deploy to end", |a| {
        a["last"]["commit"] == c.as_str()
    })
    .await;
    let last = &s["environments"]["dev"]["apps"]["worker"]["last"];
    assert_eq!(
        last["outcome"], "failed",
        "Marathon still runs the new version, yet: {last:#}"
    );
    assert!(
        last["message"].to_string().contains("rollback failed"),
        "{last:#}"
    );

    // Back up: the daemon finishes the job by itself.
    w.sim.post("/_sim/up", json!({})).await;
    wait_app(&d, "worker", "the worker rolled back", |a| {
        a["sync"] == "failed" && a["last"]["outcome"] == "rolledBack"
    })
    .await;
    let good = run_git(w.git.repo.path(), &["rev-parse", "HEAD~1"]);
    let app = wait_live(&w, &d, "/dev/worker", &good).await;
    assert!(app["env"].get("FEATURE_E2E").is_none(), "{app:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_sent_together_are_all_kept() {
    // A 1 s deploy timeout: failures come fast.
    let (w, d, _) = start(1).await;
    for app in ["api", "web", "worker"] {
        let (st, _) = w
            .sim
            .post(&format!("/_sim/apps/dev/{app}/never-healthy"), json!({}))
            .await;
        assert_eq!(st, 200);
    }
    // One commit changes every dev app; all three fail and roll back.
    w.git.repo.edit(
        "environments/dev.yaml",
        "    APP_ENV: \"{{ env }}\"",
        "    APP_ENV: \"{{ env }}\"\n    E2E_RETRY: \"1\"",
    );
    let c = w.git.commit_push("dev: a change every app fails");
    for app in ["api", "web", "worker"] {
        wait_app(&d, app, &format!("{app} rolled back"), |a| {
            a["sync"] == "failed" && a["last"]["outcome"] == "rolledBack"
        })
        .await;
        // (The simulator would hold the revert too; see the rollback test.)
        w.sim
            .delete(&format!("/_sim/apps/dev/{app}/never-healthy"))
            .await;
    }
    for app in ["api", "web", "worker"] {
        let id = format!("/dev/{app}");
        wait_until(&format!("{id} reverted"), LIMIT, || async {
            let a = w.sim.app(&id).await.unwrap_or_default();
            let idle = a["deployments"].as_array().is_some_and(Vec::is_empty);
            if idle && a["env"].get("E2E_RETRY").is_none() {
                Ok(())
            } else {
                Err(format!("{a:#}"))
            }
        })
        .await;
    }
    // Keep the loop busy with a retry of api that fails again (≥ 1 s), and
    // send two more retries meanwhile: they arrive together.
    w.sim.never_healthy("/dev/api").await;
    assert_eq!(d.post("/api/v1/retry?env=dev&app=api").await.0, 202);
    wait_until("api's retry to be deploying", LIMIT, || async {
        let a = w.sim.app("/dev/api").await.unwrap_or_default();
        let running = a["deployments"].as_array().is_some_and(|v| !v.is_empty());
        if running && a["env"]["E2E_RETRY"] == "1" {
            Ok(())
        } else {
            Err(format!("{a:#}"))
        }
    })
    .await;
    assert_eq!(d.post("/api/v1/retry?env=dev&app=worker").await.0, 202);
    assert_eq!(d.post("/api/v1/retry?env=dev&app=web").await.0, 202);
    for app in ["web", "worker"] {
        let a = wait_live(&w, &d, &format!("/dev/{app}"), &c).await;
        assert_eq!(a["env"]["E2E_RETRY"], "1", "{app} was not retried: {a:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_healed_and_a_pruned_app_deleted() {
    let (w, d, head) = start(60).await;

    // Someone changes the worker by hand; dev heals drift.
    let (st, v) = w.sim.put("/v2/apps/dev/worker", json!({"cpus": 0.3})).await;
    assert_eq!(st, 200, "{v}");
    let app = wait_until("the drift to be healed", LIMIT, || async {
        let app = w.sim.app("/dev/worker").await.unwrap_or_default();
        let idle = app["deployments"].as_array().is_some_and(Vec::is_empty);
        if app["cpus"] == 0.1 && idle && w.sim.accepted_puts("/dev/worker").await == 3 {
            Ok(app)
        } else {
            Err(format!("{app:#}\n{}", d.proc.log_tail()))
        }
    })
    .await;
    assert_eq!(app["labels"]["pacer.commit"], head.as_str());
    wait_app(&d, "worker", "the worker in sync", |a| {
        a["sync"] == "inSync"
    })
    .await;

    // An app removed from Git is deleted from dev (it prunes).
    w.git.repo.remove("apps/worker");
    w.git.commit_push("drop the worker");
    wait_until("the worker to be deleted", LIMIT, || async {
        let gone = w.sim.app("/dev/worker").await.is_none();
        let s = d.status().await;
        let apps = &s["environments"]["dev"]["apps"];
        let listed = apps.get("worker").is_some() || apps.get("/dev/worker").is_some();
        if gone
            && !listed
            && apps
                .as_object()
                .unwrap()
                .values()
                .all(|a| a["sync"] == "inSync")
        {
            Ok(())
        } else {
            Err(format!("gone: {gone}\n{s:#}"))
        }
    })
    .await;
    assert!(w.sim.app("/dev/web").await.is_some());
}

/// Every write Marathon carries out answers 503, as when a proxy times out
/// in front of it: pacer reads Marathon again, sees its write went through,
/// and never sends it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_answers_are_lost_are_not_sent_twice() {
    let w = World::new().await;
    w.sim.faults(json!({"lostAnswerRate": 1.0})).await;
    let (w, d, _) = start_in(w, 60, &[]).await;
    let c = push_worker(&w, "lost", "dev worker: written while answers get lost");
    let app = wait_live(&w, &d, "/dev/worker", &c).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "lost");
    let s = wait_app(&d, "worker", "the worker in sync at the commit", |a| {
        a["sync"] == "inSync" && a["last"]["commit"] == c.as_str()
    })
    .await;
    assert_eq!(
        s["environments"]["dev"]["apps"]["worker"]["last"]["outcome"], "succeeded",
        "{s:#}"
    );
    // One PUT for the create and one for the change, each answered 503.
    let puts: Vec<u16> = w
        .sim
        .requests()
        .await
        .into_iter()
        .filter(|(m, p, _)| m == "PUT" && p == "/v2/apps/dev/worker")
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(puts, [503, 503]);
    let (_, versions) = w.sim.get("/v2/apps/dev/worker/versions").await;
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(2),
        "{versions:#}"
    );
}

/// A rollback whose answer is lost isn't sent again, nor done a second time
/// by hand: the revert Marathon started is found and followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_whose_answer_is_lost_reverts_once() {
    let (w, d, _) = start(1).await;
    w.sim.never_healthy("/dev/worker").await;
    w.sim.faults(json!({"lostAnswerRate": 1.0})).await;
    let bad = push_worker(&w, "doomed", "dev worker: never healthy, answers lost");
    let s = wait_app(&d, "worker", "the worker rolled back", |a| {
        a["last"]["outcome"] == "rolledBack" && a["last"]["commit"] == bad
    })
    .await;
    let worker = &s["environments"]["dev"]["apps"]["worker"];
    let requests = w.sim.requests().await;
    let count = |method: &str, prefix: &str| {
        requests
            .iter()
            .filter(|(m, p, _)| m == method && p.starts_with(prefix))
            .count()
    };
    assert_eq!(count("DELETE", "/v2/deployments/"), 1, "{requests:#?}");
    // The create, the doomed change; no revert by hand.
    assert_eq!(count("PUT", "/v2/apps/dev/worker"), 2, "{requests:#?}");
    assert!(
        worker["last"]["deploymentId"].is_string(),
        "the failed deployment's id: {worker:#}"
    );
}
