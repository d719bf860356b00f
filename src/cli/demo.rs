//! `pacer demo`: the bundled example repo, end to end, on embedded defaults:
//! the built-in Marathon simulator and the daemon on a Git repo written from
//! the copy of `examples/` and `schemas/` built into the binary, so a copied
//! binary or the Docker image runs it anywhere.

use super::args::MarathonArgs;
use super::exit;
use super::plan::{plan_env, render_envs, render_plan};
use crate::reconcile::daemon;
use crate::source::remote::{GitAuth, RemoteSpec};
use anyhow::{Context, bail};
use clap::Args;
use include_dir::{Dir, include_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

static EXAMPLES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/examples");
static SCHEMAS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/schemas");

/// Where the config repo sits in the demo's Git repo: beside `schemas/`, as
/// in the pacer sources, so the files' `$schema` comments resolve.
const PREFIX: &str = "examples";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// A config repo to use instead of the example built into pacer.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Where the daemon listens (any free port if this one is taken).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Exit once every environment has settled instead of running on (for scripts).
    #[arg(long)]
    pub exit_when_synced: bool,
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
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
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
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

/// Writes the Git repo the demo runs on: the config repo under `examples/`
/// and pacer's schemas beside it, in one commit.
fn write_repo(root: &Path, explicit: Option<&Path>) -> anyhow::Result<()> {
    let config = root.join(PREFIX);
    let schemas = root.join("schemas");
    for dir in [&config, &schemas] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    }
    match explicit {
        Some(dir) => {
            copy_tree(dir, &config).with_context(|| format!("copying `{}`", dir.display()))?
        }
        None => EXAMPLES
            .extract(&config)
            .context("writing the example repo")?,
    }
    SCHEMAS.extract(&schemas).context("writing the schemas")?;
    git(root, &["init", "-q", "-b", "main"])?;
    git(root, &["add", "-A"])?;
    git(root, &["commit", "-q", "-m", "the example config repo"])?;
    Ok(())
}

fn marathon_args(url: &str) -> MarathonArgs {
    MarathonArgs {
        marathon: Some(url.to_string()),
        marathon_user: None,
        marathon_password: None,
        marathon_token: None,
        marathon_timeout: 10,
        marathon_events: false,
    }
}

/// Starts the simulator and the daemon on a Git repo of the example, waits
/// until every environment settled as its policy says, and prints where to
/// look; then reports each commit the daemon picks up.
pub fn run(a: DemoArgs) -> anyhow::Result<u8> {
    let root = tempfile::Builder::new()
        .prefix("pacer-demo-")
        .tempdir()?
        .keep();
    if let Err(e) = write_repo(&root, a.repo.as_deref()) {
        // Nothing worth keeping yet.
        let _ = std::fs::remove_dir_all(&root);
        return Err(e);
    }
    let config = root.join(PREFIX);
    // Before any daemon starts: the example must render. Which environments
    // apply on their own is the repo's to say (`autoApply`).
    let rendered = render_envs(&config, Some("HEAD"), &[], None)?;
    let auto: BTreeMap<String, bool> = rendered
        .envs
        .iter()
        .map(|(name, e)| (name.clone(), e.settings.policy.auto_apply))
        .collect();
    let rt = tokio::runtime::Runtime::new()?;
    let ran = rt.block_on(serve_demo(&a, &root, &config, &auto));
    let kept = format!(
        "The demo's config repo stays at {} (delete it when done).",
        config.display()
    );
    // Where it is matters even to a reader who has gone: then on stderr.
    if outln!("\n{kept}").is_err() {
        eprintln!("{kept}");
    }
    ran?;
    Ok(exit::OK)
}

