//! The commands that talk to Marathon, against the real simulator: apply
//! and retry write only when they should, plan covers every environment,
//! status, history formats.

use crate::util::harness::{Sim, World, wait_until};
use crate::util::{PACER, Run, pacer, run_git};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Requests that change Marathon (anything but a GET), to `/v2/` only.
async fn writes(sim: &Sim) -> Vec<(String, String)> {
    sim.requests()
        .await
        .into_iter()
        .filter(|(m, p, _)| m != "GET" && p.starts_with("/v2/"))
        .map(|(m, p, _)| (m, p))
        .collect()
}

fn apply(w: &World, env: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "apply",
        "--repo",
        w.git.repo.path_str(),
        "--marathon",
        &w.sim.url,
        "--env",
        env,
    ];
    args.extend_from_slice(extra);
    pacer(&args)
}

fn retry(w: &World, env: &str, app: &str) -> Run {
    pacer(&[
        "retry",
        "--repo",
        w.git.repo.path_str(),
        "--marathon",
        &w.sim.url,
        "--env",
        env,
        "--app",
        app,
        "--yes",
        "--deploy-timeout",
        "30",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_without_a_terminal_refuses_unless_yes() {
    let w = World::new().await;
    let run = apply(&w, "dev", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--yes"), "says how: {run:?}");
    assert!(
        writes(&w.sim).await.is_empty(),
        "{:?}",
        writes(&w.sim).await
    );
    let run = retry_without_yes(&w);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(writes(&w.sim).await.is_empty());

    let run = apply(&w, "dev", &["--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!writes(&w.sim).await.is_empty());
}

fn retry_without_yes(w: &World) -> Run {
    pacer(&[
        "retry",
        "--repo",
        w.git.repo.path_str(),
        "--marathon",
        &w.sim.url,
        "--env",
        "dev",
        "--app",
        "web",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_leaves_an_app_without_a_failure_alone() {
    let w = World::new().await;
    assert_eq!(apply(&w, "dev", &["--yes"]).code, 0);
    // A pending change that never failed: retry is not the way to ship it.
    w.git
        .repo
        .edit("apps/worker/env/dev.yaml", "instances: 1", "instances: 3");
    w.git.repo.commit("dev worker: three instances");
    let before = writes(&w.sim).await.len();
    let run = retry(&w, "dev", "worker");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("nothing to retry"), "{run:?}");
    // Nor in prod, which nothing applies on its own (autoApply: false).
    let run = retry(&w, "prod", "web");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("nothing to retry"), "{run:?}");
    assert_eq!(
        writes(&w.sim).await.len(),
        before,
        "{:?}",
        writes(&w.sim).await
    );
    assert!(w.sim.app("/prod/web").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_deploys_the_failed_app_and_nothing_else() {
    let w = World::new().await;
    assert_eq!(apply(&w, "dev", &["--yes"]).code, 0);
    w.sim.never_healthy("/dev/worker").await;
    w.git.repo.edit(
        "apps/worker/env/dev.yaml",
        "marathon:\n  instances: 1",
        "marathon:\n  instances: 1\n  env:\n    FEATURE_RETRY: \"on\"",
    );
    w.git.repo.commit("dev worker: FEATURE_RETRY");
    let run = apply(&w, "dev", &["--yes", "--deploy-timeout", "2"]);
    assert_eq!(run.code, 1, "the deployment fails: {run:?}");
    // The rollback's own deployment may still be running when apply ends.
    wait_until(
        "the plan to show the failure",
        Duration::from_secs(30),
        || async {
            let plan = pacer(&[
                "plan",
                "--repo",
                w.git.repo.path_str(),
                "--marathon",
                &w.sim.url,
                "--env",
                "dev",
            ]);
            if plan.stdout.contains("failed at this definition") {
                Ok(())
            } else {
                Err(format!("{plan:?}"))
            }
        },
    )
    .await;

    // The cause is fixed; another app has a change waiting too.
    let (s, v) = w.sim.delete("/_sim/apps/dev/worker/never-healthy").await;
    assert_eq!(s, 200, "{v}");
    w.git
        .repo
        .edit("apps/web/env/dev.yaml", "instances: 1", "instances: 2");
    w.git.repo.commit("dev web: two instances");
    let before = writes(&w.sim).await.len();
    let run = retry(&w, "dev", "worker");
    assert_eq!(run.code, 0, "{run:?}");
    let new: Vec<_> = writes(&w.sim).await.split_off(before);
    assert!(!new.is_empty(), "retry wrote nothing: {run:?}");
    assert!(
        new.iter()
            .all(|(_, p)| p.starts_with("/v2/apps/dev/worker")),
        "only the worker: {new:?}"
    );
    let worker = w.sim.app("/dev/worker").await.expect("the worker");
    assert_eq!(worker["env"]["FEATURE_RETRY"], "on", "{worker}");
    let web = w.sim.app("/dev/web").await.expect("the web app");
    assert_eq!(web["instances"], 1, "the web change waits for apply: {web}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_gives_advice_that_fits_the_repos_remotes() {
    let w = World::new().await;
    // The working clone has no remote at all.
    let run = apply(&w, "dev", &["--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Recorded in refs/notes/pacer"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("origin"), "no `origin` here: {run:?}");
    assert!(run.stdout.contains("no remote"), "{run:?}");

    run_git(
        w.git.repo.path(),
        &["remote", "add", "upstream", w.git.bare().to_str().unwrap()],
    );
    w.git
        .repo
        .edit("apps/worker/env/dev.yaml", "instances: 1", "instances: 2");
    w.git.repo.commit("dev worker: two instances");
    let run = apply(&w, "dev", &["--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("git push upstream refs/notes/pacer"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("origin"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_covers_every_environment_with_one_exit_code() {
    let w = World::new().await;
    // No scheme: taken as http://.
    let bare = w.sim.url.trim_start_matches("http://").to_string();
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", "--repo", w.git.repo.path_str(), "--marathon", &bare];
        args.extend_from_slice(extra);
        pacer(&args)
    };
    let all = plan(&[]);
    assert_eq!(all.code, 2, "{all:?}");
    for env in ["dev", "staging", "prod"] {
        assert!(
            all.stdout.contains(&format!("pacer plan {env} ")),
            "{all:?}"
        );
    }
    let json = plan(&["--format", "json"]);
    let v: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{json:?}");

    assert_eq!(apply(&w, "dev", &["--yes"]).code, 0);
    let dev = plan(&["--env", "dev"]);
    assert_eq!(dev.code, 0, "dev is in sync: {dev:?}");
    let two = plan(&["--env", "dev", "--env", "prod"]);
    assert_eq!(two.code, 2, "prod is not: {two:?}");
    assert!(!two.stdout.contains("pacer plan staging"), "{two:?}");

    // A reader that goes away early is a normal end here too.
    for cmd in ["plan", "status"] {
        let run = crate::cli::closed_stdout(
            &[
                cmd,
                "--repo",
                w.git.repo.path_str(),
                "--marathon",
                &w.sim.url,
            ],
            w.git.repo.path(),
        );
        assert_eq!(run.code, 0, "{cmd}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{cmd}: {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_what_runs_where_from_marathon_and_from_the_daemon() {
    let w = World::new().await;
    assert_eq!(apply(&w, "dev", &["--yes"]).code, 0);
    let head = run_git(w.git.repo.path(), &["rev-parse", "HEAD"]);
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--repo", w.git.repo.path_str()];
        args.extend_from_slice(extra);
        pacer(&args)
    };
    let json = status(&["--marathon", &w.sim.url, "--env", "dev", "--format", "json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let v: Value = serde_json::from_str(&json.stdout).expect("JSON");
    let web = &v["environments"]["dev"]["apps"]["web"];
    assert_eq!(web["sync"], "inSync", "{json:?}");
    assert_eq!(web["liveCommit"], head.as_str(), "{json:?}");
    let text = status(&["--marathon", &w.sim.url, "--env", "prod", "--app", "web"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("/prod/web"), "{text:?}");
    assert!(text.stdout.contains("missing"), "{text:?}");
    assert!(!text.stdout.contains("/dev/"), "{text:?}");

    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let from_daemon = status(&["--daemon", &d.url, "--format", "json"]);
    assert_eq!(from_daemon.code, 0, "{from_daemon:?}");
    let v: Value = serde_json::from_str(&from_daemon.stdout).expect("JSON");
    assert_eq!(v["environments"]["dev"]["apps"]["worker"]["sync"], "inSync");
    let text = status(&["--daemon", &d.url, "--app", "worker"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("/dev/worker"), "{text:?}");
    assert!(!text.stdout.contains("/dev/web"), "{text:?}");
    let bad = status(&["--daemon", &w.sim.url]);
    assert_eq!(bad.code, 1, "Marathon is not a daemon: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_honours_pacer_format() {
    let w = World::new().await;
    assert_eq!(apply(&w, "dev", &["--yes"]).code, 0);
    let out = Command::new(PACER)
        .args([
            "history",
            "--repo",
            w.git.repo.path_str(),
            "--marathon",
            &w.sim.url,
        ])
        .args(["--env", "dev", "--app", "web"])
        .env("PACER_FORMAT", "json")
        .output()
        .expect("running pacer");
    let run: Run = out.into();
    assert_eq!(run.code, 0, "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).expect("JSON from PACER_FORMAT");
    assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{run:?}");
    let md = w.history("web", "markdown");
    assert!(md.stdout.starts_with("### history of `/dev/web`"), "{md:?}");
}

/// Runs pacer at a terminal (util-linux `script` gives it a pty) and types
/// `answer` when it asks.
fn at_a_terminal(args: &[&str], answer: &str) -> Run {
    use std::io::Write;
    let mut line = PACER.to_string();
    for a in args {
        assert!(!a.contains(['\'', ' ']), "a plain argument: {a}");
        line.push_str(&format!(" '{a}'"));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("PACER_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("NO_COLOR", "1")
        .env("PACER_AGE_KEY_FILE", crate::util::demo_key())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running script(1) from util-linux");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    child.wait_with_output().expect("waiting for script").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_at_a_terminal_asks_and_acts_only_on_yes() {
    let w = World::new().await;
    let args = [
        "apply",
        "--repo",
        w.git.repo.path_str(),
        "--marathon",
        &w.sim.url,
        "--env",
        "dev",
    ];
    let no = at_a_terminal(&args, "no");
    assert_eq!(no.code, 1, "{no:?}");
    assert!(no.stdout.contains("Only `yes` is accepted"), "{no:?}");
    assert!(
        no.stdout.contains("Cancelled: nothing was changed"),
        "{no:?}"
    );
    assert!(
        writes(&w.sim).await.is_empty(),
        "{:?}",
        writes(&w.sim).await
    );

    let yes = at_a_terminal(&args, "yes");
    assert_eq!(yes.code, 0, "{yes:?}");
    assert!(!writes(&w.sim).await.is_empty(), "{yes:?}");
    assert!(w.sim.app("/dev/web").await.is_some());
}

/// `marathon: host:port` in pacer.yaml works for the daemon as for the CLI
/// (one rule: no scheme means http://).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marathon_url_without_a_scheme_in_pacer_yaml_works_for_plan_and_serve() {
    let w = World::new().await;
    let bare = w.sim.url.trim_start_matches("http://").to_string();
    let yaml = w.git.repo.read("pacer.yaml").replace(
        "marathon: http://marathon.dev.example.internal:8080",
        &format!("marathon: {bare}"),
    );
    assert!(yaml.contains(&format!("marathon: {bare}")), "{yaml}");
    w.git.repo.write("pacer.yaml", &yaml);
    w.git.commit_push("dev: Marathon without a scheme");

    let plan = pacer(&["plan", "--repo", w.git.repo.path_str(), "--env", "dev"]);
    assert_eq!(plan.code, 2, "dev has changes to make: {plan:?}");

    let args: Vec<String> = [
        "--repo-url",
        &w.git.url(),
        "--listen",
        "127.0.0.1:0",
        "--poll",
        "1",
        "--env",
        "dev",
        "--workdir",
        w.scratch.path().join("mirror").to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let d = crate::util::harness::Daemon::start(w.scratch.path(), &args);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let plan = pacer(&["plan", "--repo", w.git.repo.path_str(), "--env", "dev"]);
    assert_eq!(plan.code, 0, "the daemon deployed dev: {plan:?}");
}

/// The daemon leaves an `autoApply: false` environment to a human, on its
/// first pass and on a pushed commit (the webhook's fast path) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_applies_prod_which_says_auto_apply_false() {
    let w = World::new().await;
    let d = w.serve(1, 60, &["--env", "prod"]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    // Never created there: every prod app is `missing`, and stays so.
    d.wait_all("prod", "missing", Duration::from_secs(60)).await;

    let path = "apps/web/env/prod.yaml";
    let text = w
        .git
        .repo
        .read(path)
        .replace("instances: 4", "instances: 5");
    assert!(text.contains("instances: 5"), "{text}");
    w.git.repo.write(path, &text);
    // dev changes in the same commit: once it is out, the push was handled.
    let dev = "apps/worker/env/dev.yaml";
    let text = w.git.repo.read(dev).replace("instances: 1", "instances: 2");
    w.git.repo.write(dev, &text);
    let commit = w
        .git
        .commit_push("web five instances in prod, worker two in dev");
    let (s, v) = d.github_push(&commit, crate::util::harness::SECRET).await;
    assert_eq!(s, 202, "{v}");
    crate::util::harness::wait_until("the commit out in dev", Duration::from_secs(60), || async {
        let s = d.status().await;
        let worker = w.sim.app("/dev/worker").await.unwrap_or_default();
        if s["repo"]["head"] == commit.as_str() && worker["instances"] == 2 {
            Ok(())
        } else {
            Err(format!("{s}\n{worker}"))
        }
    })
    .await;
    d.wait_all("prod", "missing", Duration::from_secs(60)).await;
    let prod: Vec<_> = writes(&w.sim)
        .await
        .into_iter()
        .filter(|(_, p)| p.contains("/prod"))
        .collect();
    assert!(prod.is_empty(), "the daemon wrote to prod: {prod:?}");
}
