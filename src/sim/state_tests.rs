//! Unit tests of the state machine, driven by a fake clock.

use serde_json::{Value, json};

use super::commands::{Command, Outcome};
use super::progress::restart_strategy;
use super::state::{Settings, SimState};

fn sim() -> SimState {
    let settings = Settings {
        start_delay_ms: 10,
        healthy_delay_ms: 10,
        ..Settings::default()
    };
    SimState::seeded(1_000_000, settings, 42)
}

fn put(
    s: &mut SimState,
    id: &str,
    body: Value,
    force: bool,
    now: i64,
) -> Result<Outcome, super::state::ApiError> {
    s.apply(
        Command::PutApp {
            id: id.into(),
            body,
            partial: true,
            force,
            allow_create: true,
        },
        now,
    )
}

/// Tick in 5 ms steps until no deployment is left; returns the time reached.
fn settle(s: &mut SimState, mut now: i64) -> i64 {
    for _ in 0..10_000 {
        s.tick(now);
        if s.deployments.is_empty() {
            return now;
        }
        now += 5;
    }
    panic!(
        "deployments did not finish: {:?}",
        s.deployments
            .iter()
            .map(|d| d.to_json())
            .collect::<Vec<_>>()
    );
}

fn event_types(s: &mut SimState) -> Vec<String> {
    s.outbox.drain(..).map(|e| e.event_type).collect()
}

#[test]
fn restart_arithmetic() {
    // (instances, mHC, mOC, healthy) → (kill now, max capacity)
    assert_eq!(restart_strategy(3, 1.0, 1.0, 3, 3, false), (0, 6));
    assert_eq!(restart_strategy(3, 0.0, 0.0, 3, 3, false), (3, 3));
    // minHealthy == maxCapacity <= healthy: one extra instance allowed.
    assert_eq!(restart_strategy(3, 1.0, 0.0, 3, 3, false), (0, 4));
    // ...or, for resident apps, one more killed.
    assert_eq!(restart_strategy(3, 1.0, 0.0, 3, 3, true), (1, 3));
    // ceil: 3 × 0.7 → 3; floor: 3 × 1.5 → 4.
    assert_eq!(restart_strategy(3, 0.7, 0.5, 3, 3, false), (0, 4));
    assert_eq!(restart_strategy(4, 0.5, 0.0, 4, 4, false), (2, 4));
    // Surplus beyond the target count is killed at once.
    assert_eq!(restart_strategy(2, 1.0, 1.0, 5, 5, false), (3, 4));
}

#[test]
fn new_app_runs_start_then_scale_and_becomes_healthy() {
    let mut s = sim();
    let out = s
        .apply(
            Command::CreateApp {
                body: json!({"id": "/web", "cmd": "x", "instances": 2,
            "healthChecks": [{"protocol": "HTTP", "path": "/"}]}),
            },
            1_000_000,
        )
        .unwrap();
    let Outcome::Created { app, .. } = out else {
        panic!("not created")
    };
    assert_eq!(app["tasksRunning"], json!(0));
    assert!(app.get("versionInfo").is_none());
    assert_eq!(
        app["portDefinitions"][0]["port"],
        json!(0),
        "POST echo shows the submitted 0"
    );
    let d = s.deployments[0].to_json();
    assert_eq!(
        d["steps"],
        json!([{"actions": [{"action": "StartApplication", "app": "/web"}]},
        {"actions": [{"action": "ScaleApplication", "app": "/web"}]}])
    );
    assert_eq!(
        d["currentStep"],
        json!(2),
        "StartApplication is done at once"
    );
    settle(&mut s, 1_000_000);
    let rec = &s.apps["/web"];
    assert_eq!(rec.tasks.len(), 2);
    assert!(rec.tasks.iter().all(|t| t.healthy == Some(true)));
    assert!(rec.tasks[0].id.starts_with("web.instance-") && rec.tasks[0].id.ends_with("._app.1"));
    let port = rec.app["portDefinitions"][0]["port"].as_u64().unwrap();
    assert!((10000..=20000).contains(&port));
    let ev = event_types(&mut s);
    for want in [
        "group_change_success",
        "deployment_info",
        "deployment_step_success",
        "status_update_event",
        "instance_changed_event",
        "health_status_changed_event",
        "deployment_success",
    ] {
        assert!(ev.iter().any(|e| e == want), "missing {want} in {ev:?}");
    }
}

