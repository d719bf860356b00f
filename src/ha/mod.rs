//! High availability: several `pacer serve` replicas, one writer, elected
//! on ZooKeeper (`--zk zk://host1:2181,host2:2181/pacer`).
//!
//! Every replica fetches, renders, reads Marathon, publishes its status and
//! serves the HTTP side and the config server. Only the leader writes: its
//! loop's [`Writer`] is resumed while it leads and paused otherwise, and
//! every write to Marathon checks the [`Fence`] right before it is sent, so
//! a leader that was paused past its session (a GC pause, SIGSTOP) sends
//! nothing after another replica took over (see `model::fence`).
//!
//! The election is ZooKeeper's recipe in Apache Curator's `LeaderLatch`
//! layout: ephemeral sequential nodes `<root>/leader/_c_<uuid>-latch-N`,
//! each watching its predecessor, the lowest leads; its data is the
//! replica's id, so operators' tools show the leader as they do
//! Marathon's. A webhook that reaches a follower wakes the leader through
//! `<root>/wake`.
//!
//! A lost connection closes the fence at once (the session may expire
//! while we can't tell); a session that comes back with the latch node
//! still there leads again, an expired one contends anew.

mod election;

use crate::model::fence::Fence;
use crate::server::Trigger;
use crate::status::published::Publisher;
pub use crate::status::{HaStatus, Role};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// `--zk` and its settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `host:port,host:port`.
    pub hosts: String,
    /// The znode pacer keeps its nodes under (`/pacer`).
    pub root: String,
    pub session_timeout: Duration,
    /// This replica, as the leader's node shows it (`host:port`).
    pub id: String,
}

/// Reads `zk://host1:2181,host2:2181/pacer` (Marathon's own `--zk` form)
/// into hosts and root.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let bad = |why: &str| {
        format!("`{url}` is not a ZooKeeper URL ({why}); expected zk://host1:2181,host2:2181/pacer")
    };
    let rest = url.strip_prefix("zk://").ok_or_else(|| bad("no zk://"))?;
    let (hosts, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/pacer"),
    };
    if hosts.is_empty() {
        return Err(bad("no host"));
    }
    for h in hosts.split(',') {
        let (host, port) = h.rsplit_once(':').unwrap_or((h, "2181"));
        if host.is_empty()
            || host.contains('@')
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        {
            return Err(bad(&format!("bad host `{h}`")));
        }
        port.parse::<u16>()
            .map_err(|_| bad(&format!("bad port in `{h}`")))?;
    }
    let path = path.trim_end_matches('/');
    if path.is_empty()
        || path
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..")
        || path.chars().any(|c| c.is_control())
    {
        return Err(bad("bad path"));
    }
    Ok((hosts.to_string(), path.to_string()))
}

/// A running election.
#[derive(Clone)]
pub struct Handle {
    wake: mpsc::Sender<()>,
}

impl Handle {
    /// Tells the leader a push arrived here (a follower's webhook).
    pub fn wake_leader(&self) {
        // Full: a wake is on its way already.
        let _ = self.wake.try_send(());
    }
}

/// Turns the loop's writes on (`true`) and off: the reconcile loop's
/// `Writer`, handed over by `pacer serve`'s start-up.
pub type Writing = Box<dyn Fn(bool) + Send + Sync>;

/// Starts the election for this replica: writing is off now and on only
/// while this replica leads and `fence` holds a lease.
pub fn start(
    settings: Settings,
    fence: Fence,
    writer: Writing,
    status: Arc<Publisher>,
    triggers: mpsc::Sender<Trigger>,
) -> Handle {
    writer(false);
    fence.revoke("no leader elected yet");
    let (wake_tx, wake_rx) = mpsc::channel(8);
    status.write().ha = Some(HaStatus {
        id: settings.id.clone(),
        ..HaStatus::default()
    });
    tokio::spawn(election::run(election::Parts {
        settings,
        fence,
        writer,
        status,
        triggers,
        wake: wake_rx,
    }));
    Handle { wake: wake_tx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zk_urls() {
        assert_eq!(
            parse_url("zk://a:2181,b:2182/pacer").unwrap(),
            ("a:2181,b:2182".into(), "/pacer".into())
        );
        assert_eq!(
            parse_url("zk://10.0.0.1:2181").unwrap(),
            ("10.0.0.1:2181".into(), "/pacer".into())
        );
        assert_eq!(
            parse_url("zk://zk.mesos/marathon/pacer/").unwrap(),
            ("zk.mesos".into(), "/marathon/pacer".into())
        );
        for bad in [
            "http://a:2181/x",
            "zk:///x",
            "zk://a:99999/x",
            "zk://user@a:2181/x",
            "zk://a:2181/x/../y",
            "zk://a:2181//x",
            "zk://a b:2181/x",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains("zk://host1:2181"), "{bad}: {e}");
        }
    }
}
