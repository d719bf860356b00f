//! `pacer agent`: runs inside a task. Logs in to the config server once
//! (with Mesos's `MESOS_TASK_ID` and Marathon's `MARATHON_APP_ID`), writes
//! the app's files where the manifest says (atomically, leaving unchanged
//! files untouched, each checked by its `check` first: see [`apply`]),
//! starts the app as its child once every file is in place, then watches
//! the bundle: a changed file is written and its reload action run (SIGHUP
//! for a `hot` file by default). After each pass it reports what it holds
//! ([`report`]): the server counts which tasks have which bundle. The
//! token is renewed at half its life; a busy server (429, 503) is waited
//! out as its `Retry-After` asks.
//! While the server is away the agent keeps the last good files and tries
//! again with capped backoff, for as long as it takes; only a refusal (its
//! token dead) ends it. The agent ends with its child, passing on SIGTERM
//! and SIGINT, and exits with the child's code.

mod apply;
pub mod files;
pub mod health;
mod report;

use anyhow::{Context, bail};
use clap::Args;
use files::{Manifest, backoff};
use health::{Failure, Health};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
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
    #[arg(
        long,
        alias = "bind",
        env = "PACER_AGENT_SOURCE_ADDRESS",
        value_name = "IP"
    )]
    pub source_address: Option<IpAddr>,
    /// Serve `/healthz` and `/metrics` here (how stale the files are, the
    /// bundle index applied, failures by kind), e.g. 0.0.0.0:9102.
    #[arg(long, env = "PACER_AGENT_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Write the files once and exit (no child, no watch).
    #[arg(long)]
    pub once: bool,
    /// The app to run once the files are written, e.g. `-- nginx -g 'daemon off;'`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// How long a watch blocks on the server (its cap).
const WAIT: Duration = Duration::from_secs(300);
struct Session {
    http: reqwest::Client,
    base: String,
    token: String,
    /// When to renew the token: half its life after it was issued.
    renew_at: Instant,
    health: Health,
    /// When to report again, after a report failed.
    report_retry: Option<Instant>,
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
        health: Health::default(),
        report_retry: None,
    };
    if let Some(addr) = a.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let router = health::router(s.health.clone());
        tokio::spawn(crate::listen::serve(
            listener,
            router,
            crate::listen::Limits::default(),
            std::future::pending(),
        ));
    }
    login(&mut s, &a).await?;
    let mut st = apply::SyncState::default();
    // The app starts only once every file is in place: until then, try
    // again (a check refused a file with no older one, or the server left).
    let mut attempt = 0;
    let manifest = loop {
        let tried = match fetch_manifest(&s, None).await {
            Ok(m) => {
                let r = apply::sync(&s, &a, &m, &mut st, None, false).await;
                passed(&mut s, &a, &m, &mut st, &r).await;
                r.map(|r| (m, r))
            }
            Err(e) => Err(e),
        };
        let mut wait = backoff(attempt + 1);
        match tried {
            Ok((_, r)) if a.once && r.refused => {
                bail!("a check refused a file; the old one stays (see above)")
            }
            Ok((m, r)) if r.complete => {
                if !r.refused {
                    s.health.synced(m.index);
                }
                break m;
            }
            Err(e) if e.is::<Refused>() => return Err(e),
            Ok(_) if a.once => bail!("some files could not be written; see above"),
            Ok(_) => tracing::warn!("not every file is in place yet; waiting to start the app"),
            Err(e) => {
                wait = report::wait_after(&e, attempt + 1);
                s.health.failed(Failure::Server, &format!("{e:#}"));
                tracing::warn!("fetching the config: {e:#}; trying again");
            }
        }
        attempt += 1;
        tokio::time::sleep(wait).await;
        if Instant::now() >= s.renew_at {
            let _ = renew(&mut s)
                .await
                .inspect_err(|e| tracing::warn!("renewing the token: {e:#}"));
        }
    };
    if a.once {
        return Ok(0);
    }
    let mut child = match a.command.split_first() {
        Some((cmd, args)) => Some(
            tokio::process::Command::new(cmd)
                .args(args)
                .envs(&st.env)
                .spawn()
                .with_context(|| format!("starting `{cmd}`"))?,
        ),
        None => None,
    };
    let ran = watch(&mut s, &a, &mut child, manifest, st).await;
    match ran {
        Ok(Ended::Child(status)) => Ok(exit_code(status)),
        Ok(Ended::Signal(sig)) => stop(child, sig).await,
        Err(e) => {
            // The agent can't go on (a refusal: its token is dead): the
            // app goes with it, so Marathon starts a fresh task.
            let _ = stop(child, libc::SIGTERM).await;
            Err(e)
        }
    }
}

