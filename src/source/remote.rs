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
//!
//! Trust: an https remote's certificate is verified by libgit2 (OpenSSL)
//! against the system's CAs, plus [`RemoteSpec::ca_file`]'s. An ssh remote's
//! host key must be listed in [`RemoteSpec::known_hosts`], or, without one,
//! in `~/.ssh/known_hosts` (libgit2's own check). Nothing is trusted on
//! first use.

use crate::model::Secret;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, Oid,
    RemoteCallbacks, Repository, Sort,
};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// An SSH private key (a deploy key). The host's key must be in
    /// [`RemoteSpec::known_hosts`], or `~/.ssh/known_hosts` without one.
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
    /// PEM certificates (a private CA) to trust for https remotes, in
    /// addition to the system's. libgit2 keeps one certificate store per
    /// process: once a fetch has named a file, its certificates stay trusted
    /// for every https remote until the process exits.
    pub ca_file: Option<PathBuf>,
    /// An OpenSSH `known_hosts` file that must list an ssh remote's host
    /// key (plain or hashed host names, `[host]:port` for other ports than
    /// 22, `@revoked`). Without it, libgit2 checks `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
}

impl RemoteSpec {
    /// The URL as it may be printed: without user-info (`user:token@`).
    pub fn display_url(&self) -> String {
        crate::redact::url(&self.url)
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

/// How long a Git server may take to accept a connection, and to answer
/// while a fetch or push is under way. libgit2 waits forever by default: a
/// server that hangs would hold the daemon's loop with it.
///
/// # Safety
/// The setting is process-wide and libgit2 reads it without
/// synchronisation: call this before any other thread starts.
pub unsafe fn set_network_timeout(timeout: std::time::Duration) {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: passed on to the caller. Neither call can fail.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
    }
}

/// Starts libgit2 for a process that never speaks https to a Git server
/// (`plan`, `apply`, `history`, `diff`...). libgit2 reads every system CA
/// certificate as it starts, though only an https fetch uses them: OpenSSL
/// parses some 150 of them, tens of milliseconds, a third of a `pacer plan`.
/// Here it starts with none; a later https fetch in this process would fail
/// its certificate check rather than go unverified.
///
/// # Safety
/// Sets and restores environment variables: call this before any other
/// thread starts.
pub unsafe fn start_without_https() {
    const VARS: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];
    let saved: Vec<_> = VARS.iter().map(std::env::var_os).collect();
    // SAFETY: passed on to the caller (no other thread reads the
    // environment meanwhile).
    unsafe {
        for v in VARS {
            std::env::set_var(v, "/dev/null");
        }
    }
    // Any libgit2 call starts it, once per process; this one does little else.
    let _ = git2::Config::new();
    // SAFETY: as above.
    unsafe {
        for (v, old) in VARS.iter().zip(saved) {
            match old {
                Some(old) => std::env::set_var(v, old),
                None => std::env::remove_var(v),
            }
        }
    }
}

/// Adds a CA file to libgit2's certificate store, once per file per process
/// (the store only grows, so loading a file again would only duplicate it).
fn trust_ca_file(path: &Path) -> std::result::Result<(), git2::Error> {
    static TRUSTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut trusted = TRUSTED.lock().unwrap_or_else(|e| e.into_inner());
    if trusted.iter().any(|p| p == path) {
        return Ok(());
    }
    // libgit2 doesn't say which file it couldn't load, nor why.
    std::fs::metadata(path).map_err(|e| {
        git2::Error::from_str(&format!("reading the CA file `{}`: {e}", path.display()))
    })?;
    // SAFETY: libgit2 loads the file into OpenSSL's certificate store,
    // which locks itself against handshakes running in other threads;
    // TRUSTED serialises pacer's own calls.
    unsafe { git2::opts::set_ssl_cert_file(path) }.map_err(|e| {
        git2::Error::from_str(&format!(
            "loading the CA file `{}`: {}",
            path.display(),
            e.message()
        ))
    })?;
    trusted.push(path.to_path_buf());
    Ok(())
}

/// The port of an `ssh://` URL; 22 for scp-like addresses.
fn ssh_port(url: &str) -> u16 {
    let Some((_, rest)) = url.split_once("://") else {
        return 22;
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // A bracketed IPv6 address has colons of its own.
    let port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, p)| p),
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(22)
}

