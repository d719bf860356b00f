//! The command line itself, without Marathon: exit codes, formats, a closed
//! stdout, completions and man pages.

use crate::util::{PACER, TestRepo, pacer, project_dir};
use std::process::{Command, Stdio};

fn examples() -> String {
    project_dir().join("examples").display().to_string()
}

#[test]
fn usage_errors_exit_1_and_help_and_version_exit_0() {
    let ex = examples();
    for args in [
        vec!["diff", "--bse", "HEAD"],
        vec!["plan", "--format", "jsn"],
        vec!["diff", "--base", "HEAD", "--format", "jsn"],
        vec!["apply", "--repo", &ex],
        vec!["render", "--repo", &ex],
        vec!["retry", "--env", "dev"],
        vec!["completions", "nosh"],
        vec!["nosuchcommand"],
        vec![],
    ] {
        let run = pacer(&args);
        assert_eq!(run.code, 1, "pacer {args:?}: {run:?}");
        assert!(
            run.stderr.contains("error:") || run.stderr.contains("Usage:"),
            "pacer {args:?} says why: {run:?}"
        );
    }
    for args in [
        vec!["--help"],
        vec!["plan", "--help"],
        vec!["help", "apply"],
        vec!["--version"],
    ] {
        let run = pacer(&args);
        assert_eq!(run.code, 0, "pacer {args:?}: {run:?}");
        assert!(!run.stdout.is_empty(), "pacer {args:?}: {run:?}");
    }
}

#[test]
fn help_describes_each_command_as_it_behaves() {
    let apply = pacer(&["apply", "--help"]);
    assert!(
        !apply.stdout.contains("The environment to plan"),
        "{apply:?}"
    );
    assert!(
        apply.stdout.contains("The environment to apply"),
        "{apply:?}"
    );
    let retry = pacer(&["retry", "--help"]);
    assert!(
        retry.stdout.contains("--env <ENV> --app <APP>"),
        "--app is required: {retry:?}"
    );
    let history = pacer(&["history", "--help"]);
    assert!(
        history.stdout.contains("The environment the app runs in"),
        "{history:?}"
    );
    for cmd in [
        "validate", "render", "diff", "plan", "apply", "retry", "history", "status",
    ] {
        let help = pacer(&[cmd, "--help"]);
        assert!(
            help.stdout.contains("--format <FORMAT>"),
            "{cmd} takes --format: {help:?}"
        );
    }
}

/// Runs pacer with the read end of its stdout closed before it prints.
pub fn closed_stdout(args: &[&str], dir: &std::path::Path) -> crate::util::Run {
    let mut child = Command::new(PACER)
        .args(args)
        .current_dir(dir)
        .env_remove("PACER_FORMAT")
        .env("PACER_AGE_KEY_FILE", crate::util::demo_key())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pacer");
    // The reader goes away at once, as `| head -c0` would.
    drop(child.stdout.take());
    child.wait_with_output().expect("waiting for pacer").into()
}