#[test]
fn scale_only_keeps_config_version_and_ports() {
    let mut s = sim();
    put(&mut s, "/a", json!({"cmd": "x"}), false, 1_000_000).unwrap();
    let t = settle(&mut s, 1_000_000);
    let before = s.apps["/a"].app.clone();
    put(&mut s, "/a", json!({"instances": 3}), false, t + 1000).unwrap();
    assert_eq!(s.deployments[0].steps[0][0].kind.name(), "ScaleApplication");
    let after = s.apps["/a"].app.clone();
    assert_ne!(after["version"], before["version"]);
    assert_eq!(after["versionInfo"]["lastScalingAt"], after["version"]);
    assert_eq!(
        after["versionInfo"]["lastConfigChangeAt"],
        before["versionInfo"]["lastConfigChangeAt"]
    );
    let t = settle(&mut s, t + 1000);
    // Re-submitting port 0 keeps the assigned port: no restart, same version.
    put(
        &mut s,
        "/a",
        json!({"portDefinitions": [{"port": 0, "name": "default"}]}),
        false,
        t + 1000,
    )
    .unwrap();
    assert!(s.deployments.is_empty(), "an empty plan finishes at once");
    assert_eq!(s.apps["/a"].app["version"], after["version"]);
    assert_eq!(
        s.apps["/a"].app["portDefinitions"],
        before["portDefinitions"]
    );
    assert_eq!(s.apps["/a"].versions.len(), 2);
}

#[test]
fn rolling_restart_respects_capacity_bounds() {
    let mut s = sim();
    put(
        &mut s,
        "/r",
        json!({"cmd": "x", "instances": 3,
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0}}),
        false,
        1_000_000,
    )
    .unwrap();
    let mut now = settle(&mut s, 1_000_000);
    let old: Vec<String> = s.apps["/r"].tasks.iter().map(|t| t.id.clone()).collect();
    put(&mut s, "/r", json!({"cmd": "y"}), false, now).unwrap();
    assert_eq!(
        s.deployments[0].steps[0][0].kind.name(),
        "RestartApplication"
    );
    let mut max_seen = 0;
    while !s.deployments.is_empty() {
        s.tick(now);
        let rec = &s.apps["/r"];
        let healthy = rec
            .tasks
            .iter()
            .filter(|t| rec.considered_healthy(t))
            .count();
        max_seen = max_seen.max(rec.tasks.len());
        assert!(rec.tasks.len() <= 4, "never above maxCapacity 3+1");
        assert!(
            healthy >= 3,
            "minimumHealthCapacity 1 keeps 3 healthy, saw {healthy}"
        );
        now += 5;
        assert!(now < 2_000_000);
    }
    assert_eq!(max_seen, 4);
    let rec = &s.apps["/r"];
    assert_eq!(rec.tasks.len(), 3);
    assert!(rec.tasks.iter().all(|t| !old.contains(&t.id)));
}

#[test]
fn locked_app_needs_force_and_force_cancels() {
    let mut s = sim();
    put(&mut s, "/l", json!({"cmd": "x"}), false, 1_000_000).unwrap();
    let first = s.deployments[0].id.clone();
    let err = put(&mut s, "/l", json!({"cmd": "y"}), false, 1_000_001).unwrap_err();
    assert_eq!(err.status, 409);
    assert_eq!(err.body["deployments"], json!([{"id": first}]));
    s.outbox.clear();
    put(&mut s, "/l", json!({"cmd": "y"}), true, 1_000_002).unwrap();
    assert_eq!(s.deployments.len(), 1);
    assert_ne!(s.deployments[0].id, first);
    assert!(event_types(&mut s).contains(&"deployment_failed".to_string()));
}

#[test]
fn rollback_reverts_exactly_the_plan() {
    let mut s = sim();
    put(&mut s, "/a", json!({"cmd": "one"}), false, 1_000_000).unwrap();
    let t = settle(&mut s, 1_000_000);
    s.settings.start_delay_ms = 1_000_000; // keep the next deployment running
    put(&mut s, "/a", json!({"cmd": "two"}), false, t).unwrap();
    put(&mut s, "/b", json!({"cmd": "b"}), false, t).unwrap();
    let dep = s.deployments[0].id.clone();
    let out = s
        .apply(
            Command::DeleteDeployment {
                id: dep.clone(),
                force: false,
            },
            t + 1,
        )
        .unwrap();
    assert!(matches!(out, Outcome::Deployed { .. }));
    assert_eq!(s.apps["/a"].app["cmd"], json!("one"));
    assert!(s.apps.contains_key("/b"), "other plans are untouched");
    let err = s
        .apply(
            Command::DeleteDeployment {
                id: dep,
                force: true,
            },
            t + 2,
        )
        .unwrap_err();
    assert_eq!(err.status, 404);
}