async fn serve_demo(
    a: &DemoArgs,
    root: &Path,
    config: &Path,
    auto: &BTreeMap<String, bool>,
) -> anyhow::Result<()> {
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
        prefix: PREFIX.into(),
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
        // Random and unused (the demo polls): webhooks stay authenticated
        // in every mode, and a daemon without a secret warns that they are off.
        webhook_secret: Some(crate::model::Secret::new(hex::encode(rand::random::<
            [u8; 32],
        >()))),
        records: crate::record::notes::Publish::Push,
        allow_rewind: false,
        render_timeout: Duration::from_secs(60),
        http: crate::listen::Limits::default(),
        allowed_hosts: Vec::new(),
        endpoints: Default::default(),
        endpoints_resync: Duration::from_secs(30),
        state_dir: None,
        verify_signers: None,
        zk: None,
        // The demo key (the example's prod files are sealed for it).
        secret_keys: crate::render::SecretKeys::process_default(),
    };

    // Tokens of its own, made now and gone with the demo: the daemon's API
    // is never open, not even here.
    let tokens = DemoTokens::new();
    let options = crate::cli::serve::Options {
        delivery: None,
        access: crate::server::Access::new(
            crate::server::auth::Tokens::new(Some(tokens.admin.clone()), Some(tokens.read.clone()))
                .map_err(anyhow::Error::msg)?,
            crate::server::guard::WEBHOOK_MAX_BODY,
            crate::server::guard::WEBHOOK_RATE,
        ),
    };
    outln!("pacer demo")?;
    outln!("  config repo:        {}", config.display())?;
    outln!("  Marathon simulator: {sim_url}")?;
    outln!("  pacer daemon:       {daemon_url}\n")?;
    let daemon = crate::cli::serve::start_with(cfg, options, stopped(stop_rx.clone()))
        .await?
        .task;
    let daemon_at = Daemon {
        url: &daemon_url,
        token: &tokens.read,
    };
    let shown = show(a, config, auto, &sim_url, &daemon_at, &tokens).await;
    let _ = stop_tx.send(true);
    let _ = daemon.await;
    let _ = std::fs::remove_dir_all(&workdir);
    shown
}

/// The demo daemon's API tokens: random, printed for the user to try, and
/// worthless once the demo stops.
struct DemoTokens {
    admin: String,
    read: String,
}

impl DemoTokens {
    fn new() -> DemoTokens {
        let token = |kind: &str| format!("demo-{kind}-{}", hex::encode(rand::random::<[u8; 16]>()));
        DemoTokens {
            admin: token("admin"),
            read: token("read"),
        }
    }
}

/// Where the demo's daemon is, and the token it reads the status with.
struct Daemon<'a> {
    url: &'a str,
    token: &'a str,
}

fn names(auto: &BTreeMap<String, bool>, want: bool) -> Vec<&str> {
    auto.iter()
        .filter(|(_, a)| **a == want)
        .map(|(n, _)| n.as_str())
        .collect()
}

async fn show(
    a: &DemoArgs,
    config: &Path,
    auto: &BTreeMap<String, bool>,
    sim_url: &str,
    daemon: &Daemon<'_>,
    tokens: &DemoTokens,
) -> anyhow::Result<()> {
    let daemon_url = daemon.url;
    let manual = names(auto, false);
    outln!(
        "Applying the environments with autoApply ({}); planning the others ({})...",
        names(auto, true).join(", "),
        if manual.is_empty() {
            "none".to_string()
        } else {
            manual.join(", ")
        }
    )?;
    let status = wait_for(daemon, Duration::from_secs(120), |s| settled(s, auto, None)).await?;
    for (env, e) in status["environments"].as_object().into_iter().flatten() {
        let apps: Vec<String> = e["apps"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, a)| format!("{name} ({})", a["sync"].as_str().unwrap_or("?")))
            .collect();
        outln!("  {env:<8} {}", apps.join(", "))?;
    }
    let repo = config.display();
    // The example's prod secrets are sealed for pacer's public demo key: the
    // commands printed below need it to render prod.
    let key = config.parent().unwrap_or(config).join("demo-age-key.txt");
    std::fs::write(&key, crate::sops::keys::DEMO_KEY_FILE)?;
    for env in &manual {
        // The plan that awaits a human, and the command that applies it.
        let rendered = render_envs(config, Some("HEAD"), &[env.to_string()], None)?;
        let rev = rendered.snap.revision.to_string();
        for desired in rendered.envs.into_values() {
            let ep = plan_env(
                &rendered.loc,
                desired,
                None,
                &marathon_args(sim_url),
                crate::plan::Overrides::default(),
            )
            .await?;
            outln!("\n{env} has autoApply: false, so nothing was deployed there. Its plan:\n")?;
            out!(
                "{}",
                render_plan(&ep.plan, &rev, sim_url, super::args::Format::Text)
            )?;
            outln!(
                "To apply it (its secrets are sealed for pacer's public demo key):\n  \
                 export PACER_AGE_KEY_FILE={}\n  \
                 pacer apply --repo {repo} --marathon {sim_url} --env {env}",
                key.display()
            )?;
        }
    }
    outln!("\nThe daemon's API takes tokens made for this demo (they die with it):")?;
    outln!(
        "  export PACER_TOKEN={}   # read: the full status",
        tokens.read
    )?;
    outln!("  admin token (writes, e.g. a retry): {}", tokens.admin)?;
    outln!("\nWhere to look:")?;
    outln!(
        "  dashboard {daemon_url}/  (sign in with the admin token to retry and to apply prod's plan)"
    )?;
    outln!("  status   pacer status --daemon {daemon_url}")?;
    outln!(
        "  retry    curl -X POST -H 'Authorization: Bearer <admin token>' -H 'Content-Type: application/json' {daemon_url}/api/v1/retry"
    )?;
    outln!("  metrics  curl {daemon_url}/metrics")?;
    outln!("  history  pacer history --repo {repo} --marathon {sim_url} --env dev --app web")?;
    outln!("  plan     pacer plan --repo {repo} --marathon {sim_url}")?;
    if a.exit_when_synced {
        return Ok(());
    }
    outln!("\nTry a change: edit {repo}/apps/worker/env/dev.yaml (instances: 3), commit,")?;
    outln!("and watch pacer scale it within two seconds. Ctrl-C stops the demo.")?;
    tokio::select! {
        r = follow_commits(status, auto, daemon, config, sim_url) => r,
        () = crate::cli::serve::shutdown_signal() => Ok(()),
    }
}

