//! `pacer serve` against hostile input: a template that never ends, a first
//! commit that doesn't load, a rewind undone, a Marathon outage behind a
//! URL with credentials, and slow HTTP clients (the daemon's and the
//! simulator's listeners).

use crate::util::harness::{Daemon, Sim, World, wait_until};
use crate::util::run_git;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// The status once `pred` holds for it.
async fn wait_status(d: &Daemon, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
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

fn log(d: &Daemon) -> String {
    std::fs::read_to_string(&d.proc.log).unwrap_or_default()
}

/// Gives the dev worker an env var: a redeploy.
fn set_worker_env(w: &World, value: &str) {
    let path = "apps/worker/env/dev.yaml";
    let text = w.git.repo.read(path);
    let text = match text.find("    FEATURE_E2E:") {
        Some(start) => {
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

/// Nested `range` loops: without a budget in the template engine, this
/// render never ends.
const NEVER_ENDS: &str = "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}{% endfor %}{% endfor %}{% endfor %}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_that_never_ends_does_not_wedge_the_daemon() {
    let w = World::new().await;
    let mut d = w.serve(1, 60, &["--render-timeout", "3"]);
    d.wait_all("dev", "inSync", LIMIT).await;

    let conf = w.git.repo.read("apps/web/files/nginx.conf");
    w.git
        .repo
        .write("apps/web/files/nginx.conf", &format!("{NEVER_ENDS}{conf}"));
    let hostile = w.git.commit_push("web: a template that never ends");
    let s = wait_status(&d, "web invalid past the render deadline", |s| {
        s["repo"]["head"] == hostile.as_str()
            && s["environments"]["dev"]["apps"]["web"]["sync"] == "invalid"
    })
    .await;
    let web = &s["environments"]["dev"]["apps"]["web"];
    // Two guards can stop it: the template's own step budget (render's
    // fuel) or, failing that, the daemon's deadline on the whole render.
    // Either way the app is invalid and the loop goes on.
    let errors = web["errors"].to_string();
    assert!(
        errors.contains("did not finish within 3 s") || errors.contains("more than"),
        "{web:#}"
    );
    let file = web["errors"][0]["file"].as_str().unwrap_or_default();
    assert!(file.starts_with("apps/web"), "{web:#}");
    // The daemon still answers while the render thread spins, and the
    // loop goes on: web stays at its last good version (never pruned).
    assert_eq!(d.get("/healthz").await.0, 200);
    let start = d
        .metric("pacer_reconcile_duration_seconds_count{env=\"dev\"}")
        .await;
    wait_until("two more reconciles", LIMIT, || async {
        let now = d
            .metric("pacer_reconcile_duration_seconds_count{env=\"dev\"}")
            .await;
        if now >= start + 2.0 {
            Ok(())
        } else {
            Err(format!("{now} (from {start})"))
        }
    })
    .await;
    let web = w.sim.app("/dev/web").await.expect("web still in Marathon");
    assert_ne!(web["labels"]["pacer.commit"], hostile.as_str(), "{web:#}");

    // A fix pushed afterwards is fetched, rendered and deployed.
    w.git.repo.write("apps/web/files/nginx.conf", &conf);
    set_worker_env(&w, "after-the-hostile-commit");
    let fix = w
        .git
        .commit_push("web: revert the template; worker: a change");
    wait_status(&d, "the fix picked up and deployed", |s| {
        let apps = &s["environments"]["dev"]["apps"];
        s["repo"]["lastGood"] == fix.as_str()
            && apps["web"]["sync"] == "inSync"
            && apps["worker"]["liveCommit"] == fix.as_str()
            && apps["worker"]["sync"] == "inSync"
    })
    .await;
    let worker = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(worker["env"]["FEATURE_E2E"], "after-the-hostile-commit");

    // Decisions are logged at info; the idle poll only at debug.
    let text = log(&d);
    let short = &fix[..12];
    assert!(
        text.lines()
            .any(|l| l.contains(" INFO ") && l.contains(&format!("picked up commit {short}"))),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains("app invalid")
            && (l.contains("did not finish") || l.contains("more than"))),
        "{text}"
    );
    let polls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("reconciling") && l.contains("trigger=poll"))
        .collect();
    assert!(!polls.is_empty(), "{text}");
    assert!(polls.iter().all(|l| l.contains("DEBUG")), "{polls:#?}");

    // SIGTERM ends it promptly, with the abandoned render still spinning.
    let t = Instant::now();
    assert!(
        d.proc.terminate(Duration::from_secs(8)),
        "pacer serve ignored SIGTERM:\n{}",
        d.proc.log_tail()
    );
    assert!(t.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_commit_that_does_not_load_says_what_and_where() {
    let w = World::new().await;
    w.git.repo.edit(
        "pacer.yaml",
        "    group: /dev\n",
        "    group: /dev\n    bogus: [\n",
    );
    let broken = w.git.commit_push("break pacer.yaml");
    let d = w.serve(1, 60, &[]);
    let s = wait_status(&d, "the broken first commit in the status", |s| {
        s["repo"]["head"] == broken.as_str() && s["repo"]["errors"].is_array()
    })
    .await;
    let first = &s["repo"]["errors"][0];
    assert_eq!(first["file"], "pacer.yaml", "{s:#}");
    assert!(first["line"].as_u64().is_some(), "{s:#}");
    assert!(first["message"].is_string(), "{s:#}");
    let (code, v) = d.get("/readyz").await;
    assert_eq!(code, 503);
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "commit {} does not load: pacer.yaml:",
            &broken[..12]
        )),
        "{v}"
    );
    assert!(!reason.contains("Marathon"), "{v}");
    assert_eq!(
        d.metric("pacer_repo_loaded").await,
        0.0,
        "{}",
        d.metrics().await
    );
    let text = log(&d);
    assert!(
        text.lines()
            .any(|l| l.contains("commit refused") && l.contains("pacer.yaml:")),
        "{text}"
    );

    // The fix loads, and the daemon becomes ready.
    run_git(w.git.repo.path(), &["revert", "--no-edit", "HEAD"]);
    w.git.push(false);
    d.wait_all("dev", "inSync", LIMIT).await;
    wait_until("ready", LIMIT, || async {
        let (code, v) = d.get("/readyz").await;
        if code == 200 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let s = d.status().await;
    assert!(s["repo"].get("errors").is_none(), "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_error_clears_when_the_force_push_is_undone() {
    let w = World::new().await;
    let d = w.serve(1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    set_worker_env(&w, "b");
    let b = w.git.commit_push("B");
    wait_status(&d, "B deployed", |s| {
        s["environments"]["dev"]["apps"]["worker"]["liveCommit"] == b.as_str()
    })
    .await;

    run_git(w.git.repo.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    w.git.push(true);
    wait_status(&d, "the rewind refused", |s| {
        s["environments"]["dev"]["errors"]
            .to_string()
            .contains("refusing to rewind")
    })
    .await;

    // Undo the force-push: B is the head again, no new commit.
    run_git(w.git.repo.path(), &["reset", "-q", "--hard", &b]);
    w.git.push(true);
    let s = wait_status(&d, "the rewind error gone", |s| {
        s["repo"]["head"] == b.as_str()
            && s["environments"]["dev"].get("errors").is_none()
            && s["repo"].get("errors").is_none()
    })
    .await;
    assert_eq!(s["environments"]["dev"]["apps"]["worker"]["sync"], "inSync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marathon_outage_shows_unknown_and_never_the_credentials() {
    let w = World::new().await;
    // The simulator takes any credentials; the daemon must never print them.
    let marathon = w.sim.url.replacen("http://", "http://admin:hunter2pw@", 1);
    let d = w.serve_to(&w.git.url(), &marathon, 1, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    assert_eq!(d.metric("pacer_marathon_up{env=\"dev\"}").await, 1.0);

    let (st, _) = w.sim.post("/_sim/down", json!({})).await;
    assert_eq!(st, 200);
    let s = d.wait_all("dev", "unknown", LIMIT).await;
    let errors = &s["environments"]["dev"]["errors"];
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("is not answering"),
        "{s:#}"
    );
    let (code, ready) = d.get("/readyz").await;
    assert_eq!(code, 503, "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .contains("is not answering"),
        "{ready}"
    );
    assert_eq!(d.metric("pacer_marathon_up{env=\"dev\"}").await, 0.0);
    assert!(
        d.metric("pacer_apps{env=\"dev\",status=\"unknown\"}").await >= 3.0,
        "{}",
        d.metrics().await
    );
    for text in [s.to_string(), ready.to_string(), d.metrics().await, log(&d)] {
        assert!(!text.contains("hunter2pw"), "a credential leaked:\n{text}");
    }
    assert!(s.to_string().contains("http://***@127.0.0.1"), "{s:#}");

    w.sim.post("/_sim/up", json!({})).await;
    d.wait_all("dev", "inSync", LIMIT).await;
    wait_until("ready again", LIMIT, || async {
        let (code, v) = d.get("/readyz").await;
        if code == 200 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    assert!(!log(&d).contains("hunter2pw"));
}

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Opens `n` connections to `addr` that each send half a request head.
fn slow_clients(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .ok()?;
            s.set_read_timeout(Some(Duration::from_millis(50))).ok()?;
            Some(s)
        })
        .collect()
}

/// Whether the server closed `s` (EOF or reset); false while it is open.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => true,
        // A 408 answer, then the close.
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// `n` slow clients against the server of `pid` at `addr`, capped at `cap`
/// connections with a 1 s header timeout: the fd count stays bounded, every
/// slow client is closed in time, and a real request is still served.
async fn slow_clients_stay_bounded(pid: u32, addr: &str, path: &str, cap: usize, n: usize) {
    let before = fds(pid);
    let mut clients = slow_clients(addr, n);
    assert_eq!(clients.len(), n);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut peak = 0;
    let mut open: Vec<usize> = (0..n).collect();
    while !open.is_empty() {
        peak = peak.max(fds(pid));
        assert!(
            Instant::now() < deadline,
            "{} of {n} slow clients still open after 30 s",
            open.len()
        );
        open.retain(|&i| !closed(&mut clients[i]));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        peak <= before + cap + 8,
        "{peak} descriptors open with {cap} connections allowed (from {before})"
    );
    let url = format!("http://{addr}{path}");
    let resp = reqwest::get(&url).await.expect("a request after the flood");
    assert_eq!(resp.status().as_u16(), 200, "{url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_clients_are_cut_and_capped_on_the_daemon() {
    let w = World::new().await;
    let d = w.serve(1, 60, &["--max-connections", "16", "--header-timeout", "1"]);
    d.wait_all("dev", "inSync", LIMIT).await;
    let pid = d.proc.pid().unwrap();
    let addr = d.url.trim_start_matches("http://").to_string();
    slow_clients_stay_bounded(pid, &addr, "/healthz", 16, 120).await;
    // The loop went on meanwhile: a commit still arrives.
    set_worker_env(&w, "after-the-flood");
    let c = w.git.commit_push("after the flood");
    wait_status(&d, "the commit after the flood deployed", |s| {
        s["environments"]["dev"]["apps"]["worker"]["liveCommit"] == c.as_str()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_clients_are_cut_and_capped_on_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start_with_args(
        dir.path(),
        &["--max-connections", "16", "--header-timeout", "1"],
    )
    .await;
    let pid = sim.proc.pid().unwrap();
    let addr = sim.url.trim_start_matches("http://").to_string();
    slow_clients_stay_bounded(pid, &addr, "/v2/apps", 16, 120).await;
    let (code, _) = sim.get("/v2/apps").await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_daemon_that_cannot_open_its_mirror() {
    let w = World::new().await;
    // A file where the mirror should go: opening it fails, and the daemon
    // retries every 5 s (the long poll), so SIGTERM lands in that pause.
    std::fs::write(w.scratch.path().join("mirror"), "not a directory").unwrap();
    let mut d = w.serve(30, 60, &[]);
    wait_until("the fetch failure reported", LIMIT, || async {
        let (code, v) = d.get("/readyz").await;
        let reason = v["reason"].as_str().unwrap_or_default().to_string();
        if code == 503 && reason.contains("could not be fetched") {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    assert!(
        d.proc.terminate(Duration::from_secs(8)),
        "pacer serve ignored SIGTERM:\n{}",
        d.proc.log_tail()
    );
    assert!(!log(&d).contains("panicked"), "{}", log(&d));
}