#[test]
fn a_closed_stdout_is_a_normal_end() {
    let repo = TestRepo::examples();
    repo.edit("apps/worker/env/dev.yaml", "instances: 1", "instances: 3");
    let dir = repo.path();
    for args in [
        vec!["render", "--env", "dev"],
        vec!["render", "--env", "dev", "--format", "text"],
        vec![
            "render",
            "--env",
            "prod",
            "--app",
            "web",
            "--file",
            "nginx.conf",
        ],
        vec!["diff", "--base", "HEAD"],
        vec!["diff", "--base", "HEAD", "--format", "json"],
        vec!["validate"],
        vec!["validate", "--format", "json"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["--help"],
        vec!["sim", "--listen", "127.0.0.1:0"],
    ] {
        let run = closed_stdout(&args, dir);
        assert_eq!(run.code, 0, "pacer {args:?}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "pacer {args:?}: {run:?}");
        assert!(!run.stderr.contains("error"), "pacer {args:?}: {run:?}");
    }
}

#[test]
fn validate_takes_format_and_keeps_json_as_an_alias() {
    let ex = examples();
    let json = pacer(&["validate", "--repo", &ex, "--format", "json"]);
    assert_eq!(json.code, 0, "{json:?}");
    assert_eq!(json.stdout.trim(), "[]", "{json:?}");
    let alias = pacer(&["validate", "--repo", &ex, "--json"]);
    assert_eq!(alias.stdout, json.stdout, "{alias:?}");
    let md = pacer(&["validate", "--repo", &ex, "--format", "markdown"]);
    assert_eq!(md.code, 0, "{md:?}");
    assert!(md.stdout.starts_with("### pacer validate"), "{md:?}");

    let repo = TestRepo::examples();
    repo.edit("apps/web/app.yaml", "instances:", "instancez:");
    let bad = pacer(&[
        "validate",
        "--repo",
        repo.path_str(),
        "--format",
        "markdown",
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stdout.contains("| `apps/web/app.yaml:"), "{bad:?}");
    let bad = pacer(&["validate", "--repo", repo.path_str(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&bad.stdout).expect("JSON");
    assert_eq!(v[0]["file"], "apps/web/app.yaml", "{bad:?}");
    assert!(v[0]["line"].is_u64(), "{bad:?}");
}

#[test]
fn render_prints_one_file_as_plain_text_with_secrets_hidden() {
    let ex = examples();
    let all = pacer(&["render", "--repo", &ex, "--env", "prod", "--app", "web"]);
    assert_eq!(all.code, 0, "{all:?}");
    let v: serde_json::Value = serde_json::from_str(&all.stdout).expect("JSON");
    let want = v["apps"]["web"]["files"]["nginx.conf"]["content"]
        .as_str()
        .expect("nginx.conf in the JSON");
    let one = pacer(&[
        "render",
        "--repo",
        &ex,
        "--env",
        "prod",
        "--app",
        "web",
        "--file",
        "nginx.conf",
    ]);
    assert_eq!(one.code, 0, "{one:?}");
    assert_eq!(one.stdout, want);

    // A file with a secret in it: a placeholder unless asked.
    let file = [
        "--repo",
        &ex,
        "--env",
        "prod",
        "--app",
        "api",
        "--file",
        "application.yaml",
    ];
    let hidden = pacer(&[&["render"][..], &file[..]].concat());
    assert_eq!(hidden.code, 0, "{hidden:?}");
    assert!(hidden.stdout.contains("<secret:dbPassword>"), "{hidden:?}");
    let shown = pacer(&[&["render"][..], &file[..], &["--show-secrets"][..]].concat());
    assert!(!shown.stdout.contains("<secret:"), "{shown:?}");
    assert!(
        shown
            .stdout
            .contains("prod-placeholder-use-encrypted-secrets"),
        "{shown:?}"
    );

    let missing = pacer(&[
        "render",
        "--repo",
        &ex,
        "--env",
        "prod",
        "--app",
        "web",
        "--file",
        "nope.conf",
    ]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("nginx.conf"),
        "names the files there are: {missing:?}"
    );
    let no_app = pacer(&[
        "render",
        "--repo",
        &ex,
        "--env",
        "prod",
        "--file",
        "nginx.conf",
    ]);
    assert_eq!(no_app.code, 1, "--file needs --app: {no_app:?}");
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = pacer(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {run:?}");
        assert!(run.stdout.contains("retry"), "{shell}: {run:?}");
    }
    let page = pacer(&["man"]);
    assert_eq!(page.code, 0, "{page:?}");
    assert!(page.stdout.contains(".TH pacer 1"), "{page:?}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let run = pacer(&["man", "--dir", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    for page in ["pacer.1", "pacer-plan.1", "pacer-status.1", "pacer-retry.1"] {
        let text = std::fs::read_to_string(out.join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}: {run:?}"));
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn the_readme_lists_every_command_of_the_help() {
    let readme = std::fs::read_to_string(project_dir().join("README.md")).unwrap();
    let help = pacer(&["--help"]);
    let commands: Vec<&str> = help
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 13, "{help:?}");
    for c in commands {
        assert!(
            readme.contains(&format!("| `pacer {c}")),
            "the README's Commands table lacks `{c}`"
        );
    }
}

#[test]
fn errors_in_json_are_objects_on_stdout_and_text_on_stderr() {
    let repo = TestRepo::examples();
    repo.edit("apps/web/app.yaml", "instances:", "instancez:");
    let dir = repo.path_str();
    for args in [
        vec!["render", "--repo", dir, "--env", "dev", "--format", "json"],
        vec!["diff", "--repo", dir, "--base", "HEAD", "--format", "json"],
    ] {
        let run = pacer(&args);
        assert_eq!(run.code, 1, "pacer {args:?}: {run:?}");
        let v: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("pacer {args:?}: stdout is not JSON ({e}): {run:?}"));
        let first = &v["errors"][0];
        assert_eq!(first["file"], "apps/web/app.yaml", "{run:?}");
        assert!(first["line"].is_u64(), "{run:?}");
        assert!(first["message"].is_string(), "{run:?}");
        assert!(run.stderr.contains("apps/web/app.yaml:"), "{run:?}");
    }
    // In text, stdout stays empty and stderr says where.
    let run = pacer(&["render", "--repo", dir, "--env", "dev", "--format", "text"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.contains("apps/web/app.yaml:"), "{run:?}");
    // An error with no place in the repo is an object with a message.
    let port = crate::util::free_port().to_string();
    let run = pacer(&[
        "status",
        "--repo",
        dir,
        "--daemon",
        &format!("127.0.0.1:{port}"),
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert!(v["errors"][0]["message"].is_string(), "{run:?}");
    assert!(v["errors"][0].get("file").is_none(), "{run:?}");
}

#[test]
fn a_bad_marathon_url_is_refused_without_quoting_its_password() {
    for args in [
        vec!["plan", "--marathon", "ftp://admin:hunter2@marathon:8080"],
        vec!["status", "--daemon", "ftp://admin:hunter2@pacer:8081"],
    ] {
        let run = pacer(&args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("***@"), "{run:?}");
        assert!(!run.stderr.contains("hunter2"), "{run:?}");
        assert!(!run.stdout.contains("hunter2"), "{run:?}");
    }
}

#[test]
fn plan_reports_a_repo_that_does_not_render_before_any_marathon_problem() {
    // `plan --marathon` reads Marathon while the repo renders; a repo with
    // problems is still reported as such, whatever Marathon answered.
    let repo = TestRepo::examples();
    repo.edit("apps/web/app.yaml", "instances:", "instancez:");
    let url = format!("http://127.0.0.1:{}", crate::util::free_port());
    for args in [
        &["plan", "--repo", repo.path_str(), "--marathon", &url][..],
        &[
            "plan",
            "--repo",
            repo.path_str(),
            "--marathon",
            &url,
            "--env",
            "dev",
        ][..],
    ] {
        let run = pacer(args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("apps/web/app.yaml:"), "{run:?}");
        assert!(run.stderr.contains("nothing was planned"), "{run:?}");
        assert!(!run.stderr.contains("reading Marathon"), "{run:?}");
    }
    // A repo that renders meets the unreachable Marathon, named as before.
    let good = TestRepo::examples();
    let run = pacer(&["plan", "--repo", good.path_str(), "--marathon", &url]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("reading Marathon at"), "{run:?}");
}
