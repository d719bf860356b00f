//! The state directory and the key file hold what forges tokens: they must
//! be ours alone. A directory in a shared place (`/tmp`) may have been made
//! by another local user, with their own `token.key` in it, and a file name
//! in it may be a symlink to anything. So: a directory or key file not owned
//! by this process's user, or open to group or others, is refused with the
//! `chmod`/`chown` that fixes it; files are opened without following
//! symlinks and created new (temp file, fsync, then put in place).

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Why a path may not hold secrets: `None` when it is private. `owners`:
/// the uids allowed to own it (ours; root too for an operator's key file).
pub fn unsafe_because(uid: u32, mode: u32, owners: &[u32]) -> Option<String> {
    if !owners.contains(&uid) {
        return Some(format!("is owned by uid {uid}, not by this user"));
    }
    if mode & 0o077 != 0 {
        return Some(format!(
            "is open to group or others (mode {:o})",
            mode & 0o777
        ));
    }
    None
}

#[cfg(unix)]
fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks `meta` (of `path`, a `what`) is ours and private.
#[cfg(unix)]
pub fn check(path: &Path, what: &str, meta: &Metadata, root_ok: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = my_uid();
    let owners: &[u32] = if root_ok { &[me, 0] } else { &[me] };
    if let Some(why) = unsafe_because(meta.uid(), meta.mode(), owners) {
        let fix = if meta.is_dir() { "700" } else { "600" };
        anyhow::bail!(
            "{what} {} {why}: another user could read or replace the token key; \
             `chown {me} {p} && chmod {fix} {p}`, or use a directory of the daemon's own (--state-dir)",
            path.display(),
            p = path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check(_: &Path, _: &str, _: &Metadata, _: bool) -> anyhow::Result<()> {
    Ok(())
}

/// Makes `dir` (mode 0700) unless it exists, then checks it is a real
/// directory (not a symlink), ours and private.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| anyhow::anyhow!("the state directory {}: {e}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| anyhow::anyhow!("the state directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!(
            "the state directory {} is a symlink or not a directory; give --state-dir a real directory of the daemon's own",
            dir.display()
        );
    }
    check(dir, "the state directory", &meta, false)
}

fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
    o
}

/// Opens `path` for reading, refusing a symlink.
pub fn open_read(path: &Path) -> io::Result<File> {
    options().read(true).open(path)
}

/// Opens `path` for appending, refusing a symlink.
pub fn open_append(path: &Path) -> io::Result<File> {
    options().append(true).open(path)
}

/// A new private file (0600) at `path`: never an existing file, never
/// through a symlink.
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut o = options();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Writes `bytes` to `<path>.tmp` (a stale one, or a symlink planted there,
/// is removed first: never followed), fsyncs it and returns its path, for
/// the caller to put in place.
pub fn write_temp(path: &Path, bytes: &[u8]) -> io::Result<std::path::PathBuf> {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    let tmp = std::path::PathBuf::from(name);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = create_new(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(tmp)
}

/// Syncs the directory holding `path`, so a rename in it survives a crash.
pub fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_our_private_paths_pass() {
        assert_eq!(unsafe_because(1000, 0o40700, &[1000]), None);
        assert_eq!(unsafe_because(0, 0o100400, &[1000, 0]), None);
        assert!(
            unsafe_because(1001, 0o40700, &[1000])
                .unwrap()
                .contains("uid 1001")
        );
        assert!(
            unsafe_because(1000, 0o40755, &[1000])
                .unwrap()
                .contains("755")
        );
        assert!(unsafe_because(1000, 0o100620, &[1000]).is_some());
    }

    #[test]
    fn a_shared_or_foreign_state_dir_is_refused_with_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        ensure_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "made private");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("chmod 700") && e.contains("777"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        if my_uid() == 0 {
            // Pre-created by another user: refused however private.
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let e = ensure_dir(&dir).unwrap_err().to_string();
            assert!(e.contains("uid 65534") && e.contains("chown"), "{e}");
        }
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        assert!(
            ensure_dir(&link)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let path = root.path().join("used");
        std::os::unix::fs::symlink(&victim, root.path().join("used.tmp")).unwrap();
        let tmp = write_temp(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&tmp).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(open_append(&path).is_err());
        assert!(open_read(&path).is_err());
    }
}
