//! Live endpoints, end to end with the real daemon, simulator and agent:
//! web's nginx.conf names db's tasks through `addresses("db", port="pg")`.
//! A db task that moves reaches web's file and its process (SIGHUP) with no
//! deployment of web; a db scaled to 0 is held back, with the reason in the
//! status and the log, until an operator releases it; a rolling restart of
//! 10 tasks gives a few renders that end on exactly the new tasks; a broken
//! event stream and a leader that steps down mid-change still converge.

use crate::agent::{AgentProc, agent};
use crate::delivery::{serve, tasks, world};
use crate::util::harness::{Daemon, SECRET, World, metric_value, wait_until};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DB: &str = "marathon:
  cmd: sleep 1000000
  cpus: 0.1
  mem: 32
  instances: 1
  portDefinitions:
    - port: 0
      name: pg
";

/// Adds db (`instances` of it) and makes web's config name its tasks.
fn with_db(w: &World, instances: u32) -> String {
    w.git.repo.write(
        "apps/db/app.yaml",
        &DB.replace("instances: 1", &format!("instances: {instances}")),
    );
    let conf = w.git.repo.read("apps/web/files/nginx.conf");
    w.git.repo.write(
        "apps/web/files/nginx.conf",
        &format!("# db: {{{{ addresses(\"db\", port=\"pg\")|join(\",\") }}}}\n{conf}"),
    );
    w.git.commit_push("web names db's live endpoints")
}

/// db's running tasks as `host:port` (the pg port), sorted.
async fn db_addresses(w: &World) -> Vec<String> {
    let (_, v) = w.sim.get("/v2/apps/dev/db/tasks").await;
    let mut out: Vec<String> = v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .map(|t| format!("{}:{}", t["host"].as_str().unwrap(), t["ports"][0]))
        .collect();
    out.sort();
    out
}

struct Web {
    conf: PathBuf,
    hups: PathBuf,
    log: PathBuf,
    _agent: AgentProc,
}

impl Web {
    fn db_line(&self) -> String {
        std::fs::read_to_string(&self.conf)
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("# db: ")
            .to_string()
    }

