//! A whole sops YAML file: its `sops:` metadata, opening every sealed
//! value and checking the MAC, and sealing a plaintext view in place.

use super::cipher::{self, Plain, Sealed};
use super::comments::{comments, open_comments};
use super::keys::{Identities, Stanza, UnwrapError};
pub use super::meta::{Metadata, Selection};
use super::meta::{metadata, metadata_block};
use super::tree::{self, Leaf, Node, Scalar, Typed};
use super::{Error, Kind};
use crate::model::Secret;
use sha2::{Digest as _, Sha512};
use std::collections::HashMap;
use std::ops::Range;

/// At most this many sealed values (comments included) in one file.
pub const MAX_SEALED: usize = 10_000;
/// The version pacer writes into `sops.version`: the oldest 3.x line whose
/// format it matches.
pub const SOPS_VERSION: &str = "3.9.0";

/// sops' `mac_only_encrypted` seed: SHA-256 of "sops".
const MAC_ONLY_ENCRYPTED_SEED: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The parsed file: its tree and, when sealed, its metadata.
pub struct Parsed {
    pub tree: Node,
    pub meta: Option<Metadata>,
    /// The text of the `sops:` block (to drop it from a view).
    sops_range: Option<Range<usize>>,
    /// Where `sops.lastmodified` and `sops.mac` are written.
    stamp_spans: Option<(Range<usize>, Range<usize>)>,
}

pub fn parse(text: &str) -> Result<Parsed, Error> {
    let tree = tree::parse(text).map_err(|p| Error::new(Kind::Yaml, Some(p.line), p.message))?;
    let Node::Map(items) = &tree else {
        return Err(Error::new(
            Kind::Yaml,
            Some(1),
            "expected a map at the top of the file".into(),
        ));
    };
    let mut meta = None;
    let mut sops_range = None;
    let mut stamp_spans = None;
    for (i, (k, v)) in items.iter().enumerate() {
        if k.name == "sops" {
            meta = Some(metadata(v, k.line)?);
            if let Node::Map(m) = v {
                let span = |name: &str| {
                    m.iter()
                        .find(|(k, _)| k.name == name)
                        .and_then(|(_, v)| match v {
                            Node::Scalar(s) => s.span.clone(),
                            _ => None,
                        })
                };
                stamp_spans = span("lastmodified").zip(span("mac"));
            }
            let start = line_start(text, k.span.start);
            let end = items
                .get(i + 1)
                .map_or(text.len(), |(next, _)| line_start(text, next.span.start));
            sops_range = Some(start..end);
        }
    }
    Ok(Parsed {
        tree,
        meta,
        sops_range,
        stamp_spans,
    })
}

pub(super) fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// The leaves of the data (`sops:` left out), in file order.
fn data_leaves(tree: &Node) -> Vec<Leaf<'_>> {
    let mut out = Vec::new();
    if let Node::Map(items) = tree {
        for (k, v) in items.iter().filter(|(k, _)| k.name != "sops") {
            let mut path = vec![k.name.as_str()];
            tree::leaves(
                v,
                &mut path,
                &format!("/{}", tree::escape(&k.name)),
                &mut out,
            );
        }
    }
    out
}

/// A sealed value of the file, opened.
pub struct Value {
    /// JSON pointer (`/secrets/db/0`).
    pub pointer: String,
    pub line: usize,
    pub plain: Secret<Plain>,
    span: Option<Range<usize>>,
    in_flow: bool,
}

/// What the MAC hashes for a plaintext leaf, if anything.
fn mac_bytes(typed: &Typed) -> Option<Vec<u8>> {
    Some(match typed {
        Typed::Null => return None,
        Typed::Bool(true) => b"True".to_vec(),
        Typed::Bool(false) => b"False".to_vec(),
        Typed::Int(i) => i.to_string().into_bytes(),
        Typed::Float(f) => tree::go_float(*f).into_bytes(),
        Typed::Str(s) => s.clone().into_bytes(),
    })
}

