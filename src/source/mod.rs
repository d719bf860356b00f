//! Reads a config repo at one revision, from Git's object database or from the
//! working tree, into a [`Snapshot`]. The only user of git2 in the pipeline.
//!
//! A snapshot lists every file under the config repo's root with a content id
//! (the Git blob id, also computed for working-tree files) but reads contents
//! only on demand. Comparing ids is how `diff` finds the apps whose inputs
//! changed without reading, let alone rendering, the others.

pub mod delta;
pub mod remote;
pub mod rewind;
mod tree;
pub mod verify;

use tree::{add_tree, root_tree};

use git2::{ObjectType, Oid, Repository};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Larger files are refused: config is small, and a stray artifact committed
/// by mistake must not take the renderer's memory with it.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Symlinks may chain, but a cycle must end in an error, not a hang.
const MAX_SYMLINK_HOPS: usize = 16;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{path}` is not inside a Git repository")]
    NotARepo {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("the config repo `{path}` does not exist or is not a directory")]
    NoRepoDir { path: PathBuf },
    #[error("revision `{rev}` not found in `{repo}`")]
    RevNotFound {
        rev: String,
        repo: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("revision `{rev}` has no directory `{prefix}` (the config repo's root)")]
    NoPrefixAtRev { rev: String, prefix: String },
    #[error("reading Git objects")]
    Git(#[from] git2::Error),
    #[error("reading `{path}`")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file is {size} bytes, over the limit of {limit} bytes for config files")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}:{line}:{column}: file is not valid UTF-8 (save it as UTF-8)")]
    NotUtf8 {
        path: String,
        line: usize,
        column: usize,
    },
    #[error("{path}: symlink to `{target}` points outside the config repo")]
    SymlinkOutside { path: String, target: String },
    #[error("{path}: symlink chain is too long or loops")]
    SymlinkLoop { path: String },
    #[error("{path}: symlink to `{target}`, which does not exist")]
    SymlinkDangling { path: String, target: String },
    #[error("{path}: no such file")]
    NotFound { path: String },
}

/// What a snapshot was read from. `commit` is the full commit id, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub commit: Option<String>,
    /// The working tree differs from `commit` (or there is no commit).
    pub dirty: bool,
    /// How the user named it: `HEAD~1`, `main`, `working tree`.
    pub name: String,
}

impl Revision {
    /// The value of the `pacer.commit` label: the commit id, marked when the
    /// working tree has uncommitted changes so it is never mistaken for it.
    pub fn label(&self) -> String {
        match (&self.commit, self.dirty) {
            (Some(c), false) => c.clone(),
            (Some(c), true) => format!("{c}-dirty"),
            (None, _) => "uncommitted".to_string(),
        }
    }

    pub fn short(&self) -> String {
        match &self.commit {
            Some(c) => {
                let s = &c[..c.len().min(12)];
                if self.dirty {
                    format!("{s}-dirty")
                } else {
                    s.to_string()
                }
            }
            None => "uncommitted".into(),
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.short())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    /// The link's target as written, relative to the link's directory.
    Symlink(String),
    /// A Git submodule (a commit in the tree): it has no content here.
    Submodule,
}

/// One file in a snapshot. `id` is its Git blob id, so equal ids mean equal
/// contents across revisions and the working tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: Oid,
    /// Known for working-tree files; for Git blobs, read with the blob.
    pub size: Option<u64>,
    pub kind: EntryKind,
}

enum Store {
    Git(GitPool),
    Dir(PathBuf),
    Memory(BTreeMap<String, Vec<u8>>),
}

/// Handles on one Git repository, one per thread reading at a time: a
/// `Repository` can't be shared between threads, and one behind a lock
/// would make a render on every core read its blobs one at a time.
struct GitPool {
    path: PathBuf,
    idle: Mutex<Vec<Repository>>,
}

impl GitPool {
    fn with<T>(&self, f: impl FnOnce(&Repository) -> Result<T>) -> Result<T> {
        let taken = self.idle.lock().pop();
        let repo = match taken {
            Some(r) => r,
            None => Repository::open(&self.path)?,
        };
        let out = f(&repo);
        self.idle.lock().push(repo);
        out
    }
}

/// A config repo's files at one revision.
pub struct Snapshot {
    pub revision: Revision,
    entries: BTreeMap<String, Entry>,
    /// The config root's Git tree, for a snapshot read from Git.
    tree: Option<Oid>,
    store: Store,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// Where a config repo lives: a directory, maybe inside a Git repository
/// (the config repo may be a sub-directory of a larger one).
pub struct RepoLocation {
    /// The config repo's root on disk.
    pub root: PathBuf,
    /// The Git repository holding it, if any.
    pub git: Option<GitLocation>,
}

pub struct GitLocation {
    pub repo_path: PathBuf,
    /// The config repo's root inside the Git tree, `""` for the top, with `/` separators.
    pub prefix: String,
}

impl RepoLocation {
    /// Finds the config repo at `dir` and the Git repository around it.
    pub fn discover(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::NoRepoDir { path: dir.into() });
        }
        let root = dir.canonicalize().map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let git = match Repository::discover(&root) {
            Ok(repo) => match repo.workdir().and_then(|w| w.canonicalize().ok()) {
                Some(workdir) => {
                    let rel = root.strip_prefix(&workdir).unwrap_or(Path::new(""));
                    Some(GitLocation {
                        repo_path: repo.path().to_path_buf(),
                        prefix: to_slash(rel),
                    })
                }
                None => None,
            },
            Err(_) => None,
        };
        Ok(RepoLocation { root, git })
    }

    /// A config repo inside a bare Git repository (the daemon's clone), at
    /// `prefix` within its tree (`""` for the top). Only Git revisions can be
    /// read from it.
    pub fn bare(git_dir: &Path, prefix: &str) -> Self {
        RepoLocation {
            root: git_dir.to_path_buf(),
            git: Some(GitLocation {
                repo_path: git_dir.to_path_buf(),
                prefix: prefix.trim_matches('/').to_string(),
            }),
        }
    }

    fn git(&self) -> Result<&GitLocation> {
        self.git.as_ref().ok_or_else(|| Error::NotARepo {
            path: self.root.clone(),
            source: git2::Error::from_str("no .git found in this directory or any parent"),
        })
    }

    pub fn open_git(&self) -> Result<Repository> {
        Ok(Repository::open(&self.git()?.repo_path)?)
    }

    /// Reads the config repo at a Git revision (`HEAD`, `main`, `a1b2c3`, `HEAD~2`).
    pub fn at_rev(&self, rev: &str) -> Result<Snapshot> {
        let git = self.git()?;
        let repo = Repository::open(&git.repo_path)?;
        let mut entries = BTreeMap::new();
        let (commit, tree) = {
            let (commit, tree) = root_tree(&repo, rev, &git.prefix)?;
            add_tree(&repo, &tree, "", &mut entries)?;
            (commit, tree.id())
        };
        Ok(Snapshot::of_git(git, repo, rev, commit, tree, entries))
    }

    /// [`Self::at_rev`] starting from `previous`, a snapshot of the same
    /// repository at another revision: only the subtrees whose ids differ
    /// are read, so a commit that touches one app of 10,000 reads a few
    /// trees instead of every one. Also says which paths differ.
    pub fn at_rev_since(&self, rev: &str, previous: &Snapshot) -> Result<(Snapshot, delta::Delta)> {
        let Some(old_id) = previous.tree else {
            return Ok((self.at_rev(rev)?, delta::Delta::everything()));
        };
        let git = self.git()?;
        let repo = Repository::open(&git.repo_path)?;
        let mut entries = previous.entries.clone();
        let (commit, tree, changed) = {
            let (commit, tree) = root_tree(&repo, rev, &git.prefix)?;
            // The previous tree may be gone from the mirror (a gc after a
            // force-push): then the whole tree is read.
            let Ok(old) = repo.find_tree(old_id) else {
                drop(tree);
                return Ok((self.at_rev(rev)?, delta::Delta::everything()));
            };
            let changed = delta::sync(&repo, &old, &tree, &mut entries)?;
            (commit, tree.id(), changed)
        };
        let symlinks = entries
            .values()
            .any(|e| matches!(e.kind, EntryKind::Symlink(_)));
        let snap = Snapshot::of_git(git, repo, rev, commit, tree, entries);
        Ok((snap, delta::Delta::Paths { changed, symlinks }))
    }

    /// Reads the config repo as it is on disk, uncommitted changes included.
    pub fn working_tree(&self) -> Result<Snapshot> {
        let mut entries = BTreeMap::new();
        for top in ["pacer.yaml", ".pacer", ".sops.yaml", "environments", "apps"] {
            walk_dir(&self.root, top, &mut entries)?;
        }
        let commit = self.git.as_ref().and_then(|g| {
            let repo = Repository::open(&g.repo_path).ok()?;
            let head = repo.head().ok()?.peel_to_commit().ok()?;
            Some(head.id().to_string())
        });
        let dirty =
            match (&commit, &self.git) {
                (Some(_), Some(_)) => {
                    // Compare against HEAD's listing: cheaper and more precise than
                    // libgit2's status, which would also stat unrelated files.
                    match self.at_rev("HEAD") {
                        Ok(head) => {
                            head.entries.len() != entries.len()
                                || head.entries.iter().zip(&entries).any(|((p, a), (q, b))| {
                                    p != q || a.id != b.id || a.kind != b.kind
                                })
                        }
                        Err(_) => true,
                    }
                }
                _ => true,
            };
        Ok(Snapshot {
            revision: Revision {
                commit,
                dirty,
                name: "working tree".into(),
            },
            entries,
            tree: None,
            store: Store::Dir(self.root.clone()),
        })
    }
}

/// Only these paths are part of the config repo; anything else (README,
/// CI files, a `schemas/` copy) is ignored. `apps` and `environments`
/// themselves count: as a symlink or submodule they must be seen, not
/// skipped as if the directory were empty. `.pacer/` holds pacer's own
/// files, such as the trust list of `verify:`; `.sops.yaml` the creation
/// rules of sealed secrets.
fn is_config_path(path: &str) -> bool {
    path == "pacer.yaml"
        || path == ".sops.yaml"
        || path == ".pacer"
        || path.starts_with(".pacer/")
        || path == "apps"
        || path == "environments"
        || path.starts_with("environments/")
        || path.starts_with("apps/")
}

fn walk_dir(root: &Path, rel: &str, out: &mut BTreeMap<String, Entry>) -> Result<()> {
    let full = root.join(rel);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                path: rel.into(),
                source,
            });
        }
    };
    let io = |source| Error::Io {
        path: rel.to_string(),
        source,
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&full).map_err(io)?;
        let target = target.to_string_lossy().into_owned();
        out.insert(
            rel.to_string(),
            Entry {
                id: Oid::hash_object(ObjectType::Blob, target.as_bytes())?,
                size: Some(target.len() as u64),
                kind: EntryKind::Symlink(target),
            },
        );
    } else if meta.is_dir() {
        let mut names = Vec::new();
        for item in std::fs::read_dir(&full).map_err(io)? {
            let item = item.map_err(io)?;
            // Non-UTF-8 names can't be addressed from YAML; skip them rather
            // than fail the whole repo.
            if let Ok(name) = item.file_name().into_string() {
                if name == ".git" {
                    continue;
                }
                names.push(name);
            }
        }
        for name in names {
            walk_dir(root, &format!("{rel}/{name}"), out)?;
        }
    } else if meta.is_file() {
        let size = meta.len();
        // Hashing a file means reading it; a file over the limit is listed
        // with a size-derived id instead and refused when read.
        let id = if size > MAX_FILE_BYTES {
            Oid::hash_object(ObjectType::Blob, format!("oversized:{size}").as_bytes())?
        } else {
            let bytes = std::fs::read(&full).map_err(io)?;
            Oid::hash_object(ObjectType::Blob, &bytes)?
        };
        out.insert(
            rel.to_string(),
            Entry {
                id,
                size: Some(size),
                kind: EntryKind::File,
            },
        );
    }
    Ok(())
}

fn to_slash(p: &Path) -> String {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Joins a symlink's target onto the link's directory, lexically, and fails
/// if the result leaves the repo root.
fn resolve_link(link_path: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link_path.split('/').collect();
    parts.pop();
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

impl Snapshot {
    fn of_git(
        git: &GitLocation,
        repo: Repository,
        rev: &str,
        commit: Oid,
        tree: Oid,
        entries: BTreeMap<String, Entry>,
    ) -> Snapshot {
        Snapshot {
            revision: Revision {
                commit: Some(commit.to_string()),
                dirty: false,
                name: rev.to_string(),
            },
            entries,
            tree: Some(tree),
            store: Store::Git(GitPool {
                path: git.repo_path.clone(),
                idle: Mutex::new(vec![repo]),
            }),
        }
    }

    /// Builds a snapshot from in-memory files, for tests and generators.
    pub fn from_files(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Arc<Snapshot> {
        let files: BTreeMap<String, Vec<u8>> = files.into_iter().collect();
        let entries = files
            .iter()
            .map(|(path, bytes)| {
                let entry = Entry {
                    id: Oid::hash_object(ObjectType::Blob, bytes).expect("hashing in memory"),
                    size: Some(bytes.len() as u64),
                    kind: EntryKind::File,
                };
                (path.clone(), entry)
            })
            .collect();
        Arc::new(Snapshot {
            revision: Revision {
                commit: None,
                dirty: true,
                name: "in memory".into(),
            },
            entries,
            tree: None,
            store: Store::Memory(files),
        })
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// Paths directly or indirectly under `dir` (`apps/web`), with their entries.
    pub fn under<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let start = format!("{dir}/");
        let end = format!("{dir}0"); // '0' sorts right after '/'
        self.entries.range(start..end)
    }

    /// Follows symlinks inside the snapshot to the file they name.
    fn resolve<'a>(&'a self, path: &str) -> Result<(String, &'a Entry)> {
        let mut current = path.to_string();
        for _ in 0..MAX_SYMLINK_HOPS {
            let entry = self.entries.get(&current).ok_or_else(|| Error::NotFound {
                path: current.clone(),
            })?;
            match &entry.kind {
                EntryKind::File => return Ok((current, entry)),
                EntryKind::Submodule => {
                    return Err(Error::NotFound {
                        path: current.clone(),
                    });
                }
                EntryKind::Symlink(target) => {
                    let next =
                        resolve_link(&current, target).ok_or_else(|| Error::SymlinkOutside {
                            path: path.to_string(),
                            target: target.clone(),
                        })?;
                    if !self.entries.contains_key(&next) {
                        return Err(Error::SymlinkDangling {
                            path: path.to_string(),
                            target: target.clone(),
                        });
                    }
                    current = next;
                }
            }
        }
        Err(Error::SymlinkLoop { path: path.into() })
    }

    /// The content id a path resolves to (through symlinks).
    pub fn content_id(&self, path: &str) -> Option<Oid> {
        match self.entries.get(path) {
            Some(Entry {
                kind: EntryKind::File,
                id,
                ..
            }) => Some(*id),
            Some(_) => self.resolve(path).ok().map(|(_, e)| e.id),
            None => None,
        }
    }

    /// Reads a file's bytes, following symlinks that stay inside the repo.
    pub fn read_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let (real, entry) = self.resolve(path)?;
        let too_large = |size: u64| Error::TooLarge {
            path: path.to_string(),
            size,
            limit: MAX_FILE_BYTES,
        };
        if let Some(size) = entry.size.filter(|s| *s > MAX_FILE_BYTES) {
            return Err(too_large(size));
        }
        match &self.store {
            Store::Git(pool) => pool.with(|repo| {
                // The header alone gives the size: an oversized blob is
                // refused before it is inflated into memory.
                let (size, _) = repo.odb()?.read_header(entry.id)?;
                if size as u64 > MAX_FILE_BYTES {
                    return Err(too_large(size as u64));
                }
                let blob = repo.find_blob(entry.id)?;
                Ok(blob.content().to_vec())
            }),
            Store::Dir(root) => {
                let bytes = std::fs::read(root.join(&real)).map_err(|source| Error::Io {
                    path: path.to_string(),
                    source,
                })?;
                // The file may have grown since it was listed.
                if bytes.len() as u64 > MAX_FILE_BYTES {
                    return Err(Error::TooLarge {
                        path: path.to_string(),
                        size: bytes.len() as u64,
                        limit: MAX_FILE_BYTES,
                    });
                }
                Ok(bytes)
            }
            Store::Memory(files) => Ok(files.get(&real).cloned().unwrap_or_default()),
        }
    }

    /// Reads a UTF-8 text file.
    pub fn read_text(&self, path: &str) -> Result<String> {
        let bytes = self.read_bytes(path)?;
        String::from_utf8(bytes).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let column =
                good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
            Error::NotUtf8 {
                path: path.to_string(),
                line,
                column,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_lexically_inside_the_root() {
        assert_eq!(
            resolve_link("apps/web/env/prod.yaml", "staging.yaml").as_deref(),
            Some("apps/web/env/staging.yaml")
        );
        assert_eq!(
            resolve_link("apps/web/files/a", "../../api/files/a").as_deref(),
            Some("apps/api/files/a")
        );
        assert_eq!(resolve_link("apps/a", "../../../etc/passwd"), None);
        assert_eq!(resolve_link("apps/a", "/etc/passwd"), None);
    }

    #[test]
    fn under_lists_only_that_directory() {
        let s = Snapshot::from_files([
            ("apps/web/app.yaml".to_string(), b"a".to_vec()),
            ("apps/web-2/app.yaml".to_string(), b"b".to_vec()),
            ("apps/web/env/dev.yaml".to_string(), b"c".to_vec()),
        ]);
        let paths: Vec<_> = s.under("apps/web").map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["apps/web/app.yaml", "apps/web/env/dev.yaml"]);
    }

    #[test]
    fn utf8_errors_name_line_and_column() {
        let s = Snapshot::from_files([("apps/a/app.yaml".to_string(), b"a: 1\nbc\xff".to_vec())]);
        let err = s.read_text("apps/a/app.yaml").unwrap_err().to_string();
        assert_eq!(
            err,
            "apps/a/app.yaml:2:3: file is not valid UTF-8 (save it as UTF-8)"
        );
    }
}
