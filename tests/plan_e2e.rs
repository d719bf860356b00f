//! Plan, apply and history semantics with the real binaries, a real Git
//! repo and the simulator: a commit reaches a hand-edited app, `pacer
//! apply` heals drift, mass deletes wait for a human, nothing is written
//! twice, a slow rollout shows its tasks, and history credits only what
//! pacer wrote.

use crate::util::harness::{World, wait_until};
use crate::util::{Run, pacer};
use serde_json::{Value, json};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);
const WORKER: &str = "apps/worker/env/dev.yaml";

/// `pacer COMMAND --repo … --marathon … --env dev ARGS…` from the working clone.
fn cli(w: &World, command: &str, args: &[&str]) -> Run {
    let mut all = vec![
        command,
        "--repo",
        w.git.repo.path_str(),
        "--marathon",
        &w.sim.url,
        "--env",
        "dev",
    ];
    all.extend(args);
    pacer(&all)
}

fn plan_json(w: &World) -> (i32, Value) {
    let out = cli(w, "plan", &["--format", "json"]);
    let plans: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    // `plan --format json` prints one plan per environment; this runs one.
    (out.code, plans[0].clone())
}

fn step<'a>(plan: &'a Value, id: &str) -> &'a Value {
    plan["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step for {id}: {plan:#}"))
}

/// dev reports drift instead of healing it.
fn self_heal_off(w: &World) {
    w.git.repo.edit(
        "pacer.yaml",
        "selfHeal: true       # manual changes in Marathon are reverted",
        "selfHeal: false",
    );
}

/// Changes an app in Marathon by hand (pacer's labels stay) and waits for
/// Marathon to finish.
async fn by_hand(w: &World, id: &str, patch: Value) {
    let (s, v) = w.sim.put(&format!("/v2/apps{id}"), patch).await;
    assert_eq!(s, 200, "{v}");
    wait_idle(w).await;
}

