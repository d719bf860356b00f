//! An ssh remote's host key against an OpenSSH known_hosts file: plain,
//! hashed (`|1|salt|hmac`) and glob entries, `@revoked` markers. Nothing is
//! trusted on first use.

use git2::CertificateCheckStatus;
use std::path::Path;

/// The port of an `ssh://` URL; 22 for scp-like addresses.
pub(super) fn ssh_port(url: &str) -> u16 {
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
pub(super) fn check_host_key(
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
#[cfg(test)]
mod tests {
    use super::*;

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