/// Accepts the remote's SSH host key only if `known_hosts` lists it for
/// `host`; otherwise says why not, with the key's fingerprint so that an
/// operator can check it and add it.
fn check_host_key(
    known_hosts: &Path,
    host: &str,
    port: u16,
    cert: &git2::cert::CertHostkey<'_>,
) -> std::result::Result<CertificateCheckStatus, String> {
    use base64::Engine;
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let Some(key) = cert.hostkey() else {
        return Err(format!("{name} sent no host key"));
    };
    let kind = cert.hostkey_type().map_or("unknown", |t| t.name());
    let offered = match cert.hash_sha256() {
        Some(h) => format!(
            "{kind} SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
        ),
        None => kind.to_string(),
    };
    let text = std::fs::read_to_string(known_hosts).map_err(|e| {
        format!(
            "reading the known_hosts file `{}`: {e}",
            known_hosts.display()
        )
    })?;
    let file = known_hosts.display();
    match known_host(&text, &name, key) {
        KnownHost::Match => Ok(CertificateCheckStatus::CertificateOk),
        KnownHost::Unknown => Err(format!(
            "the host key of {name} ({offered}) is not in the known_hosts file `{file}`"
        )),
        KnownHost::Mismatch => Err(format!(
            "the host key of {name} ({offered}) does not match the one in the known_hosts \
             file `{file}`: refusing a host that may be an impostor"
        )),
        KnownHost::OtherTypes => Err(format!(
            "the known_hosts file `{file}` has keys of other types only for {name}, \
             which offered {offered}"
        )),
        KnownHost::Revoked => Err(format!(
            "the host key of {name} ({offered}) is marked @revoked in `{file}`"
        )),
    }
}

/// Worst first: a line that settles the question outranks the others.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KnownHost {
    Revoked,
    Match,
    /// Listed with another key of the same type.
    Mismatch,
    /// Listed, but with keys of other types only: the server and libssh2
    /// agreed on a type the file doesn't have, which proves nothing.
    OtherTypes,
    Unknown,
}

/// Looks `key` (the SSH wire-format public key) up for `name` (`host`, or
/// `[host]:port`) in the text of an OpenSSH known_hosts file. Certificate
/// authorities (`@cert-authority`) are not supported and are skipped.
fn known_host(text: &str, name: &str, key: &[u8]) -> KnownHost {
    use base64::Engine;
    let mut found = KnownHost::Unknown;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        if first.starts_with('#') {
            continue;
        }
        let mut revoked = false;
        if let Some(marker) = first.strip_prefix('@') {
            if marker != "revoked" {
                continue;
            }
            revoked = true;
            let Some(next) = fields.next() else { continue };
            first = next;
        }
        let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !host_matches(first, name) {
            continue;
        }
        let same = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .is_ok_and(|b| b == key);
        let verdict = match (revoked, same) {
            (true, true) => KnownHost::Revoked,
            (true, false) => continue,
            (false, true) => KnownHost::Match,
            (false, false) if Some(kind) == key_type(key) => KnownHost::Mismatch,
            (false, false) => KnownHost::OtherTypes,
        };
        found = found.min(verdict);
    }
    found
}

/// The type name an SSH wire-format public key starts with.
fn key_type(key: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(key.get(4..4 + len)?).ok()
}

/// Whether a known_hosts line's host field names `name`: a hashed entry
/// (`|1|salt|hmac-sha1`, as `ssh-keygen -H` and `HashKnownHosts` write
/// them) or comma-separated patterns with `*`, `?` and `!` negation.
fn host_matches(patterns: &str, name: &str) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let name = name.to_ascii_lowercase();
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
            return false;
        };
        let mut mac =
            hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt).expect("HMAC takes keys of any length");
        mac.update(name.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= glob(pattern.as_bytes(), name.as_bytes()),
        }
    }
    matched
}

/// `*` and `?` wildcards, as in OpenSSH's host patterns.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
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

/// The proxy Git's own configuration and the environment name, as `git`
/// would use it.
fn proxy() -> git2::ProxyOptions<'static> {
    let mut p = git2::ProxyOptions::new();
    p.auto();
    p
}

/// One conversation with the remote: what libgit2's callbacks share.
struct Exchange<'a> {
    spec: &'a RemoteSpec,
    attempts: Cell<u32>,
    /// libgit2 replaces a refusing callback's message with its own generic
    /// one; the reason is kept here to be reported instead.
    host_key_refusal: RefCell<Option<String>>,
}

