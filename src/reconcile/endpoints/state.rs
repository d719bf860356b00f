//! The released sets kept across restarts (`<state dir>/endpoints.json`).

use super::MAX_SERVICES;
use crate::model::endpoints::ServiceSet;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest state file read back.
const MAX_STATE_BYTES: u64 = 64 << 20;

/// The released sets kept in `path`; a missing file is none, and a file
/// that can't be read is logged and ignored (the guard then starts afresh).
pub(super) fn load_state(path: &std::path::Path) -> BTreeMap<String, ServiceSet> {
    use std::io::Read;
    let read = std::fs::File::open(path).and_then(|f| {
        let mut text = String::new();
        f.take(MAX_STATE_BYTES + 1).read_to_string(&mut text)?;
        Ok(text)
    });
    let text = match read {
        Ok(t) if t.len() as u64 <= MAX_STATE_BYTES => t,
        Ok(_) => {
            tracing::warn!(file = %path.display(), "the kept endpoints are over {} MiB; starting afresh", MAX_STATE_BYTES >> 20);
            return BTreeMap::new();
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), "the kept endpoints can't be read ({e}); starting afresh");
            return BTreeMap::new();
        }
    };
    match serde_json::from_str::<BTreeMap<String, ServiceSet>>(&text) {
        Ok(m) => m
            .into_iter()
            .take(MAX_SERVICES)
            .map(|(id, s)| (id, ServiceSet::new(s.port_names, s.tasks)))
            .collect(),
        Err(e) => {
            tracing::warn!(file = %path.display(), "the kept endpoints don't parse ({e}); starting afresh");
            BTreeMap::new()
        }
    }
}

/// Writes the released sets: a temporary file, then a rename, so a crash
/// leaves the old file or the new one.
pub(super) fn save_state(path: &std::path::Path, sets: &BTreeMap<String, Arc<ServiceSet>>) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            // The state directory is the daemon's own (the config server
            // refuses one that others may read): made 0700 if absent.
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(sets).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        // On disk before the rename: a crash must leave the old file or the
        // new one, never a torn one the guard would start afresh from.
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(file = %path.display(), "keeping the released endpoints failed: {e}");
    }
}