#[test]
fn never_healthy_version_times_out() {
    let mut s = sim();
    s.settings.deployment_timeout_ms = Some(200);
    put(
        &mut s,
        "/h",
        json!({"cmd": "x", "healthChecks": [{}]}),
        false,
        1_000_000,
    )
    .unwrap();
    let t = settle(&mut s, 1_000_000);
    let v = s.apps["/h"].version().to_string();
    s.settings.never_healthy.insert("/h".into(), v);
    put(&mut s, "/h", json!({"cmd": "y"}), false, t).unwrap();
    s.outbox.clear();
    let end = settle(&mut s, t);
    assert!(end - t > 200);
    let ev = event_types(&mut s);
    assert!(ev.contains(&"deployment_failed".to_string()), "{ev:?}");
    assert!(
        ev.contains(&"failed_health_check_event".to_string()),
        "{ev:?}"
    );
    assert!(!ev.contains(&"deployment_success".to_string()));
}

#[test]
fn never_healthy_spares_a_revert_to_the_good_definition() {
    let mut s = sim();
    put(
        &mut s,
        "/h",
        json!({"cmd": "good", "healthChecks": [{}]}),
        false,
        1_000_000,
    )
    .unwrap();
    let t = settle(&mut s, 1_000_000);
    let v = s.apps["/h"].version().to_string();
    s.settings.never_healthy.insert("/h".into(), v);
    // The new version never gets healthy: its deployment hangs.
    put(&mut s, "/h", json!({"cmd": "bad"}), false, t).unwrap();
    for i in 0..40 {
        s.tick(t + i * 10);
    }
    assert!(!s.deployments.is_empty(), "the bad version is stuck");
    // Putting the good definition back (what a rollback does) comes up,
    // and so does a scale of it.
    let t = t + 1_000;
    put(
        &mut s,
        "/h",
        json!({"cmd": "good", "healthChecks": [{}], "instances": 2}),
        true,
        t,
    )
    .unwrap();
    let end = settle(&mut s, t);
    assert!(s.deployments.is_empty());
    let rec = &s.apps["/h"];
    assert_eq!(rec.tasks.len(), 2);
    assert!(rec.tasks.iter().all(|task| rec.considered_healthy(task)));
    // A different definition after it is doomed again.
    put(&mut s, "/h", json!({"cmd": "also bad"}), false, end).unwrap();
    for i in 0..40 {
        s.tick(end + i * 10);
    }
    assert!(
        !s.deployments.is_empty(),
        "a new definition is still doomed"
    );
}

#[test]
fn failed_task_is_replaced_on_another_host() {
    let mut s = sim();
    put(&mut s, "/f", json!({"cmd": "x"}), false, 1_000_000).unwrap();
    let t = settle(&mut s, 1_000_000);
    let old = s.apps["/f"].tasks[0].clone();
    s.apply(Command::FailTask { id: old.id.clone() }, t)
        .unwrap();
    for i in 0..20 {
        s.tick(t + i * 5);
    }
    let new = &s.apps["/f"].tasks[0];
    assert_ne!(new.id, old.id);
    assert_ne!(new.host, old.host);
    assert!(s.apps["/f"].last_task_failure.is_some());
}

#[test]
fn delete_removes_app_and_frees_ports() {
    let mut s = sim();
    put(&mut s, "/d", json!({"cmd": "x"}), false, 1_000_000).unwrap();
    let t = settle(&mut s, 1_000_000);
    assert_eq!(s.used_ports.len(), 1);
    s.apply(
        Command::DeleteApp {
            id: "/d".into(),
            force: true,
        },
        t,
    )
    .unwrap();
    assert!(s.apps.is_empty() && s.used_ports.is_empty());
    settle(&mut s, t);
    assert!(event_types(&mut s).contains(&"app_terminated_event".to_string()));
}

