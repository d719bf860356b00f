//! The trust list: SSH keys in git's own `allowed_signers` format (see
//! ssh-keygen(1), "ALLOWED SIGNERS") and armored OpenPGP public keys, in
//! one file. Lines outside a `-----BEGIN PGP PUBLIC KEY BLOCK-----` block
//! are allowed_signers lines:
//!
//! ```text
//! principal[,principal...] [options] keytype base64key [comment]
//! ```
//!
//! with the options `namespaces="git,..."`, `valid-after="YYYYMMDD[HHMM[SS]][Z]"`,
//! `valid-before=...` and `cert-authority` (certificates are not supported:
//! such lines are skipped with a note, never trusted).

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use ssh_key::{HashAlg, PublicKey};

/// A trust list larger than this is refused: it is read on every check.
pub const MAX_TRUST_BYTES: usize = 1024 * 1024;
/// At most this many keys (SSH lines and OpenPGP keys together).
pub const MAX_TRUST_ENTRIES: usize = 10_000;

const PGP_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const PGP_END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// One allowed_signers line.
#[derive(Clone, Debug)]
pub struct SshSigner {
    pub principals: Vec<String>,
    /// `None`: every namespace.
    pub namespaces: Option<Vec<String>>,
    /// Unix seconds; the key is valid from this time on.
    pub valid_after: Option<i64>,
    /// Unix seconds; the key is no longer valid at or after this time.
    pub valid_before: Option<i64>,
    pub key: PublicKey,
    /// Where it was read, `file:line`, for messages.
    pub at: String,
}

impl SshSigner {
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Whether `namespace` is among the line's `namespaces=` patterns.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        match &self.namespaces {
            None => true,
            Some(list) => pattern_list_matches(list, namespace),
        }
    }
}

/// Keys trusted to sign commits.
#[derive(Clone, Debug, Default)]
pub struct TrustList {
    pub ssh: Vec<SshSigner>,
    pub pgp: Vec<super::pgp::PgpSigner>,
    /// Lines read but not used (`cert-authority`), `file:line: why`.
    pub notes: Vec<String>,
}

/// A trust list that cannot be used: nothing is trusted from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("{file}: the trust list is {size} bytes, over the limit of {limit}")]
    TooLarge {
        file: String,
        size: usize,
        limit: usize,
    },
    #[error("{file}: more than {limit} keys in the trust list")]
    TooManyEntries { file: String, limit: usize },
    #[error("{file}:{line}: {message}")]
    Malformed {
        file: String,
        line: usize,
        message: String,
    },
}

impl TrustList {
    /// Parses a whole trust list. `file` names it in messages. Every bad
    /// line is an error: a typo must not silently drop (or widen) trust.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<TrustList, Vec<TrustError>> {
        if bytes.len() > MAX_TRUST_BYTES {
            return Err(vec![TrustError::TooLarge {
                file: file.into(),
                size: bytes.len(),
                limit: MAX_TRUST_BYTES,
            }]);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(vec![TrustError::Malformed {
                file: file.into(),
                line: 1,
                message: "not UTF-8 text".into(),
            }]);
        };
        let mut list = TrustList::default();
        let mut errors = Vec::new();
        let mut lines = text.lines().enumerate();
        while let Some((i, raw)) = lines.next() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| TrustError::Malformed {
                file: file.into(),
                line: line_no,
                message,
            };
            if line == PGP_BEGIN {
                let mut block = String::from(PGP_BEGIN);
                block.push('\n');
                let mut closed = false;
                for (_, l) in lines.by_ref() {
                    block.push_str(l.trim_end());
                    block.push('\n');
                    if l.trim() == PGP_END {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    errors.push(bad(format!("`{PGP_BEGIN}` without `{PGP_END}`")));
                    break;
                }
                match super::pgp::parse_keys(&block, &format!("{file}:{line_no}")) {
                    Ok(keys) => list.pgp.extend(keys),
                    Err(e) => errors.push(bad(e)),
                }
            } else {
                match parse_line(line, &format!("{file}:{line_no}")) {
                    Ok(Some(s)) => list.ssh.push(s),
                    Ok(None) => list.notes.push(format!(
                        "{file}:{line_no}: a cert-authority line: certificates are not supported, skipped"
                    )),
                    Err(m) => errors.push(bad(m)),
                }
            }
            if list.ssh.len() + list.pgp.len() > MAX_TRUST_ENTRIES {
                return Err(vec![TrustError::TooManyEntries {
                    file: file.into(),
                    limit: MAX_TRUST_ENTRIES,
                }]);
            }
        }
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ssh.is_empty() && self.pgp.is_empty()
    }
}

