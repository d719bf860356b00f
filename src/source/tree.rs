//! Reading a commit's Git trees into a snapshot's entries.

use super::{Entry, EntryKind, Error, Result, is_config_path};
use git2::{ObjectType, Oid, Repository};
use std::collections::BTreeMap;
use std::path::Path;

/// The commit `rev` names and the tree of the config repo's root in it.
pub(super) fn root_tree<'r>(
    repo: &'r Repository,
    rev: &str,
    prefix: &str,
) -> Result<(Oid, git2::Tree<'r>)> {
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|source| Error::RevNotFound {
            rev: rev.to_string(),
            repo: repo.path().to_path_buf(),
            source,
        })?;
    let mut tree = commit.tree()?;
    if !prefix.is_empty() {
        let no_prefix = || Error::NoPrefixAtRev {
            rev: rev.to_string(),
            prefix: prefix.to_string(),
        };
        let entry = tree.get_path(Path::new(prefix)).map_err(|_| no_prefix())?;
        tree = repo.find_tree(entry.id()).map_err(|_| no_prefix())?;
    }
    Ok((commit.id(), tree))
}

/// Adds every config file of `tree`, found at `dir` (`""` or ending in
/// `/`), to `out`. Only tree objects are read here; blob sizes are checked
/// when a blob is read, so listing a 12,000-file repo costs ~1,000 object
/// reads instead of 13,000.
pub(super) fn add_tree(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    dir: &str,
    out: &mut BTreeMap<String, Entry>,
) -> Result<()> {
    let mut walk_err = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |sub, e| {
        let Ok(name) = e.name() else {
            return git2::TreeWalkResult::Ok;
        };
        let path = format!("{dir}{sub}{name}");
        match entry_of(repo, &path, e) {
            Ok(Some(entry)) => {
                out.insert(path, entry);
            }
            Ok(None) => {}
            Err(err) => {
                walk_err = Some(err);
                return git2::TreeWalkResult::Abort;
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    match walk_err {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

/// The snapshot entry for a tree entry at `path`: none for a directory or
/// a path outside the config repo's parts.
pub(super) fn entry_of(
    repo: &Repository,
    path: &str,
    e: &git2::TreeEntry<'_>,
) -> std::result::Result<Option<Entry>, git2::Error> {
    let submodule = e.kind() == Some(ObjectType::Commit);
    if e.kind() != Some(ObjectType::Blob) && !submodule {
        return Ok(None);
    }
    if !is_config_path(path) {
        return Ok(None);
    }
    let kind = if submodule {
        EntryKind::Submodule
    } else if e.filemode() == 0o120000 {
        let b = repo.find_blob(e.id())?;
        EntryKind::Symlink(String::from_utf8_lossy(b.content()).into_owned())
    } else {
        EntryKind::File
    };
    Ok(Some(Entry {
        id: e.id(),
        size: None,
        kind,
    }))
}