async fn wait_idle(w: &World) {
    wait_until("Marathon to be idle", LIMIT, || async {
        match w.sim.deployments().await {
            0 => Ok(()),
            n => Err(format!("{n} deployments")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_reaches_a_hand_edited_app_and_apply_heals_drift() {
    let w = World::new().await;
    self_heal_off(&w);
    w.git.repo.commit("dev: report drift");
    let out = cli(&w, "apply", &["--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_idle(&w).await;

    // Drift alone: reported, not healed by policy…
    by_hand(&w, "/dev/worker", json!({"mem": 256})).await;
    let (code, plan) = plan_json(&w);
    assert_eq!(code, 2, "{plan:#}");
    let worker = step(&plan, "/dev/worker");
    assert_eq!(worker["action"], "drifted", "{worker:#}");
    assert_eq!(worker["heal"], false, "{worker:#}");
    // …but `pacer apply` is a human asking: it puts Git back.
    let out = cli(&w, "apply", &["--app", "worker", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("Nothing to apply"), "{out:?}");
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["mem"], 128, "{app:#}");

    // Changed by hand again, then a commit changes the app: the plan is an
    // update that says it also reverts the hand edit.
    by_hand(&w, "/dev/worker", json!({"mem": 256})).await;
    w.git.repo.edit(WORKER, "  instances: 1", "  instances: 2");
    let commit = w.git.repo.commit("dev worker: two instances");
    let (code, plan) = plan_json(&w);
    assert_eq!(code, 2, "{plan:#}");
    let worker = step(&plan, "/dev/worker");
    assert_eq!(worker["action"], "update", "{worker:#}");
    assert_eq!(
        worker["changed"],
        json!(["/instances", "/mem"]),
        "{worker:#}"
    );
    assert_eq!(worker["reverts"], json!(["/mem"]), "{worker:#}");
    let text = cli(&w, "plan", &[]);
    assert!(
        text.stdout
            .contains("also reverts what was changed by hand in Marathon: /mem"),
        "{text:?}"
    );
    // Read from live to desired, as `kubectl diff` reads.
    let at = |line: &str| {
        text.stdout
            .find(line)
            .unwrap_or_else(|| panic!("no {line:?} in {text:?}"))
    };
    assert!(at("--- live") < at("+++ desired"), "{text:?}");
    assert!(
        at("-  \"instances\": 1,") < at("+  \"instances\": 2,"),
        "{text:?}"
    );
    assert!(at("-  \"mem\": 256") < at("+  \"mem\": 128"), "{text:?}");
    let out = cli(&w, "apply", &["--app", "worker", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    let app = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(app["instances"], 2, "{app:#}");
    assert_eq!(app["mem"], 128, "{app:#}");
    assert_eq!(app["labels"]["pacer.commit"], commit.as_str(), "{app:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_deploys_a_commit_to_a_hand_edited_app() {
    let w = World::new().await;
    self_heal_off(&w);
    w.git.commit_push("dev: report drift");
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    by_hand(&w, "/dev/worker", json!({"mem": 256})).await;
    wait_until("the worker to show as drifted", LIMIT, || async {
        let s = d.status().await;
        let worker = &s["environments"]["dev"]["apps"]["worker"];
        if worker["sync"] == "drifted" {
            Ok(())
        } else {
            Err(format!("{worker:#}"))
        }
    })
    .await;
    assert_eq!(
        w.sim.accepted_puts("/dev/worker").await,
        2,
        "create + by hand"
    );

    w.git.repo.edit(WORKER, "  instances: 1", "  instances: 2");
    let commit = w.git.commit_push("dev worker: two instances");
    wait_until("the commit to reach the worker", LIMIT, || async {
        let app = w.sim.app("/dev/worker").await.unwrap_or_default();
        let idle = app["deployments"].as_array().is_some_and(Vec::is_empty);
        if idle
            && app["labels"]["pacer.commit"] == commit.as_str()
            && app["instances"] == 2
            && app["mem"] == 128
        {
            Ok(())
        } else {
            Err(format!("{app:#}\n--- daemon log\n{}", d.proc.log_tail()))
        }
    })
    .await;
    let log = std::fs::read_to_string(&d.proc.log).unwrap();
    assert!(
        log.contains("also putting back what was changed by hand: /mem"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_delete_is_held_for_a_human() {
    let w = World::new().await;
    let mut d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    // Two of dev's three apps: more than the default 20 %.
    w.git.repo.remove("apps/worker");
    w.git.repo.remove("apps/web");
    w.git.commit_push("drop the worker and web");
    let s = wait_until("the deletes to be held", LIMIT, || async {
        let s = d.status().await;
        let dev = &s["environments"]["dev"];
        let held = ["worker", "web"]
            .iter()
            .all(|a| dev["apps"][format!("/dev/{a}")]["sync"] == "held");
        let why = dev["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e.to_string().contains("maxDeleteShare")));
        if held && why {
            Ok(s)
        } else {
            Err(format!("{s:#}\n--- daemon log\n{}", d.proc.log_tail()))
        }
    })
    .await;
    let errors = s["environments"]["dev"]["errors"].to_string();
    assert!(errors.contains("2 of the 3 apps"), "{errors}");
    assert!(errors.contains("--allow-mass-delete"), "{errors}");
    d.proc.kill();
    let deletes = w
        .sim
        .requests()
        .await
        .into_iter()
        .filter(|(m, _, _)| m == "DELETE")
        .count();
    assert_eq!(deletes, 0, "the daemon sent a held delete");
    assert!(w.sim.app("/dev/worker").await.is_some());

    let out = cli(&w, "plan", &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout.contains("delete held: 2 of the 3 apps"),
        "{out:?}"
    );
    // Refused without the flag, and said so.
    let out = cli(&w, "apply", &["--yes"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--allow-mass-delete"), "{out:?}");
    assert!(w.sim.app("/dev/worker").await.is_some());
    assert!(w.sim.app("/dev/web").await.is_some());
    // A human who means it.
    let out = cli(&w, "apply", &["--yes", "--allow-mass-delete"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(w.sim.app("/dev/worker").await.is_none());
    assert!(w.sim.app("/dev/web").await.is_none());
    assert!(w.sim.app("/dev/api").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_changes_nothing_is_not_sent() {
    use pacer::marathon::client::{ClientConfig, MarathonClient};
    use pacer::observe::gather::{self, Caches};
    use pacer::render::Scope;
    use pacer::source::RepoLocation;
    use std::sync::Arc;

    let w = World::new().await;
    let out = cli(&w, "apply", &["--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_idle(&w).await;
    w.git.repo.edit(WORKER, "  cpus: 0.1", "  cpus: 0.2");
    w.git.repo.commit("dev worker: more cpu");

    // Planned now, carried out after the change has landed another way
    // (a daemon acting on a snapshot taken before its last deployment
    // ended): the plan's write changes nothing any more.
    let loc = RepoLocation::discover(w.git.repo.path()).unwrap();
    let desired = pacer::render::render_keyed(
        Arc::new(loc.working_tree().unwrap()),
        &Scope::default(),
        &Default::default(),
        None,
        &crate::util::demo_keys(),
    )
    .unwrap()
    .envs
    .remove("dev")
    .unwrap();
    let client = MarathonClient::new(ClientConfig {
        url: w.sim.url.clone(),
        ..ClientConfig::default()
    })
    .unwrap();
    let observed = gather::observe(&client, Some(&loc), &desired, &mut Caches::default())
        .await
        .unwrap();
    let plan = pacer::plan::plan(&desired, &observed, &Default::default());
    assert_eq!(
        step(&serde_json::to_value(&plan).unwrap(), "/dev/worker")["action"],
        "update"
    );
    let out = cli(&w, "apply", &["--app", "worker", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_idle(&w).await;
    let puts = w.sim.accepted_puts("/dev/worker").await;
    assert_eq!(puts, 2, "create + the change");

    let results = pacer::apply::apply(
        &client,
        &plan,
        &desired,
        &observed,
        &pacer::apply::Options::default(),
        Arc::new(pacer::apply::LogProgress),
    )
    .await;
    assert!(
        results.iter().all(|r| r.id != "/dev/worker"),
        "a no-op write was recorded: {results:?}"
    );
    let requests = w.sim.requests().await;
    let writes = requests
        .iter()
        .filter(|(m, p, _)| m != "GET" && p.starts_with("/v2/apps/dev/worker"))
        .count();
    assert_eq!(writes, 2, "a no-op write was sent: {requests:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_shows_the_tasks_of_a_slow_rollout() {
    let w = World::new().await;
    let (s, v) = w
        .sim
        .put(
            "/_sim/settings",
            json!({"taskStartDelayMs": 1500, "taskHealthyDelayMs": 20}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Polled every quarter second (no event stream to wait on): several
    // reads while the task is staged.
    let out = cli(
        &w,
        "apply",
        &["--app", "worker", "--yes", "--marathon-events", "false"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    // A create is two steps; the worker has health checks: healthy,
    // running and staged against its one instance, while it starts.
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("step 2 of 2: 0/1 healthy, 0 running, 1 staged")),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_credits_only_what_pacer_wrote() {
    let w = World::new().await;
    let first = crate::util::run_git(w.git.repo.path(), &["rev-parse", "HEAD"]);
    let out = cli(&w, "apply", &["--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_idle(&w).await;
    // A hand-made version: Marathon keeps pacer's labels.
    by_hand(&w, "/dev/worker", json!({"mem": 256})).await;
    let hand = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(hand["labels"]["pacer.commit"], first.as_str());
    // A scale commit that never reaches Marathon.
    w.git.repo.edit(WORKER, "  instances: 1", "  instances: 3");
    let scale = w.git.repo.commit("dev worker: three instances");

    let h = w.history_json("worker");
    let entries = h.as_array().unwrap();
    let by_version = |v: &Value| {
        entries
            .iter()
            .find(|e| e["version"] == *v)
            .unwrap_or_else(|| panic!("no entry for version {v}: {h:#}"))
    };
    let made_by_hand = by_version(&hand["version"]);
    assert_eq!(made_by_hand["commit"], "(not deployed by pacer)", "{h:#}");
    assert_eq!(made_by_hand["outcome"], "manual", "{h:#}");
    assert!(made_by_hand.get("author").is_none(), "{h:#}");
    let pending = entries
        .iter()
        .find(|e| e["commit"] == scale.as_str())
        .unwrap_or_else(|| panic!("no entry for {scale}: {h:#}"));
    assert_eq!(pending["outcome"], "notDeployed", "{h:#}");
    assert!(pending.get("appliedAt").is_none(), "{h:#}");
    let deployed = entries
        .iter()
        .find(|e| e["commit"] == first.as_str())
        .unwrap_or_else(|| panic!("no entry for {first}: {h:#}"));
    assert_eq!(deployed["outcome"], "succeeded", "{h:#}");
    assert!(deployed["version"].is_string(), "{h:#}");
    // A version from before pacer wrote the digest (pacer's definition and
    // labels, no `pacer.digest`) is credited by its labels, as it was; it
    // puts back a hand edit, which is no rollback.
    let mut labels = hand["labels"].clone();
    labels.as_object_mut().unwrap().remove("pacer.digest");
    by_hand(&w, "/dev/worker", json!({"mem": 128, "labels": labels})).await;
    let legacy = w.sim.app("/dev/worker").await.unwrap();
    assert!(legacy["labels"].get("pacer.digest").is_none(), "{legacy:#}");
    let h = w.history_json("worker");
    let entries = h.as_array().unwrap();
    let old = entries
        .iter()
        .find(|e| e["version"] == legacy["version"])
        .unwrap_or_else(|| panic!("no entry for the legacy version: {h:#}"));
    assert_eq!(old["commit"], first.as_str(), "{h:#}");
    assert_eq!(old["outcome"], "succeeded", "{h:#}");
    // One spelling: camelCase keys and values.
    let camel = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_alphanumeric())
    };
    for e in entries {
        for (k, v) in e.as_object().unwrap() {
            assert!(camel(k), "{k}: {h:#}");
            if k == "outcome" {
                assert!(camel(v.as_str().unwrap()), "{v}: {h:#}");
            }
        }
    }
    // Errors in JSON are objects.
    let out = pacer(&[
        "history",
        "--repo",
        w.git.repo.path_str(),
        "--marathon",
        &w.sim.url,
        "--env",
        "nowhere",
        "--app",
        "worker",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    let err: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let message = err["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("unknown environment `nowhere`"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_credits_a_scale_to_the_commit_that_asked_for_it() {
    let w = World::new().await;
    let out = cli(&w, "apply", &["--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_idle(&w).await;
    // pacer scales the worker for a commit…
    w.git.repo.edit(WORKER, "  instances: 1", "  instances: 2");
    let scale = w.git.repo.commit("dev worker: two instances");
    let out = cli(&w, "apply", &["--app", "worker", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("update (scale)"), "{out:?}");
    wait_idle(&w).await;
    let scaled = w.sim.app("/dev/worker").await.unwrap();
    // …a commit touches the worker's files without changing it…
    w.git.repo.edit(
        WORKER,
        "# dev: a single, small worker.",
        "# dev: a small worker.",
    );
    let comment = w.git.repo.commit("dev worker: comment");
    // …and someone scales it by hand.
    by_hand(&w, "/dev/worker", json!({"instances": 3})).await;
    let by_hand_scale = w.sim.app("/dev/worker").await.unwrap();

    let h = w.history_json("worker");
    let entry = |key: &str, v: &Value| {
        h.as_array()
            .unwrap()
            .iter()
            .find(|e| e[key] == *v)
            .unwrap_or_else(|| panic!("no entry with {key} {v}: {h:#}"))
            .clone()
    };
    let e = entry("version", &scaled["version"]);
    assert_eq!(e["commit"], scale.as_str(), "{h:#}");
    assert_eq!(e["outcome"], "scaled", "{h:#}");
    let e = entry("version", &by_hand_scale["version"]);
    assert_eq!(e["commit"], "(not deployed by pacer)", "{h:#}");
    assert_eq!(e["outcome"], "manual", "{h:#}");
    let e = entry("commit", &json!(comment));
    assert_eq!(e["outcome"], "unchanged", "{h:#}");
    assert!(e.get("version").is_none(), "{h:#}");
}
