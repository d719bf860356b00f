//! `apply` and `plan` in-process against the in-process simulator: the
//! property that `apply` then `plan` is always in sync, and a failed
//! definition that stays failed while Marathon can't say so.

use crate::util::harness::wait_until;
use crate::util::scenario::LIMIT;
use serde_json::{Value, json};
use std::time::Duration;

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
    use pacer::observe::gather::{self, Caches};
    use pacer::plan::{self, Action};
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
            services: Default::default(),
            unreadable_secrets: Default::default(),
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
        services: Default::default(),
        unreadable_secrets: Default::default(),
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
    use pacer::observe::gather::{self, Caches};
    use pacer::plan::{self, Action};
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