/// Reports each commit the daemon picks up: its short hash and subject,
/// then what happened to each app whose status changed.
async fn follow_commits(
    mut before: Value,
    auto: &BTreeMap<String, bool>,
    daemon: &Daemon<'_>,
    config: &Path,
    sim_url: &str,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(now) = get_status(&client, daemon).await else {
            continue;
        };
        let Some(head) = now["repo"]["head"].as_str().map(String::from) else {
            continue;
        };
        if Some(head.as_str()) == before["repo"]["head"].as_str() {
            continue;
        }
        let subject = git(config, &["log", "-1", "--format=%s", &head]).unwrap_or_default();
        outln!("\nPicked up {} {subject}", &head[..head.len().min(12)])?;
        let after = match wait_for(daemon, Duration::from_secs(120), |s| {
            settled(s, auto, Some(&head))
        })
        .await
        {
            Ok(s) => s,
            Err(e) => {
                outln!("  {e:#}")?;
                continue;
            }
        };
        let lines = changes(&before, &after, auto, config, sim_url);
        if lines.is_empty() {
            outln!("  no app changed")?;
        }
        for l in lines {
            outln!("  {l}")?;
        }
        before = after;
    }
}

/// What changed for each app between two statuses, one line each. Pure.
fn changes(
    before: &Value,
    after: &Value,
    auto: &BTreeMap<String, bool>,
    config: &Path,
    sim_url: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for (env, e) in after["environments"].as_object().into_iter().flatten() {
        if e["commit"] != after["repo"]["head"] {
            out.push(format!(
                "{env}: stays at {}: the new commit does not load ({}); `pacer validate` shows every problem",
                e["commit"].as_str().map_or("-", |c| &c[..c.len().min(12)]),
                e["errors"][0].as_str().unwrap_or("see the daemon's status")
            ));
        }
        for (path, app) in e["apps"].as_object().into_iter().flatten() {
            let old = &before["environments"][env]["apps"][path];
            let same = old["sync"] == app["sync"]
                && old["last"] == app["last"]
                && old["errors"] == app["errors"];
            if same {
                continue;
            }
            let sync = app["sync"].as_str().unwrap_or("?");
            let mut line = format!("{env}/{path}: {sync}");
            if app["last"] != old["last"] {
                if let Some(o) = app["last"]["outcome"].as_str() {
                    line.push_str(&format!(", {o}"));
                }
                if let Some(d) = app["last"]["deploymentId"].as_str() {
                    line.push_str(&format!(" (deployment {d})"));
                }
            }
            for err in app["errors"].as_array().into_iter().flatten() {
                line.push_str(&format!(
                    "; {}:{}: {}",
                    err["file"].as_str().unwrap_or(""),
                    err["line"].as_u64().unwrap_or(0),
                    err["message"].as_str().unwrap_or("")
                ));
            }
            if !auto.get(env).copied().unwrap_or(true)
                && matches!(sync, "outOfSync" | "missing" | "drifted")
            {
                line.push_str(&format!(
                    " — awaits `pacer apply --repo {} --marathon {sim_url} --env {env}`",
                    config.display()
                ));
            }
            out.push(line);
        }
    }
    out
}

