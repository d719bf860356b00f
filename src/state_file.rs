//! Small JSON files the daemon keeps across restarts in its state
//! directory (`--state-dir`): read with a size budget, written so that a
//! crash leaves the old file or the new one, never a torn one. The
//! reconcile loop's (signed-commit anchors, released endpoints) and the
//! config server's (hot deliveries in progress).

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Read;
use std::path::Path;

/// Reads `path`: `Ok(None)` when it is absent; an error when it is over
/// `limit` bytes, unreadable or not the expected JSON.
pub fn read_json<T: DeserializeOwned>(path: &Path, limit: u64) -> Result<Option<T>, String> {
    let mut text = String::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            f.take(limit + 1)
                .read_to_string(&mut text)
                .map_err(|e| e.to_string())?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    if text.len() as u64 > limit {
        return Err(format!("over {limit} bytes"));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("does not parse: {e}"))
}

/// Writes `value` to `path`: a temporary file, fsynced, then a rename and
/// an fsync of the directory. The directory is made 0700 when absent: the
/// state is the daemon's own. The temporary file is made anew, mode 0600:
/// a stale one, or a symlink planted in its place, is removed, never
/// followed.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp)?;
    std::io::Write::write_all(&mut f, &bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trip_absent_oversized_and_garbage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/x.json");
        assert_eq!(read_json::<BTreeMap<String, u32>>(&p, 100).unwrap(), None);
        let m = BTreeMap::from([("a".to_string(), 1u32)]);
        write_json(&p, &m).unwrap();
        assert_eq!(
            read_json::<BTreeMap<String, u32>>(&p, 100).unwrap(),
            Some(m)
        );
        assert!(
            read_json::<BTreeMap<String, u32>>(&p, 3)
                .unwrap_err()
                .contains("over 3")
        );
        std::fs::write(&p, b"{not json").unwrap();
        assert!(
            read_json::<BTreeMap<String, u32>>(&p, 100)
                .unwrap_err()
                .contains("parse")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("sub"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_planted_as_the_temporary_file_is_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (p, victim) = (d.path().join("x.json"), d.path().join("victim"));
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("x.tmp")).unwrap();
        write_json(&p, &[1, 2]).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(read_json::<Vec<u8>>(&p, 100).unwrap(), Some(vec![1, 2]));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
