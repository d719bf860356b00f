//! A new commit's snapshot read from the one before it. Git trees are
//! content-addressed: a subtree whose id is unchanged holds the same files,
//! so only the subtrees whose ids differ are read. A commit that touches
//! one app of 10,000 costs a handful of tree reads, and the paths that
//! differ say which apps' inputs may have changed (`render::incremental`).

use super::tree::{add_tree, entry_of};
use super::{Entry, Result, is_config_path};
use git2::{ObjectType, Oid, Repository, Tree};
use std::collections::{BTreeMap, BTreeSet};

/// Deeper than this, a changed subtree is read whole rather than compared
/// level by level: the comparison recurses, and a hostile tree may be deep.
const MAX_DEPTH: usize = 64;

/// What differs between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// Not known: treat every path as changed.
    Everything,
    /// These config paths were added, removed or changed.
    Paths {
        changed: BTreeSet<String>,
        /// The new snapshot holds a symlink. A link's content is what it
        /// points at, which may change outside the link's directory, so no
        /// app can be known unchanged from its own paths.
        symlinks: bool,
    },
}

impl Delta {
    pub fn everything() -> Delta {
        Delta::Everything
    }

    /// The same commit again: nothing changed.
    pub fn nothing() -> Delta {
        Delta::Paths {
            changed: BTreeSet::new(),
            symlinks: false,
        }
    }

    /// Whether the files of `apps/{app}/` are all as they were, and nothing
    /// every app reads (pacer.yaml, the environment files) changed: then
    /// the app's inputs are the same in every environment.
    pub fn app_unchanged(&self, app: &str) -> bool {
        let Delta::Paths { changed, symlinks } = self else {
            return false;
        };
        if *symlinks || changed.iter().any(|p| !p.starts_with("apps/")) {
            return false;
        }
        let dir = format!("apps/{app}/");
        !changed
            .range(dir.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(&dir))
    }
}

struct Item {
    id: Oid,
    mode: i32,
    tree: bool,
}

fn items(tree: &Tree<'_>, top: bool) -> BTreeMap<String, Item> {
    tree.iter()
        .filter_map(|e| {
            let name = e.name().ok()?.to_string();
            let is_tree = e.kind() == Some(ObjectType::Tree);
            // At the root only `apps/` and `environments/` hold config;
            // `entry_of` filters the files.
            if top && is_tree && name != "apps" && name != "environments" {
                return None;
            }
            Some((
                name,
                Item {
                    id: e.id(),
                    mode: e.filemode(),
                    tree: is_tree,
                },
            ))
        })
        .collect()
}

/// Brings `entries` (the old tree's) to `new`, returning the paths that
/// were added, removed or changed.
pub(super) fn sync(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
    entries: &mut BTreeMap<String, Entry>,
) -> Result<BTreeSet<String>> {
    let mut changed = BTreeSet::new();
    sync_dir(repo, old, new, "", 0, entries, &mut changed)?;
    Ok(changed)
}

