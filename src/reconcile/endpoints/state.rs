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
    match crate::state_file::read_json::<BTreeMap<String, ServiceSet>>(path, MAX_STATE_BYTES) {
        Ok(Some(m)) => m
            .into_iter()
            .take(MAX_SERVICES)
            .map(|(id, s)| (id, ServiceSet::new(s.port_names, s.tasks)))
            .collect(),
        Ok(None) => BTreeMap::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), "the kept endpoints can't be read ({e}); starting afresh");
            BTreeMap::new()
        }
    }
}

/// Writes the released sets: a crash leaves the old file or the new one,
/// never a torn one the guard would start afresh from.
pub(super) fn save_state(path: &std::path::Path, sets: &BTreeMap<String, Arc<ServiceSet>>) {
    if let Err(e) = crate::state_file::write_json(path, sets) {
        tracing::warn!(file = %path.display(), "keeping the released endpoints failed: {e}");
    }
}
