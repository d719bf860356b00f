//! `pacer serve` when things go wrong, with the real binaries and the
//! simulator's control API: failing deployments, flaky, restarting and dead
//! Marathons, broken commits, an unreachable repo, a killed daemon and a
//! force-push. Plus a property: `apply` then `plan` is always in sync.

use crate::util::harness::{Daemon, Sim, World, wait_until};
use crate::util::run_git;
use serde_json::{Value, json};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// Gives the worker's dev overlay an env var: a config change (redeploy).
fn change_worker(w: &World, value: &str) {
    let path = "apps/worker/env/dev.yaml";
    let text = w.git.repo.read(path);
    let text = match text.find("\n  env:\n") {
        Some(_) => {
            let start = text.find("    FEATURE_E2E:").expect("the var set before");
            let end = start + text[start..].find('\n').unwrap();
            format!(
                "{}    FEATURE_E2E: \"{value}\"{}",
                &text[..start],
                &text[end..]
            )
        }
        None => text.replacen(
            "marathon:\n",
            &format!("marathon:\n  env:\n    FEATURE_E2E: \"{value}\"\n"),
            1,
        ),
    };
    w.git.repo.write(path, &text);
}

/// The app in Marathon once it runs `commit` with no deployment in flight.
async fn wait_live(w: &World, d: &Daemon, id: &str, commit: &str) -> Value {
    wait_until(&format!("{id} at {commit}"), LIMIT, || async {
        let app = w.sim.app(id).await.unwrap_or_default();
        let idle = app["deployments"].as_array().is_some_and(Vec::is_empty);
        if app["labels"]["pacer.commit"] == commit && idle {
            Ok(app)
        } else {
            Err(format!("{app:#}\n--- daemon log\n{}", d.proc.log_tail()))
        }
    })
    .await
}

/// The status once `app` of dev satisfies `pred`.
async fn wait_app(d: &Daemon, app: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, LIMIT, || async {
        let s = d.status().await;
        if pred(&s["environments"]["dev"]["apps"][app]) {
            Ok(s)
        } else {
            Err(format!("{s:#}\n--- daemon log\n{}", d.proc.log_tail()))
        }
    })
    .await
}

/// The number of dev reconciles so far (the duration histogram's count).
async fn cycles(d: &Daemon) -> f64 {
    d.metric("pacer_reconcile_duration_seconds_count{env=\"dev\"}")
        .await
}

