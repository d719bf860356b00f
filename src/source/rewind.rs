//! The rewind check: deploying `head` must not take a running app (or the
//! environment as last applied) back to a commit that is not in head's
//! history. A force-push that drops commits would otherwise quietly undo
//! them in Marathon. `pacer apply` and the daemon both ask here; each says
//! in its own words how to deploy anyway (`--allow-rewind`).
//!
//! Pure: the caller answers "does `head` descend from this commit" (from its
//! repository, with a memo if it asks often).

use git2::Oid;
use std::fmt;

/// A commit that runs but is not an ancestor of the head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewind<K> {
    /// What runs it: an app id, or whatever the caller named it by.
    pub what: K,
    /// The commit as it was found (`-dirty` suffix removed).
    pub running: String,
    pub head: Oid,
}

impl<K: fmt::Display> fmt::Display for Rewind<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to rewind: `{}` runs commit {}, which is not an ancestor of {} (was the branch force-pushed?)",
            self.what, self.running, self.head
        )
    }
}

/// The first of `running` — (what, commit) pairs, the commit as a
/// `pacer.commit` label has it — whose commit `head` does not descend from.
/// A commit equal to `head` is fine without asking. A label that is not a
/// commit id at all can't be shown to be in head's history, so it counts as
/// a rewind: refusing is the side that changes nothing in Marathon.
///
/// `is_descendant(head, commit)` answers for the caller's repository (false
/// when it cannot tell, e.g. the commit isn't there).
pub fn check<K, S: AsRef<str>>(
    head: Oid,
    running: impl IntoIterator<Item = (K, S)>,
    mut is_descendant: impl FnMut(Oid, Oid) -> bool,
) -> Option<Rewind<K>> {
    for (what, commit) in running {
        let commit = commit.as_ref().trim_end_matches("-dirty");
        let ok = match Oid::from_str(commit) {
            Ok(c) if commit.len() == 40 || commit.len() == 64 => {
                c == head || is_descendant(head, c)
            }
            _ => false,
        };
        if !ok {
            return Some(Rewind {
                what,
                running: commit.to_string(),
                head,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    /// A history 1 ← 2 ← 3, with 4 on a branch of its own off 1.
    fn descends(head: Oid, c: Oid) -> bool {
        let chain = |x: Oid| match x.as_bytes()[0] {
            3 => vec![3, 2, 1],
            2 => vec![2, 1],
            4 => vec![4, 1],
            n => vec![n],
        };
        chain(head).contains(&c.as_bytes()[0])
    }

    #[test]
    fn ancestors_and_the_head_itself_pass() {
        let running = [("/a", oid(1).to_string()), ("/b", oid(3).to_string())];
        assert_eq!(check(oid(3), running, descends), None);
        let dirty = [("/a", format!("{}-dirty", oid(2)))];
        assert_eq!(check(oid(3), dirty, descends), None);
    }

    #[test]
    fn the_first_commit_outside_heads_history_is_named() {
        let running = [
            ("/a", oid(1).to_string()),
            ("/b", oid(3).to_string()),
            ("/c", oid(2).to_string()),
        ];
        let r = check(oid(4), running, descends).unwrap();
        assert_eq!(r.what, "/b");
        assert_eq!(r.running, oid(3).to_string());
        assert_eq!(r.head, oid(4));
        let msg = r.to_string();
        assert!(
            msg.starts_with("refusing to rewind: `/b` runs commit 0303"),
            "{msg}"
        );
        assert!(msg.contains("not an ancestor of 0404"), "{msg}");
    }

    #[test]
    fn the_head_is_not_looked_up() {
        let mut asked = 0;
        let r = check(oid(3), [("/a", oid(3).to_string())], |_, _| {
            asked += 1;
            false
        });
        assert_eq!((r, asked), (None, 0));
    }

    #[test]
    fn a_label_that_is_no_commit_id_is_a_rewind() {
        for bad in ["", "main", "0123456789ab", "zz"] {
            let r = check(oid(3), [("/a", bad)], |_, _| true);
            assert_eq!(r.map(|r| r.running), Some(bad.to_string()), "{bad:?}");
        }
    }

    #[test]
    fn nothing_running_is_no_rewind() {
        assert_eq!(
            check(oid(3), Vec::<(&str, &str)>::new(), |_, _| false),
            None
        );
    }
}