/// Whether every environment has settled: those that apply on their own
/// are in sync, the others planned (no status unknown), nothing deploying;
/// at `head` when given (or stuck at the last good commit).
fn settled(s: &Value, auto: &BTreeMap<String, bool>, head: Option<&str>) -> bool {
    let Some(envs) = s["environments"].as_object() else {
        return false;
    };
    envs.len() == auto.len()
        && envs.iter().all(|(name, e)| {
            // A commit that doesn't load leaves the environment at the last
            // good one, with the problems among its errors.
            let at_head = head.is_none_or(|h| {
                e["commit"].as_str() == Some(h)
                    || (s["repo"]["lastGood"].as_str() != Some(h)
                        && e["errors"].as_array().is_some_and(|v| !v.is_empty()))
            });
            let apps = e["apps"].as_object();
            let want_sync = auto.get(name).copied().unwrap_or(true);
            at_head
                && apps.is_some_and(|apps| {
                    !apps.is_empty()
                        && apps.values().all(|a| {
                            let sync = a["sync"].as_str().unwrap_or("unknown");
                            if want_sync {
                                sync == "inSync" || sync == "invalid" || sync == "failed"
                            } else {
                                !matches!(sync, "unknown" | "progressing")
                            }
                        })
                })
        })
}

async fn get_status(client: &reqwest::Client, daemon: &Daemon<'_>) -> Option<Value> {
    let r = client
        .get(format!("{}/api/v1/status", daemon.url))
        .bearer_auth(daemon.token)
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()
}

/// Polls the daemon's status until `done` holds, or fails with the last
/// status seen.
async fn wait_for(
    daemon: &Daemon<'_>,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut last = Value::Null;
    loop {
        if let Some(v) = get_status(&client, daemon).await {
            if done(&v) {
                return Ok(v);
            }
            last = v;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the example did not settle within {}s; last status:\n{}",
                within.as_secs(),
                serde_json::to_string_pretty(&last)?
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policies() -> BTreeMap<String, bool> {
        [("dev".to_string(), true), ("prod".to_string(), false)].into()
    }

    fn status(dev: &str, prod: &str, commit: &str) -> Value {
        json!({
            "repo": {"head": commit, "lastGood": commit},
            "environments": {
                "dev": {"group": "/dev", "commit": commit,
                        "apps": {"web": {"id": "/dev/web", "sync": dev}}},
                "prod": {"group": "/prod", "commit": commit,
                         "apps": {"web": {"id": "/prod/web", "sync": prod}}}
            }
        })
    }

    #[test]
    fn the_demo_waits_for_auto_envs_in_sync_and_the_others_planned() {
        let p = policies();
        assert!(settled(&status("inSync", "missing", "c1"), &p, None));
        assert!(!settled(&status("progressing", "missing", "c1"), &p, None));
        assert!(!settled(&status("inSync", "unknown", "c1"), &p, None));
        assert!(!settled(&status("inSync", "missing", "c1"), &p, Some("c2")));
        let mut broken = status("inSync", "missing", "c1");
        broken["repo"]["head"] = json!("c2");
        assert!(!settled(&broken, &p, Some("c2")));
        for env in ["dev", "prod"] {
            broken["environments"][env]["errors"] = json!(["pacer.yaml:3: bad"]);
        }
        assert!(
            settled(&broken, &p, Some("c2")),
            "a commit that doesn't load"
        );
    }

    #[test]
    fn the_demo_reports_what_changed_and_what_awaits_a_human() {
        let p = policies();
        let before = status("inSync", "inSync", "c1");
        let mut after = status("inSync", "outOfSync", "c2");
        after["environments"]["dev"]["apps"]["web"]["last"] =
            json!({"outcome": "succeeded", "deploymentId": "d-9"});
        let lines = changes(&before, &after, &p, Path::new("/r"), "http://sim");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "dev/web: inSync, succeeded (deployment d-9)");
        assert!(lines[1].starts_with("prod/web: outOfSync — awaits `pacer apply --repo /r --marathon http://sim --env prod`"), "{lines:?}");
        assert!(changes(&before, &before, &p, Path::new("/r"), "x").is_empty());
    }
}