/// Why the watch loop ended.
enum Ended {
    Child(std::process::ExitStatus),
    /// SIGTERM, SIGINT or SIGQUIT: passed on to the app, which ends.
    Signal(libc::c_int),
}

/// Renews the token, watches the bundle and writes what changed, until
/// the child ends, a signal comes, or the server refuses.
async fn watch(
    s: &mut Session,
    a: &AgentArgs,
    child: &mut Option<tokio::process::Child>,
    mut manifest: Manifest,
    mut st: apply::SyncState,
) -> anyhow::Result<Ended> {
    let mut signals = Signals::new()?;
    // Failures in a row: how long to wait before the next try.
    let mut attempt = 0;
    loop {
        if Instant::now() >= s.renew_at {
            match renew(s).await {
                Ok(()) => tracing::debug!("token renewed"),
                Err(e) if e.is::<Refused>() => return Err(e),
                // The token lives on a while: try again soon.
                Err(e) => {
                    tracing::warn!("renewing the token: {e:#}; trying again");
                    s.health.failed(Failure::Server, &format!("{e:#}"));
                    s.renew_at = Instant::now() + report::wait_after(&e, attempt + 1);
                }
            }
        }
        let index = manifest.index;
        // A watch ends in time for the next renewal, the server's jitter
        // (up to a sixteenth of the wait) included.
        let mut wait = (s.renew_at.saturating_duration_since(Instant::now()) * 15 / 16)
            .clamp(Duration::from_millis(100), WAIT);
        // A report that failed is sent again after a short watch.
        if let Some(at) = s.report_retry {
            wait = wait.min(
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100)),
            );
        }
        let next = tokio::select! {
            m = fetch_manifest(s, Some((index, wait))) => m,
            status = wait_child(child) => return Ok(Ended::Child(status?)),
            sig = signals.next() => match forward(child, sig) {
                Some(end) => return Ok(end),
                None => continue,
            },
        };
        let next = match next {
            Ok(m) => m,
            Err(e) if e.is::<Refused>() => return Err(e),
            Err(e) => {
                attempt += 1;
                s.health.failed(Failure::Server, &format!("{e:#}"));
                tracing::warn!("watching the config: {e:#}; trying again");
                let wait = report::wait_after(&e, attempt);
                if let Some(end) = pause(wait, child, &mut signals).await {
                    return Ok(end);
                }
                continue;
            }
        };
        let synced = apply::sync(s, a, &next, &mut st, child.as_ref(), true).await;
        passed(s, a, &next, &mut st, &synced).await;
        match synced {
            // Only a complete bundle moves the index on: after a failure
            // the next watch answers at once and the rest is tried again.
            Ok(r) => {
                attempt = 0;
                if !r.refused {
                    s.health.synced(next.index);
                }
                manifest = next;
            }
            Err(e) if e.is::<Refused>() => return Err(e),
            Err(e) => {
                attempt += 1;
                s.health.failed(Failure::Write, &format!("{e:#}"));
                tracing::warn!("writing the config: {e:#}; trying again");
                if let Some(end) = pause(backoff(attempt), child, &mut signals).await {
                    return Ok(end);
                }
            }
        }
    }
}

/// After a pass over `m`: what was applied in full, told to the server. A
/// report that fails is sent again on a pass soon, never ends the agent.
async fn passed(
    s: &mut Session,
    a: &AgentArgs,
    m: &Manifest,
    st: &mut apply::SyncState,
    r: &anyhow::Result<apply::Synced>,
) {
    match r {
        Ok(r) if r.complete && !r.refused => st.applied = st.applied.max(m.index),
        // A dead token is the watch's to handle.
        Err(e) if e.is::<Refused>() => return,
        _ => {}
    }
    let holding = report::Holding {
        app: &a.app_id,
        task: &a.task_id,
        index: st.applied,
        latest: m.index,
        failed: st.failed(),
    };
    match report::send(s, &holding).await {
        Ok(()) => s.report_retry = None,
        Err(e) => {
            tracing::warn!("reporting to the config server: {e:#}; again soon");
            let wait = report::wait_after(&e, 1).max(report::RETRY);
            s.report_retry = Some(Instant::now() + wait);
        }
    }
}

