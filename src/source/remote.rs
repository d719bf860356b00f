//! Keeps a local bare clone (a "mirror") of the config repo's branch in sync
//! with its remote, for the daemon. Reading revisions from it is
//! [`RepoLocation::bare`](super::RepoLocation::bare)'s job.
//!
//! Everything here is blocking (git2): async callers run it in
//! `tokio::task::spawn_blocking`. A [`Mirror`] is only a path, so it is
//! cheap to clone into the closure.
//!
//! The remote's URL is never written to the mirror's config: each fetch uses
//! an anonymous remote, so credentials in a URL stay in memory, and changing
//! the URL takes effect on the next fetch. Error messages name the URL with
//! its user-info stripped and never contain a token or passphrase.

use crate::model::Secret;
use git2::{
    AutotagOption, Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository, Sort,
};
use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the Git mirror at `{dir}`")]
    Open {
        dir: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("`{branch}` is not a valid branch name")]
    InvalidBranch { branch: String },
    #[error("fetching branch `{branch}` from `{url}`")]
    Fetch {
        /// With user-info stripped.
        url: String,
        branch: String,
        #[source]
        cause: Cause,
    },
    #[error("pushing `{refname}` to `{url}`")]
    Push {
        /// With user-info stripped.
        url: String,
        refname: String,
        #[source]
        cause: Cause,
    },
    #[error("branch `{branch}` not found at `{url}`")]
    BranchNotFound { url: String, branch: String },
    #[error("commit `{commit}` is not in the Git mirror")]
    CommitNotFound {
        commit: Oid,
        #[source]
        source: git2::Error,
    },
    #[error("reading the Git mirror at `{dir}`")]
    Git {
        dir: PathBuf,
        #[source]
        source: git2::Error,
    },
}

/// A Git error's message, scrubbed of the URL's user-info and of secrets.
#[derive(Debug)]
pub struct Cause(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

/// How to authenticate to the remote.
#[derive(Clone, Debug, Default)]
pub enum GitAuth {
    /// Anonymous; over SSH, the keys of a running ssh-agent are offered.
    #[default]
    None,
    /// An HTTPS access token, sent as the password. The user name is the
    /// URL's if it has one, `oauth2` for GitLab hosts and `x-access-token`
    /// otherwise (GitHub, and Gitea, which accepts any name with a token).
    Token(Secret<String>),
    /// An SSH private key (a deploy key). The host must be in
    /// `~/.ssh/known_hosts`.
    SshKey {
        path: PathBuf,
        passphrase: Option<Secret<String>>,
    },
}

#[derive(Clone, Debug)]
pub struct RemoteSpec {
    /// `file://`, `git://`, `https://`, `ssh://` or scp-like `git@host:org/repo.git`.
    pub url: String,
    pub branch: String,
    pub auth: GitAuth,
}

impl RemoteSpec {
    /// The URL as it may be printed: without user-info (`user:token@`).
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }
}

/// One commit of [`Mirror::log`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub id: String,
    pub author: String,
    pub email: String,
    /// The author time, RFC 3339 with the author's offset.
    pub time: String,
    pub summary: String,
}

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
        let mut remote = repo.remote_anonymous(&spec.url).map_err(fetch_err)?;
        let attempts = Cell::new(0u32);
        let mut opts = fetch_options(spec, &attempts);
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", spec.branch);
        remote
            .fetch(&[&refspec], Some(&mut opts), None)
            .map_err(fetch_err)?;
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
        let attempts = Cell::new(0u32);
        let mut opts = fetch_options(spec, &attempts);
        // Ask first: a missing source ref is not an error for a fetch of
        // optional data such as notes.
        remote
            .connect_auth(
                git2::Direction::Fetch,
                Some(remote_callbacks(spec, &attempts)),
                None,
            )
            .map_err(fetch_err)?;
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
        remote
            .fetch(&[&format!("+{refname}:{refname}")], Some(&mut opts), None)
            .map_err(fetch_err)?;
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
        let mut remote = repo.remote_anonymous(&spec.url).map_err(push_err)?;
        let attempts = Cell::new(0u32);
        let refused: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
        let mut callbacks = remote_callbacks(spec, &attempts);
        callbacks.push_update_reference(|name, status| {
            if let Some(why) = status {
                *refused.borrow_mut() = Some(format!("the remote refused {name}: {why}"));
            }
            Ok(())
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(callbacks);
        remote
            .push(&[&format!("{refname}:{refname}")], Some(&mut opts))
            .map_err(push_err)?;
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

fn check_branch(branch: &str) -> Result<()> {
    if branch.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        return Err(Error::InvalidBranch {
            branch: branch.to_string(),
        });
    }
    Ok(())
}

fn check_refname(refname: &str) -> Result<()> {
    if !refname.starts_with("refs/") || !git2::Reference::is_valid_name(refname) {
        return Err(Error::InvalidBranch {
            branch: refname.to_string(),
        });
    }
    Ok(())
}

/// Credentials (and proxy settings) for every exchange with the remote.
fn remote_callbacks<'a>(spec: &'a RemoteSpec, attempts: &'a Cell<u32>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |url, username, allowed| {
        credentials(spec, url, username, allowed, attempts)
    });
    callbacks
}

