//! The one place URLs are made safe to print.
//!
//! A URL may carry credentials in its user-info (`https://user:token@host`,
//! `http://admin:password@marathon:8080`). Everything pacer prints (logs,
//! `/api/v1/status`, errors, Debug output) goes through [`url`] or, for
//! free text that may embed URLs (error chains from reqwest and git2),
//! [`text`]. Both mask the user-info as `***@`, keeping the scheme, host,
//! port and path, so an operator still sees which server failed.

use regex::Regex;
use std::sync::LazyLock;

/// What replaces the user-info.
pub const MASK: &str = "***";

/// `scheme://user:password@host/path` → `scheme://***@host/path`. Only an
/// `@` inside the authority counts (not one in the path); scp-like
/// addresses (`git@host:path`) carry no password and stay as they are.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{MASK}{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Every URL with user-info inside `text` masked as [`url`] does.
pub fn text(text: &str) -> String {
    // The user-info runs from `//` to the last `@` before the path (a
    // password may hold an `@` of its own); it holds no `/`, `?`, `#` or
    // whitespace (those would be percent-encoded). No `\b`: a scheme glued
    // to a word (`x_https://`) is a URL all the same.
    static USERINFO: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)([a-z][a-z0-9+.\-]*://)[^/?#\s]*@").expect("static regex")
    });
    if !text.contains('@') {
        return text.to_string();
    }
    USERINFO
        .replace_all(text, |c: &regex::Captures| format!("{}{MASK}@", &c[1]))
        .into_owned()
}

/// The user-info of `url` (`user:password`) and its password alone, for
/// scrubbing messages that quote them without the URL around them.
pub fn userinfo_parts(url: &str) -> Vec<&str> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Vec::new();
    };
    let userinfo = &rest[..at];
    let mut out = vec![userinfo];
    if let Some((_, password)) = userinfo.split_once(':') {
        out.push(password);
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_masks_to_the_last_at_and_a_scheme_glued_to_a_word() {
        assert_eq!(
            text("fetching https://u:p@ss@host/x failed"),
            "fetching https://***@host/x failed"
        );
        assert_eq!(text("x_https://u:pw@h/y"), "x_https://***@h/y");
        assert_eq!(
            text("see http://a:b@h1/p and mail x@y.z"),
            "see http://***@h1/p and mail x@y.z"
        );
    }

    #[test]
    fn urls_keep_host_and_path_and_mask_userinfo() {
        let cases = [
            (
                "https://x-access-token:ghp_abc@github.com/org/repo.git",
                "https://***@github.com/org/repo.git",
            ),
            (
                "http://admin:password@marathon:8080",
                "http://***@marathon:8080",
            ),
            (
                "https://tok@gitlab.com/org/repo",
                "https://***@gitlab.com/org/repo",
            ),
            (
                "ssh://git@host:22/org/repo.git",
                "ssh://***@host:22/org/repo.git",
            ),
            ("https://github.com/a@b/repo", "https://github.com/a@b/repo"),
            ("http://h:8080/a@b", "http://h:8080/a@b"),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("file:///srv/git/config.git", "file:///srv/git/config.git"),
            ("http://u:p@w@host/x", "http://***@host/x"),
        ];
        for (u, want) in cases {
            assert_eq!(url(u), want, "{u}");
        }
    }

    #[test]
    fn text_masks_every_embedded_url() {
        let msg = "error sending request for url (http://admin:password@m1:8080/v2/apps): \
                   connection refused; also https://tok@git.example/r.git and http://plain/a@b";
        let out = text(msg);
        assert!(!out.contains("password") && !out.contains("tok@"), "{out}");
        assert!(out.contains("http://***@m1:8080/v2/apps"), "{out}");
        assert!(out.contains("https://***@git.example/r.git"), "{out}");
        assert!(out.contains("http://plain/a@b"), "{out}");
        assert_eq!(text("no urls here"), "no urls here");
    }

    #[test]
    fn text_agrees_with_url() {
        for u in [
            "https://a:b@h/p",
            "ssh://git@h:22/r",
            "http://h/a@b",
            "https://h",
        ] {
            assert_eq!(text(u), url(u), "{u}");
        }
    }

    #[test]
    fn userinfo_parts_name_what_to_scrub() {
        assert_eq!(userinfo_parts("https://u:p@h/x"), vec!["u:p", "p"]);
        assert_eq!(userinfo_parts("https://tok@h/x"), vec!["tok"]);
        assert!(userinfo_parts("https://h/a@b").is_empty());
    }
}
