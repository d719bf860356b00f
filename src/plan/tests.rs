use super::*;
use crate::render::{EnvSettings, RenderedFile};
use serde_json::json;

fn settings(prune: bool, self_heal: bool) -> EnvSettings {
    EnvSettings {
        name: "prod".into(),
        group: "/prod".into(),
        marathon: None,
        policy: Policy {
            auto_apply: true,
            prune,
            self_heal,
        },
    }
}

fn app(name: &str, spec: Value) -> RenderedApp {
    let mut spec = spec;
    spec["id"] = json!(format!("/prod/{name}"));
    RenderedApp {
        id: format!("/prod/{name}"),
        app: name.into(),
        env: "prod".into(),
        marathon: spec,
        files: BTreeMap::new(),
        ignore: Vec::new(),
        deploy_timeout_seconds: None,
        secrets: Vec::new(),
        shown: None,
        inputs: Digest::of(b""),
    }
}

fn spec(cmd: &str, instances: u64, hash: &str) -> Value {
    json!({"cmd": cmd, "instances": instances, "labels": {"pacer.env": "prod", "pacer.commit": "c1", "pacer.config-hash": hash}})
}

fn env(apps: Vec<RenderedApp>, prune: bool, self_heal: bool) -> DesiredEnv {
    DesiredEnv {
        settings: settings(prune, self_heal),
        apps: apps.into_iter().map(|a| (a.app.clone(), a)).collect(),
    }
}

fn live(spec: Value) -> LiveApp {
    LiveApp {
        spec,
        deployments: Vec::new(),
    }
}

fn action_of(p: &Plan, id: &str) -> Action {
    p.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step for {id}"))
        .action
        .clone()
}

#[test]
fn matching_apps_are_in_sync_and_missing_ones_created() {
    let d = env(
        vec![app("web", spec("a", 2, "h")), app("api", spec("b", 1, "h"))],
        false,
        false,
    );
    let mut o = Observed::default();
    o.apps
        .insert("/prod/web".into(), live(d.apps["web"].marathon.clone()));
    let p = plan(&d, &o);
    assert_eq!(action_of(&p, "/prod/web"), Action::InSync);
    assert_eq!(action_of(&p, "/prod/api"), Action::Create);
    assert!(p.has_changes());
}

#[test]
fn git_changes_are_classed_by_what_changed() {
    let cases = [
        (spec("a", 3, "h"), Class::Scale),
        (spec("a", 2, "h2"), Class::Restart),
        (spec("a", 3, "h2"), Class::Restart),
        (spec("b", 2, "h"), Class::Redeploy),
    ];
    for (desired, class) in cases {
        let d = env(vec![app("web", desired)], false, false);
        let mut o = Observed::default();
        let mut running = spec("a", 2, "h");
        running["id"] = json!("/prod/web");
        o.apps.insert("/prod/web".into(), live(running.clone()));
        o.baselines.insert("/prod/web".into(), running);
        let p = plan(&d, &o);
        match action_of(&p, "/prod/web") {
            Action::Update { class: c, .. } => assert_eq!(c, class, "{:?}", d.apps["web"].marathon),
            other => panic!("expected an update, got {other:?}"),
        }
    }
}

#[test]
fn hand_made_changes_are_drift_and_healed_only_by_policy() {
    let desired = app("web", spec("a", 2, "h"));
    let mut hand = desired.marathon.clone();
    hand["cmd"] = json!("edited-in-the-ui");
    for heal in [false, true] {
        let d = env(vec![desired.clone()], false, heal);
        let mut o = Observed::default();
        o.apps.insert("/prod/web".into(), live(hand.clone()));
        // Git at the live app's commit said exactly what Git says now.
        o.baselines
            .insert("/prod/web".into(), desired.marathon.clone());
        let a = action_of(&plan(&d, &o), "/prod/web");
        assert!(
            matches!(a, Action::Drifted { heal: h, .. } if h == heal),
            "{a:?}"
        );
        assert_eq!(a.acts(), heal);
    }
}

#[test]
fn prune_deletes_only_what_pacer_deployed_here() {
    let d = env(vec![], true, false);
    let mut o = Observed::default();
    o.apps.insert(
        "/prod/old".into(),
        live(json!({"id": "/prod/old", "labels": {"pacer.env": "prod"}})),
    );
    o.apps.insert(
        "/prod/hand".into(),
        live(json!({"id": "/prod/hand", "labels": {}})),
    );
    let p = plan(&d, &o);
    assert_eq!(action_of(&p, "/prod/old"), Action::Delete);
    assert_eq!(action_of(&p, "/prod/hand"), Action::Unmanaged);
    let p = plan(&env(vec![], false, false), &o);
    assert_eq!(action_of(&p, "/prod/old"), Action::Unmanaged);
}

#[test]
fn a_failed_definition_is_not_retried_until_it_changes_or_is_asked() {
    let desired = app("web", spec("broken", 2, "h"));
    let d = env(vec![desired.clone()], false, false);
    let mut o = Observed::default();
    let mut running = spec("a", 2, "h");
    running["id"] = json!("/prod/web");
    o.apps.insert("/prod/web".into(), live(running));
    o.failed
        .insert("/prod/web".into(), desired.marathon.clone());
    assert_eq!(action_of(&plan(&d, &o), "/prod/web"), Action::Failed);
    o.retry.insert("/prod/web".into());
    assert!(matches!(
        action_of(&plan(&d, &o), "/prod/web"),
        Action::Update { .. }
    ));
    o.retry.clear();
    let fixed = env(vec![app("web", spec("fixed", 2, "h"))], false, false);
    assert!(matches!(
        action_of(&plan(&fixed, &o), "/prod/web"),
        Action::Update { .. }
    ));
}

#[test]
fn a_running_deployment_is_waited_for_and_adopted_when_it_is_ours() {
    let desired = app("web", spec("a", 2, "h"));
    let d = env(vec![desired.clone()], false, false);
    let mut o = Observed::default();
    o.apps.insert(
        "/prod/web".into(),
        LiveApp {
            spec: desired.marathon.clone(),
            deployments: vec!["dep-1".into()],
        },
    );
    assert_eq!(
        action_of(&plan(&d, &o), "/prod/web"),
        Action::Wait {
            deployments: vec!["dep-1".into()],
            ours: true
        }
    );
}

#[test]
fn hot_files_update_without_a_deployment() {
    let mut desired = app("web", spec("a", 2, "h"));
    desired.files.insert(
        "nginx.conf".into(),
        RenderedFile {
            path: "/etc/nginx.conf".into(),
            reload: Reload::Hot,
            digest: Digest::of(b"new"),
            content: b"new".to_vec(),
        },
    );
    let d = env(vec![desired.clone()], false, false);
    let mut o = Observed::default();
    o.apps
        .insert("/prod/web".into(), live(desired.marathon.clone()));
    o.served_hot
        .insert("/prod/web".into(), Digest::of(b"old bundle"));
    assert_eq!(
        action_of(&plan(&d, &o), "/prod/web"),
        Action::Update {
            class: Class::Hot,
            changed: vec![]
        }
    );
    o.served_hot
        .insert("/prod/web".into(), served_digest(&desired));
    assert_eq!(action_of(&plan(&d, &o), "/prod/web"), Action::InSync);
}
