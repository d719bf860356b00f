//! Putting a manifest on disk, file by file: fetch, stage beside the live
//! file, run its `check` on the staged copy (a failure keeps the old file),
//! rename it into place, then run the reload actions once for all the files
//! that changed. A failed reload puts the previous files back. Content a
//! check or reload refused is not tried again until the manifest changes it.

use super::files::{
    FileMeta, Manifest, OnReload, check_argv, hash, parse_mode, reload_action, signal_number,
    stage, to_write, under_root,
};
use super::health::Failure;
use super::{AgentArgs, Refused, Session, file_url};
use anyhow::bail;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a check or reload command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an HTTP reload may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agent remembers between syncs.
#[derive(Default)]
pub struct SyncState {
    /// Content a check or reload refused, by file name, with the stage
    /// that refused it: skipped until the manifest's entry for it changes.
    rejected: HashMap<String, (FileMeta, &'static str)>,
    /// The file the last sync could not write (tried again on the next).
    write_failed: Option<String>,
    /// The newest index applied in full (0: none yet).
    pub applied: u64,
    /// The variables of the env entries, for the app when it starts (never
    /// logged).
    pub env: BTreeMap<String, String>,
    /// Each env entry's hash as read; a later change waits for a new task.
    env_read: HashMap<String, String>,
}

impl SyncState {
    /// The files of the last manifest not applied, with the stage that
    /// stopped each (for the report).
    pub fn failed(&self) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> = self
            .rejected
            .iter()
            .map(|(name, (_, stage))| (name.clone(), *stage))
            .collect();
        out.extend(self.write_failed.iter().map(|n| (n.clone(), "write")));
        out.sort();
        out
    }
}

/// How a sync ended.
pub struct Synced {
    /// Every file of the manifest is on disk (in its new or an old version).
    pub complete: bool,
    /// Some new content was refused (check or reload): the old file stays.
    pub refused: bool,
}

/// One file replaced, with what it replaced (for a rollback).
struct Written {
    meta: FileMeta,
    target: PathBuf,
    previous: Option<(Vec<u8>, u32)>,
}

/// Writes the files of `m` that differ from disk. With `child` (the app
/// runs), their reload actions follow.
pub async fn sync(
    s: &Session,
    a: &AgentArgs,
    m: &Manifest,
    st: &mut SyncState,
    child: Option<&tokio::process::Child>,
    started: bool,
) -> anyhow::Result<Synced> {
    let root = a.root.clone();
    let on_disk = |path: &str| {
        let p = under_root(&root, path).ok()?;
        std::fs::read(p).ok().map(|b| hash(&b))
    };
    let mut out = Synced {
        complete: true,
        refused: false,
    };
    st.rejected
        .retain(|name, (meta, _)| m.files.iter().any(|f| f.name == *name && f == meta));
    st.write_failed = None;
    read_env(s, m, st, started, &mut out).await?;
    let mut written = Vec::new();
    for f in to_write(m, on_disk) {
        if f.actions.env {
            continue;
        }
        let target = under_root(&a.root, &f.path).map_err(anyhow::Error::msg)?;
        if st.rejected.contains_key(&f.name) {
            out.refused = true;
            out.complete &= target.exists();
            continue;
        }
        let mode = parse_mode(&f.mode).unwrap_or(0o644);
        let content = fetch(s, f).await?;
        if hash(&content) != f.hash {
            // The bundle moved on meanwhile: the next watch brings it.
            tracing::info!(file = %f.name, "content changed while fetched; waiting for the next manifest");
            out.complete &= target.exists();
            continue;
        }
        let t = target.clone();
        let staged = match tokio::task::spawn_blocking(move || stage(&t, &content, mode)).await? {
            Ok(staged) => staged,
            Err(e) => {
                st.write_failed = Some(f.name.clone());
                return Err(anyhow::Error::new(e).context(format!("staging {}", target.display())));
            }
        };
        if let Some(check) = &f.actions.check {
            let argv = check_argv(check, staged.path());
            let env = [("PACER_STAGED_PATH", staged.path().as_os_str())];
            if let Err(why) = run_command(&argv, &env).await {
                tracing::error!(file = %f.name, path = %target.display(), "check refused the new content ({why}); the old file stays");
                s.health
                    .failed(Failure::Check, &format!("{}: {why}", f.name));
                st.rejected.insert(f.name.clone(), (f.clone(), "check"));
                out.refused = true;
                out.complete &= target.exists();
                continue;
            }
        }
        let previous = std::fs::metadata(&target).ok().and_then(|md| {
            use std::os::unix::fs::PermissionsExt;
            let bytes = std::fs::read(&target).ok()?;
            Some((bytes, md.permissions().mode() & 0o7777))
        });
        let t = target.clone();
        let persisted =
            tokio::task::spawn_blocking(move || super::files::persist(staged, &t)).await?;
        if let Err(e) = persisted {
            st.write_failed = Some(f.name.clone());
            return Err(anyhow::Error::new(e).context(format!("writing {}", target.display())));
        }
        tracing::info!(file = %f.name, path = %target.display(), reload = %f.reload, "config file written");
        written.push(Written {
            meta: f.clone(),
            target,
            previous,
        });
    }
    if started {
        out.refused |= reload(s, &written, st, child).await;
    }
    Ok(out)
}