/// Waits until the daemon has reconciled dev `n` more times.
async fn wait_cycles(d: &Daemon, n: f64) {
    let start = cycles(d).await;
    wait_until(&format!("{n} more reconciles"), LIMIT, || async {
        let now = cycles(d).await;
        if now >= start + n {
            Ok(())
        } else {
            Err(format!("{now} (from {start})"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deployment_is_rolled_back_and_not_retried_in_a_loop() {
    let w = World::new().await;
    let d = w.serve(1, 1, &[]);
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    let good = s["repo"]["head"].as_str().unwrap().to_string();
    let before = w.sim.app("/dev/worker").await.unwrap();

    w.sim.never_healthy("/dev/worker").await;
    change_worker(&w, "on");
    let bad = w
        .git
        .commit_push("dev worker: a version that never gets healthy");

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
    let w = World::new().await;
    let d = w.serve(1, 600, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
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
    let (st, v) = w
        .sim
        .put(
            "/_sim/faults",
            json!({"errorRate": 0.3, "errorStatus": 503}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let d = w.serve(1, 60, &[]);
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    let head = s["repo"]["head"].as_str().unwrap().to_string();
    for id in ["/dev/api", "/dev/web", "/dev/worker"] {
        wait_live(&w, &d, id, &head).await;
        assert_eq!(w.sim.accepted_puts(id).await, 1, "{id}: one create");
    }
    change_worker(&w, "flaky");
    let c = w
        .git
        .commit_push("dev worker: a change through a flaky Marathon");
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
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;

    // A slow deployment, then Marathon dies under it.
    let (st, _) = w
        .sim
        .put("/_sim/settings", json!({"taskStartDelayMs": 600_000}))
        .await;
    assert_eq!(st, 200);
    change_worker(&w, "restart");
    let c = w
        .git
        .commit_push("dev worker: deployed across a Marathon restart");
    wait_until("the worker's deployment to start", LIMIT, || async {
        let app = w.sim.app("/dev/worker").await.unwrap_or_default();
        let running = app["deployments"].as_array().is_some_and(|a| !a.is_empty());
        if app["labels"]["pacer.commit"] == c.as_str() && running {
            Ok(())
        } else {
            Err(format!("{app:#}"))
        }
    })
    .await;
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
    let w = World::new().await;
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    let errors = d.metric("pacer_marathon_errors_total").await;

    let (st, _) = w.sim.post("/_sim/down", json!({})).await;
    assert_eq!(st, 200);
    change_worker(&w, "after-outage");
    let c = w
        .git
        .commit_push("dev worker: pushed while Marathon is down");
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
async fn a_commit_that_does_not_render_keeps_the_app_and_deploys_the_rest() {
    let w = World::new().await;
    let d = w.serve(1, 60, &[]);
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    let good = s["repo"]["head"].as_str().unwrap().to_string();
    let web_before = w.sim.app("/dev/web").await.unwrap();

    let broken = "      image: \"nginx:{{ values.nginxVersoin }}-alpine\"";
    w.git.repo.edit(
        "apps/web/app.yaml",
        "      image: \"nginx:{{ values.nginxVersion }}-alpine\"",
        broken,
    );
    let line = w
        .git
        .repo
        .read("apps/web/app.yaml")
        .lines()
        .position(|l| l == broken)
        .unwrap()
        + 1;
    change_worker(&w, "beside-a-broken-app");
    let c = w.git.commit_push("web: a typo; worker: a good change");

    let s = wait_app(&d, "web", "web invalid", |a| a["sync"] == "invalid").await;
    let web = &s["environments"]["dev"]["apps"]["web"];
    let errors = web["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e["file"] == "apps/web/app.yaml" && e["line"] == line),
        "no error at apps/web/app.yaml:{line}: {web:#}"
    );
    // The other apps get the same commit's changes.
    let worker = wait_live(&w, &d, "/dev/worker", &c).await;
    assert_eq!(worker["env"]["FEATURE_E2E"], "beside-a-broken-app");
    // web stays at its last good definition.
    wait_cycles(&d, 2.0).await;
    let web_now = w.sim.app("/dev/web").await.unwrap();
    assert_eq!(web_now["labels"]["pacer.commit"], good.as_str());
    assert_eq!(web_now["container"], web_before["container"]);
    assert_eq!(web_now["version"], web_before["version"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_repo_is_reported_and_marathon_left_alone() {
    let mut w = World::new().await;
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    w.sim.delete("/_sim/requests").await;
    let fetch_errors = d.metric("pacer_git_fetch_errors_total").await;

    drop(w.git.daemon.take());
    let s = wait_until("fetch errors to show and grow", LIMIT, || async {
        let s = d.status().await;
        let n = d.metric("pacer_git_fetch_errors_total").await;
        if s["repo"]["lastFetchError"].is_string() && n >= fetch_errors + 2.0 {
            Ok(s)
        } else {
            Err(format!("{s:#}\nfetch errors: {n}"))
        }
    })
    .await;
    assert_eq!(d.get("/healthz").await.0, 200);
    let apps = s["environments"]["dev"]["apps"].as_object().unwrap();
    assert!(apps.values().all(|a| a["sync"] == "inSync"), "{s:#}");
    let writes: Vec<_> = w
        .sim
        .requests()
        .await
        .into_iter()
        .filter(|(m, _, _)| m != "GET")
        .collect();
    assert!(writes.is_empty(), "Marathon was written to: {writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_apply_adopts_the_running_deployment() {
    let w = World::new().await;
    let mut d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;

    // Hold the deployment (the new version never gets healthy) until the
    // restarted daemon has seen it.
    let (st, _) = w
        .sim
        .post("/_sim/apps/dev/worker/never-healthy", json!({}))
        .await;
    assert_eq!(st, 200);
    change_worker(&w, "adopted");
    let c = w
        .git
        .commit_push("dev worker: a deployment the daemon dies in");
    wait_until("the worker's deployment to start", LIMIT, || async {
        let app = w.sim.app("/dev/worker").await.unwrap_or_default();
        let running = app["deployments"].as_array().is_some_and(|a| !a.is_empty());
        if app["labels"]["pacer.commit"] == c.as_str() && running {
            Ok(())
        } else {
            Err(format!("{app:#}"))
        }
    })
    .await;
    d.proc.kill();
    assert_eq!(
        w.sim.accepted_puts("/dev/worker").await,
        2,
        "create + change"
    );

    let d = w.serve(1, 60, &[]);
    wait_until(
        "the restarted daemon to adopt the deployment",
        LIMIT,
        || async {
            let log = std::fs::read_to_string(&d.proc.log).unwrap_or_default();
            if log.contains("adopting the running deployment") {
                Ok(())
            } else {
                Err(d.proc.log_tail())
            }
        },
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
async fn a_force_push_rewind_is_refused_unless_allowed() {
    let w = World::new().await;
    let mut d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    change_worker(&w, "b");
    let b = w.git.commit_push("B");
    wait_live(&w, &d, "/dev/worker", &b).await;

    // Rewrite history: drop B, commit C on its parent, force-push.
    run_git(w.git.repo.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    change_worker(&w, "c");
    let c = w.git.repo.commit("C, force-pushed over B");
    w.git.push(true);
    wait_until("the rewind to be refused", LIMIT, || async {
        let s = d.status().await;
        let errs = s["environments"]["dev"]["errors"].to_string();
        if s["repo"]["head"] == c.as_str() && errs.contains("refusing to rewind") {
            Ok(())
        } else {
            Err(format!("{s:#}"))
        }
    })
    .await;
    wait_cycles(&d, 2.0).await;
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(
        app["labels"]["pacer.commit"],
        b.as_str(),
        "the rewind was deployed"
    );
    assert_eq!(app["env"]["FEATURE_E2E"], "b");

    d.proc.kill();
    let d = w.serve(1, 60, &["--allow-rewind"]);
    let app = wait_live(&w, &d, "/dev/worker", &c).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "c");
    d.wait_all("dev", "inSync", LIMIT).await;
}

// ---- the property: apply, then plan is in sync ----

/// For any valid app, `apply` followed by `plan` finds nothing to do (what
/// `pacer apply --yes` then `pacer plan` exiting 0 means), in-process
/// against the in-process simulator to stay fast.
#[test]
fn apply_then_plan_is_always_in_sync() {
    use crate::marathon_client::TestSim;
    use pacer::apply::{self, LogProgress};
    use pacer::model::Digest;
    use pacer::model::Outcome;
    use pacer::plan::{self, Action};
    use pacer::reconcile::gather::{self, Caches};
    use pacer::render::{DesiredEnv, EnvSettings, Policy, RenderedApp};
    use proptest::prelude::{prop_assert, prop_assert_eq};
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(TestSim::fast());
    let client = sim.client();
    rt.block_on(async {
        // The generator's dependencies.
        for dep in ["/prop/dep-a", "/prop/dep-b"] {
            client
                .put_app(dep, &json!({"cmd": "sleep 1000", "instances": 0}), false)
                .await
                .unwrap();
        }
    });
    let opts = apply::Options {
        poll: Duration::from_millis(20),
        deploy_timeout: Duration::from_secs(20),
        ..apply::Options::default()
    };
    let n = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&crate::observe::app(), |mut marathon| {
        // One group per case: each plan sees only its own app.
        let group = format!("/e2eprop/c{}", n.fetch_add(1, Ordering::SeqCst));
        if let Some(deps) = marathon
            .get_mut("dependencies")
            .and_then(Value::as_array_mut)
        {
            // Relative ids resolve against the app's group: make them absolute.
            for d in deps.iter_mut() {
                if d == "prop/dep-b" {
                    *d = json!("/prop/dep-b");
                }
            }
        }
        let settings = EnvSettings {
            name: "prop".into(),
            group: group.clone(),
            marathon: None,
            policy: Policy {
                auto_apply: true,
                prune: true,
                self_heal: true,
                ..Policy::default()
            },
        };
        // As rendered: the body carries its id.
        marathon["id"] = json!(settings.app_id("app"));
        let app = RenderedApp {
            id: settings.app_id("app"),
            app: "app".into(),
            env: "prop".into(),
            marathon: marathon.clone(),
            files: BTreeMap::new(),
            ignore: Vec::new(),
            deploy_timeout_seconds: None,
            secrets: Vec::new(),
            shown: None,
            inputs: Digest::of(marathon.to_string().as_bytes()),
        };
        let desired = DesiredEnv {
            settings,
            apps: [("app".to_string(), app.into())].into(),
        };
        rt.block_on(async {
            let mut caches = Caches::default();
            let observed = gather::observe(&client, None, &desired, &mut caches)
                .await
                .map_err(|e| TestCaseError::fail(format!("observe: {e}")))?;
            let p = plan::plan(&desired, &observed, &Default::default());
            prop_assert!(p.steps.iter().all(|s| s.action == Action::Create), "{p:#?}");
            let results = apply::apply(
                &client,
                &p,
                &desired,
                &observed,
                &opts,
                Arc::new(LogProgress),
            )
            .await;
            prop_assert_eq!(results.len(), 1);
            prop_assert_eq!(
                results[0].outcome,
                Outcome::Succeeded,
                "{:?}\n{:#}",
                results,
                marathon
            );
            let observed = gather::observe(&client, None, &desired, &mut caches)
                .await
                .map_err(|e| TestCaseError::fail(format!("observe: {e}")))?;
            let p = plan::plan(&desired, &observed, &Default::default());
            prop_assert!(
                !p.has_changes(),
                "not in sync after apply:\n{p:#?}\n{marathon:#}"
            );

            // And again for a change: a scale (partial PUT) and a redeploy.
            let mut desired = desired;
            let a = std::sync::Arc::make_mut(desired.apps.get_mut("app").expect("the app"));
            let instances = a
                .marathon
                .get("instances")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            a.marathon["instances"] = json!(instances + 1);
            for change in ["scale", "redeploy"] {
                if change == "redeploy" {
                    let a = std::sync::Arc::make_mut(desired.apps.get_mut("app").expect("the app"));
                    a.marathon["env"]["PACER_PROP"] = json!("changed");
                }
                let observed = gather::observe(&client, None, &desired, &mut caches)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("observe: {e}")))?;
                let p = plan::plan(&desired, &observed, &Default::default());
                prop_assert!(
                    p.steps
                        .iter()
                        .all(|s| matches!(s.action, Action::Update { .. })),
                    "{change}: {p:#?}"
                );
                let results = apply::apply(
                    &client,
                    &p,
                    &desired,
                    &observed,
                    &opts,
                    Arc::new(LogProgress),
                )
                .await;
                prop_assert!(
                    results.len() == 1 && results[0].outcome == Outcome::Succeeded,
                    "{change}: {results:?}"
                );
                let observed = gather::observe(&client, None, &desired, &mut caches)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("observe: {e}")))?;
                let p = plan::plan(&desired, &observed, &Default::default());
                prop_assert!(
                    !p.has_changes(),
                    "{change}: not in sync after apply:\n{p:#?}\n{marathon:#}"
                );
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_past_a_scale_only_commit_stays_refused() {
    // A scale keeps the live app's `pacer.commit` label, so only the
    // daemon's memory of the commit it applied can tell the rewind.
    let w = World::new().await;
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    w.git.repo.edit(
        "apps/worker/env/dev.yaml",
        "marathon:\n  instances: 1",
        "marathon:\n  instances: 2",
    );
    let b = w.git.commit_push("B: scale the dev worker");
    wait_app(&d, "worker", "the scale applied", |a| {
        a["sync"] == "inSync" && a["last"]["commit"] == b.as_str()
    })
    .await;
    assert_eq!(w.sim.app("/dev/worker").await.unwrap()["instances"], 2);

    run_git(w.git.repo.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    change_worker(&w, "c");
    let c = w.git.repo.commit("C, force-pushed over B");
    w.git.push(true);
    let refused = |s: &Value| {
        s["repo"]["head"] == c.as_str()
            && s["environments"]["dev"]["errors"]
                .to_string()
                .contains("refusing to rewind")
    };
    wait_until("the rewind to be refused", LIMIT, || async {
        let s = d.status().await;
        if refused(&s) {
            Ok(())
        } else {
            Err(format!("{s:#}"))
        }
    })
    .await;
    // …and it stays refused, poll after poll.
    wait_cycles(&d, 3.0).await;
    let s = d.status().await;
    assert!(refused(&s), "the refusal was forgotten: {s:#}");
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["instances"], 2, "the rewind was deployed: {app:#}");
    assert!(
        app["env"].get("FEATURE_E2E").is_none(),
        "the rewind was deployed: {app:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_sent_together_are_all_kept() {
    let w = World::new().await;
    // A 1 s deploy timeout: failures come fast.
    let d = w.serve(1, 1, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
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
    w.sim
        .post("/_sim/apps/dev/api/never-healthy", json!({}))
        .await;
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

/// One app in its own environment, as the renderer would give it.
fn one_app_env(group: &str, mut marathon: Value) -> pacer::render::DesiredEnv {
    use pacer::render::{DesiredEnv, EnvSettings, Policy, RenderedApp};
    let settings = EnvSettings {
        name: "prop".into(),
        group: group.to_string(),
        marathon: None,
        policy: Policy {
            auto_apply: true,
            prune: true,
            self_heal: true,
            ..Policy::default()
        },
    };
    marathon["id"] = json!(settings.app_id("app"));
    let app = RenderedApp {
        id: settings.app_id("app"),
        app: "app".into(),
        env: "prop".into(),
        inputs: pacer::model::Digest::of(marathon.to_string().as_bytes()),
        marathon,
        files: Default::default(),
        ignore: Vec::new(),
        deploy_timeout_seconds: None,
        secrets: Vec::new(),
        shown: None,
    };
    DesiredEnv {
        settings,
        apps: [("app".to_string(), app.into())].into(),
    }
}

/// Not knowing whether a definition failed before (Marathon's versions
/// could not be read) must not plan it as new: that retried a rolled-back
/// deployment on every transient error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_definition_is_not_retried_when_its_history_cannot_be_read() {
    use crate::marathon_client::TestSim;
    use pacer::apply::{self, LogProgress};
    use pacer::model::Outcome;
    use pacer::plan::{self, Action};
    use pacer::reconcile::gather::{self, Caches};
    use std::sync::Arc;

    let sim = TestSim::fast().await;
    let client = sim.client();
    let opts = apply::Options {
        poll: Duration::from_millis(20),
        deploy_timeout: Duration::from_millis(500),
        ..apply::Options::default()
    };
    let app = |v: &str| json!({"cmd": format!("./serve {v}"), "instances": 1, "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]});
    let apply_env = |d: pacer::render::DesiredEnv| {
        let client = client.clone();
        let opts = opts.clone();
        async move {
            let observed = gather::observe(&client, None, &d, &mut Caches::default())
                .await
                .unwrap();
            let p = plan::plan(&d, &observed, &Default::default());
            apply::apply(&client, &p, &d, &observed, &opts, Arc::new(LogProgress)).await
        }
    };
    let r = apply_env(one_app_env("/hist", app("v1"))).await;
    assert_eq!(r[0].outcome, Outcome::Succeeded, "{r:?}");
    sim.control(
        reqwest::Method::POST,
        "apps/hist/app/never-healthy",
        json!({}),
    )
    .await;
    let bad = one_app_env("/hist", app("v2"));
    let r = apply_env(bad.clone()).await;
    assert_eq!(r[0].outcome, Outcome::RolledBack, "{r:?}");
    // (The simulator holds the revert too; see the rollback e2e test.)
    sim.control(
        reqwest::Method::DELETE,
        "apps/hist/app/never-healthy",
        json!({}),
    )
    .await;
    wait_until("the revert to finish", LIMIT, || async {
        let deps = client.deployments().await.map_err(|e| e.to_string())?;
        if deps.is_empty() {
            Ok(())
        } else {
            Err(format!("{deps:?}"))
        }
    })
    .await;

    // Marathon's apps can be read, then it fails every request.
    let mut snap = gather::snapshot(&client).await.unwrap();
    sim.control(
        reqwest::Method::PUT,
        "faults",
        json!({"errorRate": 1.0, "errorStatus": 503}),
    )
    .await;
    let mut caches = Caches::default();
    let observed = gather::observe_in(
        &client,
        &mut snap,
        None,
        &bad,
        &Default::default(),
        &mut caches,
    )
    .await;
    if let Ok(observed) = &observed {
        let p = plan::plan(&bad, observed, &Default::default());
        assert!(
            !p.steps.iter().any(|s| s.action.acts()),
            "a failed definition is planned again: {:?}",
            p.steps
        );
    }
    // Back up, the same caches know it failed.
    sim.control(reqwest::Method::DELETE, "faults", json!({}))
        .await;
    // A fresh read: each environment takes its apps out of a snapshot.
    let mut snap = gather::snapshot(&client).await.unwrap();
    let observed = gather::observe_in(
        &client,
        &mut snap,
        None,
        &bad,
        &Default::default(),
        &mut caches,
    )
    .await
    .unwrap();
    let p = plan::plan(&bad, &observed, &Default::default());
    assert_eq!(p.steps[0].action, Action::Failed, "{:?}", p.steps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_marathon_did_not_take_is_not_reported_as_rolled_back() {
    let w = World::new().await;
    let d = w.serve(1, 1, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    w.sim
        .post("/_sim/apps/dev/worker/never-healthy", json!({}))
        .await;
    change_worker(&w, "lost-rollback");
    let c = w
        .git
        .commit_push("dev worker: Marathon goes away mid-deploy");
    wait_until("the worker's deployment to start", LIMIT, || async {
        let app = w.sim.app("/dev/worker").await.unwrap_or_default();
        let running = app["deployments"].as_array().is_some_and(|a| !a.is_empty());
        if app["labels"]["pacer.commit"] == c.as_str() && running {
            Ok(())
        } else {
            Err(format!("{app:#}"))
        }
    })
    .await;
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
async fn drift_is_healed_and_a_pruned_app_deleted() {
    let w = World::new().await;
    let d = w.serve(1, 60, &[]);
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    let head = s["repo"]["head"].as_str().unwrap().to_string();

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_while_marathon_is_down_becomes_ready_when_it_is_back() {
    let w = World::new().await;
    w.sim.post("/_sim/down", json!({})).await;
    let d = w.serve(1, 60, &[]);
    wait_until("the outage to show", LIMIT, || async {
        let s = d.status().await;
        let errs = s["environments"]["dev"]["errors"].to_string();
        if errs.contains("Marathon") {
            Ok(())
        } else {
            Err(format!("{s:#}"))
        }
    })
    .await;
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
async fn the_status_shows_a_deployment_in_progress() {
    let w = World::new().await;
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    w.sim
        .post("/_sim/apps/dev/worker/never-healthy", json!({}))
        .await;
    change_worker(&w, "slow");
    let c = w.git.commit_push("dev worker: a slow deployment");
    wait_until("the worker's deployment to start", LIMIT, || async {
        let app = w.sim.app("/dev/worker").await.unwrap_or_default();
        let running = app["deployments"].as_array().is_some_and(|a| !a.is_empty());
        if app["labels"]["pacer.commit"] == c.as_str() && running {
            Ok(())
        } else {
            Err(format!("{app:#}"))
        }
    })
    .await;
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
    let w = World::new().await;
    let mut d = w.serve(1, 60, &[]);
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    let good = s["repo"]["head"].as_str().unwrap().to_string();
    w.sim
        .post("/_sim/apps/dev/worker/never-healthy", json!({}))
        .await;
    change_worker(&w, "adopted-then-failed");
    let c = w.git.commit_push("dev worker: a deployment that will fail");
    wait_until("the worker's deployment to start", LIMIT, || async {
        let app = w.sim.app("/dev/worker").await.unwrap_or_default();
        let running = app["deployments"].as_array().is_some_and(|a| !a.is_empty());
        if app["labels"]["pacer.commit"] == c.as_str() && running {
            Ok(())
        } else {
            Err(format!("{app:#}"))
        }
    })
    .await;
    d.proc.kill();
    let d = w.serve(1, 60, &[]);
    wait_until(
        "the restarted daemon to adopt the deployment",
        LIMIT,
        || async {
            let log = std::fs::read_to_string(&d.proc.log).unwrap_or_default();
            if log.contains("adopting the running deployment") {
                Ok(())
            } else {
                Err(d.proc.log_tail())
            }
        },
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
async fn secrets_never_reach_the_status_metrics_or_logs() {
    const SECRET_VALUE: &str = "0f1e2d3c4b5a@sentry.example.com";
    let w = World::new().await;
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    // The secret is in Marathon (it is the app's env)…
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert!(app["env"]["SENTRY_DSN"].to_string().contains(SECRET_VALUE));
    // …and a hand-made change right next to it makes a diff with it in context.
    let mut env = app["env"].clone();
    env["APP_ENV"] = json!("hand-edited");
    w.sim.put("/v2/apps/dev/worker", json!({"env": env})).await;
    wait_until("the drift to be healed", LIMIT, || async {
        let a = w.sim.app("/dev/worker").await.unwrap_or_default();
        let idle = a["deployments"].as_array().is_some_and(Vec::is_empty);
        if a["env"]["APP_ENV"] == "dev" && idle {
            Ok(())
        } else {
            Err(format!("{a:#}"))
        }
    })
    .await;
    d.wait_all("dev", "inSync", LIMIT).await;
    let status = d.status().await.to_string();
    assert!(!status.contains(SECRET_VALUE), "{status}");
    let metrics = d.metrics().await;
    assert!(!metrics.contains(SECRET_VALUE), "{metrics}");
    let log = std::fs::read_to_string(&d.proc.log).unwrap();
    assert!(!log.contains(SECRET_VALUE), "the daemon log has the secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_never_prints_a_secret() {
    const SECRET_VALUE: &str = "0f1e2d3c4b5a@sentry.example.com";
    let w = World::new().await;
    let repo = w.git.repo.path_str();
    let url = w.sim.url.clone();
    let apply = crate::util::pacer(&[
        "apply",
        "--repo",
        repo,
        "--marathon",
        &url,
        "--env",
        "dev",
        "--yes",
    ]);
    assert_eq!(apply.code, 0, "{apply:?}");
    // `pacer apply` records what it did on the commit it applied, like the
    // daemon, in the repo it ran from.
    let head = run_git(w.git.repo.path(), &["rev-parse", "HEAD"]);
    let notes = run_git(w.git.repo.path(), &["notes", "--ref=pacer", "show", &head]);
    let records: Vec<Value> = notes
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    let ids: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["/dev/api", "/dev/web", "/dev/worker"].into(),
        "{notes}"
    );
    for r in &records {
        assert_eq!(r["outcome"], "succeeded", "{r:#}");
        assert!(
            r["deployment"].as_str().is_some_and(|d| !d.is_empty()),
            "{r:#}"
        );
    }
    assert!(!notes.contains(SECRET_VALUE), "{notes}");
    // A hand-made change right next to the secret: it is in the diff's context.
    let mut env = w.sim.app("/dev/worker").await.unwrap()["env"].clone();
    env["APP_ENV"] = json!("hand-edited");
    w.sim.put("/v2/apps/dev/worker", json!({"env": env})).await;
    wait_until("the hand-made deployment to finish", LIMIT, || async {
        match w.sim.deployments().await {
            0 => Ok(()),
            n => Err(format!("{n} deployments")),
        }
    })
    .await;
    for format in ["text", "json", "markdown"] {
        let plan = crate::util::pacer(&[
            "plan",
            "--repo",
            repo,
            "--marathon",
            &url,
            "--env",
            "dev",
            "--format",
            format,
        ]);
        assert_eq!(plan.code, 2, "{plan:?}");
        assert!(plan.stdout.contains("hand-edited"), "{plan:?}");
        assert!(!plan.stdout.contains(SECRET_VALUE), "{format}: {plan:?}");
        assert!(!plan.stderr.contains(SECRET_VALUE), "{format}: {plan:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_breaking_pacer_yaml_keeps_everything_at_the_last_good_one() {
    let w = World::new().await;
    let d = w.serve(1, 60, &[]);
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    let good = s["repo"]["head"].as_str().unwrap().to_string();

    w.git.repo.edit(
        "pacer.yaml",
        "    group: /dev\n",
        "    group: /dev\n    bogus: [\n",
    );
    change_worker(&w, "behind-a-broken-pacer-yaml");
    let broken = w.git.commit_push("break pacer.yaml");
    let s = wait_until("the broken commit reported", LIMIT, || async {
        let s = d.status().await;
        let errs = s["environments"]["dev"]["errors"].to_string();
        if s["repo"]["head"] == broken.as_str() && errs.contains("pacer.yaml") {
            Ok(s)
        } else {
            Err(format!("{s:#}"))
        }
    })
    .await;
    assert_eq!(s["repo"]["lastGood"], good.as_str(), "{s:#}");
    wait_cycles(&d, 2.0).await;
    let s = d.status().await;
    // The environment still runs, and says it runs, the last good commit.
    assert_eq!(s["environments"]["dev"]["commit"], good.as_str(), "{s:#}");
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["labels"]["pacer.commit"], good.as_str());
    assert!(app["env"].get("FEATURE_E2E").is_none());

    // Fixed: the change goes out.
    w.git.repo.edit("pacer.yaml", "    bogus: [\n", "");
    let fixed = w.git.commit_push("fix pacer.yaml");
    let app = wait_live(&w, &d, "/dev/worker", &fixed).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "behind-a-broken-pacer-yaml");
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    assert!(s["environments"]["dev"].get("errors").is_none(), "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restarted_on_a_broken_app_does_not_prune_it() {
    let w = World::new().await;
    let mut d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    d.proc.kill();
    w.git.repo.edit(
        "apps/web/app.yaml",
        "      image: \"nginx:{{ values.nginxVersion }}-alpine\"",
        "      image: \"nginx:{{ values.nginxVersoin }}-alpine\"",
    );
    w.git
        .commit_push("web: a typo, pushed while the daemon is down");

    // A fresh daemon never saw web render: it must still not delete it.
    let d = w.serve(1, 60, &[]);
    wait_app(&d, "web", "web invalid", |a| a["sync"] == "invalid").await;
    wait_cycles(&d, 2.0).await;
    assert!(
        w.sim.app("/dev/web").await.is_some(),
        "web was pruned because it doesn't render"
    );
    let deletes: Vec<_> = w
        .sim
        .requests()
        .await
        .into_iter()
        .filter(|(m, _, _)| m == "DELETE")
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
}

/// A config repo that won't take the deployment records (a read-only key,
/// a server rule) never stops a deployment: the records wait, the status
/// says why, and the push is tried again with backoff, not on every poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_repo_refuses_wait_without_blocking_deployments() {
    let w = World::new().await;
    let hook = w.git.bare().join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nwhile read old new ref; do\n  case \"$ref\" in refs/notes/*) echo 'notes are not accepted here' >&2; exit 1;; esac\ndone\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let d = w.serve(1, 60, &[]);
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    let head = s["repo"]["head"].as_str().unwrap().to_string();
    let s = wait_until("the refused records in the status", LIMIT, || async {
        let s = d.status().await;
        if s["repo"]["pendingRecords"].as_u64().unwrap_or(0) >= 3
            && s["repo"]["lastRecordError"].is_string()
        {
            Ok(s)
        } else {
            Err(format!("{s:#}"))
        }
    })
    .await;
    let error = s["repo"]["lastRecordError"].as_str().unwrap();
    assert!(error.contains("refs/notes/pacer"), "{error}");
    assert!(w.git.records(&head).is_empty(), "the hook let them in");
    // Several polls later, still one attempt: the next waits 30 s.
    wait_cycles(&d, 3.0).await;
    assert_eq!(d.metric("pacer_record_errors_total").await, 1.0);
    // Deployments go on meanwhile.
    change_worker(&w, "on");
    let c = w.git.commit_push("dev worker: deployed while records wait");
    wait_live(&w, &d, "/dev/worker", &c).await;
}

/// Every write Marathon carries out answers 503, as when a proxy times out
/// in front of it: pacer reads Marathon again, sees its write went through,
/// and never sends it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_answers_are_lost_are_not_sent_twice() {
    let w = World::new().await;
    w.sim.faults(json!({"lostAnswerRate": 1.0})).await;
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    change_worker(&w, "lost");
    let c = w
        .git
        .commit_push("dev worker: written while answers get lost");
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
    let w = World::new().await;
    let d = w.serve(1, 1, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    w.sim.never_healthy("/dev/worker").await;
    w.sim.faults(json!({"lostAnswerRate": 1.0})).await;
    change_worker(&w, "doomed");
    let bad = w.git.commit_push("dev worker: never healthy, answers lost");
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

/// A Git server that accepts connections and then says nothing: the fetch
/// gives up after `--git-timeout`, the daemon keeps serving and reports it,
/// and Marathon is left alone. Over git:// and ssh:// (libssh2 waits for
/// the server's banner).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_server_that_hangs_times_out() {
    for scheme in ["git", "ssh"] {
        let w = World::new().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and holds every connection, answering nothing.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
            }
        });
        let url = format!("{scheme}://127.0.0.1:{port}/config.git");
        let d = w.serve_from(&url, 1, 60, &["--git-timeout", "1"]);
        let s = wait_until(
            &format!("the hung {scheme} fetch to time out"),
            LIMIT,
            || async {
                let s = d.status().await;
                let errors = d.metric("pacer_git_fetch_errors_total").await;
                if s["repo"]["lastFetchError"].is_string() && errors >= 2.0 {
                    Ok(s)
                } else {
                    Err(format!(
                        "{s:#}\nfetch errors: {errors}\n{}",
                        d.proc.log_tail()
                    ))
                }
            },
        )
        .await;
        assert_eq!(d.get("/healthz").await.0, 200);
        let error = s["repo"]["lastFetchError"].as_str().unwrap();
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        assert!(w.sim.requests().await.iter().all(|(m, _, _)| m == "GET"));
    }
}
