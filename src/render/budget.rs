//! Limits on the work a config repo can make the renderer do.
//!
//! The repo is written by people pacer can't vouch for: a template with three
//! nested `range(100000)` loops, or a YAML file whose aliases expand a
//! megabyte a thousand times, must fail as an invalid app, quickly and in
//! bounded memory, not wedge `validate` or the daemon.

use std::time::{Duration, Instant};

/// The budgets of one render. [`Budgets::default`] suits every command; the
/// daemon may lower `deadline` to keep its loop responsive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budgets {
    /// minijinja fuel for one template: about one unit per instruction and
    /// one per 64 bytes of data the template creates, so it bounds both the
    /// time and the memory of a render.
    pub template_fuel: u64,
    /// minijinja fuel for all of one app's templates together (checked
    /// between templates, so an app may overrun it by one template's fuel).
    pub app_fuel: u64,
    /// The largest rendered config file, in bytes.
    pub file_bytes: usize,
    /// The largest total of an app's rendered files and app definition, in bytes.
    pub app_bytes: usize,
    /// The largest a YAML document may grow to once its aliases are
    /// expanded: the bytes of its scalars plus [`YAML_NODE_BYTES`] per node.
    pub yaml_expanded_bytes: usize,
    /// A backstop for the whole render (from `Repo::load` on): apps not
    /// rendered by then are invalid. `None`: no deadline.
    pub deadline: Option<Duration>,
}

/// What one YAML node (scalar, sequence, map) costs beyond its text when
/// counting a document's expanded size: the in-memory values pacer builds
/// from it are that much larger than the text.
pub const YAML_NODE_BYTES: usize = 32;

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            // ~1M instructions or ~64 MB of data: a thousand times what the
            // largest real config template needs, and tens of milliseconds.
            template_fuel: 1_000_000,
            app_fuel: 10_000_000,
            file_bytes: 4 * 1024 * 1024,
            app_bytes: 16 * 1024 * 1024,
            yaml_expanded_bytes: 16 * 1024 * 1024,
            deadline: Some(Duration::from_secs(60)),
        }
    }
}

impl Budgets {
    /// The instant the render must end by, for a render that starts now.
    pub fn deadline_from(&self, start: Instant) -> Option<Instant> {
        self.deadline.and_then(|d| start.checked_add(d))
    }
}

/// Human-readable byte counts for messages ("4 MiB", "512 KiB", "300 bytes").
pub fn bytes(n: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// The length of `v` as compact JSON, without building the text.
pub(super) fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(4 * 1024 * 1024), "4 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(bytes(2048), "2 KiB");
        assert_eq!(bytes(300), "300 bytes");
    }
}
