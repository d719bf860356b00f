//! Path ids (`/prod/web`): syntax and canonical form.

use std::sync::LazyLock;

use regex::Regex;

/// One path segment, as Marathon's `PathId` validation spells it (1.4 and 1.10 agree).
pub const SEGMENT_PATTERN: &str = r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$";

static SEGMENT: LazyLock<Regex> = LazyLock::new(|| {
    // Marathon's pattern is unanchored around the alternation; anchoring the
    // whole expression gives the "must fully match" semantics it documents.
    Regex::new(&format!("^(?:{SEGMENT_PATTERN})$")).expect("static regex")
});

/// Last segments Marathon 1.8+ refuses because they collide with sub-resources.
pub const RESERVED_LAST_SEGMENTS: [&str; 5] = ["restart", "tasks", "versions", ".", ".."];

/// Whether a single segment is syntactically valid.
pub fn is_valid_segment(seg: &str) -> bool {
    SEGMENT.is_match(seg)
}

/// Canonical absolute form: leading `/`, no empty segments, `.`/`..` resolved
/// against the root (Marathon canonicalises relative ids against `/` on the
/// app endpoints).
pub fn canonical(id: &str) -> String {
    canonical_in("/", id)
}

/// Canonical absolute form of `id` resolved against group `base`.
pub fn canonical_in(base: &str, id: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if !id.starts_with('/') {
        parts.extend(base.split('/').filter(|s| !s.is_empty()));
    }
    for seg in id.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Parent group of a canonical id (`/a/b/c` → `/a/b`, `/a` → `/`).
pub fn parent(id: &str) -> String {
    match id.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => id[..i].to_string(),
    }
}

/// Id used inside task ids: `/my-group/my-app` → `my-group_my-app`.
pub fn safe_id(id: &str) -> String {
    id.trim_start_matches('/').replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises() {
        assert_eq!(canonical("foo"), "/foo");
        assert_eq!(canonical("/a//b/"), "/a/b");
        assert_eq!(canonical("/a/../b"), "/b");
        assert_eq!(canonical_in("/g", "x"), "/g/x");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(safe_id("/a/b"), "a_b");
    }

    #[test]
    fn segments() {
        for ok in ["a", "a-b", "a.b", "0", "web1"] {
            assert!(is_valid_segment(ok), "{ok}");
        }
        for bad in ["A", "-a", "a-", "a_b", "", "a..b", "a b"] {
            assert!(!is_valid_segment(bad), "{bad}");
        }
    }
}