/// A sealed leaf, before opening: its sealed form or an empty string.
enum Slot {
    Empty,
    Sealed(Sealed),
}

/// Checks the shape of every sealed value without a key: each parses, and
/// none is plaintext. Returns the metadata. What `validate` can say
/// without an identity.
pub fn inspect(text: &str) -> Result<Option<Metadata>, Error> {
    let parsed = parse(text)?;
    let Some(meta) = parsed.meta.clone() else {
        return Ok(None);
    };
    slots(&parsed, &meta)?;
    Ok(Some(meta))
}

fn slots<'a>(parsed: &'a Parsed, meta: &Metadata) -> Result<Vec<(Leaf<'a>, Option<Slot>)>, Error> {
    let leaves = data_leaves(&parsed.tree);
    let mut out = Vec::with_capacity(leaves.len());
    let mut sealed = 0usize;
    for leaf in leaves {
        if !meta.selection.seals(&leaf.path) {
            out.push((leaf, None));
            continue;
        }
        let s = leaf.scalar;
        let slot = if s.plain && tree::is_null(&s.value) {
            None
        } else if s.value.is_empty() {
            Some(Slot::Empty)
        } else {
            sealed += 1;
            if sealed > MAX_SEALED {
                return Err(Error::new(
                    Kind::Budget,
                    Some(s.line),
                    format!("more than {MAX_SEALED} sealed values"),
                ));
            }
            match Sealed::parse(&s.value) {
                Ok(v) => Some(Slot::Sealed(v)),
                Err(cipher::ValueError::Format) => {
                    return Err(Error::new(
                        Kind::Plaintext,
                        Some(s.line),
                        format!("`{}` is plaintext in a sealed file", leaf.pointer),
                    )
                    .hint("seal it: `pacer secret edit FILE` seals what you change"));
                }
                Err(e) => {
                    return Err(Error::new(Kind::Corrupt, Some(s.line), format!("`{}`: {e}", leaf.pointer))
                        .hint("restore the value from Git history, or set it again with `pacer secret edit`"));
                }
            }
        };
        out.push((leaf, slot));
    }
    Ok(out)
}

/// An opened file: every sealed value in plaintext, the MAC checked.
pub struct Opened {
    pub meta: Metadata,
    pub values: Vec<Value>,
    key: Secret<[u8; 32]>,
    /// IVs of what was sealed, by (additional data, type, plaintext): an
    /// unchanged value sealed again keeps its ciphertext.
    stash: Stash,
    /// Opened comments: where their text sits, and the text.
    comments: Vec<(Range<usize>, Secret<String>)>,
    sops_range: Option<Range<usize>>,
    /// The `sops:` block as written, and where its stamps sit in it: an
    /// edit changes only `lastmodified` and `mac` there.
    block: Option<(String, Range<usize>, Range<usize>)>,
}

