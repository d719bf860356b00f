//! Comments of a sealed file: found in the text (the parser drops them),
//! placed under the map they belong to, opened and sealed like values.

use super::cipher::{Plain, Sealed};
use super::file::{MAX_SEALED, Metadata, Stash, aad, line_start};
use super::tree::Node;
use crate::model::Secret;
use std::ops::Range;

/// A comment of the file: the text after its `#`, and the path of the map
/// it belongs to (sops seals a comment under that path).
pub(super) struct Comment {
    pub range: Range<usize>,
    pub path: Vec<String>,
}

/// Every comment of `text`: a `#` at a line's start or after a blank,
/// outside any key or value.
pub(super) fn comments(text: &str, tree: &Node) -> Vec<Comment> {
    // (start, end, column, parent path) of every key; ranges of values.
    let mut keys: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut taken: Vec<Range<usize>> = Vec::new();
    fn walk(
        text: &str,
        n: &Node,
        path: &mut Vec<String>,
        keys: &mut Vec<(usize, usize, Vec<String>)>,
        taken: &mut Vec<Range<usize>>,
    ) {
        match n {
            Node::Scalar(s) => taken.extend(s.span.clone()),
            Node::Seq(items) => items.iter().for_each(|i| walk(text, i, path, keys, taken)),
            Node::Map(items) => {
                for (k, v) in items {
                    let col = k.span.start - line_start(text, k.span.start);
                    keys.push((k.span.start, col, path.clone()));
                    taken.push(k.span.clone());
                    path.push(k.name.clone());
                    walk(text, v, path, keys, taken);
                    path.pop();
                }
            }
        }
    }
    walk(text, tree, &mut Vec::new(), &mut keys, &mut taken);
    keys.sort_by_key(|k| k.0);
    taken.sort_by_key(|r| r.start);
    let inside = |p: usize| {
        let i = taken.partition_point(|r| r.start <= p);
        i > 0 && taken[i - 1].end > p
    };
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let mut prev = None;
        for (i, c) in body.char_indices() {
            let at = offset + i;
            if c == '#' && prev.is_none_or(|p: char| p == ' ' || p == '\t') && !inside(at) {
                let col = i;
                let own_line = body[..i].trim().is_empty();
                let k = keys.partition_point(|k| k.0 < at);
                let path = if own_line {
                    keys[k..]
                        .iter()
                        .find(|x| x.1 <= col)
                        .filter(|x| x.1 == col)
                        .or_else(|| keys[..k].iter().rev().find(|x| x.1 == col))
                        .map(|x| x.2.clone())
                } else {
                    keys[..k].last().map(|x| x.2.clone())
                };
                out.push(Comment {
                    range: at + 1..offset + body.len(),
                    path: path.unwrap_or_default(),
                });
                break;
            }
            prev = Some(c);
        }
        offset += line.len();
    }
    out
}

/// Opens the sealed comments: under the map it belongs to, else under
/// any map of the file (sops and pacer may place a comment differently).
/// One that opens under none stays as it is, as sops leaves it.
pub(super) fn open_comments(
    text: &str,
    tree: &Node,
    meta: &Metadata,
    key: &[u8; 32],
    stash: &mut Stash,
) -> Vec<(Range<usize>, Secret<String>)> {
    let found = comments(text, tree);
    let mut paths: Vec<Vec<String>> = found.iter().map(|c| c.path.clone()).collect();
    paths.sort();
    paths.dedup();
    paths.truncate(64);
    let mut out = Vec::new();
    for c in found.into_iter().take(MAX_SEALED) {
        let body = &text[c.range.clone()];
        let Ok(sealed) = Sealed::parse(body) else {
            continue;
        };
        let tries = std::iter::once(&c.path).chain(paths.iter());
        for p in tries {
            let path: Vec<&str> = p.iter().map(String::as_str).collect();
            if !meta.selection.seals(&path) {
                continue;
            }
            let aad = aad(&path);
            if let Ok(Plain::Comment(t)) = sealed.open(key, &aad) {
                stash.insert((aad, "comment", t.clone().into_bytes()), sealed.iv());
                out.push((c.range.clone(), Secret::new(t)));
                break;
            }
        }
    }
    out
}
