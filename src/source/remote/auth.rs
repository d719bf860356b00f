//! One conversation with the remote: credentials (token, SSH key, agent),
//! the extra CA file, the proxy, the host key check when a known_hosts file
//! is configured, and error messages scrubbed of every secret.

use super::known_hosts::{check_host_key, ssh_port};
use super::{Cause, GitAuth, RemoteSpec};
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, RemoteCallbacks,
};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The proxy Git's own configuration and the environment name, as `git`
/// would use it.
pub(super) fn proxy() -> git2::ProxyOptions<'static> {
    let mut p = git2::ProxyOptions::new();
    p.auto();
    p
}

/// One conversation with the remote: what libgit2's callbacks share.
pub(super) struct Exchange<'a> {
    spec: &'a RemoteSpec,
    attempts: Cell<u32>,
    /// libgit2 replaces a refusing callback's message with its own generic
    /// one; the reason is kept here to be reported instead.
    host_key_refusal: RefCell<Option<String>>,
}

impl<'a> Exchange<'a> {
    pub(super) fn new(spec: &'a RemoteSpec) -> std::result::Result<Exchange<'a>, git2::Error> {
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
    pub(super) fn callbacks(&'a self) -> RemoteCallbacks<'a> {
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

    pub(super) fn fetch_options(&'a self) -> FetchOptions<'a> {
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
    pub(super) fn explain(&self, e: git2::Error) -> git2::Error {
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
pub(super) fn scrub(e: &git2::Error, spec: &RemoteSpec) -> Cause {
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
    use crate::model::Secret;

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
}