/// The `sops:` block a sealed file ends with.
pub enum Trailer<'a> {
    /// Written anew for these wrapped keys.
    New(&'a [Stanza]),
    /// The file's own, its stamps replaced.
    Keep(&'a str, Range<usize>, Range<usize>),
}

pub(super) type Stash = HashMap<(String, &'static str, Vec<u8>), [u8; cipher::IV_BYTES]>;

/// Opens `text` with `ids`: the data key from the first recipient they
/// hold, every value, and the MAC over all of them. `Ok(None)`: not sealed.
pub fn open(text: &str, ids: &Identities) -> Result<Option<Opened>, Error> {
    let parsed = parse(text)?;
    let Some(meta) = parsed.meta.clone() else {
        return Ok(None);
    };
    let slots = slots(&parsed, &meta)?;
    let key = match ids.unwrap(&meta.age) {
        Ok(k) => k,
        Err(UnwrapError::NoIdentity) => {
            return Err(Error::new(
                Kind::NoIdentity,
                Some(meta.line),
                format!(
                    "no age identity to open it; it is sealed for {}",
                    meta.recipients().join(", ")
                ),
            )
            .hint(format!(
                "give the key of one of them in {}",
                super::keys::WHERE
            )));
        }
        Err(UnwrapError::NoMatch) => {
            return Err(Error::new(
                Kind::NotForYou,
                Some(meta.line),
                format!(
                    "none of the age identities held ({}) opens it: it is sealed for {}",
                    ids.recipients().join(", "),
                    meta.recipients().join(", ")
                ),
            )
            .hint("use the key of this file's environment, or have its holder re-seal the file for yours (`pacer secret rotate` after changing .sops.yaml)"));
        }
    };
    let mut hash = Sha512::new();
    if meta.mac_only_encrypted {
        hash.update(MAC_ONLY_ENCRYPTED_SEED);
    }
    let mut values = Vec::new();
    let mut stash = Stash::new();
    for (leaf, slot) in slots {
        let aad = aad(&leaf.path);
        let plain = match slot {
            None => {
                if !meta.mac_only_encrypted
                    && let Some(b) = mac_bytes(&tree::resolve(leaf.scalar))
                {
                    hash.update(b);
                }
                continue;
            }
            Some(Slot::Empty) => Plain::Str(String::new()),
            Some(Slot::Sealed(s)) => {
                let p = s.open(&key, &aad).map_err(|e| {
                    Error::new(Kind::Corrupt, Some(leaf.scalar.line), format!("`{}`: {e}", leaf.pointer))
                        .hint("restore the value from Git history, or set it again with `pacer secret edit`")
                })?;
                if matches!(p, Plain::Comment(_)) {
                    return Err(Error::new(
                        Kind::Corrupt,
                        Some(leaf.scalar.line),
                        format!("`{}`: a comment where a value belongs", leaf.pointer),
                    ));
                }
                stash.insert((aad.clone(), p.kind(), p.mac_bytes()), s.iv());
                p
            }
        };
        hash.update(plain.mac_bytes());
        values.push(Value {
            pointer: leaf.pointer,
            line: leaf.scalar.line,
            plain: Secret::new(plain),
            span: leaf.scalar.span.clone(),
            in_flow: leaf.scalar.in_flow,
        });
    }
    let computed = hex::encode_upper(hash.finalize());
    let stored = Sealed::parse(&meta.mac)
        .and_then(|m| m.open(&key, &mac_aad(&meta.lastmodified)))
        .map_err(|_| mac_error(&meta))?;
    if stored.text() != computed {
        return Err(mac_error(&meta));
    }
    let comments = open_comments(text, &parsed.tree, &meta, &key, &mut stash);
    let block = parsed
        .sops_range
        .clone()
        .zip(parsed.stamp_spans.clone())
        .and_then(|(r, (lm, mac))| {
            let inside = |x: &Range<usize>| x.start >= r.start && x.end <= r.end;
            (inside(&lm) && inside(&mac)).then(|| {
                (
                    text[r.clone()].to_string(),
                    lm.start - r.start..lm.end - r.start,
                    mac.start - r.start..mac.end - r.start,
                )
            })
        });
    Ok(Some(Opened {
        block,
        meta,
        values,
        key: Secret::new(key),
        stash,
        comments,
        sops_range: parsed.sops_range,
    }))
}

fn mac_error(meta: &Metadata) -> Error {
    Error::new(
        Kind::Mac,
        Some(meta.line),
        "MAC mismatch: the file's values, their order or `sops.lastmodified` changed since it was sealed".into(),
    )
    .hint("a hand edit or a bad merge changed it: restore the file from Git history, or re-apply the change with `pacer secret edit`")
}

pub(super) fn aad(path: &[&str]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

/// The MAC's additional data: `lastmodified` as Go formats RFC 3339.
fn mac_aad(lastmodified: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(lastmodified) {
        Ok(t) if t.offset().local_minus_utc() == 0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Ok(t) => t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => lastmodified.to_string(),
    }
}

impl Opened {
    /// The file as its owner edits it: every value and comment in
    /// plaintext where its ciphertext was, the `sops:` block left out.
    /// Everything else is the file's own text.
    pub fn view(&self, text: &str) -> String {
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        for v in &self.values {
            if let Some(span) = &v.span
                && !v.plain.expose().is_empty()
            {
                edits.push((span.clone(), yaml_scalar(v.plain.expose(), v.in_flow)));
            }
        }
        for (range, c) in &self.comments {
            edits.push((range.clone(), c.expose().clone()));
        }
        if let Some(r) = &self.sops_range {
            edits.push((r.clone(), String::new()));
        }
        apply(text, edits)
    }

    /// Seals an edited view again with this file's data key and wrapped
    /// keys: values that did not change keep their ciphertext, so the
    /// diff shows only what changed (and `sops.mac`, `sops.lastmodified`).
    pub fn reseal(&self, view: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, Error> {
        let trailer = match &self.block {
            Some((t, lm, mac)) => Trailer::Keep(t, lm.clone(), mac.clone()),
            None => Trailer::New(&self.meta.age),
        };
        seal(
            view,
            self.key.expose(),
            trailer,
            &self.meta.selection,
            &self.stash,
            now,
        )
    }

    /// A value by pointer.
    pub fn get(&self, pointer: &str) -> Option<&Plain> {
        self.values
            .iter()
            .find(|v| v.pointer == pointer)
            .map(|v| v.plain.expose())
    }
}

/// A plaintext value as YAML that reads back as the same type.
fn yaml_scalar(p: &Plain, in_flow: bool) -> String {
    match p {
        Plain::Str(s) | Plain::Comment(s) => {
            let specials = |c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c);
            let safe = !s.is_empty()
                && s.trim() == s
                && !s.starts_with(specials)
                && !s.contains(": ")
                && !s.contains(" #")
                && !s.ends_with(':')
                && !s.chars().any(|c| c.is_control())
                && !(in_flow && s.contains([',', '[', ']', '{', '}']))
                && tree::resolve_plain(s) == Typed::Str(s.clone());
            if safe {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        Plain::Float(f) => {
            let t = tree::go_float(*f);
            match t.as_str() {
                "+Inf" => ".inf".into(),
                "-Inf" => "-.inf".into(),
                "NaN" => ".nan".into(),
                // `1` would read back as an int.
                _ if !t.contains('.') => format!("{t}.0"),
                _ => t,
            }
        }
        other => other.text(),
    }
}

/// Replaces ranges of `text` (which never overlap).
fn apply(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_string();
    for (r, with) in edits {
        out.replace_range(r, &with);
    }
    out
}

/// Seals the plaintext `view` for `stanzas` (the data key `key` wrapped):
/// each value `selection` names is replaced in place by its ciphertext,
/// comments in those parts too, and the `sops:` block is appended.
pub fn seal(
    view: &str,
    key: &[u8; 32],
    trailer: Trailer<'_>,
    selection: &Selection,
    stash: &Stash,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, Error> {
    let parsed = parse(view)?;
    if parsed.meta.is_some() {
        return Err(Error::new(
            Kind::AlreadySealed,
            parsed.meta.as_ref().map(|m| m.line),
            "already sealed (it has a `sops:` key)".into(),
        )
        .hint("use `pacer secret edit` to change it or `pacer secret rotate` to re-seal it"));
    }
    let mut hash = Sha512::new();
    let mac_only = false;
    let mut edits = Vec::new();
    let mut sealed = 0usize;
    for leaf in data_leaves(&parsed.tree) {
        let typed = tree::resolve(leaf.scalar);
        let seals = selection.seals(&leaf.path);
        if let Some(b) = mac_bytes(&typed)
            && (!mac_only || seals)
        {
            hash.update(b);
        }
        if !seals {
            continue;
        }
        let plain = match typed {
            Typed::Null => continue,
            Typed::Str(s) if s.is_empty() => continue,
            Typed::Str(s) => Plain::Str(s),
            Typed::Bool(b) => Plain::Bool(b),
            Typed::Float(f) => Plain::Float(f),
            Typed::Int(i) => Plain::Int(i64::try_from(i).map_err(|_| {
                Error::new(
                    Kind::Unsupported,
                    Some(leaf.scalar.line),
                    format!("`{}`: an integer beyond 64 bits", leaf.pointer),
                )
                .hint("quote it to keep it as a string")
            })?),
        };
        let span = placed(leaf.scalar, &leaf.pointer)?;
        sealed += 1;
        if sealed > MAX_SEALED {
            return Err(Error::new(
                Kind::Budget,
                Some(leaf.scalar.line),
                format!("more than {MAX_SEALED} values to seal"),
            ));
        }
        let aad = aad(&leaf.path);
        let iv = iv_for(stash, &aad, &plain);
        let enc = cipher::seal(&plain, key, &aad, &iv);
        edits.push((
            span,
            if leaf.scalar.in_flow {
                format!("\"{enc}\"")
            } else {
                enc
            },
        ));
    }
    for c in comments(view, &parsed.tree) {
        if !selection.seals(&c.path.iter().map(String::as_str).collect::<Vec<_>>()) {
            continue;
        }
        let body = &view[c.range.clone()];
        if Sealed::parse(body).is_ok() {
            continue;
        }
        let plain = Plain::Comment(body.to_string());
        let aad = aad(&c.path.iter().map(String::as_str).collect::<Vec<_>>());
        let iv = iv_for(stash, &aad, &plain);
        edits.push((c.range, cipher::seal(&plain, key, &aad, &iv)));
    }
    let lastmodified = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mac = Plain::Str(hex::encode_upper(hash.finalize()));
    let mac = cipher::seal(&mac, key, &lastmodified, &cipher::random_iv());
    let mut out = apply(view, edits);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    match trailer {
        Trailer::New(stanzas) => {
            out.push_str(&metadata_block(stanzas, &lastmodified, &mac, selection))
        }
        Trailer::Keep(block, lm, mac_at) => {
            let block = apply(
                block,
                vec![(lm, format!("\"{lastmodified}\"")), (mac_at, mac)],
            );
            out.push_str(&block);
        }
    }
    // Never write a file that can't be read back: a top-level map indented
    // away from column 1 parses, but not with the `sops:` block at column 1
    // after it (found by the `sops` fuzz target).
    if let Err(e) = parse(&out) {
        return Err(Error::new(
            Kind::Unsupported,
            e.line.filter(|l| *l <= view.lines().count()),
            format!("sealed, the file would not read back ({})", e.message),
        )
        .hint("start the file's top-level keys at column 1, as pacer and sops write them"));
    }
    Ok(out)
}

/// The IV `plain` had at `aad` when the file was opened (sealing it again
/// there gives the same ciphertext), else a fresh one.
fn iv_for(stash: &Stash, aad: &str, plain: &Plain) -> [u8; cipher::IV_BYTES] {
    stash
        .get(&(aad.to_string(), plain.kind(), plain.mac_bytes()))
        .copied()
        .unwrap_or_else(cipher::random_iv)
}

/// The place of a value to replace; a copy through an alias, or a value
/// with an anchor or tag, has none that keeps the file's meaning.
fn placed(s: &Scalar, pointer: &str) -> Result<Range<usize>, Error> {
    match &s.span {
        Some(span) if !s.decorated => Ok(span.clone()),
        _ => Err(Error::new(
            Kind::Unsupported,
            Some(s.line),
            format!("`{pointer}`: anchors, aliases and tags can't be sealed in place"),
        )
        .hint("write the value out")),
    }
}
