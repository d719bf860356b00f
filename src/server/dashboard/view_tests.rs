use super::*;
use crate::model::Outcome;
use crate::render::{DesiredEnv, EnvSettings, Policy};
use crate::status::{EnvStatus, LastAction, Status};
use std::collections::BTreeMap;
use std::sync::Arc;

fn app(env: &str, name: &str, sync: SyncStatus, at: Option<&str>) -> (String, Arc<AppStatus>) {
    let mut a = AppStatus::new(format!("/{env}/{name}"), sync);
    a.last = at.map(|at| LastAction {
        outcome: Outcome::Succeeded,
        commit: "c".repeat(40),
        at: at.into(),
        deployment_id: Some("d-1".into()),
        message: Some("PLANTED-message".into()),
    });
    if sync == SyncStatus::Invalid {
        a.errors.push(Problem {
            file: Some("apps/x/app.yaml".into()),
            line: Some(3),
            column: None,
            message: "PLANTED-problem".into(),
            hint: None,
        });
    }
    (name.to_string(), Arc::new(a))
}

/// dev applies on its own; prod waits, with one app a plan would change.
fn snapshot() -> Published {
    let mut status = Status::default();
    let dev: BTreeMap<_, _> = [
        app(
            "dev",
            "api",
            SyncStatus::InSync,
            Some("2026-01-01T00:00:01Z"),
        ),
        app(
            "dev",
            "web",
            SyncStatus::Failed,
            Some("2026-01-01T00:00:03Z"),
        ),
        app("dev", "Worker", SyncStatus::Invalid, None),
        app(
            "dev",
            "cache",
            SyncStatus::Drifted,
            Some("2026-01-01T00:00:02Z"),
        ),
    ]
    .into();
    let prod: BTreeMap<_, _> = [
        app("prod", "api", SyncStatus::OutOfSync, None),
        app("prod", "web", SyncStatus::InSync, None),
    ]
    .into();
    for (name, apps) in [("dev", dev), ("prod", prod)] {
        status.environments.insert(
            name.into(),
            Arc::new(EnvStatus {
                group: format!("/{name}"),
                commit: Some("c".repeat(40)),
                apps,
                // Each environment's plan updates one app.
                plan: Some(crate::model::PlanSummary {
                    updates: 1,
                    digest: format!("sha256:{name}"),
                    ..Default::default()
                }),
                ..EnvStatus::default()
            }),
        );
    }
    let desired = |name: &str, auto_apply| {
        Arc::new(DesiredEnv {
            settings: EnvSettings {
                name: name.into(),
                group: format!("/{name}"),
                marathon: None,
                policy: Policy {
                    auto_apply,
                    ..Policy::default()
                },
            },
            apps: BTreeMap::new(),
        })
    };
    Published {
        seq: 7,
        commit: Some("c".repeat(40)),
        desired: [
            ("dev".to_string(), desired("dev", true)),
            ("prod".to_string(), desired("prod", false)),
        ]
        .into(),
        status: Arc::new(status),
        ready: Ok(()),
    }
}