impl<'a> Exchange<'a> {
    fn new(spec: &'a RemoteSpec) -> std::result::Result<Exchange<'a>, git2::Error> {
        if let Some(ca_file) = &spec.ca_file {
            trust_ca_file(ca_file)?;
        }
        Ok(Exchange {
            spec,
            attempts: Cell::new(0),
            host_key_refusal: RefCell::new(None),
        })
    }

    /// Credentials, and host keys checked against `known_hosts` when set.
    fn callbacks(&'a self) -> RemoteCallbacks<'a> {
        let spec = self.spec;
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, username, allowed| {
            credentials(spec, url, username, allowed, &self.attempts)
        });
        if let Some(known_hosts) = &spec.known_hosts {
            callbacks.certificate_check(move |cert, host| {
                let Some(hostkey) = cert.as_hostkey() else {
                    return Ok(CertificateCheckStatus::CertificatePassthrough);
                };
                check_host_key(known_hosts, host, ssh_port(&spec.url), hostkey).map_err(|why| {
                    let e = git2::Error::from_str(&why);
                    *self.host_key_refusal.borrow_mut() = Some(why);
                    e
                })
            });
        }
        callbacks
    }

    fn fetch_options(&'a self) -> FetchOptions<'a> {
        let mut opts = FetchOptions::new();
        // No FETCH_HEAD: nothing reads it, and the daemon fetches the branch
        // while a records write fetches the notes; both would lock it.
        opts.remote_callbacks(self.callbacks())
            .download_tags(AutotagOption::None)
            .update_fetchhead(false)
            .proxy_options(proxy());
        opts
    }

    /// libgit2's error, or the host key check's reason when that refused.
    fn explain(&self, e: git2::Error) -> git2::Error {
        match self.host_key_refusal.take() {
            Some(why) => git2::Error::from_str(&why),
            None => e,
        }
    }
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
    let host = crate::redact::url(url)
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
    secrets.extend(crate::redact::userinfo_parts(&spec.url));
    for s in secrets.into_iter().filter(|s| !s.is_empty()) {
        msg = msg.replace(s, "***");
    }
    // Any other URL the message quotes (a redirect, a submodule).
    Cause(crate::redact::text(&msg))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ca_file: None,
            known_hosts: None,
        };
        let e = git2::Error::from_str(
            "failed https://me:pa55@example.com/repo.git with tok-123 and pa55",
        );
        let msg = scrub(&e, &spec).to_string();
        assert_eq!(
            msg,
            "failed https://***@example.com/repo.git with *** and ***"
        );
    }

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

    #[test]
    fn ssh_port_from_url() {
        assert_eq!(ssh_port("ssh://git@host:2222/org/repo.git"), 2222);
        assert_eq!(ssh_port("ssh://host/org/repo.git"), 22);
        assert_eq!(ssh_port("ssh://git@[::1]:2222/repo.git"), 2222);
        assert_eq!(ssh_port("ssh://[::1]/repo.git"), 22);
        assert_eq!(ssh_port("git@host:org/repo.git"), 22);
    }

    #[test]
    fn known_hosts_lines() {
        use base64::Engine;
        // Wire format: the type name, then the key material.
        let wire = |kind: &str, material: &[u8]| {
            let mut k = (kind.len() as u32).to_be_bytes().to_vec();
            k.extend_from_slice(kind.as_bytes());
            k.extend_from_slice(material);
            k
        };
        let key = wire("ssh-ed25519", b"one");
        let other = wire("ssh-ed25519", b"two");
        let ecdsa = wire("ecdsa-sha2-nistp256", b"three");
        let b64 = |k: &[u8]| base64::engine::general_purpose::STANDARD.encode(k);
        let (k, o, e) = (b64(&key), b64(&other), b64(&ecdsa));
        let file = format!(
            "# comment\n\ngit.example.com,10.0.0.1 ssh-ed25519 {k}\n\
             [git.example.com]:2222 ssh-ed25519 {o}\n\
             *.corp,!evil.corp ssh-ed25519 {k}\n\
             @cert-authority *.example.com ssh-ed25519 {o}\n\
             ecdsa.example.com ecdsa-sha2-nistp256 {e}\n"
        );
        assert_eq!(known_host(&file, "git.example.com", &key), KnownHost::Match);
        assert_eq!(known_host(&file, "GIT.example.com", &key), KnownHost::Match);
        assert_eq!(known_host(&file, "10.0.0.1", &key), KnownHost::Match);
        assert_eq!(
            known_host(&file, "[git.example.com]:2222", &key),
            KnownHost::Mismatch
        );
        assert_eq!(
            known_host(&file, "git.example.com", &other),
            KnownHost::Mismatch
        );
        assert_eq!(
            known_host(&file, "ecdsa.example.com", &key),
            KnownHost::OtherTypes
        );
        assert_eq!(known_host(&file, "a.corp", &key), KnownHost::Match);
        assert_eq!(known_host(&file, "evil.corp", &key), KnownHost::Unknown);
        assert_eq!(
            known_host(&file, "x.example.com", &other),
            KnownHost::Unknown
        );
        let revoked = format!("{file}@revoked * ssh-ed25519 {k}\n");
        assert_eq!(
            known_host(&revoked, "git.example.com", &key),
            KnownHost::Revoked
        );
        assert_eq!(key_type(&ecdsa), Some("ecdsa-sha2-nistp256"));
        assert_eq!(key_type(b"\0\0\0\x09short"), None);
    }

    #[test]
    fn hashed_known_hosts_entry() {
        // Written by `ssh-keygen -H` for `[127.0.0.1]:2222`.
        let entry = "|1|s1Rqx59ROQwCPFWkexUlTF1wUwc=|3KTfkgd2EVhqIcNHFNV8EuMMYxE=";
        assert!(host_matches(entry, "[127.0.0.1]:2222"));
        assert!(!host_matches(entry, "127.0.0.1"));
        assert!(!host_matches(entry, "[127.0.0.1]:2223"));
    }
}
