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
            ..Policy::default()
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
        services: Default::default(),
        unreadable_secrets: Default::default(),
    }
}

fn spec(cmd: &str, instances: u64, hash: &str) -> Value {
    json!({"cmd": cmd, "instances": instances, "labels": {"pacer.env": "prod", "pacer.commit": "c1", "pacer.config-hash": hash}})
}

fn env(apps: Vec<RenderedApp>, prune: bool, self_heal: bool) -> DesiredEnv {
    DesiredEnv {
        settings: settings(prune, self_heal),
        apps: apps
            .into_iter()
            .map(|a| (a.app.clone(), std::sync::Arc::new(a)))
            .collect(),
    }
}

/// Plans with every app of Git rendering (most tests).
fn plan(d: &DesiredEnv, o: &Observed) -> Plan {
    super::plan(d, o, &BTreeSet::new())
}

fn plan_with(d: &DesiredEnv, o: &Observed, overrides: Overrides) -> Plan {
    super::plan_with(d, o, &BTreeSet::new(), overrides)
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
fn a_plans_summary_counts_its_acting_steps_and_its_digest_follows_them() {
    let d = env(
        vec![app("web", spec("a", 2, "h")), app("api", spec("b", 1, "h"))],
        false,
        false,
    );
    let mut o = Observed::default();
    o.apps
        .insert("/prod/web".into(), live(d.apps["web"].marathon.clone()));
    let one = plan(&d, &o).summary();
    assert_eq!((one.creates, one.updates, one.changes()), (1, 0, 1));
    assert_eq!(
        one,
        plan(&d, &o).summary(),
        "the same plan, the same digest"
    );
    // Live changing under the plan (web scaled by hand) changes the digest.
    o.apps.insert("/prod/web".into(), live(spec("a", 5, "h")));
    let two = plan(&d, &o).summary();
    assert_ne!(one.digest, two.digest);
    assert_eq!(
        plan(
            &d,
            &Observed {
                apps: [
                    (
                        "/prod/web".to_string(),
                        live(d.apps["web"].marathon.clone())
                    ),
                    (
                        "/prod/api".to_string(),
                        live(d.apps["api"].marathon.clone())
                    ),
                ]
                .into(),
                ..Observed::default()
            }
        )
        .summary()
        .changes(),
        0
    );
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
        o.baselines.insert("/prod/web".into(), running.clone());
        // As pacer wrote it: the digest label is provenance, no change.
        running["labels"]["pacer.digest"] = json!("0123456789abcdef");
        o.apps.insert("/prod/web".into(), live(running));
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
    assert_eq!(action_of(&p, "/prod/old"), Action::Delete { held: None });
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
            actions: Default::default(),
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
            changed: vec![],
            reverts: vec![]
        }
    );
    o.served_hot
        .insert("/prod/web".into(), served_digest(&desired));
    assert_eq!(action_of(&plan(&d, &o), "/prod/web"), Action::InSync);
}

#[test]
fn the_plan_diff_reads_from_live_to_desired() {
    let mut desired = spec("a", 2, "h");
    desired["cpus"] = json!(0.3);
    let d = env(vec![app("web", desired)], false, false);
    let mut running = spec("a", 2, "h");
    running["id"] = json!("/prod/web");
    running["cpus"] = json!(0.2);
    let mut o = Observed::default();
    o.apps.insert("/prod/web".into(), live(running.clone()));
    o.baselines.insert("/prod/web".into(), running);
    let p = plan(&d, &o);
    let diff = p.steps[0].diff.as_deref().expect("a diff");
    assert!(diff.starts_with("--- live\n+++ desired\n"), "{diff}");
    let (minus, plus) = (diff.find("-  \"cpus\": 0.2"), diff.find("+  \"cpus\": 0.3"));
    assert!(minus.is_some() && plus.is_some() && minus < plus, "{diff}");
}

/// What pacer deployed at the live app's commit, what runs now (changed by
/// hand), and Git now.
fn hand_edited_then_committed(git_now: Value) -> (DesiredEnv, Observed) {
    let mut deployed = spec("a", 1, "h");
    deployed["id"] = json!("/prod/clock");
    deployed["mem"] = json!(128);
    let mut hand = deployed.clone();
    hand["mem"] = json!(256);
    let mut o = Observed::default();
    o.apps.insert("/prod/clock".into(), live(hand));
    o.baselines.insert("/prod/clock".into(), deployed);
    (env(vec![app("clock", git_now)], false, false), o)
}

#[test]
fn a_commit_deploys_a_hand_edited_app_and_says_what_it_reverts() {
    // Git raises instances after someone changed mem by hand; selfHeal is off.
    let mut git_now = spec("a", 3, "h");
    git_now["mem"] = json!(128);
    let (d, o) = hand_edited_then_committed(git_now);
    let a = action_of(&plan(&d, &o), "/prod/clock");
    assert_eq!(
        a,
        Action::Update {
            class: Class::Redeploy,
            changed: vec!["/instances".into(), "/mem".into()],
            reverts: vec!["/mem".into()],
        }
    );
    assert!(a.acts());
}

#[test]
fn a_commit_that_adopts_the_hand_edit_reverts_nothing() {
    // Git now says what was set by hand (mem 256) and raises instances:
    // only a scale, and nothing is put back.
    let mut git_now = spec("a", 3, "h");
    git_now["mem"] = json!(256);
    let (d, o) = hand_edited_then_committed(git_now);
    assert_eq!(
        action_of(&plan(&d, &o), "/prod/clock"),
        Action::Update {
            class: Class::Scale,
            changed: vec!["/instances".into()],
            reverts: vec![],
        }
    );
}

