//! Blocking watches hold a connection for minutes: they are capped per
//! task id (an agent needs one; a second covers a reconnect) and overall
//! (half the listener's connections), so watches can never take every
//! connection from logins, reads and the daemon's own API.

use parking_lot::Mutex;
use std::collections::HashMap;

/// Watches one task id may hold at once.
pub const PER_TASK: usize = 2;

/// The watches waiting now.
#[derive(Debug)]
pub struct Watches {
    max_total: usize,
    inner: Mutex<(usize, HashMap<String, usize>)>,
}

/// A watch's place, given back when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    watches: &'a Watches,
    task: String,
}

impl Watches {
    pub fn new(max_total: usize) -> Watches {
        Watches {
            max_total: max_total.max(1),
            inner: Mutex::default(),
        }
    }

    /// A place for one more watch of `task`, or `None` when `task` holds
    /// [`PER_TASK`] already or every place is taken.
    pub fn enter(&self, task: &str) -> Option<Slot<'_>> {
        let mut g = self.inner.lock();
        let (total, per) = &mut *g;
        let mine = per.get(task).copied().unwrap_or(0);
        if mine >= PER_TASK || *total >= self.max_total {
            return None;
        }
        *total += 1;
        per.insert(task.to_string(), mine + 1);
        Some(Slot {
            watches: self,
            task: task.to_string(),
        })
    }

    /// Watches waiting now.
    pub fn len(&self) -> usize {
        self.inner.lock().0
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut g = self.watches.inner.lock();
        let (total, per) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(&self.task) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.task);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_capped_per_task_and_overall_and_given_back() {
        let w = Watches::new(3);
        let a1 = w.enter("a").unwrap();
        let _a2 = w.enter("a").unwrap();
        assert!(w.enter("a").is_none(), "a third of one task");
        let _b = w.enter("b").unwrap();
        assert!(w.enter("c").is_none(), "every place taken");
        drop(a1);
        assert_eq!(w.len(), 2);
        let _c = w.enter("c").unwrap();
        assert!(w.enter("a").is_none());
    }
}