/// Splits on unquoted spaces; double quotes group (and are kept, for the
/// option parser to strip).
fn tokens(line: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    Ok(out)
}

fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-") || t.starts_with("sk-")
}

/// One allowed_signers line; `Ok(None)` for a `cert-authority` line.
fn parse_line(line: &str, at: &str) -> Result<Option<SshSigner>, String> {
    let toks = tokens(line)?;
    let principals_tok = toks.first().ok_or("empty line")?;
    let principals: Vec<String> = unquote(principals_tok)
        .split(',')
        .map(str::to_string)
        .collect();
    if principals.iter().any(String::is_empty) {
        return Err("an empty principal".into());
    }
    let (options, rest) = match toks.get(1) {
        Some(t) if is_key_type(t) => (None, &toks[1..]),
        Some(t) => (Some(*t), &toks[2..]),
        None => return Err("no key after the principals".into()),
    };
    let mut signer_opts = Options::default();
    if let Some(opts) = options {
        signer_opts = parse_options(opts)?;
    }
    if signer_opts.cert_authority {
        return Ok(None);
    }
    let (Some(kind), Some(b64)) = (rest.first(), rest.get(1)) else {
        return Err("expected `keytype base64key` after the principals and options".into());
    };
    if !is_key_type(kind) {
        return Err(format!("`{kind}` is not an SSH key type"));
    }
    let key = PublicKey::from_openssh(&format!("{kind} {b64}"))
        .map_err(|e| format!("unreadable `{kind}` key: {e}"))?;
    Ok(Some(SshSigner {
        principals,
        namespaces: signer_opts.namespaces,
        valid_after: signer_opts.valid_after,
        valid_before: signer_opts.valid_before,
        key,
        at: at.to_string(),
    }))
}

#[derive(Default)]
struct Options {
    cert_authority: bool,
    namespaces: Option<Vec<String>>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// Splits the options on commas outside quotes.
fn parse_options(opts: &str) -> Result<Options, String> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in opts.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&opts[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&opts[start..]);
    let mut out = Options::default();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(unquote(v))),
            None => (part.to_ascii_lowercase(), None),
        };
        match (name.as_str(), value) {
            ("cert-authority", None) => out.cert_authority = true,
            ("namespaces", Some(v)) => {
                out.namespaces = Some(v.split(',').map(str::to_string).collect())
            }
            ("valid-after", Some(v)) => out.valid_after = Some(parse_time(v)?),
            ("valid-before", Some(v)) => out.valid_before = Some(parse_time(v)?),
            _ => return Err(format!("unknown option `{part}`")),
        }
    }
    Ok(out)
}

/// `YYYYMMDD[HHMM[SS]][Z]`: with `Z` UTC, without it local time, as
/// ssh-keygen reads it.
pub fn parse_time(v: &str) -> Result<i64, String> {
    let bad = || format!("`{v}` is not a time (YYYYMMDD[HHMM[SS]][Z])");
    let (digits, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (v, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| digits[r].parse::<u32>().map_err(|_| bad());
    let (h, m, s) = match digits.len() {
        8 => (0, 0, 0),
        12 => (num(8..10)?, num(10..12)?, 0),
        14 => (num(8..10)?, num(10..12)?, num(12..14)?),
        _ => return Err(bad()),
    };
    let date =
        NaiveDate::from_ymd_opt(num(0..4)? as i32, num(4..6)?, num(6..8)?).ok_or_else(bad)?;
    let t: NaiveDateTime = date.and_hms_opt(h, m, s).ok_or_else(bad)?;
    if utc {
        Ok(t.and_utc().timestamp())
    } else {
        chrono::Local
            .from_local_datetime(&t)
            .earliest()
            .map(|t| t.timestamp())
            .ok_or_else(bad)
    }
}

/// ssh's `match_pattern_list`: `*` and `?` wildcards, `!` negates, and
/// a negated match wins.
fn pattern_list_matches(list: &[String], s: &str) -> bool {
    let mut any = false;
    for p in list {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), s.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), s.as_bytes()) {
            any = true;
        }
    }
    any
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative, with one backtrack point: linear enough for short names.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
#[path = "signers_tests.rs"]
mod tests;
