//! The bare clone: open or create it, fetch, push, and read its history.

use super::auth::{Exchange, proxy, scrub};
use super::{CommitInfo, Error, RemoteSpec, Result, check_branch, check_refname};
use git2::{Oid, Repository, Sort};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// A bare clone of the config repo. Only a path: clones share the same
/// repository. Fetch from one task at a time (the reconcile loop); reading
/// revisions while a fetch runs is safe.
#[derive(Clone, Debug)]
pub struct Mirror {
    git_dir: PathBuf,
}

impl Mirror {
    /// Opens the bare repository at `dir`, or initialises an empty one if
    /// `dir` is absent or empty. No network access: [`Mirror::fetch`] does that.
    pub fn open_or_clone(spec: &RemoteSpec, dir: &Path) -> Result<Mirror> {
        check_branch(&spec.branch)?;
        let open = |source| Error::Open {
            dir: dir.to_path_buf(),
            source,
        };
        let empty = !dir.exists()
            || dir
                .read_dir()
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        let repo = if empty {
            Repository::init_bare(dir).map_err(open)?
        } else {
            let repo = Repository::open_bare(dir).map_err(open)?;
            if !repo.is_bare() {
                return Err(open(git2::Error::from_str(
                    "not a bare repository (pacer keeps its own bare clone; use an empty directory)",
                )));
            }
            repo
        };
        Ok(Mirror {
            git_dir: repo.path().to_path_buf(),
        })
    }

    /// The bare repository, for [`RepoLocation::bare`](super::RepoLocation::bare).
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    fn repo(&self) -> Result<Repository> {
        Repository::open_bare(&self.git_dir).map_err(|source| Error::Git {
            dir: self.git_dir.clone(),
            source,
        })
    }

    /// Fetches `+refs/heads/<branch>:refs/remotes/origin/<branch>` and
    /// returns the branch's commit. A fetch with nothing new transfers no
    /// objects. A force-push moves the ref anyway: compare with
    /// [`Mirror::is_descendant`] before trusting it.
    pub fn fetch(&self, spec: &RemoteSpec) -> Result<Oid> {
        check_branch(&spec.branch)?;
        let repo = self.repo()?;
        let url = spec.display_url();
        let fetch_err = |e: git2::Error| Error::Fetch {
            url: url.clone(),
            branch: spec.branch.clone(),
            cause: scrub(&e, spec),
        };
        let exchange = Exchange::new(spec).map_err(fetch_err)?;
        let mut remote = repo.remote_anonymous(&spec.url).map_err(fetch_err)?;
        let mut opts = exchange.fetch_options();
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", spec.branch);
        remote
            .fetch(&[&refspec], Some(&mut opts), None)
            .map_err(|e| fetch_err(exchange.explain(e)))?;
        // The remote's advertised refs stay readable after the fetch; a
        // branch missing there must not be answered with a stale local ref.
        let wanted = format!("refs/heads/{}", spec.branch);
        let advertised = remote
            .list()
            .map_err(fetch_err)?
            .iter()
            .find(|h| h.name() == wanted)
            .map(|h| h.oid());
        let Some(head) = advertised else {
            return Err(Error::BranchNotFound {
                url,
                branch: spec.branch.clone(),
            });
        };
        let local = repo
            .refname_to_id(&spec.tracking_ref())
            .map_err(fetch_err)?;
        if local != head {
            return Err(fetch_err(git2::Error::from_str(&format!(
                "the remote advertised {head} but {} is at {local}",
                spec.tracking_ref()
            ))));
        }
        Ok(head)
    }

