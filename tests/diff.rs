use crate::util::{TestRepo, pacer};
use serde_json::Value;

fn diff_json(repo: &TestRepo, base: &str, head: Option<&str>) -> (i32, Value) {
    let mut args = vec![
        "diff",
        "--repo",
        repo.path_str(),
        "--base",
        base,
        "--format",
        "json",
    ];
    if let Some(h) = head {
        args.extend(["--head", h]);
    }
    let run = pacer(&args);
    assert!(run.code == 0 || run.code == 2, "{run:?}");
    (
        run.code,
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}")),
    )
}

fn changed_apps(report: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for env in report["environments"].as_array().unwrap() {
        for app in env["apps"].as_array().unwrap() {
            let class = app["class"]
                .as_str()
                .unwrap_or(app["status"].as_str().unwrap());
            out.push((
                env["env"].as_str().unwrap().into(),
                app["app"].as_str().unwrap().into(),
                class.into(),
            ));
        }
    }
    out
}

#[test]
fn no_change_exits_zero() {
    let repo = TestRepo::examples();
    let run = pacer(&["diff", "--repo", repo.path_str(), "--base", "HEAD"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("No changes"), "{run:?}");
}

#[test]
fn a_new_commit_alone_changes_nothing() {
    let repo = TestRepo::examples();
    let first = repo.commit("empty commit");
    let (code, report) = diff_json(&repo, "HEAD~1", Some(&first));
    assert_eq!(code, 0, "{report}");
}

#[test]
fn each_kind_of_change_gets_its_class() {
    let repo = TestRepo::examples();
    let base = repo.commit("base");
    repo.edit(
        "apps/web/env/prod.yaml",
        "workerConnections: 4096",
        "workerConnections: 8192",
    );
    repo.edit("apps/worker/env/dev.yaml", "instances: 1", "instances: 3");
    repo.edit(
        "apps/api/files/application.yaml",
        "pool:",
        "pool:  # tuned\n   ",
    );
    repo.edit("apps/payments/ledger/app.yaml", "mem: 1024", "mem: 1536");
    let (code, report) = diff_json(&repo, &base, None);
    assert_eq!(code, 2, "{report}");
    let apps = changed_apps(&report);
    assert!(
        apps.contains(&("prod".into(), "web".into(), "hot".into())),
        "{apps:?}"
    );
    assert!(
        apps.contains(&("dev".into(), "worker".into(), "scale".into())),
        "{apps:?}"
    );
    assert!(
        apps.contains(&("prod".into(), "api".into(), "restart".into())),
        "{apps:?}"
    );
    assert!(
        apps.contains(&(
            "staging".into(),
            "payments/ledger".into(),
            "redeploy".into()
        )),
        "{apps:?}"
    );
    // The same change committed gives the same answer from Git alone.
    let head = repo.commit("tune");
    let (_, from_git) = diff_json(&repo, &base, Some(&head));
    assert_eq!(changed_apps(&from_git), apps);
}

#[test]
fn a_one_app_change_renders_only_that_app() {
    let repo = TestRepo::examples();
    let base = repo.commit("base");
    repo.edit("apps/worker/env/dev.yaml", "instances: 1", "instances: 2");
    let head = repo.commit("scale worker");
    let (_, report) = diff_json(&repo, &base, Some(&head));
    assert_eq!(report["summary"]["rendered"], 1, "{report}");
    assert_eq!(report["summary"]["scale"], 1, "{report}");
}

#[test]
fn markdown_is_ready_for_a_pull_request() {
    let repo = TestRepo::examples();
    let base = repo.commit("base");
    repo.edit("apps/worker/env/dev.yaml", "instances: 1", "instances: 2");
    let run = pacer(&[
        "diff",
        "--repo",
        repo.path_str(),
        "--base",
        &base,
        "--format",
        "markdown",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.starts_with("### pacer diff"), "{run:?}");
    assert!(
        run.stdout
            .contains("| dev | `worker` | `/dev/worker` | ~ scale |"),
        "{run:?}"
    );
    assert!(run.stdout.contains("```diff\n"), "{run:?}");
    assert!(run.stdout.contains("+  \"instances\": 2"), "{run:?}");
}

#[test]
fn secret_changes_are_reported_without_values() {
    let repo = TestRepo::examples();
    let base = repo.commit("base");
    repo.edit(
        "apps/api/env/staging.yaml",
        "dbPassword: staging-not-a-secret-either",
        "dbPassword: rotated-2026-value",
    );
    for format in ["text", "markdown", "json"] {
        let run = pacer(&[
            "diff",
            "--repo",
            repo.path_str(),
            "--base",
            &base,
            "--format",
            format,
        ]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            !run.stdout.contains("staging-not-a-secret-either"),
            "{format} leaks: {run:?}"
        );
        assert!(
            !run.stdout.contains("rotated-2026-value"),
            "{format} leaks: {run:?}"
        );
        assert!(
            !run.stderr.contains("rotated-2026-value"),
            "{format} leaks: {run:?}"
        );
    }
    let run = pacer(&["diff", "--repo", repo.path_str(), "--base", &base]);
    assert!(run.stdout.contains("(secret changed)"), "{run:?}");
}

#[test]
fn added_removed_and_environment_changes() {
    let repo = TestRepo::examples();
    let base = repo.commit("base");
    repo.remove("apps/worker");
    repo.write(
        "apps/cron/app.yaml",
        "marathon:\n  cmd: ./cron\n  instances: 1\n",
    );
    let (code, report) = diff_json(&repo, &base, None);
    assert_eq!(code, 2);
    let apps = changed_apps(&report);
    assert!(
        apps.contains(&("dev".into(), "cron".into(), "added".into())),
        "{apps:?}"
    );
    assert!(
        apps.contains(&("prod".into(), "worker".into(), "removed".into())),
        "{apps:?}"
    );
}

#[test]
fn a_head_that_does_not_render_exits_one_with_locations() {
    let repo = TestRepo::examples();
    let base = repo.commit("base");
    repo.edit("apps/worker/env/dev.yaml", "instances: 1", "intances: 1");
    let run = pacer(&["diff", "--repo", repo.path_str(), "--base", &base]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("apps/worker/env/dev.yaml:6:3: unknown key `intances`"),
        "{run:?}"
    );
    assert!(run.stderr.contains("did you mean `instances`?"), "{run:?}");
}

#[test]
fn an_unknown_base_revision_is_a_clear_error() {
    let repo = TestRepo::examples();
    let run = pacer(&[
        "diff",
        "--repo",
        repo.path_str(),
        "--base",
        "no-such-branch",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("revision `no-such-branch` not found"),
        "{run:?}"
    );
}

#[test]
fn ignored_fields_are_not_diffed() {
    // prod's worker leaves /instances to an autoscaler.
    let repo = TestRepo::examples();
    let base = repo.commit("base");
    repo.edit("apps/worker/env/prod.yaml", "instances: 8", "instances: 12");
    let (code, report) = diff_json(&repo, &base, None);
    assert_eq!(code, 0, "{report}");
}
