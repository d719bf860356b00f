use super::*;
use crate::model::Digest;
use serde_json::json;

fn app(marathon: Value, ignore: &[&str]) -> RenderedApp {
    RenderedApp {
        id: "/prod/web".into(),
        app: "web".into(),
        env: "prod".into(),
        marathon,
        files: BTreeMap::new(),
        ignore: ignore.iter().map(|s| s.to_string()).collect(),
        deploy_timeout_seconds: None,
        secrets: Vec::new(),
        shown: None,
        inputs: Digest::of(b""),
        services: Default::default(),
        unreadable_secrets: Default::default(),
    }
}

fn step(action: Action) -> Step {
    Step {
        id: "/prod/web".into(),
        app: Some("web".into()),
        action,
        diff: None,
    }
}

#[test]
fn a_write_of_what_runs_already_is_not_sent() {
    let desired = json!({"id": "/prod/web", "cmd": "serve", "cpus": 0.2, "instances": 2,
        "labels": {"pacer.commit": "c2", "pacer.env": "prod"}});
    let a = app(desired.clone(), &["/instances"]);
    let update = step(Action::Update {
        class: Class::Redeploy,
        changed: vec!["/cpus".into()],
        reverts: vec![],
    });
    // What runs: as Git wants, written by an earlier commit (another
    // commit label), scaled by someone else (instances are ignored),
    // in Marathon's own shape.
    let mut running = put_body(&a, None);
    running["labels"]["pacer.commit"] = json!("c1");
    running["instances"] = json!(5);
    running["version"] = json!("2026-01-01T00:00:00.000Z");
    running["tasksRunning"] = json!(5);
    assert!(writes_nothing(&update, &a, Some(&running)));
    for action in [
        Action::Create,
        Action::Drifted {
            heal: true,
            changed: vec![],
        },
    ] {
        assert!(writes_nothing(&step(action), &a, Some(&running)));
    }
    // A real change is sent; so is a create of an app that isn't there.
    let mut older = running.clone();
    older["cpus"] = json!(0.1);
    assert!(!writes_nothing(&update, &a, Some(&older)));
    assert!(!writes_nothing(&step(Action::Create), &a, None));
    // Steps that write no definition are never skipped here.
    for action in [
        Action::Delete { held: None },
        Action::Update {
            class: Class::Hot,
            changed: vec![],
            reverts: vec![],
        },
    ] {
        assert!(!writes_nothing(&step(action), &a, Some(&running)));
    }
}

#[test]
fn the_body_carries_the_digest_of_what_it_is() {
    let a = app(
        json!({"id": "/prod/web", "cmd": "serve", "labels": {"pacer.commit": "c1"}}),
        &[],
    );
    let body = put_body(&a, None);
    assert_eq!(crate::observe::written_by_pacer(&body), Some(true));
    let mut by_hand = body.clone();
    by_hand["cmd"] = json!("serve --debug");
    assert_eq!(crate::observe::written_by_pacer(&by_hand), Some(false));
    // Never part of a diff.
    assert_eq!(crate::observe::app_diff(&a.marathon, &body, &[]), None);
}

#[test]
fn only_tasks_of_the_current_configuration_are_up() {
    let app = json!({
        "instances": 1,
        "healthChecks": [{"protocol": "COMMAND"}],
        "versionInfo": {"lastConfigChangeAt": "2026-01-01T00:00:10.000Z"},
        "tasks": [
            // The old version: up and healthy, but not what was deployed.
            {"state": "TASK_RUNNING", "version": "2026-01-01T00:00:00.000Z",
             "healthCheckResults": [{"alive": true}]},
            // The new one never got healthy.
            {"state": "TASK_RUNNING", "version": "2026-01-01T00:00:10.000Z",
             "healthCheckResults": [{"alive": false}]},
        ],
        "tasksHealthy": 1,
    });
    assert_eq!(tasks_up(&app), 0);
    let mut healthy = app.clone();
    healthy["tasks"][1]["healthCheckResults"][0]["alive"] = json!(true);
    assert_eq!(tasks_up(&healthy), 1);
    // A scale keeps lastConfigChangeAt: later tasks count too.
    let mut scaled = healthy.clone();
    scaled["tasks"][1]["version"] = json!("2026-01-01T00:00:20.000Z");
    assert_eq!(tasks_up(&scaled), 1);
    // Without embedded tasks, Marathon's counts.
    let mut counts = app.clone();
    counts.as_object_mut().unwrap().remove("tasks");
    assert_eq!(tasks_up(&counts), 1);
}