    fn hups(&self) -> usize {
        std::fs::read_to_string(&self.hups)
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Waits until web's file names exactly `want`.
    async fn names(&self, want: &[String], limit: Duration) -> Duration {
        let started = Instant::now();
        let want = want.join(",");
        wait_until(&format!("web's file to name {want}"), limit, || async {
            let line = self.db_line();
            if line == want {
                Ok(started.elapsed())
            } else {
                Err(format!(
                    "it names {line:?}\n--- agent\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ))
            }
        })
        .await
    }
}

/// web's agent, running a child that counts its SIGHUPs.
async fn web_agent(w: &World, d: &Daemon) -> Web {
    let web = tasks(w, "/dev/web", 1).await;
    let root = w.scratch.path().join("web-task");
    std::fs::create_dir_all(&root).unwrap();
    let hups = root.join("hups");
    let script = format!(
        "trap 'echo hup >> {hups}' HUP; while kill -0 $PPID 2>/dev/null; do sleep 0.05; done",
        hups = hups.display()
    );
    let log = w.scratch.path().join("agent-web.log");
    let a = AgentProc(
        agent(&d.url, &web[0], "/dev/web", &root, &log)
            .args(["--", "sh", "-c", &script])
            .spawn()
            .unwrap(),
    );
    Web {
        conf: root.join("etc/nginx/nginx.conf"),
        hups,
        log,
        _agent: a,
    }
}

async fn fail_task(w: &World, addr: &str) {
    let id = task_at(w, addr).await;
    fail(w, &id).await;
}

async fn fail(w: &World, id: &str) {
    let (s, v) = w
        .sim
        .post(&format!("/_sim/tasks/{id}/fail"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
}

async fn task_at(w: &World, addr: &str) -> String {
    let (_, v) = w.sim.get("/v2/apps/dev/db/tasks").await;
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| format!("{}:{}", t["host"].as_str().unwrap(), t["ports"][0]) == addr)
        .map(|t| t["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no task at {addr}: {v}"))
}

/// `pacer serve` with these flags once everything runs, web's agent, and
/// db's addresses once web's file names them.
async fn started(w: &World, extra: &[&str]) -> (Daemon, Web, Vec<String>) {
    let d = serve(w, extra);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = web_agent(w, &d).await;
    let db = db_addresses(w).await;
    web.names(&db, Duration::from_secs(20)).await;
    (d, web, db)
}

fn service<'a>(s: &'a Value, id: &str) -> &'a Value {
    &s["endpoints"]["services"][id]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_task_reaches_the_dependent_file_without_a_deployment_and_an_empty_set_is_held() {
    let w = world().await;
    with_db(&w, 1);
    let (d, web, first) = started(
        &w,
        &[
            "--endpoints-min-wait",
            "200",
            "--endpoints-max-wait",
            "1000",
        ],
    )
    .await;
    assert_eq!(first.len(), 1, "{first:?}");
    let puts = w.sim.accepted_puts("/dev/web").await;

    // db's task dies and comes back on another host and port.
    let hups = web.hups();
    let failed_at = Instant::now();
    fail_task(&w, &first[0]).await;
    let moved = wait_until(
        "db back on a new address",
        Duration::from_secs(20),
        || async {
            let now = db_addresses(&w).await;
            if now.len() == 1 && now != first {
                Ok(now)
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .await;
    web.names(&moved, Duration::from_secs(20)).await;
    let took = failed_at.elapsed();
    eprintln!("the move reached web's file {took:?} after the task failed");
    // The max wait (1 s) plus 1 s, and the simulator's task start (0 here).
    assert!(took < Duration::from_secs(2), "{took:?}");
    wait_until("web's SIGHUP", Duration::from_secs(5), || async {
        if web.hups() > hups {
            Ok(())
        } else {
            Err("no SIGHUP".to_string())
        }
    })
    .await;
    assert_eq!(
        w.sim.accepted_puts("/dev/web").await,
        puts,
        "no deployment of web"
    );
    let m = d.metrics().await;
    assert!(
        metric_value(&m, "pacer_endpoint_renders_total") >= 1.0,
        "{m}"
    );

    // db scaled to 0 through Git: the set is held, web keeps its file.
    w.git
        .repo
        .edit("apps/db/app.yaml", "instances: 1", "instances: 0");
    let c = w.git.commit_push("db: scale to 0");
    let (s, v) = d.github_push(&c, SECRET).await;
    assert_eq!(s, 202, "{v}");
    let held = wait_until("db held", Duration::from_secs(20), || async {
        let s = d.status().await;
        let db = service(&s, "/dev/db").clone();
        if db["held"]["reason"].is_string() {
            Ok(db)
        } else {
            Err(format!("{s:#}"))
        }
    })
    .await;
    assert!(
        held["held"]["reason"]
            .as_str()
            .unwrap()
            .contains("no running, healthy task left"),
        "{held:#}"
    );
    assert_eq!(held["tasks"], 1, "web still sees one task: {held:#}");
    assert_eq!(held["pendingTasks"], 0, "{held:#}");
    assert!(
        d.proc.log_tail().contains("endpoints held back"),
        "{}",
        d.proc.log_tail()
    );
    assert_eq!(d.metric("pacer_endpoints_held").await, 1.0);
    assert_eq!(
        web.db_line(),
        moved.join(","),
        "the last good endpoints stay"
    );

    // An operator lets the empty set through: web's file names no task.
    let (s, v) = d
        .post_json("/api/v1/endpoints/release", json!({"service": "/dev/db"}))
        .await;
    assert_eq!(s, 202, "{v}");
    web.names(&[], Duration::from_secs(20)).await;
    let s = d.status().await;
    assert!(service(&s, "/dev/db")["held"].is_null(), "{s:#}");
    // Releasing what isn't held, or isn't followed, is refused.
    let (s, _) = d
        .post_json("/api/v1/endpoints/release", json!({"service": "/dev/db"}))
        .await;
    assert_eq!(s, 409);
    let (s, _) = d
        .post_json("/api/v1/endpoints/release", json!({"service": "/dev/nope"}))
        .await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_renders_a_few_times_and_ends_on_exactly_the_new_tasks() {
    let w = world().await;
    with_db(&w, 10);
    let (d, web, before) = started(
        &w,
        &[
            "--endpoints-min-wait",
            "300",
            "--endpoints-max-wait",
            "1500",
        ],
    )
    .await;
    assert_eq!(before.len(), 10);
    let renders = d.metric("pacer_endpoint_renders_total").await;
    // Slow enough that the restart takes a few seconds, task by task.
    let (s, v) = w
        .sim
        .put(
            "/_sim/settings",
            json!({"taskStartDelayMs": 150, "taskHealthyDelayMs": 150}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    w.git
        .repo
        .edit("apps/db/app.yaml", "sleep 1000000", "sleep 2000000");
    let c = w.git.commit_push("db: a new command (a rolling restart)");
    let (s, v) = d.github_push(&c, SECRET).await;
    assert_eq!(s, 202, "{v}");
    let after = wait_until("db's 10 new tasks", Duration::from_secs(60), || async {
        let now = db_addresses(&w).await;
        let (_, deps) = w.sim.get("/v2/deployments").await;
        let fresh = now.iter().all(|a| !before.contains(a));
        if now.len() == 10 && fresh && deps.as_array().is_some_and(Vec::is_empty) {
            Ok(now)
        } else {
            Err(format!("{now:?} {deps}"))
        }
    })
    .await;
    web.names(&after, Duration::from_secs(10)).await;
    let n = d.metric("pacer_endpoint_renders_total").await - renders;
    eprintln!("{n} renders of web over the rolling restart");
    assert!((1.0..=5.0).contains(&n), "{n} renders for 10 task moves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_and_a_new_leader_mid_change_still_converge() {
    let w = world().await;
    with_db(&w, 2);
    // No periodic re-sync to fall back on: only the reconnect's re-read.
    let (d, web, first) = started(
        &w,
        &[
            "--endpoints-min-wait",
            "200",
            "--endpoints-max-wait",
            "1000",
            "--endpoints-resync",
            "3600",
        ],
    )
    .await;
    // The stream is connected before the change.
    wait_until("a connected stream", Duration::from_secs(10), || async {
        let s = d.status().await;
        let streams = s["endpoints"]["streams"].clone();
        if streams
            .as_object()
            .is_some_and(|m| m.values().all(|v| v == true) && !m.is_empty())
        {
            Ok(())
        } else {
            Err(format!("{streams}"))
        }
    })
    .await;
    // The leader steps down (every stream breaks), Marathon is down a
    // moment, and a task moves meanwhile: its events are lost.
    let id = task_at(&w, &first[0]).await;
    let (s, _) = w.sim.delete("/v2/leader").await;
    assert_eq!(s, 200);
    let (s, _) = w.sim.post("/_sim/down", json!({})).await;
    assert_eq!(s, 200);
    fail(&w, &id).await;
    wait_until(
        "the stream seen broken",
        Duration::from_secs(10),
        || async {
            let s = d.status().await;
            let streams = s["endpoints"]["streams"].clone();
            if streams
                .as_object()
                .is_some_and(|m| m.values().all(|v| v == false))
            {
                Ok(())
            } else {
                Err(format!("{streams}"))
            }
        },
    )
    .await;
    let (s, _) = w.sim.post("/_sim/up", json!({})).await;
    assert_eq!(s, 200);
    let now = wait_until("db back on two tasks", Duration::from_secs(20), || async {
        let now = db_addresses(&w).await;
        if now.len() == 2 && now != first {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    web.names(&now, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_released_set_outlives_a_restart_and_an_empty_set_found_at_start_is_held() {
    let w = world().await;
    // Drift stays: db scaled down by hand is not put back.
    w.git.repo.edit(
        "pacer.yaml",
        "selfHeal: true       # manual changes in Marathon are reverted",
        "selfHeal: false",
    );
    with_db(&w, 2);
    let (mut d, web, two) = started(&w, &[]).await;
    assert_eq!(two.len(), 2);
    let hups = web.hups();

    // While the daemon is away, db loses every task.
    assert!(
        d.proc.terminate(Duration::from_secs(10)),
        "the daemon stops"
    );
    let (s, v) = w
        .sim
        .put("/v2/apps/dev/db?force=true", json!({"instances": 0}))
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    wait_until("db at 0 tasks", Duration::from_secs(20), || async {
        let now = db_addresses(&w).await;
        if now.is_empty() {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;

    // Back up: web renders with the set kept from before, and the empty
    // set Marathon shows now is held.
    let d = serve(&w, &[]);
    let held = wait_until(
        "db held after the restart",
        Duration::from_secs(30),
        || async {
            let s = d.status().await;
            let db = service(&s, "/dev/db").clone();
            if db["held"]["reason"].is_string() {
                Ok(db)
            } else {
                Err(format!("{s:#}\n{}", d.proc.log_tail()))
            }
        },
    )
    .await;
    assert_eq!(held["tasks"], 2, "{held:#}");
    assert_eq!(web.db_line(), two.join(","), "web keeps the two tasks");
    assert_eq!(web.hups(), hups, "web was not reloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_service_name_makes_only_its_app_invalid_at_file_and_line_and_nothing_served_changes()
{
    let w = world().await;
    with_db(&w, 1);
    let (d, web, one) = started(&w, &[]).await;
    let before = std::fs::read_to_string(&web.conf).unwrap();
    for (bad, want) in [
        ("addresses(\"../prod/db\", port=\"pg\")", "`..`"),
        ("addresses(\"nope\", port=\"pg\")", "nope"),
        ("addresses(\"db\", port=\"pgx\")", "pgx"),
    ] {
        w.git.repo.write(
            "apps/web/files/nginx.conf",
            &before.replacen(
                &format!("# db: {}", one.join(",")),
                &format!("# db: {{{{ {bad}|join(\",\") }}}}"),
                1,
            ),
        );
        let c = w.git.commit_push("web names a service wrongly");
        let (s, v) = d.github_push(&c, SECRET).await;
        assert_eq!(s, 202, "{v}");
        let errors = wait_until("web invalid", Duration::from_secs(20), || async {
            let s = d.status().await;
            let e = s["environments"]["dev"]["apps"]["web"]["errors"].clone();
            let found = e
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["message"].as_str().is_some_and(|m| m.contains(want)))
                .cloned();
            found.ok_or_else(|| format!("{s:#}"))
        })
        .await;
        assert_eq!(errors["file"], "apps/web/files/nginx.conf", "{errors:#}");
        assert_eq!(errors["line"], 1, "{errors:#}");
        assert_eq!(
            std::fs::read_to_string(&web.conf).unwrap(),
            before,
            "the last good file stays"
        );
    }
}