#[test]
fn drift_alone_waits_for_self_heal_but_a_human_apply_heals_it() {
    let mut git_now = spec("a", 1, "h");
    git_now["mem"] = json!(128);
    let (d, o) = hand_edited_then_committed(git_now);
    let a = action_of(&plan(&d, &o), "/prod/clock");
    assert!(matches!(a, Action::Drifted { heal: false, .. }), "{a:?}");
    let human = Overrides {
        heal_drift: true,
        ..Overrides::default()
    };
    let a = action_of(&plan_with(&d, &o, human), "/prod/clock");
    assert_eq!(
        a,
        Action::Drifted {
            heal: true,
            changed: vec!["/mem".into()]
        }
    );
    assert!(a.acts());
}

fn managed(n: usize) -> Observed {
    let mut o = Observed::default();
    for i in 0..n {
        let id = format!("/prod/app{i}");
        o.apps.insert(
            id.clone(),
            live(json!({"id": id, "labels": {"pacer.env": "prod"}})),
        );
    }
    o
}

#[test]
fn a_mass_delete_is_held_with_its_reason() {
    // Ten apps run; Git keeps seven (three deletes: more than 20 %).
    let keep: Vec<RenderedApp> = (3..10)
        .map(|i| app(&format!("app{i}"), json!({"labels": {"pacer.env": "prod"}})))
        .collect();
    let o = managed(10);
    let p = plan(&env(keep.clone(), true, false), &o);
    for i in 0..3 {
        let a = action_of(&p, &format!("/prod/app{i}"));
        let Action::Delete { held: Some(why) } = &a else {
            panic!("expected a held delete, got {a:?}");
        };
        assert!(why.contains("3 of the 10 apps"), "{why}");
        assert!(why.contains("--allow-mass-delete"), "{why}");
        assert!(!a.acts());
        assert_eq!(a.sync_status(), SyncStatus::Held);
    }
    assert!(p.held().is_some());
    let json = serde_json::to_value(&p.steps[0]).unwrap();
    assert_eq!(json["action"], "delete");
    assert!(json["held"].as_str().is_some(), "{json}");
    // Asked for: deleted.
    let allow = Overrides {
        allow_mass_delete: true,
        ..Overrides::default()
    };
    let p = plan_with(&env(keep.clone(), true, false), &o, allow);
    assert_eq!(action_of(&p, "/prod/app0"), Action::Delete { held: None });
    assert!(p.held().is_none());
    // Four of ten is not; two of ten is within 20 %; so is one app of any number.
    let p = plan(&env(keep[1..].to_vec(), true, false), &managed(10));
    assert!(p.held().is_some(), "four of ten");
    let mut eight = keep.clone();
    eight.push(app("app2", json!({"labels": {"pacer.env": "prod"}})));
    let p = plan(&env(eight, true, false), &managed(10));
    assert_eq!(action_of(&p, "/prod/app0"), Action::Delete { held: None });
    assert!(p.held().is_none(), "two of ten");
    let p = plan(&env(vec![], true, false), &managed(1));
    assert_eq!(action_of(&p, "/prod/app0"), Action::Delete { held: None });
}

#[test]
fn the_delete_share_is_configurable() {
    let mut d = env(vec![], true, false);
    d.settings.policy.max_delete_share = crate::render::Share::new(1.0);
    assert!(plan(&d, &managed(5)).held().is_none());
    d.settings.policy.max_delete_share = crate::render::Share::new(0.0);
    assert!(plan(&d, &managed(2)).held().is_some());
    assert!(
        plan(&d, &managed(1)).held().is_none(),
        "one app is never held"
    );
    assert_eq!(deletes_allowed(0.2, 10), 2);
    assert_eq!(deletes_allowed(0.2, 3), 1);
    assert_eq!(deletes_allowed(0.5, 7), 3);
}

#[test]
fn an_app_that_does_not_render_is_never_deleted() {
    // app0 is in Git but doesn't render, and no good version of it is known.
    let keep: Vec<RenderedApp> = (1..3)
        .map(|i| app(&format!("app{i}"), json!({"labels": {"pacer.env": "prod"}})))
        .collect();
    let unrendered: BTreeSet<AppPath> = ["app0".to_string()].into();
    let everything = Overrides {
        heal_drift: true,
        allow_mass_delete: true,
    };
    let p = super::plan_with(
        &env(keep, true, false),
        &managed(3),
        &unrendered,
        everything,
    );
    let step = p.steps.iter().find(|s| s.id == "/prod/app0").unwrap();
    assert_eq!(step.action, Action::Unrendered);
    assert_eq!(
        step.app.as_deref(),
        Some("app0"),
        "its status is under its path"
    );
    assert!(!step.action.acts());
    assert_eq!(step.action.sync_status(), SyncStatus::Invalid);
}

#[test]
fn the_delete_share_counts_only_true_deletes() {
    // Ten apps run. Git dropped two (within 20 %) and two more don't render:
    // two deletes, not four, so nothing is held.
    let keep: Vec<RenderedApp> = (4..10)
        .map(|i| app(&format!("app{i}"), json!({"labels": {"pacer.env": "prod"}})))
        .collect();
    let unrendered: BTreeSet<AppPath> = ["app2".to_string(), "app3".to_string()].into();
    let p = super::plan(&env(keep, true, false), &managed(10), &unrendered);
    assert!(p.held().is_none(), "{:?}", p.held());
    for i in 0..2 {
        assert_eq!(
            action_of(&p, &format!("/prod/app{i}")),
            Action::Delete { held: None }
        );
    }
    for i in 2..4 {
        assert_eq!(action_of(&p, &format!("/prod/app{i}")), Action::Unrendered);
    }
}
