//! The task ids that have logged in: a task logs in once, and that must
//! hold across a daemon restart within the login grace window.
//!
//! [`UsedIds`] is the seam (a ZooKeeper store can replace the file for a
//! replicated daemon). [`FileStore`] keeps one line per login,
//! `<unix ms> <address> <task id>`, appended and fsync'd before the login
//! is answered. Entries older than the grace window (plus a margin) are
//! useless, since such a task is refused for its age anyway: they are
//! dropped on load and when the file is compacted, which keeps it bounded.

use super::login::PriorUse;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
#[cfg(test)]
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most ids kept at once: far above the logins of a grace window in a
/// large cluster. Past it (after dropping old entries) logins are refused
/// rather than an id forgotten.
pub const MAX_ENTRIES: usize = 200_000;

/// Clock steps between hosts and restarts: kept this long past the window.
const MARGIN_MS: i64 = 60_000;

/// What the login handler needs of the store.
pub trait UsedIds: Send + Sync {
    /// The earlier login of `task`, if any.
    fn prior(&self, task: &str) -> Option<PriorUse>;

    /// Records a first login, durably before it returns. `Ok(Some(prior))`
    /// when another login of `task` got there first.
    fn record(&self, task: &str, use_: PriorUse) -> io::Result<Option<PriorUse>>;
}

/// [`UsedIds`] in an append-only file.
pub struct FileStore {
    path: PathBuf,
    keep_ms: i64,
    inner: Mutex<Inner>,
}

struct Inner {
    ids: HashMap<String, PriorUse>,
    file: File,
    /// Lines in the file, live or not: compacted at twice the live ones.
    lines: usize,
}

