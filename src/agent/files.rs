//! The agent's side of a bundle on disk: which files need writing (pure),
//! where a task path lands under the root, and the atomic write itself.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// One file of the server's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMeta {
    pub name: String,
    pub path: String,
    pub mode: String,
    pub hash: String,
    pub reload: String,
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
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