    /// Fetches the remote's `refname` (outside `refs/heads`, such as
    /// `refs/notes/pacer`) into the same local ref, replacing it. Returns
    /// where it points, or `None` when the remote has no such ref (the local
    /// one is then left alone).
    pub fn fetch_ref(&self, spec: &RemoteSpec, refname: &str) -> Result<Option<Oid>> {
        check_refname(refname)?;
        let repo = self.repo()?;
        let url = spec.display_url();
        let fetch_err = |e: git2::Error| Error::Fetch {
            url: url.clone(),
            branch: refname.to_string(),
            cause: scrub(&e, spec),
        };
        let mut remote = repo.remote_anonymous(&spec.url).map_err(fetch_err)?;
        // Ask first: a missing source ref is not an error for a fetch of
        // optional data such as notes. Each connection authenticates anew,
        // so each gets its own exchange (and credential attempts).
        let asking = Exchange::new(spec).map_err(fetch_err)?;
        remote
            .connect_auth(
                git2::Direction::Fetch,
                Some(asking.callbacks()),
                Some(proxy()),
            )
            .map_err(|e| fetch_err(asking.explain(e)))?;
        let advertised = remote
            .list()
            .map_err(fetch_err)?
            .iter()
            .find(|h| h.name() == refname)
            .map(|h| h.oid());
        remote.disconnect().map_err(fetch_err)?;
        let Some(oid) = advertised else {
            return Ok(None);
        };
        let exchange = Exchange::new(spec).map_err(fetch_err)?;
        let mut opts = exchange.fetch_options();
        remote
            .fetch(&[&format!("+{refname}:{refname}")], Some(&mut opts), None)
            .map_err(|e| fetch_err(exchange.explain(e)))?;
        Ok(Some(oid))
    }