fn query(pairs: &[(&str, &str)]) -> Result<Query, String> {
    parse_query(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn names(p: &Page) -> Vec<String> {
    p.rows
        .iter()
        .map(|r| format!("{}/{}", r.env, r.app))
        .collect()
}

#[test]
fn the_overview_puts_what_needs_a_human_first() {
    let o = overview(&snapshot(), true);
    assert_eq!(o.apps, 6);
    assert_eq!(o.attention_total, 3);
    let first: Vec<&str> = o.attention.iter().map(|r| r.status).collect();
    assert_eq!(first, ["failed", "invalid", "drifted"]);
    // prod waits for an apply of one app; dev applies on its own.
    let awaiting: Vec<(&str, usize)> = o
        .awaiting
        .iter()
        .map(|e| (e.name.as_str(), e.awaiting))
        .collect();
    assert_eq!(awaiting, [("prod", 1)]);
    let dev = &o.envs[0];
    assert!(dev.auto_apply && !o.envs[1].auto_apply);
    let counts: Vec<(&str, usize)> = dev.counts.iter().map(|c| (c.status, c.n)).collect();
    assert_eq!(
        counts,
        [("failed", 1), ("invalid", 1), ("drifted", 1), ("inSync", 1)]
    );
}

#[test]
fn without_a_session_the_pages_quote_nothing_from_the_config() {
    let snap = snapshot();
    let o = overview(&snap, false);
    let text = serde_json::to_string(&o).unwrap();
    assert!(!text.contains("PLANTED"), "{text}");
    let a = super::super::app::app_view(&snap, "dev", "Worker", false, None, vec![], 1).unwrap();
    let text = serde_json::to_string(&a).unwrap();
    assert!(!text.contains("PLANTED"), "{text}");
    assert_eq!(a.error_count, 1);
    let a = super::super::app::app_view(&snap, "dev", "Worker", true, None, vec![], 1).unwrap();
    assert_eq!(a.errors[0].at.as_deref(), Some("apps/x/app.yaml:3"));
}

#[test]
fn the_list_filters_sorts_and_pages() {
    let snap = snapshot();
    let all = list(&snap, &Query::default());
    assert_eq!(all.total, 6);
    assert_eq!(
        names(&all)[..3],
        ["dev/web", "dev/Worker", "dev/cache"],
        "most urgent first"
    );
    let p = list(&snap, &query(&[("env", "prod")]).unwrap());
    assert_eq!(names(&p), ["prod/api", "prod/web"]);
    // Text matches the name or id, ignoring case.
    let p = list(&snap, &query(&[("q", "WORK")]).unwrap());
    assert_eq!(names(&p), ["dev/Worker"]);
    let p = list(&snap, &query(&[("status", "human")]).unwrap());
    assert_eq!(p.total, 3);
    let p = list(&snap, &query(&[("status", "pending")]).unwrap());
    assert_eq!(names(&p), ["prod/api"]);
    // The status choices count what the other filters leave.
    let p = list(
        &snap,
        &query(&[("env", "prod"), ("status", "inSync")]).unwrap(),
    );
    assert_eq!(names(&p), ["prod/web"]);
    assert_eq!(p.counts.iter().map(|c| c.n).sum::<usize>(), 2);
    let p = list(&snap, &query(&[("sort", "recent")]).unwrap());
    assert_eq!(names(&p)[..3], ["dev/web", "dev/cache", "dev/api"]);
    let p = list(
        &snap,
        &query(&[("sort", "name"), ("per", "4"), ("page", "2")]).unwrap(),
    );
    assert_eq!((p.page, p.pages, p.total), (2, 2, 6));
    assert_eq!(names(&p), ["prod/api", "prod/web"]);
    // A page past the end shows the last one.
    let p = list(&snap, &query(&[("per", "4"), ("page", "99")]).unwrap());
    assert_eq!(p.page, 2);
}

#[test]
fn bad_list_parameters_are_refused_by_name() {
    for (k, v, says) in [
        ("per", "0", "per"),
        ("per", "100000", "per"),
        ("page", "-1", "page"),
        ("sort", "random", "sort"),
        ("status", "<script>", "status"),
        ("q", &"x".repeat(MAX_QUERY + 1), "q"),
        ("env", "a\u{0}b", "env"),
    ] {
        let err = query(&[(k, v)]).unwrap_err();
        assert!(err.starts_with(says), "{k}={v:.20}: {err}");
    }
    // Empty means any; unknown parameters belong to someone else.
    let q = query(&[("env", ""), ("cachebust", "1")]).unwrap();
    assert_eq!(q.env, None);
}

#[test]
fn a_list_of_ten_thousand_apps_builds_only_its_page() {
    let mut snap = snapshot();
    let mut status = (*snap.status).clone();
    let mut env = EnvStatus::default();
    for i in 0..10_000 {
        let sync = if i % 100 == 0 {
            SyncStatus::Failed
        } else {
            SyncStatus::InSync
        };
        let (k, v) = app("big", &format!("app-{i:05}"), sync, None);
        env.apps.insert(k, v);
    }
    status.environments.insert("big".into(), Arc::new(env));
    snap.status = Arc::new(status);
    let p = list(&snap, &query(&[("env", "big")]).unwrap());
    assert_eq!(p.total, 10_000);
    assert_eq!(p.rows.len(), PER_PAGE);
    assert!(p.rows[..PER_PAGE].iter().all(|r| r.status == "failed"));
    assert_eq!(p.pages, 200);
}
