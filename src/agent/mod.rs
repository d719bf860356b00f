//! `pacer agent`: runs inside a task. Logs in to the config server once
//! (with Mesos's `MESOS_TASK_ID` and Marathon's `MARATHON_APP_ID`), writes
//! the app's files where the manifest says (atomically, leaving unchanged
//! files untouched), starts the app as its child, then watches the bundle:
//! a changed `hot` file is written and the child gets SIGHUP. The token is
//! renewed at half its life. The agent ends with its child, passing on
//! SIGTERM and SIGINT, and exits with the child's code.

pub mod files;

use anyhow::{Context, bail};
use clap::Args;
use files::{Manifest, hash, parse_mode, to_write, under_root, write_atomic};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The config server: `pacer serve`'s address.
    #[arg(long, env = "PACER_SERVER", value_name = "URL")]
    pub server: String,
    /// The task's id (Mesos sets MESOS_TASK_ID).
    #[arg(long, env = "MESOS_TASK_ID", value_name = "ID")]
    pub task_id: String,
    /// The task's app (Marathon sets MARATHON_APP_ID).
    #[arg(long, env = "MARATHON_APP_ID", value_name = "ID")]
    pub app_id: String,
    /// Where task paths are rooted: `/etc/app.conf` is written to
    /// `<root>/etc/app.conf`.
    #[arg(
        long,
        env = "PACER_AGENT_ROOT",
        default_value = "/",
        value_name = "DIR"
    )]
    pub root: PathBuf,
    /// The address to send from, on a host with several.
    #[arg(long, env = "PACER_AGENT_SOURCE_ADDRESS", value_name = "IP")]
    pub source_address: Option<IpAddr>,
    /// Write the files once and exit (no child, no watch).
    #[arg(long)]
    pub once: bool,
    /// The app to run once the files are written, e.g. `-- nginx -g 'daemon off;'`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// How long a watch blocks on the server (its cap).
const WAIT: Duration = Duration::from_secs(300);
/// Login attempts while the server answers 503 or can't be reached.
const LOGIN_ATTEMPTS: u32 = 10;

struct Session {
    http: reqwest::Client,
    base: String,
    token: String,
    /// When to renew the token: half its life after it was issued.
    renew_at: Instant,
}

pub fn run(a: AgentArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(agent(a))
}

async fn agent(a: AgentArgs) -> anyhow::Result<u8> {
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("pacer-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(ip) = a.source_address {
        http = http.local_address(ip);
    }
    let mut s = Session {
        http: http.build()?,
        base: a.server.trim_end_matches('/').to_string(),
        token: String::new(),
        renew_at: Instant::now(),
    };
    login(&mut s, &a).await?;
    let manifest = fetch_manifest(&s, None).await?;
    sync(&s, &a, &manifest, &mut false).await?;
    if a.once {
        return Ok(0);
    }
    let mut child = match a.command.split_first() {
        Some((cmd, args)) => Some(
            tokio::process::Command::new(cmd)
                .args(args)
                .spawn()
                .with_context(|| format!("starting `{cmd}`"))?,
        ),
        None => None,
    };
    let ran = watch(&mut s, &a, &mut child, manifest).await;
    match ran {
        Ok(Ended::Child(status)) => Ok(exit_code(status)),
        Ok(Ended::Signal) => stop(child).await,
        Err(e) => {
            // The agent can't go on (a refusal: its token is dead): the
            // app goes with it, so Marathon starts a fresh task.
            let _ = stop(child).await;
            Err(e)
        }
    }
}

/// Why the watch loop ended.
enum Ended {
    Child(std::process::ExitStatus),
    /// SIGTERM or Ctrl-C.
    Signal,
}

