//! The set-up and waits the daemon's fault tests share: the example repo
//! and the simulator with `pacer serve` on dev, all in sync, then changes to
//! the dev worker and waits on what Marathon, the status, the metrics and
//! the daemon's log show. Each wait has a deadline ([`LIMIT`]) and prints
//! what it saw (and the daemon's log) when it runs out.

use super::harness::{Daemon, World, wait_until};
use serde_json::Value;
use std::time::Duration;

/// How long any one wait of a fault test may take.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A fresh repo and simulator, and `pacer serve` on dev (1 s poll,
/// `deploy_timeout` seconds per deployment) once every app is in sync.
/// Returns the world, the daemon and the head it synced.
pub async fn start(deploy_timeout: u64) -> (World, Daemon, String) {
    start_in(World::new().await, deploy_timeout, &[]).await
}

/// Like [`start`], in a world set up by the caller (faults injected first,
/// a simulator that keeps its state), with `extra` flags.
pub async fn start_in(w: World, deploy_timeout: u64, extra: &[&str]) -> (World, Daemon, String) {
    let d = w.serve(1, deploy_timeout, extra);
    let s = d.wait_all("dev", "inSync", LIMIT).await;
    let head = s["repo"]["head"].as_str().unwrap().to_string();
    (w, d, head)
}

/// Gives the worker's dev overlay an env var: a config change (redeploy).
pub fn change_worker(w: &World, value: &str) {
    let path = "apps/worker/env/dev.yaml";
    let text = w.git.repo.read(path);
    let text = match text.find("\n  env:\n") {
        Some(_) => {
            let start = text.find("    FEATURE_E2E:").expect("the var set before");
            let end = start + text[start..].find('\n').unwrap();
            format!(
                "{}    FEATURE_E2E: \"{value}\"{}",
                &text[..start],
                &text[end..]
            )
        }
        None => text.replacen(
            "marathon:\n",
            &format!("marathon:\n  env:\n    FEATURE_E2E: \"{value}\"\n"),
            1,
        ),
    };
    w.git.repo.write(path, &text);
}

/// [`change_worker`], committed and pushed: returns the commit.
pub fn push_worker(w: &World, value: &str, message: &str) -> String {
    change_worker(w, value);
    w.git.commit_push(message)
}

/// The app in Marathon once it runs `commit` with no deployment in flight.
pub async fn wait_live(w: &World, d: &Daemon, id: &str, commit: &str) -> Value {
    wait_until(&format!("{id} at {commit}"), LIMIT, || async {
        let app = w.sim.app(id).await.unwrap_or_default();
        let idle = app["deployments"].as_array().is_some_and(Vec::is_empty);
        if app["labels"]["pacer.commit"] == commit && idle {
            Ok(app)
        } else {
            Err(format!("{app:#}\n--- daemon log\n{}", d.proc.log_tail()))
        }
    })
    .await
}

/// Waits until Marathon runs a deployment of `id` at `commit`.
pub async fn wait_deploying(w: &World, id: &str, commit: &str) {
    wait_until(
        &format!("{id}'s deployment of {commit} to start"),
        LIMIT,
        || async {
            let app = w.sim.app(id).await.unwrap_or_default();
            let running = app["deployments"].as_array().is_some_and(|a| !a.is_empty());
            if app["labels"]["pacer.commit"] == commit && running {
                Ok(())
            } else {
                Err(format!("{app:#}"))
            }
        },
    )
    .await;
}

/// The status once `app` of dev satisfies `pred`.
pub async fn wait_app(d: &Daemon, app: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_status(d, what, |s| pred(&s["environments"]["dev"]["apps"][app])).await
}

/// The status once it satisfies `pred`.
pub async fn wait_status(d: &Daemon, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, LIMIT, || async {
        let s = d.status().await;
        if pred(&s) {
            Ok(s)
        } else {
            Err(format!("{s:#}\n--- daemon log\n{}", d.proc.log_tail()))
        }
    })
    .await
}

/// The status once dev's errors mention `text`.
pub async fn wait_env_error(d: &Daemon, what: &str, text: &str) -> Value {
    wait_status(d, what, |s| {
        s["environments"]["dev"]["errors"]
            .to_string()
            .contains(text)
    })
    .await
}

/// Waits until the daemon's log has `text`.
pub async fn wait_log(d: &Daemon, what: &str, text: &str) {
    wait_until(what, LIMIT, || async {
        let log = std::fs::read_to_string(&d.proc.log).unwrap_or_default();
        if log.contains(text) {
            Ok(())
        } else {
            Err(d.proc.log_tail())
        }
    })
    .await;
}

/// The number of dev reconciles so far (the duration histogram's count).
pub async fn cycles(d: &Daemon) -> f64 {
    d.metric("pacer_reconcile_duration_seconds_count{env=\"dev\"}")
        .await
}

/// Waits until the daemon has reconciled dev `n` more times.
pub async fn wait_cycles(d: &Daemon, n: f64) {
    let start = cycles(d).await;
    wait_until(&format!("{n} more reconciles"), LIMIT, || async {
        let now = cycles(d).await;
        if now >= start + n {
            Ok(())
        } else {
            Err(format!("{now} (from {start})"))
        }
    })
    .await;
}

/// The requests Marathon was sent other than reads.
pub async fn writes(w: &World) -> Vec<(String, String, u16)> {
    w.sim
        .requests()
        .await
        .into_iter()
        .filter(|(m, _, _)| m != "GET")
        .collect()
}
