//! Sealed secrets through a whole run: `pacer serve` on prod (its files
//! sealed for the demo key the daemon holds), `pacer apply`, a task of the
//! owning app logging in. The plaintext reaches that task's file and
//! nothing else: not the daemon's log, its status or metrics, Marathon's
//! apps, `plan`, `history` or `status`.

use crate::delivery::{Agent, tasks};
use crate::util::harness::{ADMIN_TOKEN, wait_until};
use crate::util::pacer;
use serde_json::json;
use std::time::Duration;

/// The plaintexts of prod's sealed `secrets` (examples/environments/prod.yaml
/// and apps/api/env/prod.yaml), as `sops -d` shows them with the demo key.
const PLAINTEXTS: [&str; 2] = ["prod-placeholder-use-encrypted-secrets", "9f8e7d6c5b4a"];

fn assert_clean(what: &str, text: &str) {
    for p in PLAINTEXTS {
        assert!(!text.contains(p), "{what} shows a secret:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_secret_reaches_its_task_and_nothing_else() {
    let w = crate::util::harness::World::new().await;
    let (s, v) = w
        .sim
        .put("/_sim/settings", json!({"taskHosts": "loopback"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut args = w.serve_args(&w.git.url(), &w.sim.url, 1, 60, "mirror-prod");
    args.extend([
        "--env".into(),
        "prod".into(),
        "--task-recheck".into(),
        "1".into(),
    ]);
    let d = crate::util::harness::Daemon::start(w.scratch.path(), &args);
    // prod is not applied on its own (autoApply: false): a human applies.
    wait_until("prod planned", Duration::from_secs(30), || async {
        let s = d.status().await;
        match s["environments"]["prod"]["apps"]["api"]["sync"].as_str() {
            Some("missing") => Ok(()),
            _ => Err(format!("{s:#}")),
        }
    })
    .await;
    let repo = w.git.repo.path_str();
    // `pacer CMD` on prod against the simulator, and what it printed.
    let on_prod = |cmd: &str, extra: &[&str]| {
        let mut args = vec![
            cmd,
            "--repo",
            repo,
            "--env",
            "prod",
            "--marathon",
            &w.sim.url,
        ];
        args.extend_from_slice(extra);
        pacer(&args)
    };
    let plan = on_prod("plan", &[]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert_clean("plan", &format!("{}{}", plan.stdout, plan.stderr));
    let apply = on_prod("apply", &["--yes"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_clean("apply", &format!("{}{}", apply.stdout, apply.stderr));
    d.wait_all("prod", "inSync", Duration::from_secs(60)).await;

    // The owning app's task gets the plaintext in its file.
    let api = tasks(&w, "/prod/api", 1).await;
    let (task, host) = api[0].clone();
    let agent = Agent::on(&host, &d);
    let token = agent.token(&task, "/prod/api").await;
    let (s, file) = agent.get("/v1/config/files/application.yaml", &token).await;
    assert_eq!(s, 200, "{file}");
    assert!(
        file.to_string().contains(PLAINTEXTS[0]),
        "the owning task must get its secret: {file}"
    );

    // Nothing else shows it.
    let status = d.status().await;
    assert_eq!(status.get("redacted"), None, "the full status: {status}");
    assert_clean("the status", &status.to_string());
    assert_clean("/metrics", &d.metrics().await);
    let (_, apps) = w.sim.get("/v2/apps?embed=apps.tasks").await;
    assert_clean("Marathon's apps", &apps.to_string());
    let history = on_prod("history", &["--app", "api", "--format", "json"]);
    assert_eq!(history.code, 0, "{history:?}");
    assert_clean("history", &format!("{}{}", history.stdout, history.stderr));
    let mut cmd = std::process::Command::new(crate::util::PACER);
    let out = cmd
        .args(["status", "--daemon", &d.url, "--format", "json"])
        .env("PACER_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_clean("pacer status", &String::from_utf8_lossy(&out.stdout));
    let log = std::fs::read_to_string(&d.proc.log).unwrap();
    assert!(log.contains("prod"), "the daemon logged at debug");
    assert_clean("the daemon's log", &log);
}
