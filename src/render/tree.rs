//! Problems with the shape of the config tree itself, found before any file
//! is parsed: symlinks and submodules.
//!
//! A symlink lets a commit swap an app's directory for something outside
//! Git's view (`ln -s /elsewhere apps/web`): the app would look absent and
//! the daemon would delete it. So every symlink is an error at its path,
//! and one inside (or in place of) an app's directory makes that app
//! invalid: it keeps running at its last good version, never "absent".

use super::Diagnostic;
use super::diagnostic::quote_path;
use crate::model::AppPath;
use crate::source::{EntryKind, Snapshot};
use std::collections::BTreeMap;

/// Problems found in the tree: those of the repo as a whole and those that
/// belong to one app (keyed by app path).
#[derive(Debug, Default)]
pub struct TreeProblems {
    pub repo: Vec<Diagnostic>,
    pub apps: BTreeMap<AppPath, Vec<Diagnostic>>,
}

/// Finds every symlink and submodule. `apps` are the app paths found from
/// their `app.yaml`; a link that takes the place of an app's directory
/// names an app of its own, so that the app is invalid rather than gone.
pub fn check(snapshot: &Snapshot, apps: &[AppPath]) -> TreeProblems {
    let mut out = TreeProblems::default();
    for (path, entry) in snapshot.entries() {
        let what = match &entry.kind {
            EntryKind::File => continue,
            EntryKind::Symlink(target) => format!("a symlink (to `{}`)", quote_path(target)),
            EntryKind::Submodule => "a Git submodule".to_string(),
        };
        let d = Diagnostic::file(
            path,
            format!("{what}: the config repo may not contain symlinks or submodules"),
        )
        .with_hint("replace it with the real files, committed in this repo");
        let Some(rel) = path.strip_prefix("apps/") else {
            out.repo.push(d);
            continue;
        };
        // The app that owns the path, or else the app the link stands for.
        let owner = apps
            .iter()
            .find(|a| rel == a.as_str() || rel.starts_with(&format!("{a}/")))
            .cloned()
            .unwrap_or_else(|| {
                rel.strip_suffix("/app.yaml")
                    .or_else(|| rel.split_once("/env/").map(|(a, _)| a))
                    .or_else(|| rel.split_once("/files/").map(|(a, _)| a))
                    .unwrap_or(rel)
                    .to_string()
            });
        out.apps.entry(owner).or_default().push(d);
    }
    out
}