/// Reads the env entries before the app starts; after, a change is only
/// noted: the app's environment is set when its task starts (and a change
/// rolls the tasks).
async fn read_env(
    s: &Session,
    m: &Manifest,
    st: &mut SyncState,
    started: bool,
    out: &mut Synced,
) -> anyhow::Result<()> {
    for f in m.files.iter().filter(|f| f.actions.env) {
        if st.env_read.get(&f.name) == Some(&f.hash) {
            continue;
        }
        if started {
            tracing::info!(entry = %f.name, "env entry changed; the app sees it when its task restarts");
            st.env_read.insert(f.name.clone(), f.hash.clone());
            continue;
        }
        let content = fetch(s, f).await?;
        if hash(&content) != f.hash {
            out.complete = false;
            continue;
        }
        match crate::model::file_actions::parse_env(&content) {
            Ok(vars) => {
                st.env.extend(vars);
                st.env_read.insert(f.name.clone(), f.hash.clone());
            }
            Err((line, why)) => {
                // The server validated it: a bad entry here is a bug or
                // tampering. Never quote a value.
                tracing::error!(entry = %f.name, line, "env entry refused: {why}");
                s.health
                    .failed(Failure::Check, &format!("{}: line {line}: {why}", f.name));
                st.rejected.insert(f.name.clone(), (f.clone(), "check"));
                out.complete = false;
                out.refused = true;
            }
        }
    }
    Ok(())
}

async fn fetch(s: &Session, f: &FileMeta) -> anyhow::Result<bytes::Bytes> {
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
    Ok(resp.bytes().await?)
}

/// Runs each distinct reload action once, in the files' order; the files
/// of an action that failed get their previous content back. True when
/// one failed.
async fn reload(
    s: &Session,
    written: &[Written],
    st: &mut SyncState,
    child: Option<&tokio::process::Child>,
) -> bool {
    let mut actions: Vec<OnReload> = Vec::new();
    for w in written {
        let a = reload_action(&w.meta);
        if !actions.contains(&a) {
            actions.push(a);
        }
    }
    let mut failed = false;
    for action in actions {
        let done = match &action {
            OnReload::None => Ok(()),
            OnReload::Signal(name) => match (child, signal_number(name)) {
                (Some(c), Some(sig)) => super::signal(c, sig),
                // No app to tell: it reads its files when it starts.
                (None, _) => Ok(()),
                (_, None) => Err(format!("unknown signal {name}")),
            },
            OnReload::Command(argv) => run_command(argv, &[]).await,
            OnReload::Http(h) => http_reload(&h.method, &h.url).await,
        };
        let Err(why) = done else { continue };
        failed = true;
        for w in written.iter().filter(|w| reload_action(&w.meta) == action) {
            tracing::error!(file = %w.meta.name, path = %w.target.display(), "reload failed ({why}); the previous file is put back");
            s.health
                .failed(Failure::Reload, &format!("{}: {why}", w.meta.name));
            st.rejected
                .insert(w.meta.name.clone(), (w.meta.clone(), "reload"));
            if let Err(e) = restore(&w.target, w.previous.as_ref()) {
                tracing::error!(path = %w.target.display(), "putting the previous file back: {e}");
                s.health.failed(Failure::Write, &e.to_string());
            }
        }
    }
    failed
}

/// Puts `previous` back (atomically), or removes a file that was new.
fn restore(target: &Path, previous: Option<&(Vec<u8>, u32)>) -> std::io::Result<()> {
    match previous {
        Some((bytes, mode)) => super::files::write_atomic(target, bytes, *mode),
        None => std::fs::remove_file(target),
    }
}

/// Runs `argv` (no shell) with its output on the agent's stderr, within
/// [`COMMAND_TIMEOUT`]; Ok when it exits 0.
async fn run_command(argv: &[String], env: &[(&str, &std::ffi::OsStr)]) -> Result<(), String> {
    let Some((prog, args)) = argv.split_first() else {
        return Err("no command".into());
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("starting `{prog}`: {e}"))?;
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(st)) if st.success() => Ok(()),
        Ok(Ok(st)) => Err(format!("`{prog}` ended with {st}")),
        Ok(Err(e)) => Err(format!("waiting for `{prog}`: {e}")),
        Err(_) => Err(format!(
            "`{prog}` ran over {}s and was killed",
            COMMAND_TIMEOUT.as_secs()
        )),
    }
}

/// Calls the app's reload endpoint; a 2xx is success. A client of its own:
/// the config server's token never goes to the app.
async fn http_reload(method: &str, url: &str) -> Result<(), String> {
    let method: reqwest::Method = method.parse().map_err(|_| format!("method {method}"))?;
    let client = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    match client.request(method, url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{url} answered {}", r.status())),
        Err(e) => Err(format!("{url}: {e}")),
    }
}