fn fetch_options<'a>(spec: &'a RemoteSpec, attempts: &'a Cell<u32>) -> FetchOptions<'a> {
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(remote_callbacks(spec, attempts))
        .download_tags(AutotagOption::None)
        .proxy_options({
            let mut p = git2::ProxyOptions::new();
            p.auto();
            p
        });
    opts
}

/// libgit2 asks again after a refused credential; two rounds (for example a
/// user name, then a key) are enough, and more would loop forever.
const MAX_CREDENTIAL_ATTEMPTS: u32 = 3;

fn credentials(
    spec: &RemoteSpec,
    url: &str,
    username: Option<&str>,
    allowed: CredentialType,
    attempts: &Cell<u32>,
) -> std::result::Result<Cred, git2::Error> {
    attempts.set(attempts.get() + 1);
    if attempts.get() > MAX_CREDENTIAL_ATTEMPTS {
        return Err(git2::Error::from_str(
            "authentication failed: the remote refused the configured credentials",
        ));
    }
    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(username.unwrap_or("git"));
    }
    match &spec.auth {
        GitAuth::Token(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
            let user = username.unwrap_or_else(|| token_user(url));
            Cred::userpass_plaintext(user, token.expose())
        }
        GitAuth::SshKey { path, passphrase } if allowed.contains(CredentialType::SSH_KEY) => {
            Cred::ssh_key(
                username.unwrap_or("git"),
                None,
                path,
                passphrase.as_ref().map(|p| p.expose().as_str()),
            )
        }
        GitAuth::None if allowed.contains(CredentialType::SSH_KEY) => {
            Cred::ssh_key_from_agent(username.unwrap_or("git"))
        }
        GitAuth::None => Err(git2::Error::from_str(
            "the remote requires authentication and no credentials are configured",
        )),
        GitAuth::Token(_) => Err(git2::Error::from_str(
            "the remote does not accept a token here (a token works over https only)",
        )),
        GitAuth::SshKey { .. } => Err(git2::Error::from_str(
            "the remote does not accept an SSH key here (a key works over ssh only)",
        )),
    }
}

/// The HTTPS user name that goes with an access token.
fn token_user(url: &str) -> &'static str {
    let host = redact_url(url)
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or("")
        .to_ascii_lowercase();
    if host.contains("gitlab") {
        "oauth2"
    } else {
        "x-access-token"
    }
}

/// `scheme://user:password@host/path` → `scheme://host/path`. scp-like
/// addresses (`git@host:path`) have no password and are returned as they are.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A git2 error's message without the URL's user-info, the token or the
/// passphrase.
fn scrub(e: &git2::Error, spec: &RemoteSpec) -> Cause {
    let mut msg = e.message().replace(&spec.url, &spec.display_url());
    let mut secrets: Vec<&str> = Vec::new();
    match &spec.auth {
        GitAuth::Token(t) => secrets.push(t.expose()),
        GitAuth::SshKey {
            passphrase: Some(p),
            ..
        } => secrets.push(p.expose()),
        _ => {}
    }
    // User-info from the URL itself (`https://user:token@host`).
    if let Some((_, rest)) = spec.url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            secrets.push(userinfo);
            if let Some((_, password)) = userinfo.split_once(':') {
                secrets.push(password);
            }
        }
    }
    for s in secrets.into_iter().filter(|s| !s.is_empty()) {
        msg = msg.replace(s, "***");
    }
    Cause(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_strips_userinfo_only() {
        let cases = [
            (
                "https://x-access-token:ghp_abc@github.com/org/repo.git",
                "https://github.com/org/repo.git",
            ),
            (
                "https://tok@gitlab.com/org/repo",
                "https://gitlab.com/org/repo",
            ),
            (
                "ssh://git@host:22/org/repo.git",
                "ssh://host:22/org/repo.git",
            ),
            ("https://github.com/a@b/repo", "https://github.com/a@b/repo"),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("file:///srv/git/config.git", "file:///srv/git/config.git"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn token_user_depends_on_host() {
        assert_eq!(token_user("https://gitlab.example.com/a/b"), "oauth2");
        assert_eq!(token_user("https://github.com/a/b"), "x-access-token");
        assert_eq!(token_user("https://u:p@gitlab.com/a/b"), "oauth2");
    }

    #[test]
    fn scrub_removes_url_userinfo_and_token() {
        let spec = RemoteSpec {
            url: "https://me:pa55@example.com/repo.git".into(),
            branch: "main".into(),
            auth: GitAuth::Token(Secret::new("tok-123".into())),
        };
        let e = git2::Error::from_str(
            "failed https://me:pa55@example.com/repo.git with tok-123 and pa55",
        );
        let msg = scrub(&e, &spec).to_string();
        assert_eq!(msg, "failed https://example.com/repo.git with *** and ***");
    }

    #[test]
    fn invalid_branch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = RemoteSpec {
            url: "file:///nowhere".into(),
            branch: "a..b".into(),
            auth: GitAuth::None,
        };
        let err = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap_err();
        assert!(matches!(err, Error::InvalidBranch { .. }), "{err}");
    }
}
