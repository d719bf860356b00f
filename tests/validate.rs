use crate::util::{TestRepo, pacer, project_dir};
use serde_json::Value;

#[test]
fn the_example_repo_validates() {
    let ex = project_dir().join("examples");
    let run = pacer(&["validate", "--repo", ex.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("ok: 3 environments"), "{run:?}");
}

#[test]
fn render_prints_the_put_body_with_provenance() {
    let repo = TestRepo::examples();
    let run = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "prod",
        "--app",
        "api",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let out: Value = serde_json::from_str(&run.stdout).expect("render prints JSON");
    let api = &out["apps"]["api"];
    assert_eq!(api["id"], "/prod/api");
    let labels = &api["marathon"]["labels"];
    assert_eq!(labels["pacer.env"], "prod");
    assert_eq!(labels["pacer.source"], "apps/api");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert_eq!(
        labels["pacer.commit"],
        String::from_utf8_lossy(&head.stdout).trim()
    );
    assert!(
        labels["pacer.config-hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(api["marathon"]["instances"], 6, "the prod overlay wins");
    assert!(
        api["files"]["application.yaml"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn render_hides_secrets_unless_asked() {
    let repo = TestRepo::examples();
    let hidden = pacer(&["render", "--repo", repo.path_str(), "--env", "prod"]);
    assert_eq!(hidden.code, 0, "{hidden:?}");
    assert!(
        !hidden
            .stdout
            .contains("prod-placeholder-use-encrypted-secrets")
    );
    assert!(!hidden.stdout.contains("9f8e7d6c5b4a"));
    assert!(hidden.stdout.contains("<secret:sentryDsn>"));
    let shown = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "prod",
        "--show-secrets",
    ]);
    assert!(shown.stdout.contains("9f8e7d6c5b4a"));
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    let repo = TestRepo::examples();
    let a = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "staging",
        "--rev",
        "HEAD",
    ]);
    let b = pacer(&["render", "--repo", repo.path_str(), "--env", "staging"]);
    assert_eq!(a.code, 0, "{a:?}");
    let apps = |out: &str| serde_json::from_str::<Value>(out).unwrap()["apps"].to_string();
    assert_eq!(
        apps(&a.stdout),
        apps(&b.stdout),
        "the Git revision and the clean working tree render alike"
    );
    let again = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "staging",
        "--rev",
        "HEAD",
    ]);
    assert_eq!(a.stdout, again.stdout);
}

#[test]
fn unknown_environment_and_app_get_a_hint() {
    let repo = TestRepo::examples();
    let run = pacer(&["render", "--repo", repo.path_str(), "--env", "prdo"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("unknown environment `prdo` (did you mean `prod`?)"),
        "{run:?}"
    );
    let run = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "prod",
        "--app",
        "wbe",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("did you mean `web`?"), "{run:?}");
}

#[test]
fn a_config_repo_may_live_in_a_subdirectory() {
    let tmp = tempfile::tempdir().unwrap();
    crate::util::copy_tree(
        &project_dir().join("examples"),
        &tmp.path().join("deploy/config"),
    );
    let repo = TestRepo::from(tmp.path());
    let sub = repo.path().join("deploy/config");
    let run = pacer(&[
        "render",
        "--repo",
        sub.to_str().unwrap(),
        "--env",
        "dev",
        "--rev",
        "HEAD",
        "--app",
        "web",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"/dev/web\""), "{run:?}");
}
