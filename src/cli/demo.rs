//! `pacer demo`: the bundled example repo, end to end, on embedded defaults:
//! the built-in Marathon simulator and the daemon on a Git copy of
//! `examples/`.

use super::args::DemoArgs;
use super::exit;
use crate::reconcile::daemon;
use crate::render::{self, Scope};
use crate::source::RepoLocation;
use crate::source::remote::{GitAuth, RemoteSpec};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The example repo: next to the binary's sources when run with cargo, or
/// given with `--repo`.
pub fn examples_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let candidates = [
        PathBuf::from("examples"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("pacer.yaml").is_file())
        .context(
            "the example repo was not found: run from the pacer source tree, or pass --repo DIR",
        )
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "pacer demo")
        .env("GIT_AUTHOR_EMAIL", "demo@pacer.invalid")
        .env("GIT_COMMITTER_NAME", "pacer demo")
        .env("GIT_COMMITTER_EMAIL", "demo@pacer.invalid")
        .output()
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Starts the simulator and the daemon on a Git copy of the example repo,
/// waits until every app is deployed, and prints where to look.
pub fn run(a: DemoArgs) -> anyhow::Result<u8> {
    let source = examples_dir(a.repo.as_deref())?;
    let scratch = tempfile::Builder::new().prefix("pacer-demo-").tempdir()?;
    let root = scratch.path().to_path_buf();
    copy_tree(&source, &root)?;
    git(&root, &["init", "-q", "-b", "main"])?;
    git(&root, &["add", "-A"])?;
    git(&root, &["commit", "-q", "-m", "the example config repo"])?;
    // Before any daemon starts: the example must render.
    let loc = RepoLocation::discover(&root)?;
    if let Err(diags) = render::render(Arc::new(loc.at_rev("HEAD")?), &Scope::default()) {
        for d in diags {
            eprintln!("{d}");
        }
        return Ok(exit::ERROR);
    }

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        // The simulator: tasks start and turn healthy in a blink.
        let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim_url = format!("http://{}", sim_listener.local_addr()?);
        let sim = crate::sim::Shared::new(crate::sim::SimConfig {
            settings: crate::sim::Settings {
                start_delay_ms: 100,
                healthy_delay_ms: 200,
                ..crate::sim::Settings::default()
            },
            state_file: None,
        })?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.changed().await;
        };
        tokio::spawn(crate::sim::serve_sim(
            sim_listener,
            sim,
            stopped(stop_rx.clone()),
        ));

        let listener = match tokio::net::TcpListener::bind(a.listen).await {
            Ok(l) => l,
            // The default port is taken: any port will do for a demo.
            Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        };
        let daemon_url = format!("http://{}", listener.local_addr()?);
        let workdir = root.with_extension("mirror");
        let cfg = daemon::Config {
            remote: RemoteSpec {
                url: format!("file://{}", root.display()),
                branch: "main".into(),
                auth: GitAuth::None,
                ca_file: None,
                known_hosts: None,
            },
            prefix: String::new(),
            workdir: workdir.clone(),
            listen: a.listen,
            listener: Some(listener),
            poll: Duration::from_secs(2),
            envs: None,
            marathon_url: Some(sim_url.clone()),
            marathon_user: None,
            marathon_password: None,
            marathon_token: None,
            marathon_timeout: Duration::from_secs(10),
            marathon_events: true,
            apply: crate::apply::Options {
                deploy_timeout: Duration::from_secs(60),
                poll: Duration::from_millis(100),
                ..crate::apply::Options::default()
            },
            webhook_secret: None,
            records: crate::record::notes::Publish::Push,
            allow_rewind: false,
            apply_all: true,
            render_timeout: Duration::from_secs(60),
            http: crate::listen::Limits::default(),
        };

        println!("pacer demo");
        println!(
            "  config repo (a Git copy of {}): {}",
            source.display(),
            root.display()
        );
        println!("  Marathon simulator: {sim_url}");
        println!("  pacer daemon:       {daemon_url}\n");
        let daemon = crate::cli::serve::start(cfg, stopped(stop_rx.clone()))
            .await?
            .task;
        println!("Applying every environment (dev, staging, prod)...");
        let status = wait_for_sync(&daemon_url, Duration::from_secs(120)).await?;
        for (env, e) in status["environments"].as_object().into_iter().flatten() {
            let apps: Vec<String> = e["apps"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, a)| format!("{name} ({})", a["sync"].as_str().unwrap_or("?")))
                .collect();
            println!("  {env:<8} {}", apps.join(", "));
        }
        println!("\nWhere to look:");
        println!("  status   curl {daemon_url}/api/v1/status");
        println!("  metrics  curl {daemon_url}/metrics");
        println!(
            "  history  pacer history --repo {} --marathon {sim_url} --env prod --app web",
            root.display()
        );
        println!(
            "  plan     pacer plan --repo {} --marathon {sim_url} --env dev",
            root.display()
        );
        println!(
            "\nTry a change: edit {}/apps/worker/env/dev.yaml (instances: 3), commit,",
            root.display()
        );
        println!("and watch pacer scale it within two seconds. Ctrl-C stops the demo.");

        if !a.exit_when_synced {
            crate::cli::serve::shutdown_signal().await;
        }
        let _ = stop_tx.send(true);
        let _ = daemon.await;
        let _ = std::fs::remove_dir_all(&workdir);
        anyhow::Ok(())
    })?;
    drop(scratch);
    Ok(exit::OK)
}

/// Polls the daemon's status until every app of every environment is in
/// sync, or fails with the last status seen.
async fn wait_for_sync(url: &str, within: Duration) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut last = serde_json::Value::Null;
    loop {
        if let Ok(r) = client.get(format!("{url}/api/v1/status")).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                let envs = v["environments"].as_object();
                let synced = envs.is_some_and(|envs| {
                    envs.len() == 3
                        && envs.values().all(|e| {
                            let apps = e["apps"].as_object();
                            apps.is_some_and(|a| {
                                !a.is_empty() && a.values().all(|a| a["sync"] == "inSync")
                            })
                        })
                });
                if synced {
                    return Ok(v);
                }
                last = v;
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the example did not reach sync within {}s; last status:\n{}",
                within.as_secs(),
                serde_json::to_string_pretty(&last)?
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
