//! `pacer agent` end to end: the real daemon and simulator (tasks on
//! loopback hosts), the agent sending from its task's host.

use crate::delivery::{DB_PASSWORD, serve, tasks, world};
use crate::util::PACER;
use crate::util::harness::{SECRET, wait_until};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running agent, killed when dropped.
pub struct AgentProc(pub Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `pacer agent` for `task` (id, host) of `app`, sending from its host.
pub fn agent(server: &str, task: &(String, String), app: &str, root: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(PACER);
    for (k, _) in std::env::vars() {
        if k.starts_with("PACER_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["agent", "--server", server, "--root"])
        .arg(root)
        .args(["--source-address", &task.1])
        .env("MESOS_TASK_ID", &task.0)
        .env("MARATHON_APP_ID", app)
        .env("PACER_LOG", "pacer=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_writes_the_files_runs_the_app_and_reloads_it_on_a_hot_change() {
    let w = world().await;
    // A second hot file for web, its name with a slash.
    w.git
        .repo
        .write("apps/web/files/site.conf", "server_name {{ env }};\n");
    w.git.repo.edit(
        "apps/web/app.yaml",
        "files:\n",
        "files:\n  conf.d/site.conf:\n    source: site.conf\n    path: /etc/nginx/conf.d/site.conf\n    reload: hot\n",
    );
    w.git.commit_push("web: a second file");
    // Tokens live 2 s: the agent must renew them to keep watching.
    let d = serve(&w, &["--token-ttl", "2"]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;

    // Once: the api's secret-bearing file, private to the task.
    let api = tasks(&w, "/dev/api", 1).await;
    let api_root = w.scratch.path().join("api-task");
    let log = w.scratch.path().join("agent-api.log");
    let out = agent(&d.url, &api[0], "/dev/api", &api_root, &log)
        .arg("--once")
        .output()
        .unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{log_text}");
    let file = api_root.join("etc/api/application.yaml");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains(DB_PASSWORD)
    );
    assert_eq!(mode(&file), 0o600);
    assert!(!log_text.contains(DB_PASSWORD), "{log_text}");

    // Watching: the app starts after its file is there and gets SIGHUP
    // when the hot file changes.
    let web = tasks(&w, "/dev/web", 1).await;
    let root = w.scratch.path().join("web-task");
    std::fs::create_dir_all(&root).unwrap();
    let conf = root.join("etc/nginx/nginx.conf");
    let hups = root.join("hups");
    let script = format!(
        "test -f {conf} && echo up > {root}/started; trap 'echo hup >> {hups}' HUP; \
         while kill -0 $PPID 2>/dev/null; do sleep 0.05; done",
        conf = conf.display(),
        root = root.display(),
        hups = hups.display()
    );
    let log = w.scratch.path().join("agent-web.log");
    let mut a = AgentProc(
        agent(&d.url, &web[0], "/dev/web", &root, &log)
            .args(["--", "sh", "-c", &script])
            .spawn()
            .unwrap(),
    );
    let started = root.join("started");
    wait_until(
        "the app started with its file",
        Duration::from_secs(20),
        || async {
            if started.exists() {
                Ok(())
            } else {
                Err(std::fs::read_to_string(&log).unwrap_or_default())
            }
        },
    )
    .await;
    assert_eq!(mode(&conf), 0o644);
    let before = std::fs::read_to_string(&conf).unwrap();
    assert!(before.contains("keepalive_timeout 65"));
    let site = root.join("etc/nginx/conf.d/site.conf");
    assert_eq!(
        std::fs::read_to_string(&site).unwrap(),
        "server_name dev;\n"
    );
    let site_written = std::fs::metadata(&site).unwrap().modified().unwrap();

    wait_until(
        "the agent renews its token past its life",
        Duration::from_secs(20),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match text.matches("token renewed").count() {
                n if n >= 5 => Ok(()),
                n => Err(format!("{n} renewals:\n{text}")),
            }
        },
    )
    .await;
    w.git.repo.edit(
        "apps/web/files/nginx.conf",
        "keepalive_timeout 65",
        "keepalive_timeout 66",
    );
    let commit = w.git.commit_push("web: a longer keepalive");
    d.github_push(&commit, SECRET).await;
    wait_until(
        "the new file written and the app told",
        Duration::from_secs(20),
        || async {
            let now = std::fs::read_to_string(&conf).unwrap_or_default();
            let told = std::fs::read_to_string(&hups).unwrap_or_default();
            if now.contains("keepalive_timeout 66") && told.lines().count() == 1 {
                Ok(())
            } else {
                Err(format!(
                    "hups: {told:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        },
    )
    .await;

    assert_eq!(
        std::fs::metadata(&site).unwrap().modified().unwrap(),
        site_written,
        "an unchanged file is left alone"
    );

    // SIGTERM reaches the app; the agent exits with it.
    let _ = Command::new("kill")
        .args(["-TERM", &a.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // A task Marathon stops: its token dies, and the agent stops the app
    // and exits with an error (a refusal is not retried).
    let api = tasks(&w, "/dev/api", 2).await;
    let other = api
        .iter()
        .find(|t| t.0 != api[0].0)
        .expect("a second api task")
        .clone();
    let root = w.scratch.path().join("api-task-2");
    std::fs::create_dir_all(&root).unwrap();
    let pid_file = root.join("pid");
    let script = format!(
        // Bounded, and blind to its parent: only the agent's SIGTERM ends it early.
        "echo $$ > {pid}; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done",
        pid = pid_file.display()
    );
    let log = w.scratch.path().join("agent-api-2.log");
    let mut a = AgentProc(
        agent(&d.url, &other, "/dev/api", &root, &log)
            .args(["--", "sh", "-c", &script])
            .spawn()
            .unwrap(),
    );
    let pid = wait_until("the app started", Duration::from_secs(20), || async {
        match std::fs::read_to_string(&pid_file) {
            Ok(p) if p.ends_with('\n') => Ok(p.trim().to_string()),
            _ => Err(std::fs::read_to_string(&log).unwrap_or_default()),
        }
    })
    .await;
    let (s, v) = w
        .sim
        .post(
            &format!("/_sim/tasks/{}/kill", other.0),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the agent went on: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let alive = Command::new("kill").args(["-0", &pid]).status().unwrap();
    assert!(!alive.success(), "the app was stopped with the agent");
}

#[test]
fn the_agent_fields_are_checked_at_render_time_with_their_line() {
    let repo = crate::util::TestRepo::examples();
    repo.write("apps/web/files/app.env", "GOOD=1\nBAD NAME=2\n");
    repo.edit(
        "apps/web/app.yaml",
        "files:\n",
        "files:\n  app.env:\n    env: true\n  x.conf:\n    source: app.env\n    path: /etc/x\n    onReload: {signal: KILL}\n",
    );
    repo.commit("bad agent fields");
    let run = crate::util::pacer(&["validate", "--repo", repo.path_str()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("apps/web/files/app.env:2")
            && run.stderr.contains("`BAD NAME` is not a variable name"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("`KILL` is not a signal the agent sends")
            && run.stderr.contains("apps/web/app.yaml:"),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("=2"),
        "values are never quoted: {run:?}"
    );
}

/// A port free on loopback now (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny HTTP server: answers every request 200 and records its first line.
fn reload_endpoint() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/-/reload", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(n) if n > 2 => {}
                    _ => break,
                }
            }
            log.lock().unwrap().push(first.trim().to_string());
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

/// The agent's `/healthz`, or what went wrong.
async fn healthz(port: u16) -> Result<serde_json::Value, String> {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .map_err(|e| e.to_string())?;
    resp.json().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_or_reload_that_fails_keeps_the_old_file_and_other_reloads_run() {
    let w = world().await;
    let root = w.scratch.path().join("web-task");
    std::fs::create_dir_all(&root).unwrap();
    let (url, calls) = reload_endpoint();
    let cmd_conf = root.join("etc/app/cmd.conf");
    for (name, content) in [
        ("app.env", "# for the app only\nGREETING=hello {{ env }}\n"),
        ("check.conf", "ok 1\n"),
        ("cmd.conf", "good 1\n"),
        ("http.conf", "v1\n"),
    ] {
        w.git.repo.write(&format!("apps/web/files/{name}"), content);
    }
    w.git.repo.edit(
        "apps/web/app.yaml",
        "files:\n",
        &format!(
            "files:\n  app.env:\n    env: true\n  check.conf:\n    path: /etc/app/check.conf\n    reload: hot\n    check: grep -q ok {{path}}\n    onReload: {{signal: USR1}}\n  \
             cmd.conf:\n    path: /etc/app/cmd.conf\n    reload: hot\n    onReload: {{command: [grep, -q, good, '{}']}}\n  \
             http.conf:\n    path: /etc/app/http.conf\n    reload: hot\n    onReload: {{http: {{url: '{url}', method: PUT}}}}\n",
            cmd_conf.display()
        ),
    );
    w.git
        .commit_push("web: files with checks and reload actions");
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;

    let (usr1, hups) = (root.join("usr1"), root.join("hups"));
    let script = format!(
        "echo \"$GREETING\" > {root}/greeting; echo up > {root}/started; trap 'echo usr1 >> {usr1}' USR1; trap 'echo usr2 >> {root}/usr2' USR2; trap 'echo hup >> {hups}' HUP; \
         while kill -0 $PPID 2>/dev/null; do sleep 0.05; done",
        root = root.display(),
        usr1 = usr1.display(),
        hups = hups.display()
    );
    let port = free_port();
    let log = w.scratch.path().join("agent-web.log");
    let _a = AgentProc(
        agent(&d.url, &web[0], "/dev/web", &root, &log)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--",
                "sh",
                "-c",
                &script,
            ])
            .spawn()
            .unwrap(),
    );
    let first = wait_until(
        "the app started and the agent healthy",
        Duration::from_secs(30),
        || async {
            let h = healthz(port).await?;
            if root.join("started").exists() && h["synced"] == true {
                Ok(h)
            } else {
                Err(format!(
                    "{h}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        },
    )
    .await;
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    assert_eq!(read("etc/app/check.conf"), "ok 1\n");
    assert_eq!(
        read("greeting"),
        "hello dev\n",
        "the env entry reaches the app"
    );
    assert!(!root.join("env:app.env").exists() && !root.join("app.env").exists());
    assert!(!std::fs::read_to_string(&log).unwrap().contains("hello dev"));
    assert!(
        calls.lock().unwrap().is_empty(),
        "nothing to reload before the app runs"
    );

    // One commit: a content the check refuses, one whose reload fails,
    // one reloaded over HTTP.
    w.git.repo.write("apps/web/files/check.conf", "bad 2\n");
    w.git.repo.write("apps/web/files/cmd.conf", "broken 2\n");
    w.git.repo.write("apps/web/files/http.conf", "v2\n");
    let commit = w
        .git
        .commit_push("web: a bad check, a bad reload, a good one");
    d.github_push(&commit, SECRET).await;
    wait_until(
        "the HTTP reload and both failures",
        Duration::from_secs(30),
        || async {
            let h = healthz(port).await?;
            let called = calls.lock().unwrap().clone();
            if read("etc/app/http.conf") == "v2\n"
                && called.len() == 1
                && h["failures"]["check"] == 1
                && h["failures"]["reload"] == 1
            {
                Ok(())
            } else {
                Err(format!(
                    "{called:?} {h}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        },
    )
    .await;
    assert_eq!(calls.lock().unwrap()[0], "PUT /-/reload HTTP/1.1");
    assert_eq!(
        read("etc/app/check.conf"),
        "ok 1\n",
        "a refused check keeps the old file"
    );
    assert_eq!(
        read("etc/app/cmd.conf"),
        "good 1\n",
        "a failed reload puts the old file back"
    );
    let left: Vec<_> = std::fs::read_dir(root.join("etc/app")).unwrap().collect();
    assert_eq!(left.len(), 3, "no staged file is left behind");
    assert!(
        !usr1.exists() && !hups.exists(),
        "no signal for a refused file"
    );
    let h = healthz(port).await.unwrap();
    assert_eq!(
        h["index"], first["index"],
        "a refused bundle is not counted as synced"
    );
    assert!(
        std::process::Command::new("kill")
            .args(["-0", &_a.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );

    // A good content: checked, written, and the app gets its own signal.
    w.git.repo.write("apps/web/files/check.conf", "ok 3\n");
    let commit = w.git.commit_push("web: a good check");
    d.github_push(&commit, SECRET).await;
    wait_until(
        "the checked file written and USR1 sent",
        Duration::from_secs(30),
        || async {
            if read("etc/app/check.conf") == "ok 3\n" && read("usr1").lines().count() == 1 {
                Ok(())
            } else {
                Err(std::fs::read_to_string(&log).unwrap_or_default())
            }
        },
    )
    .await;
    assert!(!hups.exists(), "USR1, not HUP");
    // A signal the agent gets is passed on to the app.
    let _ = std::process::Command::new("kill")
        .args(["-USR2", &_a.0.id().to_string()])
        .status();
    wait_until("USR2 passed on", Duration::from_secs(20), || async {
        match read("usr2").lines().count() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        }
    })
    .await;
    let m = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("pacer_agent_failures_total{kind=\"check\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_outlives_the_server_and_catches_up_when_it_is_back() {
    let w = world().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mirror = w.scratch.path().join("mirror");
    let args: Vec<String> = [
        "--repo-url",
        &w.git.url(),
        "--marathon",
        &w.sim.url,
        "--listen",
        &listen,
        "--poll",
        "1",
        "--deploy-timeout",
        "60",
        "--webhook-secret",
        SECRET,
        "--env",
        "dev",
        "--workdir",
        mirror.to_str().unwrap(),
        "--task-recheck",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut d = crate::util::harness::Daemon::start(w.scratch.path(), &args);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let root = w.scratch.path().join("web-task");
    std::fs::create_dir_all(&root).unwrap();
    let conf = root.join("etc/nginx/nginx.conf");
    let script = format!(
        "echo up > {root}/started; trap 'echo hup >> {root}/hups' HUP; \
         while kill -0 $PPID 2>/dev/null; do sleep 0.05; done",
        root = root.display()
    );
    let hport = free_port();
    let log = w.scratch.path().join("agent-web.log");
    let mut a = AgentProc(
        agent(&d.url, &web[0], "/dev/web", &root, &log)
            .args([
                "--listen",
                &format!("127.0.0.1:{hport}"),
                "--",
                "sh",
                "-c",
                &script,
            ])
            .spawn()
            .unwrap(),
    );
    wait_until("the app started", Duration::from_secs(30), || async {
        if root.join("started").exists() {
            Ok(())
        } else {
            Err(std::fs::read_to_string(&log).unwrap_or_default())
        }
    })
    .await;
    let before = std::fs::read_to_string(&conf).unwrap();

    d.proc.kill();
    wait_until(
        "the agent failing to reach the server, again and again",
        Duration::from_secs(30),
        || async {
            let h = healthz(hport).await?;
            if h["failures"]["server"].as_u64().unwrap_or(0) >= 3 {
                Ok(())
            } else {
                Err(format!(
                    "{h}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        },
    )
    .await;
    assert!(
        a.0.try_wait().unwrap().is_none(),
        "the agent must not exit while the server is away"
    );
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        before,
        "the last good file stays"
    );

    // Meanwhile the config changed; the server comes back on its state.
    w.git.repo.edit(
        "apps/web/files/nginx.conf",
        "keepalive_timeout 65",
        "keepalive_timeout 67",
    );
    w.git.commit_push("web: a longer keepalive");
    let _d = crate::util::harness::Daemon::start(w.scratch.path(), &args);
    wait_until("the agent caught up", Duration::from_secs(90), || async {
        let now = std::fs::read_to_string(&conf).unwrap_or_default();
        let hups = std::fs::read_to_string(root.join("hups")).unwrap_or_default();
        if now.contains("keepalive_timeout 67") && hups.lines().count() == 1 {
            Ok(())
        } else {
            Err(std::fs::read_to_string(&log).unwrap_or_default())
        }
    })
    .await;
    assert!(
        a.0.try_wait().unwrap().is_none(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn the_deploy_examples_are_valid_marathon_apps_run_under_the_agent() {
    for name in ["myapp.marathon.json", "nginx-docker.marathon.json"] {
        let path = crate::util::project_dir().join("deploy/agent").join(name);
        let app: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let violations = pacer::marathon::validate::validate_app(&app);
        assert!(violations.is_empty(), "{name}: {violations:#?}");
    }
    let fetch = std::fs::read_to_string(
        crate::util::project_dir().join("deploy/agent/myapp.marathon.json"),
    )
    .unwrap();
    assert!(fetch.contains("./pacer agent --server http://pacer.marathon.mesos:8080"));
}