    /// Pushes the local `refname` to the same ref of the remote, fast-forward
    /// only. A refusal (someone else moved the ref) is an error: fetch,
    /// merge and push again.
    pub fn push_ref(&self, spec: &RemoteSpec, refname: &str) -> Result<()> {
        check_refname(refname)?;
        let repo = self.repo()?;
        let url = spec.display_url();
        let push_err = |e: git2::Error| Error::Push {
            url: url.clone(),
            refname: refname.to_string(),
            cause: scrub(&e, spec),
        };
        if let Some(path) = local_path(&spec.url) {
            return push_local(&self.git_dir, &path, refname).map_err(push_err);
        }
        let exchange = Exchange::new(spec).map_err(push_err)?;
        let mut remote = repo.remote_anonymous(&spec.url).map_err(push_err)?;
        let refused: RefCell<Option<String>> = RefCell::new(None);
        let mut callbacks = exchange.callbacks();
        callbacks.push_update_reference(|name, status| {
            if let Some(why) = status {
                *refused.borrow_mut() = Some(format!("the remote refused {name}: {why}"));
            }
            Ok(())
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(callbacks).proxy_options(proxy());
        remote
            .push(&[&format!("{refname}:{refname}")], Some(&mut opts))
            .map_err(|e| push_err(exchange.explain(e)))?;
        drop(opts);
        if let Some(why) = refused.into_inner() {
            return Err(push_err(git2::Error::from_str(&why)));
        }
        Ok(())
    }

    /// Whether `commit` is `ancestor` or one of its descendants: the branch
    /// moved forward (or not at all). `false` means history was rewritten.
    /// Both commits must be in the mirror.
    pub fn is_descendant(&self, commit: Oid, ancestor: Oid) -> Result<bool> {
        let repo = self.repo()?;
        for c in [commit, ancestor] {
            repo.find_commit(c)
                .map_err(|source| Error::CommitNotFound { commit: c, source })?;
        }
        if commit == ancestor {
            return Ok(true);
        }
        repo.graph_descendant_of(commit, ancestor)
            .map_err(|source| self.git_err(source))
    }

    /// Up to `limit` commits reachable from `commit` that changed `path` (a
    /// file or directory from the top of the repo, e.g. `apps/web`; `""` for
    /// any change), newest first. A merge counts when `path` differs from
    /// every parent's, as `git log` shows it. Walks history until it has
    /// `limit` commits, so a path rarely changed costs a longer walk.
    pub fn log(&self, commit: Oid, path: &str, limit: usize) -> Result<Vec<CommitInfo>> {
        let repo = self.repo()?;
        repo.find_commit(commit)
            .map_err(|source| Error::CommitNotFound { commit, source })?;
        let path = path.trim_matches('/');
        let mut walk = repo.revwalk().map_err(|e| self.git_err(e))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .map_err(|e| self.git_err(e))?;
        walk.push(commit).map_err(|e| self.git_err(e))?;
        let mut out = Vec::new();
        for id in walk {
            if out.len() >= limit {
                break;
            }
            let id = id.map_err(|e| self.git_err(e))?;
            let c = repo.find_commit(id).map_err(|e| self.git_err(e))?;
            let here = entry_id(&c, path).map_err(|e| self.git_err(e))?;
            let touched = if c.parent_count() == 0 {
                here.is_some()
            } else {
                let mut differs_from_all = true;
                for p in c.parents() {
                    if entry_id(&p, path).map_err(|e| self.git_err(e))? == here {
                        differs_from_all = false;
                        break;
                    }
                }
                differs_from_all
            };
            if touched {
                out.push(commit_info(&c));
            }
        }
        Ok(out)
    }

    fn git_err(&self, source: git2::Error) -> Error {
        Error::Git {
            dir: self.git_dir.clone(),
            source,
        }
    }
}

/// A push into a repository on this machine, made as a fetch from its side:
/// libgit2 can't push into a repository with a work tree (a config repo
/// cloned on a laptop, the demo's). Fast-forward only, as a push would be.
fn push_local(from: &Path, to: &Path, refname: &str) -> std::result::Result<(), git2::Error> {
    // Per process: two daemons pushing into one repo don't share it.
    let incoming = format!("refs/pacer/incoming-{}", std::process::id());
    let target = Repository::open(to)?;
    let mut remote = target.remote_anonymous(&from.to_string_lossy())?;
    let fetched = remote.fetch(&[&format!("+{refname}:{incoming}")], None, None);
    let outcome = fetched.and_then(|()| {
        let new = target.refname_to_id(&incoming)?;
        let msg = "pacer: deployment records";
        match target.refname_to_id(refname).ok() {
            // Only from the value just read: a change made meanwhile fails
            // the update rather than being overwritten.
            Some(old) if old == new => Ok(()),
            Some(old) if target.graph_descendant_of(new, old)? => target
                .reference_matching(refname, new, true, old, msg)
                .map(|_| ()),
            Some(_) => Err(git2::Error::from_str(&format!(
                "the remote refused {refname}: not a fast-forward"
            ))),
            None => target.reference(refname, new, false, msg).map(|_| ()),
        }
    });
    if let Ok(mut r) = target.find_reference(&incoming) {
        let _ = r.delete();
    }
    outcome
}

/// The directory of a repository on this machine: a `file://` URL or a
/// plain path. `None` for anything reached over a network (scp-like
/// `host:path` included).
fn local_path(url: &str) -> Option<PathBuf> {
    if url.starts_with("file://") {
        return reqwest::Url::parse(url).ok()?.to_file_path().ok();
    }
    let path = Path::new(url);
    (!url.contains("://") && path.is_absolute() && path.exists()).then(|| path.to_path_buf())
}

/// The id of the tree or blob at `path` in a commit (the root tree for `""`).
fn entry_id(c: &git2::Commit<'_>, path: &str) -> std::result::Result<Option<Oid>, git2::Error> {
    let tree = c.tree()?;
    if path.is_empty() {
        return Ok(Some(tree.id()));
    }
    match tree.get_path(Path::new(path)) {
        Ok(e) => Ok(Some(e.id())),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn commit_info(c: &git2::Commit<'_>) -> CommitInfo {
    let author = c.author();
    let when = author.when();
    let offset = chrono::FixedOffset::east_opt(when.offset_minutes() * 60)
        .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("UTC"));
    let time = chrono::DateTime::from_timestamp(when.seconds(), 0)
        .map(|t| t.with_timezone(&offset).to_rfc3339())
        .unwrap_or_default();
    CommitInfo {
        id: c.id().to_string(),
        author: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
        time,
        summary: c
            .summary_bytes()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::remote::GitAuth;

    #[test]
    fn local_paths_are_told_from_network_urls() {
        assert_eq!(
            local_path("file:///srv/config%20repo"),
            Some(PathBuf::from("/srv/config repo"))
        );
        assert_eq!(
            local_path("file://localhost/srv/config"),
            Some(PathBuf::from("/srv/config"))
        );
        let here = std::env::temp_dir();
        assert_eq!(local_path(here.to_str().unwrap()), Some(here.clone()));
        assert_eq!(local_path("git@github.com:org/config.git"), None);
        assert_eq!(local_path("https://github.com/org/config.git"), None);
        assert_eq!(local_path("/does/not/exist/anywhere"), None);
    }

    #[test]
    fn invalid_branch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = RemoteSpec {
            url: "file:///nowhere".into(),
            branch: "a..b".into(),
            auth: GitAuth::None,
            ca_file: None,
            known_hosts: None,
        };
        let err = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap_err();
        assert!(matches!(err, Error::InvalidBranch { .. }), "{err}");
    }
}
