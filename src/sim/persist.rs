//! `--state FILE`: the whole state as JSON, replaced atomically.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::state::{Settings, SimState};

/// Write to a sibling temp file, fsync, then rename over `path`: a crash
/// leaves either the old or the new state, never a torn file.
pub fn save(path: &Path, state: &SimState) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    serde_json::to_writer(&mut f, state)?;
    f.flush()?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Load a saved state; the command line's settings win over the saved ones.
pub fn load(path: &Path, settings: Settings) -> anyhow::Result<SimState> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut state: SimState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a simulator state file", path.display()))?;
    let never_healthy = std::mem::take(&mut state.settings.never_healthy);
    state.settings = Settings {
        never_healthy,
        ..settings
    };
    // Everything may need attention after a restart.
    state.pending = state.apps.keys().cloned().collect();
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::commands::Command;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let mut s = SimState::seeded(1_000, Settings::default(), 7);
        s.apply(
            Command::CreateApp {
                body: json!({"id": "/a", "cmd": "x"}),
            },
            1_000,
        )
        .unwrap();
        save(&p, &s).unwrap();
        let back = load(&p, Settings::default()).unwrap();
        assert_eq!(back.apps["/a"].app, s.apps["/a"].app);
        assert_eq!(back.used_ports, s.used_ports);
        assert_eq!(back.deployments.len(), 1);
        assert!(!p.with_extension("tmp").exists());
    }
}