fn sync_dir(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
    dir: &str,
    depth: usize,
    entries: &mut BTreeMap<String, Entry>,
    changed: &mut BTreeSet<String>,
) -> Result<()> {
    let top = dir.is_empty();
    let (before, after) = (items(old, top), items(new, top));
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let (o, n) = (before.get(name), after.get(name));
        if let (Some(o), Some(n)) = (o, n) {
            if o.id == n.id && o.mode == n.mode {
                continue;
            }
            if o.tree && n.tree && depth < MAX_DEPTH {
                let (ot, nt) = (repo.find_tree(o.id)?, repo.find_tree(n.id)?);
                let sub = format!("{dir}{name}/");
                sync_dir(repo, &ot, &nt, &sub, depth + 1, entries, changed)?;
                continue;
            }
        }
        let path = format!("{dir}{name}");
        if let Some(o) = o {
            if o.tree {
                let prefix = format!("{path}/");
                let gone: Vec<String> = entries
                    .range(prefix.clone()..)
                    .take_while(|(p, _)| p.starts_with(&prefix))
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in gone {
                    entries.remove(&p);
                    changed.insert(p);
                }
            } else if entries.remove(&path).is_some() {
                changed.insert(path.clone());
            }
        }
        if let Some(n) = n {
            if n.tree {
                let mut added = BTreeMap::new();
                add_tree(
                    repo,
                    &repo.find_tree(n.id)?,
                    &format!("{path}/"),
                    &mut added,
                )?;
                for (p, e) in added {
                    changed.insert(p.clone());
                    entries.insert(p, e);
                }
            } else if is_config_path(&path) {
                let entry = new.get_name(name).map(|e| entry_of(repo, &path, &e));
                if let Some(e) = entry.transpose()?.flatten() {
                    changed.insert(path.clone());
                    entries.insert(path, e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::RepoLocation;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn write(dir: &Path, path: &str, text: &str) {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn commit(dir: &Path) -> String {
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-qm", "c", "--allow-empty"]);
        git(dir, &["rev-parse", "HEAD"])
    }

    /// The incremental read equals the full read after every kind of change,
    /// and names exactly the paths that differ.
    #[test]
    fn reading_from_the_previous_commit_equals_reading_it_whole() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        git(d, &["init", "-q", "-b", "main"]);
        write(d, "pacer.yaml", "version: 1\n");
        write(d, "README.md", "not config\n");
        write(d, "docs/a.md", "not config\n");
        write(d, "environments/dev.yaml", "values: {}\n");
        for app in ["a", "b", "c", "team/d"] {
            write(d, &format!("apps/{app}/app.yaml"), "cpus: 1\n");
            write(d, &format!("apps/{app}/env/dev.yaml"), "instances: 1\n");
        }
        let c1 = commit(d);
        let loc = RepoLocation::discover(d).unwrap();
        type Step = (Box<dyn Fn(&Path)>, Vec<&'static str>);
        let steps: Vec<Step> = vec![
            (
                Box::new(|d| write(d, "apps/b/env/dev.yaml", "instances: 2\n")),
                vec!["apps/b/env/dev.yaml"],
            ),
            (
                Box::new(|d| {
                    std::fs::remove_dir_all(d.join("apps/c")).unwrap();
                    write(d, "apps/e/app.yaml", "cpus: 2\n");
                }),
                vec!["apps/c/app.yaml", "apps/c/env/dev.yaml", "apps/e/app.yaml"],
            ),
            (
                Box::new(|d| write(d, "docs/b.md", "still not config\n")),
                vec![],
            ),
            (
                // A directory becomes a file and a file a directory.
                Box::new(|d| {
                    std::fs::remove_dir_all(d.join("apps/team")).unwrap();
                    write(d, "apps/team", "x\n");
                    std::fs::remove_file(d.join("apps/a/app.yaml")).unwrap();
                    write(d, "apps/a/app.yaml/inner", "y\n");
                }),
                vec![
                    "apps/a/app.yaml",
                    "apps/a/app.yaml/inner",
                    "apps/team",
                    "apps/team/d/app.yaml",
                    "apps/team/d/env/dev.yaml",
                ],
            ),
            (
                Box::new(|d| {
                    std::os::unix::fs::symlink("../b/app.yaml", d.join("apps/e/link.yaml"))
                        .unwrap();
                    write(d, "environments/dev.yaml", "values: {a: 1}\n");
                }),
                vec!["apps/e/link.yaml", "environments/dev.yaml"],
            ),
        ];
        let mut prev = loc.at_rev(&c1).unwrap();
        for (i, (change, want)) in steps.into_iter().enumerate() {
            change(d);
            let c = commit(d);
            let whole = loc.at_rev(&c).unwrap();
            let (since, delta) = loc.at_rev_since(&c, &prev).unwrap();
            assert_eq!(since.entries, whole.entries, "step {i}");
            assert_eq!(since.revision.commit, whole.revision.commit);
            let Delta::Paths { changed, symlinks } = &delta else {
                panic!("step {i}: {delta:?}");
            };
            let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(*changed, want, "step {i}");
            assert_eq!(*symlinks, i == 4, "step {i}");
            prev = since;
        }
    }

    #[test]
    fn an_app_is_unchanged_only_when_nothing_it_reads_changed() {
        let d = |paths: &[&str], symlinks| Delta::Paths {
            changed: paths.iter().map(|s| s.to_string()).collect(),
            symlinks,
        };
        let one = d(&["apps/web/env/dev.yaml"], false);
        assert!(!one.app_unchanged("web"));
        assert!(one.app_unchanged("we"));
        assert!(one.app_unchanged("web2"));
        assert!(one.app_unchanged("api"));
        assert!(!d(&["apps/web/env/dev.yaml"], true).app_unchanged("api"));
        assert!(!d(&["environments/dev.yaml"], false).app_unchanged("api"));
        assert!(!d(&["pacer.yaml"], false).app_unchanged("api"));
        assert!(!Delta::Everything.app_unchanged("api"));
        assert!(d(&[], false).app_unchanged("api"));
    }
}