/// Waits `d`, passing signals on; `Some` when one ends the agent (the
/// child's end is noticed by the next turn of the loop).
async fn pause(
    d: Duration,
    child: &mut Option<tokio::process::Child>,
    signals: &mut Signals,
) -> Option<Ended> {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return None,
            // tokio keeps the status: the loop's next wait sees it at once.
            _ = wait_child(child) => return None,
            sig = signals.next() => if let Some(end) = forward(child, sig) {
                return Some(end);
            },
        }
    }
}

/// The signals the agent passes on to the app. It may be PID 1 in a
/// container, where the kernel delivers only the signals a process handles.
struct Signals(Vec<(libc::c_int, tokio::signal::unix::Signal)>);

/// Passed on and then the app is waited for: they end it.
const ENDING: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT];
/// Passed on only: the app reloads, rotates its logs, and so on.
const PASSED: [libc::c_int; 4] = [libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

impl Signals {
    fn new() -> std::io::Result<Signals> {
        let mut all = Vec::new();
        for sig in ENDING.into_iter().chain(PASSED) {
            let kind = tokio::signal::unix::SignalKind::from_raw(sig);
            all.push((sig, tokio::signal::unix::signal(kind)?));
        }
        Ok(Signals(all))
    }

    /// The next signal that came.
    async fn next(&mut self) -> libc::c_int {
        let waits = self.0.iter_mut().map(|(sig, s)| {
            let sig = *sig;
            Box::pin(async move {
                s.recv().await;
                sig
            })
        });
        futures::future::select_all(waits).await.0
    }
}

/// Passes `sig` on to the app; `Some` when it is one that ends the agent.
fn forward(child: &Option<tokio::process::Child>, sig: libc::c_int) -> Option<Ended> {
    if ENDING.contains(&sig) {
        return Some(Ended::Signal(sig));
    }
    if let Some(c) = child {
        tracing::info!(signal = sig, "passing a signal on to the app");
        let _ = signal(c, sig);
    }
    None
}

/// A refusal by the server (401/403): trying again can't help.
#[derive(Debug, thiserror::Error)]
#[error("the config server refused: {0}")]
struct Refused(String);

/// A login or renewal: a refusal (400, 401, 403) and a busy answer (429,
/// 503: waited out as it asks) are errors.
async fn send(rb: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let resp = rb.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if matches!(status, 401 | 403 | 400) {
        return Err(Refused(body["message"].as_str().unwrap_or("").to_string()).into());
    }
    if let Some(busy) = report::busy(status, &headers, &body) {
        return Err(busy.into());
    }
    Ok((status, body))
}

/// Logs in, trying again with capped backoff for as long as the server is
/// away or busy; only a refusal ends it.
async fn login(s: &mut Session, a: &AgentArgs) -> anyhow::Result<()> {
    let body = json!({"taskId": a.task_id, "appId": a.app_id});
    for attempt in 1.. {
        let tried = send(s.http.post(format!("{}/v1/login", s.base)).json(&body)).await;
        let wait = match tried {
            Ok((200, v)) => return take_token(s, &v),
            Err(e) if e.is::<Refused>() => return Err(e),
            Ok((status, v)) => {
                s.health
                    .failed(Failure::Server, &format!("login answered {status}"));
                tracing::warn!(status, "login: {v}; trying again");
                backoff(attempt)
            }
            Err(e) => {
                s.health.failed(Failure::Server, &format!("{e:#}"));
                tracing::warn!("login: {e:#}; trying again");
                report::wait_after(&e, attempt)
            }
        };
        tokio::time::sleep(wait).await;
    }
    unreachable!("the login loop ends only by returning")
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
    if status != 200 {
        let headers = resp.headers().clone();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if matches!(status, 401 | 403) {
            return Err(Refused(v["message"].as_str().unwrap_or("").to_string()).into());
        }
        if let Some(busy) = report::busy(status, &headers, &v) {
            return Err(busy.into());
        }
        bail!("GET /v1/config answered {status}");
    }
    Ok(resp.json().await?)
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

fn signal(c: &tokio::process::Child, sig: libc::c_int) -> Result<(), String> {
    let Some(pid) = c.id() else {
        return Err("the app has ended".into());
    };
    // SAFETY: kill(2) on our own child's pid, which `Child` keeps from
    // being reaped (and reused) until it has been waited for.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!("kill: {}", std::io::Error::last_os_error()))
    }
}

/// Passes `sig` on to the child and waits for it.
async fn stop(child: Option<tokio::process::Child>, sig: libc::c_int) -> anyhow::Result<u8> {
    let Some(mut c) = child else { return Ok(0) };
    let _ = signal(&c, sig);
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