/// Renews the token, watches the bundle and writes what changed, until
/// the child ends, a signal comes, or the server refuses.
async fn watch(
    s: &mut Session,
    a: &AgentArgs,
    child: &mut Option<tokio::process::Child>,
    mut manifest: Manifest,
) -> anyhow::Result<Ended> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // A hot file written but not yet signalled (a later file failed).
    let mut hot = false;
    loop {
        if Instant::now() >= s.renew_at {
            match renew(s).await {
                Ok(()) => tracing::debug!("token renewed"),
                Err(e) if e.is::<Refused>() => return Err(e),
                // The token lives on a while: try again soon.
                Err(e) => {
                    tracing::warn!("renewing the token: {e:#}; trying again");
                    s.renew_at = Instant::now() + Duration::from_secs(2);
                }
            }
        }
        let index = manifest.index;
        // A watch ends in time for the next renewal, the server's jitter
        // (up to a sixteenth of the wait) included.
        let wait = (s.renew_at.saturating_duration_since(Instant::now()) * 15 / 16)
            .clamp(Duration::from_millis(100), WAIT);
        let next = tokio::select! {
            m = fetch_manifest(s, Some((index, wait))) => m,
            status = wait_child(child) => return Ok(Ended::Child(status?)),
            _ = term.recv() => return Ok(Ended::Signal),
            _ = tokio::signal::ctrl_c() => return Ok(Ended::Signal),
        };
        let next = match next {
            Ok(m) => m,
            Err(e) if e.is::<Refused>() => return Err(e),
            Err(e) => {
                tracing::warn!("watching the config: {e:#}; trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        match sync(s, a, &next, &mut hot).await {
            // Only a complete bundle moves the index on: after a failure
            // the next watch answers at once and the rest is tried again.
            Ok(()) => manifest = next,
            Err(e) if e.is::<Refused>() => return Err(e),
            Err(e) => {
                tracing::warn!("writing the config: {e:#}; trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        if hot && let Some(c) = child.as_ref() {
            signal(c, libc::SIGHUP);
            hot = false;
        }
    }
}

/// A refusal by the server (401/403): trying again can't help.
#[derive(Debug, thiserror::Error)]
#[error("the config server refused: {0}")]
struct Refused(String);

async fn send(rb: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let resp = rb.send().await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if matches!(status, 401 | 403 | 400) {
        return Err(Refused(body["message"].as_str().unwrap_or("").to_string()).into());
    }
    Ok((status, body))
}

async fn login(s: &mut Session, a: &AgentArgs) -> anyhow::Result<()> {
    let body = json!({"taskId": a.task_id, "appId": a.app_id});
    for attempt in 1..=LOGIN_ATTEMPTS {
        let tried = send(s.http.post(format!("{}/v1/login", s.base)).json(&body)).await;
        match tried {
            Ok((200, v)) => return take_token(s, &v),
            Err(e) if e.is::<Refused>() => return Err(e),
            Ok((status, v)) => tracing::warn!(status, "login: {v}; trying again"),
            Err(e) => tracing::warn!("login: {e:#}; trying again"),
        }
        // The grace window is short: retry quickly.
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
    bail!("the config server at {} did not accept a login", s.base)
}

fn take_token(s: &mut Session, v: &Value) -> anyhow::Result<()> {
    s.token = v["token"]
        .as_str()
        .context("no token in the answer")?
        .to_string();
    let expires = v["expiresAt"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .context("no expiresAt in the answer")?;
    // In ms: with a short TTL, whole seconds would renew too late.
    let life_ms = (expires.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
    s.renew_at = Instant::now() + Duration::from_millis(life_ms.unsigned_abs() / 2);
    Ok(())
}

async fn renew(s: &mut Session) -> anyhow::Result<()> {
    let rb = s
        .http
        .post(format!("{}/v1/token/renew", s.base))
        .bearer_auth(&s.token);
    match send(rb).await? {
        (200, v) => take_token(s, &v),
        (status, v) => bail!("renewing the token: {status} {v}"),
    }
}

/// The manifest; with `(index, wait)`, a watch from that index.
async fn fetch_manifest(s: &Session, watch: Option<(u64, Duration)>) -> anyhow::Result<Manifest> {
    let url = match watch {
        Some((i, wait)) => format!("{}/v1/config?index={i}&wait={}ms", s.base, wait.as_millis()),
        None => format!("{}/v1/config", s.base),
    };
    let rb = s
        .http
        .get(url)
        .bearer_auth(&s.token)
        .timeout(WAIT + Duration::from_secs(60));
    let resp = rb.send().await?;
    let status = resp.status().as_u16();
    if matches!(status, 401 | 403) {
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        return Err(Refused(v["message"].as_str().unwrap_or("").to_string()).into());
    }
    if status != 200 {
        bail!("GET /v1/config answered {status}");
    }
    Ok(resp.json().await?)
}

/// Writes the files that differ from disk; sets `hot` when a hot one was
/// written (even if a later one then fails).
async fn sync(s: &Session, a: &AgentArgs, m: &Manifest, hot: &mut bool) -> anyhow::Result<()> {
    let root = a.root.clone();
    let on_disk = |path: &str| {
        let p = under_root(&root, path).ok()?;
        std::fs::read(p).ok().map(|b| hash(&b))
    };
    for f in to_write(m, on_disk) {
        let target = under_root(&a.root, &f.path).map_err(anyhow::Error::msg)?;
        let mode = parse_mode(&f.mode).unwrap_or(0o644);
        let resp = s
            .http
            .get(file_url(&s.base, &f.name)?)
            .bearer_auth(&s.token)
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        if matches!(resp.status().as_u16(), 401 | 403) {
            return Err(Refused(format!("GET file {}: {}", f.name, resp.status())).into());
        }
        if !resp.status().is_success() {
            bail!("GET file {}: {}", f.name, resp.status());
        }
        let content = resp.bytes().await?;
        if hash(&content) != f.hash {
            // The bundle moved on meanwhile: the next watch brings it.
            tracing::info!(file = %f.name, "content changed while fetched; waiting for the next manifest");
            continue;
        }
        let t = target.clone();
        tokio::task::spawn_blocking(move || write_atomic(&t, &content, mode))
            .await?
            .with_context(|| format!("writing {}", target.display()))?;
        tracing::info!(file = %f.name, path = %target.display(), reload = %f.reload, "config file written");
        *hot |= f.reload == "hot";
    }
    Ok(())
}

/// `<base>/v1/config/files/<name>`, each part of the name escaped.
fn file_url(base: &str, name: &str) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(&format!("{base}/v1/config/files"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("the server URL {base} can't take a path"))?
        .extend(name.split('/'));
    Ok(url)
}

async fn wait_child(
    child: &mut Option<tokio::process::Child>,
) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

fn signal(c: &tokio::process::Child, sig: libc::c_int) {
    if let Some(pid) = c.id() {
        // SAFETY: kill(2) on our own child's pid, which `Child` keeps from
        // being reaped (and reused) until it has been waited for.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// Passes SIGTERM on to the child and waits for it.
async fn stop(child: Option<tokio::process::Child>) -> anyhow::Result<u8> {
    let Some(mut c) = child else { return Ok(0) };
    signal(&c, libc::SIGTERM);
    Ok(exit_code(c.wait().await?))
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_are_escaped_in_their_url() {
        let u = super::file_url("http://pacer:8081", "conf.d/my site#1.conf").unwrap();
        assert_eq!(
            u.as_str(),
            "http://pacer:8081/v1/config/files/conf.d/my%20site%231.conf"
        );
    }
}