impl FileStore {
    /// Opens (or creates) `path`, keeping entries younger than `grace` at `now_ms`.
    pub fn open(path: &Path, grace: Duration, now_ms: i64) -> io::Result<FileStore> {
        let keep_ms = i64::try_from(grace.as_millis())
            .unwrap_or(i64::MAX / 2)
            .saturating_add(MARGIN_MS);
        let mut ids = HashMap::new();
        match super::private::open_read(path) {
            Ok(f) => {
                for line in Lines::new(f) {
                    if let Some((task, u)) = parse(&line?)
                        && now_ms.saturating_sub(u.at_ms) <= keep_ms
                    {
                        ids.entry(task).or_insert(u);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let store = FileStore {
            path: path.to_path_buf(),
            keep_ms,
            inner: Mutex::new(Inner {
                file: rewrite(path, &ids)?,
                lines: ids.len(),
                ids,
            }),
        };
        Ok(store)
    }
}

fn parse(line: &str) -> Option<(String, PriorUse)> {
    let mut parts = line.splitn(3, ' ');
    let at_ms = parts.next()?.parse().ok()?;
    let addr = parts.next()?.parse().ok()?;
    let task = parts.next()?;
    super::login::check_id("task id", task).ok()?;
    Some((task.to_string(), PriorUse { at_ms, addr }))
}

fn line(task: &str, u: &PriorUse) -> String {
    format!("{} {} {task}\n", u.at_ms, u.addr)
}

/// The longest line kept: a time, an address and a bounded id.
const MAX_LINE_BYTES: usize = 512;

/// The file's lines, each read with a bound: an overlong or undecodable
/// line (a torn write, junk) is skipped, never loaded whole nor fatal.
struct Lines<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: io::Read> Lines<R> {
    fn new(r: R) -> Lines<R> {
        Lines {
            reader: BufReader::new(r),
            buf: Vec::with_capacity(MAX_LINE_BYTES),
        }
    }
}

impl<R: io::Read> Iterator for Lines<R> {
    type Item = io::Result<String>;

    fn next(&mut self) -> Option<io::Result<String>> {
        loop {
            self.buf.clear();
            let mut overlong = false;
            // Reads up to a newline, keeping at most MAX_LINE_BYTES of it.
            loop {
                let chunk = match self.reader.fill_buf() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Some(Err(e)),
                };
                if chunk.is_empty() {
                    if self.buf.is_empty() && !overlong {
                        return None;
                    }
                    break;
                }
                let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (&chunk[..i], Some(i + 1)),
                    None => (chunk, None),
                };
                if self.buf.len() + part.len() > MAX_LINE_BYTES {
                    overlong = true;
                    self.buf.clear();
                } else if !overlong {
                    self.buf.extend_from_slice(part);
                }
                let used = done.unwrap_or(chunk.len());
                self.reader.consume(used);
                if done.is_some() {
                    break;
                }
            }
            if overlong {
                continue;
            }
            if let Ok(line) = std::str::from_utf8(&self.buf) {
                return Some(Ok(line.to_string()));
            }
        }
    }
}

/// Writes the live entries to a new file and puts it in place (temp file,
/// fsync, rename; never through a symlink), then opens it for appending.
fn rewrite(path: &Path, ids: &HashMap<String, PriorUse>) -> io::Result<File> {
    let mut text = String::with_capacity(ids.len() * 64);
    for (task, u) in ids {
        text.push_str(&line(task, u));
    }
    let tmp = super::private::write_temp(path, text.as_bytes())?;
    std::fs::rename(&tmp, path)?;
    super::private::sync_parent(path);
    super::private::open_append(path)
}

impl UsedIds for FileStore {
    fn prior(&self, task: &str) -> Option<PriorUse> {
        self.inner.lock().ids.get(task).cloned()
    }

    fn record(&self, task: &str, use_: PriorUse) -> io::Result<Option<PriorUse>> {
        let mut g = self.inner.lock();
        if let Some(p) = g.ids.get(task) {
            return Ok(Some(p.clone()));
        }
        let inner = &mut *g;
        if inner.ids.len() >= MAX_ENTRIES || inner.lines >= 2 * MAX_ENTRIES {
            let keep = self.keep_ms;
            inner
                .ids
                .retain(|_, u| use_.at_ms.saturating_sub(u.at_ms) <= keep);
            inner.file = rewrite(&self.path, &inner.ids)?;
            inner.lines = inner.ids.len();
            if inner.ids.len() >= MAX_ENTRIES {
                return Err(io::Error::other(format!(
                    "{} task ids logged in within the grace window: refusing more",
                    inner.ids.len()
                )));
            }
        }
        inner.file.write_all(line(task, &use_).as_bytes())?;
        // Durable before the token goes out: a restart must still know it.
        inner.file.sync_data()?;
        inner.lines += 1;
        inner.ids.insert(task.to_string(), use_);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> PriorUse {
        PriorUse {
            at_ms: ms,
            addr: "127.0.0.2".parse().unwrap(),
        }
    }

    #[test]
    fn a_login_is_remembered_across_a_reopen_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("used-task-ids");
        let grace = Duration::from_secs(120);
        let s = FileStore::open(&path, grace, 1_000_000).unwrap();
        assert_eq!(s.record("t1", at(1_000_000)).unwrap(), None);
        assert_eq!(s.record("t1", at(1_000_001)).unwrap(), Some(at(1_000_000)));
        assert_eq!(s.prior("t1"), Some(at(1_000_000)));
        drop(s);
        // A restart a minute later still knows it.
        let s = FileStore::open(&path, grace, 1_060_000).unwrap();
        assert_eq!(s.prior("t1"), Some(at(1_000_000)));
        assert_eq!(s.record("t2", at(1_060_000)).unwrap(), None);
        drop(s);
        // Past the window and its margin it is dropped, and so is junk.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"garbage line\n1 not-an-ip t3\n").unwrap();
        let s = FileStore::open(&path, grace, 1_000_000 + 180_001).unwrap();
        assert_eq!(s.prior("t1"), None);
        assert_eq!(s.prior("t2"), Some(at(1_060_000)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "1060000 127.0.0.2 t2\n", "compacted on open");
    }

    #[test]
    fn a_full_store_drops_old_entries_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        let s = FileStore::open(&path, Duration::from_secs(1), 0).unwrap();
        {
            let mut g = s.inner.lock();
            for i in 0..MAX_ENTRIES {
                g.ids.insert(format!("old{i}"), at(0));
            }
        }
        // The old ones are past the window at 100 s: dropped, room again.
        assert_eq!(s.record("new", at(100_000)).unwrap(), None);
        assert_eq!(s.inner.lock().ids.len(), 1);
        {
            let mut g = s.inner.lock();
            for i in 0..MAX_ENTRIES {
                g.ids.insert(format!("live{i}"), at(100_000));
            }
        }
        assert!(s.record("one-more", at(100_001)).is_err());
    }

    #[test]
    fn overlong_or_undecodable_lines_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("used-task-ids");
        let mut text = b"1000 127.0.0.2 t1\n".to_vec();
        text.extend(vec![b'x'; 1 << 20]);
        text.extend(b"\n\xff\xfe junk\n1001 127.0.0.2 t2\n1002 127.0.0.2 t3".iter());
        std::fs::write(&path, text).unwrap();
        let s = FileStore::open(&path, Duration::from_secs(120), 2_000).unwrap();
        assert_eq!(s.prior("t1"), Some(at(1000)));
        assert_eq!(s.prior("t2"), Some(at(1001)));
        assert_eq!(s.prior("t3"), Some(at(1002)), "a last line without newline");
    }
}
