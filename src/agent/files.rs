//! The agent's side of a bundle on disk: which files need writing (pure),
//! where a task path lands under the root, and the atomic write itself.

pub use crate::model::file_actions::{FileActions, HttpReload, OnReload};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use tempfile::NamedTempFile;

/// One file of the server's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMeta {
    pub name: String,
    pub path: String,
    pub mode: String,
    pub hash: String,
    pub reload: String,
    /// `check` and `onReload`; absent from an older server's manifest.
    #[serde(flatten, default)]
    pub actions: FileActions,
}

/// `GET /v1/config`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub index: u64,
    #[serde(default)]
    pub commit: Option<String>,
    pub files: Vec<FileMeta>,
}

/// `sha256:<hex>` of `bytes`, as the manifest spells hashes.
pub fn hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Where a task path (`/etc/app/x.conf`) lands under `root`. The server
/// renders only normalised absolute paths, but the agent trusts no input:
/// anything that could leave `root` is refused.
pub fn under_root(root: &Path, path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.is_absolute() || path.chars().any(char::is_control) {
        return Err(format!(
            "`{}` is not an absolute task path",
            path.escape_debug()
        ));
    }
    let mut out = root.to_path_buf();
    let mut depth = 0;
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(s) => {
                out.push(s);
                depth += 1;
            }
            _ => return Err(format!("`{}` is not a plain path", path.escape_debug())),
        }
    }
    if depth == 0 {
        return Err(format!("`{}` names no file", path.escape_debug()));
    }
    Ok(out)
}

/// The files whose content on disk (`on_disk`: a file's path → its hash,
/// `None` when absent or unreadable) is not the manifest's.
pub fn to_write(manifest: &Manifest, on_disk: impl Fn(&str) -> Option<String>) -> Vec<&FileMeta> {
    manifest
        .files
        .iter()
        .filter(|f| on_disk(&f.path).as_deref() != Some(f.hash.as_str()))
        .collect()
}

/// The mode a manifest gives (`0644`), if it is an octal permission.
pub fn parse_mode(mode: &str) -> Option<u32> {
    u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o777)
}

/// Replaces `path` with `content`: a temporary file in the same directory,
/// its mode set, fsync'd, renamed over the old one; the directory fsync'd.
/// A reader sees the old content or the new, never half of one.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    persist(stage(path, content, mode)?, path)
}

/// The first half of [`write_atomic`]: the new content beside `path`, with
/// its mode, fsync'd, not yet in place (dropped: removed).
pub fn stage(path: &Path, content: &[u8], mode: u32) -> std::io::Result<NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".pacer-")
        .tempfile_in(dir)?;
    tmp.write_all(content)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// The second half: the staged file renamed over `path`, the directory
/// fsync'd.
pub fn persist(staged: NamedTempFile, path: &Path) -> std::io::Result<()> {
    staged.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(path.parent().unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// How long to wait before try `attempt` (1, 2, ...) after a failure:
/// doubling from half a second, capped at [`MAX_BACKOFF`], and never
/// giving up (the server may be away for a while; the files stay).
pub fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// The longest wait between tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What tells the app that `f` changed: its `onReload`, else SIGHUP for a
/// `hot` file and nothing for a `restart` one (its tasks are rolled).
pub fn reload_action(f: &FileMeta) -> OnReload {
    match &f.actions.on_reload {
        Some(a) => a.clone(),
        None if f.reload == "hot" => OnReload::Signal("HUP".into()),
        None => OnReload::None,
    }
}

/// The check's arguments with `{path}` replaced by the staged file's path.
pub fn check_argv(check: &[String], staged: &Path) -> Vec<String> {
    let staged = staged.to_string_lossy();
    check
        .iter()
        .map(|a| a.replace(crate::model::file_actions::STAGED_PLACEHOLDER, &staged))
        .collect()
}

/// A signal's number by its name (`HUP`, `SIGUSR1`).
pub fn signal_number(name: &str) -> Option<i32> {
    Some(match name.strip_prefix("SIG").unwrap_or(name) {
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "TERM" => libc::SIGTERM,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        "CONT" => libc::SIGCONT,
        "TSTP" => libc::SIGTSTP,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_never_ends() {
        let s: Vec<u64> = (1..=8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(s, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn the_reload_action_follows_the_file() {
        let mut f = manifest().files[0].clone();
        assert_eq!(reload_action(&f), OnReload::Signal("HUP".into()));
        f.reload = "restart".into();
        assert_eq!(reload_action(&f), OnReload::None);
        f.actions.on_reload = Some(OnReload::Command(vec!["reload".into()]));
        assert_eq!(reload_action(&f), OnReload::Command(vec!["reload".into()]));
    }

    #[test]
    fn the_check_sees_the_staged_path_and_every_sendable_signal_has_a_number() {
        let argv = check_argv(
            &["nginx".into(), "-t".into(), "-c".into(), "{path}".into()],
            Path::new("/etc/nginx/.pacer-x"),
        );
        assert_eq!(argv, ["nginx", "-t", "-c", "/etc/nginx/.pacer-x"]);
        for s in crate::model::file_actions::SIGNALS {
            assert!(signal_number(s).is_some(), "{s}");
        }
        assert_eq!(signal_number("SIGUSR2"), Some(libc::SIGUSR2));
        assert_eq!(signal_number("KILL"), None);
    }

    fn manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "env": "dev", "appId": "/dev/web", "index": 7, "commit": "c",
            "files": [
                {"name": "a", "path": "/etc/a", "mode": "0644", "hash": hash(b"a"), "reload": "hot"},
                {"name": "b", "path": "/etc/b", "mode": "0600", "hash": hash(b"b"), "reload": "restart"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn only_files_that_differ_are_written() {
        let m = manifest();
        let same = |p: &str| Some(hash(p.trim_start_matches("/etc/").as_bytes()));
        assert!(
            to_write(&m, same).is_empty(),
            "unchanged files are left alone"
        );
        let b_old = |p: &str| (p == "/etc/a").then(|| hash(b"a"));
        let names: Vec<&str> = to_write(&m, b_old)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn task_paths_stay_under_the_root() {
        let root = Path::new("/sandbox");
        assert_eq!(
            under_root(root, "/etc/nginx/nginx.conf").unwrap(),
            PathBuf::from("/sandbox/etc/nginx/nginx.conf")
        );
        for bad in ["etc/x", "/etc/../../x", "/", "/a/./../b", "/a\n"] {
            assert!(under_root(root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_are_octal_permissions() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("0600"), Some(0o600));
        assert_eq!(parse_mode("7777"), None);
        assert_eq!(parse_mode("rw"), None);
    }

    #[test]
    fn an_atomic_write_replaces_content_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etc/app/x.conf");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        let left: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }
}
