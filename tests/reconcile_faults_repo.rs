//! `pacer serve` when the config repo goes wrong, with the real binaries:
//! commits that don't render or don't load, an unreachable or hanging Git
//! server, force-pushes (rewinds), a repo that refuses the deployment
//! records, and secrets that must never leave Marathon.

use crate::util::harness::{World, wait_until};
use crate::util::run_git;
use crate::util::scenario::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_does_not_render_keeps_the_app_and_deploys_the_rest() {
    let (w, d, good) = start(60).await;
    let web_before = w.sim.app("/dev/web").await.unwrap();

    let broken = "      image: \"nginx:{{ values.nginxVersoin }}-alpine\"";
    w.git.repo.edit(
        "apps/web/app.yaml",
        "      image: \"nginx:{{ values.nginxVersion }}-alpine\"",
        broken,
    );
    let line = w
        .git
        .repo
        .read("apps/web/app.yaml")
        .lines()
        .position(|l| l == broken)
        .unwrap()
        + 1;
    let c = push_worker(
        &w,
        "beside-a-broken-app",
        "web: a typo; worker: a good change",
    );

    let s = wait_app(&d, "web", "web invalid", |a| a["sync"] == "invalid").await;
    let web = &s["environments"]["dev"]["apps"]["web"];
    let errors = web["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e["file"] == "apps/web/app.yaml" && e["line"] == line),
        "no error at apps/web/app.yaml:{line}: {web:#}"
    );
    // The other apps get the same commit's changes.
    let worker = wait_live(&w, &d, "/dev/worker", &c).await;
    assert_eq!(worker["env"]["FEATURE_E2E"], "beside-a-broken-app");
    // web stays at its last good definition.
    wait_cycles(&d, 2.0).await;
    let web_now = w.sim.app("/dev/web").await.unwrap();
    assert_eq!(web_now["labels"]["pacer.commit"], good.as_str());
    assert_eq!(web_now["container"], web_before["container"]);
    assert_eq!(web_now["version"], web_before["version"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_breaking_pacer_yaml_keeps_everything_at_the_last_good_one() {
    let (w, d, good) = start(60).await;

    w.git.repo.edit(
        "pacer.yaml",
        "    group: /dev\n",
        "    group: /dev\n    bogus: [\n",
    );
    let broken = push_worker(&w, "behind-a-broken-pacer-yaml", "break pacer.yaml");
    let s = wait_status(&d, "the broken commit reported", |s| {
        let errs = s["environments"]["dev"]["errors"].to_string();
        s["repo"]["head"] == broken.as_str() && errs.contains("pacer.yaml")
    })
    .await;
    assert_eq!(s["repo"]["lastGood"], good.as_str(), "{s:#}");
    wait_cycles(&d, 2.0).await;
    let s = d.status().await;
    // The environment still runs, and says it runs, the last good commit.
    assert_eq!(s["environments"]["dev"]["commit"], good.as_str(), "{s:#}");
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["labels"]["pacer.commit"], good.as_str());
    assert!(app["env"].get("FEATURE_E2E").is_none());

    // Fixed: the change goes out.
    w.git.repo.edit("pacer.yaml", "    bogus: [\n", "");
    let fixed = w.git.commit_push("fix pacer.yaml");
    let app = wait_live(&w, &d, "/dev/worker", &fixed).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "behind-a-broken-pacer-yaml");
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    assert!(s["environments"]["dev"].get("errors").is_none(), "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restarted_on_a_broken_app_does_not_prune_it() {
    let (w, mut d, _) = start(60).await;
    d.proc.kill();
    w.git.repo.edit(
        "apps/web/app.yaml",
        "      image: \"nginx:{{ values.nginxVersion }}-alpine\"",
        "      image: \"nginx:{{ values.nginxVersoin }}-alpine\"",
    );
    w.git
        .commit_push("web: a typo, pushed while the daemon is down");

    // A fresh daemon never saw web render: it must still not delete it.
    let d = w.serve(1, 60, &[]);
    wait_app(&d, "web", "web invalid", |a| a["sync"] == "invalid").await;
    wait_cycles(&d, 2.0).await;
    assert!(
        w.sim.app("/dev/web").await.is_some(),
        "web was pruned because it doesn't render"
    );
    let deletes: Vec<_> = w
        .sim
        .requests()
        .await
        .into_iter()
        .filter(|(m, _, _)| m == "DELETE")
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_repo_is_reported_and_marathon_left_alone() {
    let (mut w, d, _) = start(60).await;
    w.sim.delete("/_sim/requests").await;
    let fetch_errors = d.metric("pacer_git_fetch_errors_total").await;

    drop(w.git.daemon.take());
    let s = wait_until("fetch errors to show and grow", LIMIT, || async {
        let s = d.status().await;
        let n = d.metric("pacer_git_fetch_errors_total").await;
        if s["repo"]["lastFetchError"].is_string() && n >= fetch_errors + 2.0 {
            Ok(s)
        } else {
            Err(format!("{s:#}\nfetch errors: {n}"))
        }
    })
    .await;
    assert_eq!(d.get("/healthz").await.0, 200);
    let apps = s["environments"]["dev"]["apps"].as_object().unwrap();
    assert!(apps.values().all(|a| a["sync"] == "inSync"), "{s:#}");
    let writes = writes(&w).await;
    assert!(writes.is_empty(), "Marathon was written to: {writes:?}");
}

/// A Git server that accepts connections and then says nothing: the fetch
/// gives up after `--git-timeout`, the daemon keeps serving and reports it,
/// and Marathon is left alone. Over git:// and ssh:// (libssh2 waits for
/// the server's banner).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_server_that_hangs_times_out() {
    for scheme in ["git", "ssh"] {
        let w = World::new().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and holds every connection, answering nothing.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
            }
        });
        let url = format!("{scheme}://127.0.0.1:{port}/config.git");
        let d = w.serve_from(&url, 1, 60, &["--git-timeout", "1"]);
        let s = wait_until(
            &format!("the hung {scheme} fetch to time out"),
            LIMIT,
            || async {
                let s = d.status().await;
                let errors = d.metric("pacer_git_fetch_errors_total").await;
                if s["repo"]["lastFetchError"].is_string() && errors >= 2.0 {
                    Ok(s)
                } else {
                    Err(format!(
                        "{s:#}\nfetch errors: {errors}\n{}",
                        d.proc.log_tail()
                    ))
                }
            },
        )
        .await;
        assert_eq!(d.get("/healthz").await.0, 200);
        let error = s["repo"]["lastFetchError"].as_str().unwrap();
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        assert!(w.sim.requests().await.iter().all(|(m, _, _)| m == "GET"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_rewind_is_refused_unless_allowed() {
    let (w, mut d, _) = start(60).await;
    let b = push_worker(&w, "b", "B");
    wait_live(&w, &d, "/dev/worker", &b).await;

    // Rewrite history: drop B, commit C on its parent, force-push.
    run_git(w.git.repo.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    change_worker(&w, "c");
    let c = w.git.repo.commit("C, force-pushed over B");
    w.git.push(true);
    wait_status(&d, "the rewind to be refused", |s| {
        let errs = s["environments"]["dev"]["errors"].to_string();
        s["repo"]["head"] == c.as_str() && errs.contains("refusing to rewind")
    })
    .await;
    wait_cycles(&d, 2.0).await;
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(
        app["labels"]["pacer.commit"],
        b.as_str(),
        "the rewind was deployed"
    );
    assert_eq!(app["env"]["FEATURE_E2E"], "b");

    d.proc.kill();
    let d = w.serve(1, 60, &["--allow-rewind"]);
    let app = wait_live(&w, &d, "/dev/worker", &c).await;
    assert_eq!(app["env"]["FEATURE_E2E"], "c");
    d.wait_all("dev", "inSync", LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_past_a_scale_only_commit_stays_refused() {
    // A scale keeps the live app's `pacer.commit` label, so only the
    // daemon's memory of the commit it applied can tell the rewind.
    let (w, d, _) = start(60).await;
    w.git.repo.edit(
        "apps/worker/env/dev.yaml",
        "marathon:\n  instances: 1",
        "marathon:\n  instances: 2",
    );
    let b = w.git.commit_push("B: scale the dev worker");
    wait_app(&d, "worker", "the scale applied", |a| {
        a["sync"] == "inSync" && a["last"]["commit"] == b.as_str()
    })
    .await;
    assert_eq!(w.sim.app("/dev/worker").await.unwrap()["instances"], 2);

    run_git(w.git.repo.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    change_worker(&w, "c");
    let c = w.git.repo.commit("C, force-pushed over B");
    w.git.push(true);
    let refused = |s: &Value| {
        s["repo"]["head"] == c.as_str()
            && s["environments"]["dev"]["errors"]
                .to_string()
                .contains("refusing to rewind")
    };
    wait_status(&d, "the rewind to be refused", refused).await;
    // …and it stays refused, poll after poll.
    wait_cycles(&d, 3.0).await;
    let s = d.status().await;
    assert!(refused(&s), "the refusal was forgotten: {s:#}");
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["instances"], 2, "the rewind was deployed: {app:#}");
    assert!(
        app["env"].get("FEATURE_E2E").is_none(),
        "the rewind was deployed: {app:#}"
    );
}

/// A config repo that won't take the deployment records (a read-only key,
/// a server rule) never stops a deployment: the records wait, the status
/// says why, and the push is tried again with backoff, not on every poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_repo_refuses_wait_without_blocking_deployments() {
    let w = World::new().await;
    let hook = w.git.bare().join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nwhile read old new ref; do\n  case \"$ref\" in refs/notes/*) echo 'notes are not accepted here' >&2; exit 1;; esac\ndone\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (w, d, head) = start_in(w, 60, &[]).await;
    let s = wait_status(&d, "the refused records in the status", |s| {
        s["repo"]["pendingRecords"].as_u64().unwrap_or(0) >= 3
            && s["repo"]["lastRecordError"].is_string()
    })
    .await;
    let error = s["repo"]["lastRecordError"].as_str().unwrap();
    assert!(error.contains("refs/notes/pacer"), "{error}");
    assert!(w.git.records(&head).is_empty(), "the hook let them in");
    // Several polls later, still one attempt: the next waits 30 s.
    wait_cycles(&d, 3.0).await;
    assert_eq!(d.metric("pacer_record_errors_total").await, 1.0);
    // Deployments go on meanwhile.
    let c = push_worker(&w, "on", "dev worker: deployed while records wait");
    wait_live(&w, &d, "/dev/worker", &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_status_metrics_or_logs() {
    const SECRET_VALUE: &str = "0f1e2d3c4b5a@sentry.example.com";
    let (w, d, _) = start(60).await;
    // The secret is in Marathon (it is the app's env)…
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert!(app["env"]["SENTRY_DSN"].to_string().contains(SECRET_VALUE));
    // …and a hand-made change right next to it makes a diff with it in context.
    let mut env = app["env"].clone();
    env["APP_ENV"] = json!("hand-edited");
    w.sim.put("/v2/apps/dev/worker", json!({"env": env})).await;
    wait_until("the drift to be healed", LIMIT, || async {
        let a = w.sim.app("/dev/worker").await.unwrap_or_default();
        let idle = a["deployments"].as_array().is_some_and(Vec::is_empty);
        if a["env"]["APP_ENV"] == "dev" && idle {
            Ok(())
        } else {
            Err(format!("{a:#}"))
        }
    })
    .await;
    d.wait_all("dev", "inSync", LIMIT).await;
    let status = d.status().await.to_string();
    assert!(!status.contains(SECRET_VALUE), "{status}");
    let metrics = d.metrics().await;
    assert!(!metrics.contains(SECRET_VALUE), "{metrics}");
    let log = std::fs::read_to_string(&d.proc.log).unwrap();
    assert!(!log.contains(SECRET_VALUE), "the daemon log has the secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_never_prints_a_secret() {
    const SECRET_VALUE: &str = "0f1e2d3c4b5a@sentry.example.com";
    let w = World::new().await;
    let repo = w.git.repo.path_str();
    let url = w.sim.url.clone();
    let apply = crate::util::pacer(&[
        "apply",
        "--repo",
        repo,
        "--marathon",
        &url,
        "--env",
        "dev",
        "--yes",
    ]);
    assert_eq!(apply.code, 0, "{apply:?}");
    // `pacer apply` records what it did on the commit it applied, like the
    // daemon, in the repo it ran from.
    let head = run_git(w.git.repo.path(), &["rev-parse", "HEAD"]);
    let notes = run_git(w.git.repo.path(), &["notes", "--ref=pacer", "show", &head]);
    let records: Vec<Value> = notes
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    let ids: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["/dev/api", "/dev/web", "/dev/worker"].into(),
        "{notes}"
    );
    for r in &records {
        assert_eq!(r["outcome"], "succeeded", "{r:#}");
        assert!(
            r["deployment"].as_str().is_some_and(|d| !d.is_empty()),
            "{r:#}"
        );
    }
    assert!(!notes.contains(SECRET_VALUE), "{notes}");
    // A hand-made change right next to the secret: it is in the diff's context.
    let mut env = w.sim.app("/dev/worker").await.unwrap()["env"].clone();
    env["APP_ENV"] = json!("hand-edited");
    w.sim.put("/v2/apps/dev/worker", json!({"env": env})).await;
    wait_until("the hand-made deployment to finish", LIMIT, || async {
        match w.sim.deployments().await {
            0 => Ok(()),
            n => Err(format!("{n} deployments")),
        }
    })
    .await;
    for format in ["text", "json", "markdown"] {
        let plan = crate::util::pacer(&[
            "plan",
            "--repo",
            repo,
            "--marathon",
            &url,
            "--env",
            "dev",
            "--format",
            format,
        ]);
        assert_eq!(plan.code, 2, "{plan:?}");
        assert!(plan.stdout.contains("hand-edited"), "{plan:?}");
        assert!(!plan.stdout.contains(SECRET_VALUE), "{format}: {plan:?}");
        assert!(!plan.stderr.contains(SECRET_VALUE), "{format}: {plan:?}");
    }
}

/// `pacer apply` asks the same rewind question as the daemon: a commit that
/// would take a live app back past the commit it runs is refused, naming
/// the app, unless `--allow-rewind`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_a_rewind_unless_allowed() {
    let w = World::new().await;
    let repo = w.git.repo.path_str();
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "apply",
            "--repo",
            repo,
            "--marathon",
            &w.sim.url,
            "--env",
            "dev",
            "--yes",
        ];
        args.extend_from_slice(extra);
        crate::util::pacer(&args)
    };
    change_worker(&w, "b");
    let b = w.git.repo.commit("B");
    let out = apply(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["labels"]["pacer.commit"], b.as_str());

    // Rewrite history: drop B, commit C on its parent.
    run_git(w.git.repo.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    change_worker(&w, "c");
    let c = w.git.repo.commit("C, over B");
    let out = apply(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("refusing to rewind")
            && out.stderr.contains(&format!("runs commit {b}"))
            && out.stderr.contains("--allow-rewind"),
        "{out:?}"
    );
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["labels"]["pacer.commit"], b.as_str(), "{app:#}");
    assert_eq!(app["env"]["FEATURE_E2E"], "b");

    let out = apply(&["--allow-rewind"]);
    assert_eq!(out.code, 0, "{out:?}");
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["labels"]["pacer.commit"], c.as_str(), "{app:#}");
    assert_eq!(app["env"]["FEATURE_E2E"], "c");
}