#[test]
fn partial_update_with_version_rolls_back() {
    let mut s = sim();
    put(&mut s, "/v", json!({"cmd": "one"}), false, 1_000_000).unwrap();
    let v1 = s.apps["/v"].version().to_string();
    let t = settle(&mut s, 1_000_000);
    put(&mut s, "/v", json!({"cmd": "two"}), false, t).unwrap();
    let t = settle(&mut s, t);
    put(&mut s, "/v", json!({"version": v1}), false, t).unwrap();
    assert_eq!(s.apps["/v"].app["cmd"], json!("one"));
    let err = put(&mut s, "/v", json!({"version": "x", "cmd": "z"}), true, t).unwrap_err();
    assert_eq!(err.status, 422);
}

#[test]
fn apps_and_groups_cannot_share_a_path() {
    let mut s = sim();
    put(&mut s, "/a/b", json!({"cmd": "x"}), false, 1).unwrap();
    assert_eq!(
        put(&mut s, "/a", json!({"cmd": "x"}), false, 2)
            .unwrap_err()
            .status,
        422
    );
    assert_eq!(
        put(&mut s, "/a/b/c", json!({"cmd": "x"}), false, 3)
            .unwrap_err()
            .status,
        422
    );
}

#[test]
fn absurd_instance_counts_are_refused_with_the_reason() {
    let mut s = sim();
    let e = put(
        &mut s,
        "/big",
        json!({"cmd": "x", "instances": 100_000_000u64}),
        false,
        1_000_000,
    )
    .unwrap_err();
    assert_eq!(e.status, 422, "{e:?}");
    assert!(e.body.to_string().contains("maxTasks"), "{e:?}");
    assert!(s.apps.is_empty());
    // Many apps within each app's bound still add up to the cap.
    s.settings.max_tasks = 10;
    put(
        &mut s,
        "/a",
        json!({"cmd": "x", "instances": 6}),
        false,
        1_000_001,
    )
    .unwrap();
    let e = put(
        &mut s,
        "/b",
        json!({"cmd": "x", "instances": 5}),
        false,
        1_000_002,
    )
    .unwrap_err();
    assert_eq!(e.status, 422, "{e:?}");
    assert!(e.body.to_string().contains("would make 11"), "{e:?}");
    // Shrinking one app makes room for the other.
    settle(&mut s, 1_000_003);
    put(
        &mut s,
        "/a",
        json!({"cmd": "x", "instances": 2}),
        false,
        2_000_000,
    )
    .unwrap();
    settle(&mut s, 2_000_000);
    put(
        &mut s,
        "/b",
        json!({"cmd": "x", "instances": 5}),
        false,
        3_000_000,
    )
    .unwrap();
    s.settings.max_apps = 2;
    let e = put(&mut s, "/c", json!({"cmd": "x"}), false, 3_000_001).unwrap_err();
    assert_eq!(e.status, 422, "{e:?}");
    assert!(e.body.to_string().contains("at most 2 apps"), "{e:?}");
}

#[test]
fn absurd_instance_counts_do_not_stall_a_tick() {
    let mut s = sim();
    s.settings.max_tasks = 2_000_000_000;
    let t = std::time::Instant::now();
    put(
        &mut s,
        "/big",
        json!({"cmd": "x", "instances": 2_000_000_000u64}),
        false,
        1_000_000,
    )
    .unwrap();
    s.tick(1_000_005);
    assert!(s.apps["/big"].tasks.len() <= 2_000);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn bad_bodies_are_errors_not_panics() {
    let mut s = sim();
    for body in [
        json!(null),
        json!([]),
        json!("x"),
        json!({"id": 3}),
        json!({"id": "/a", "cmd": 1, "cpus": "many"}),
    ] {
        assert!(
            s.apply(Command::CreateApp { body: body.clone() }, 1)
                .is_err(),
            "{body}"
        );
        assert!(put(&mut s, "/p", body, false, 1).is_err());
    }
    assert!(s.apps.is_empty());
    put(&mut s, "/p", json!({"cmd": "x"}), false, 2).unwrap();
    settle(&mut s, 2);
    for body in [
        json!(null),
        json!([1]),
        json!({"instances": -1}),
        json!({"version": 5}),
        json!({"env": {"A": 1}}),
    ] {
        let e = put(&mut s, "/p", body.clone(), false, 3).unwrap_err();
        assert!(e.status >= 400 && e.status < 500, "{body}: {e:?}");
    }
    let e = s.apply(
        Command::KillTasks {
            app: None,
            ids: vec![".".into(), "".into()],
            host: None,
            scale: true,
            force: false,
        },
        4,
    );
    assert!(e.is_err());
}
