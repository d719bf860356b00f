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
//!
//! [`mirror`] keeps the clone and reads it; [`auth`] holds what a
//! conversation with the remote needs (credentials, the CA file, the proxy,
//! error messages without secrets); [`known_hosts`] checks an ssh remote's
//! host key.

mod auth;
mod known_hosts;
mod mirror;

use crate::model::Secret;
use git2::Oid;
use std::fmt;
use std::path::PathBuf;

pub use mirror::Mirror;

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
/// Why environment variables: libgit2 (linked to OpenSSL, not loading it
/// dynamically) calls `SSL_CTX_set_default_verify_paths` in its global init,
/// which OpenSSL answers from `SSL_CERT_FILE`/`SSL_CERT_DIR` alone. Every
/// option call (`git2::opts::set_ssl_cert_file`, `GIT_OPT_SET_SSL_CERT_LOCATIONS`)
/// runs that init first and can only add locations after it, so none of them
/// avoids the load.
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
