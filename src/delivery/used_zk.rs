//! The task ids that logged in, shared by every replica through ZooKeeper
//! (`pacer serve --zk`): a task id used on one replica is refused on the
//! others.
//!
//! Each first login creates `<root>/used/<task id>` holding `<unix ms>
//! <address>`; ZooKeeper's create is the arbiter when two replicas race.
//! The replica's own file store ([`FileStore`]) keeps every login too, so
//! a restart within the grace window still knows them, and so that logins
//! go on while ZooKeeper is out: then only this replica's own record is
//! checked (a replay on another replica during the outage is the window;
//! the status shows ZooKeeper as disconnected). Nodes older than the grace
//! window (plus a margin) are deleted by a background sweep.

use super::login::PriorUse;
use super::used::{FileStore, MAX_ENTRIES, UsedIds};
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use zookeeper_client as zk;

/// The longest a login waits for ZooKeeper before it is checked locally.
const ZK_WAIT: Duration = Duration::from_secs(2);
/// Between sweeps of expired ids.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Ids looked at in one sweep, so that one sweep stays short.
const SWEEP_MAX: usize = 20_000;
const DIR: &str = "/used";

pub struct ZkStore {
    local: FileStore,
    client: Arc<Mutex<Option<zk::Client>>>,
    rt: tokio::runtime::Handle,
}

/// A node name for `task`: ids are checked (`login::check_id`) to letters,
/// digits and `._-:`; anything else is %-escaped, so a name never holds
/// `/` nor is `.` or `..`.
pub fn node_name(task: &str) -> String {
    let mut out = String::with_capacity(task.len());
    for b in task.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn data(u: &PriorUse) -> Vec<u8> {
    format!("{} {}", u.at_ms, u.addr).into_bytes()
}

fn parse(bytes: &[u8]) -> Option<PriorUse> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (at, addr) = text.split_once(' ')?;
    Some(PriorUse {
        at_ms: at.parse().ok()?,
        addr: addr.parse().ok()?,
    })
}

impl ZkStore {
    /// Wraps `local`; connects to `hosts` (under `root`) in the background
    /// and keeps trying while ZooKeeper is out. `keep`: how long an id
    /// matters (the grace window plus a margin).
    pub fn start(local: FileStore, hosts: String, root: String, keep: Duration) -> ZkStore {
        let client = Arc::new(Mutex::new(None));
        tokio::spawn(keep_connected(client.clone(), hosts, root, keep));
        ZkStore {
            local,
            client,
            rt: tokio::runtime::Handle::current(),
        }
    }

    fn shared(&self, task: &str, use_: &PriorUse) -> Result<Option<PriorUse>, String> {
        let Some(client) = self.client.lock().clone() else {
            return Err("not connected".into());
        };
        let path = format!("{DIR}/{}", node_name(task));
        let bytes = data(use_);
        // A blocking thread (the login handler's `spawn_blocking`): it may
        // wait on the runtime.
        self.rt.block_on(async {
            let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            let created = tokio::time::timeout(ZK_WAIT, client.create(&path, &bytes, &opts)).await;
            match created {
                Ok(Ok(_)) => Ok(None),
                Ok(Err(zk::Error::NodeExists)) => {
                    let prior = tokio::time::timeout(ZK_WAIT, client.get_data(&path)).await;
                    Ok(Some(
                        prior
                            .ok()
                            .and_then(Result::ok)
                            .and_then(|(d, _)| parse(&d))
                            // Unreadable, but there: used all the same.
                            .unwrap_or(PriorUse {
                                at_ms: 0,
                                addr: std::net::IpAddr::from([0, 0, 0, 0]),
                            }),
                    ))
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {ZK_WAIT:?}")),
            }
        })
    }
}

impl UsedIds for ZkStore {
    fn prior(&self, task: &str) -> Option<PriorUse> {
        // This replica's own record; the shared one has its word in
        // `record`, before any token goes out.
        self.local.prior(task)
    }

    fn record(&self, task: &str, use_: PriorUse) -> io::Result<Option<PriorUse>> {
        match self.shared(task, &use_) {
            Ok(Some(prior)) => return Ok(Some(prior)),
            Ok(None) => {}
            Err(why) => tracing::warn!(
                task,
                "config server: ZooKeeper can't record the login ({why}); checked against this replica's own record only"
            ),
        }
        self.local.record(task, use_)
    }
}

async fn keep_connected(
    slot: Arc<Mutex<Option<zk::Client>>>,
    hosts: String,
    root: String,
    keep: Duration,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let connected = async {
            let c = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(10))
                .connect(&hosts)
                .await?;
            let dir = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            c.mkdir(&format!("{root}{DIR}"), &dir).await?;
            c.chroot(root.as_str())
                .map_err(|_| zk::Error::BadArguments(&"chroot"))
        }
        .await;
        let client = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("config server: ZooKeeper for used task ids: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        *slot.lock() = Some(client.clone());
        let mut states = client.state_watcher();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                s = states.changed() => match s {
                    zk::SessionState::Expired
                    | zk::SessionState::Closed
                    | zk::SessionState::AuthFailed => break,
                    _ => {}
                },
                _ = sweep.tick() => sweep_expired(&client, keep).await,
            }
        }
        *slot.lock() = None;
    }
}

/// Deletes the ids older than `keep` (by their node's creation time).
async fn sweep_expired(client: &zk::Client, keep: Duration) {
    let Ok(children) = client.list_children(DIR).await else {
        return;
    };
    if children.len() > MAX_ENTRIES {
        tracing::warn!(
            ids = children.len(),
            "config server: more used task ids in ZooKeeper than expected; sweeping"
        );
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    for name in children.iter().take(SWEEP_MAX) {
        let path = format!("{DIR}/{name}");
        if let Ok(Some(stat)) = client.check_stat(&path).await
            && now_ms.saturating_sub(stat.ctime) > keep_ms
        {
            let _ = client.delete(&path, Some(stat.version)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_never_hold_a_path() {
        assert_eq!(node_name("dev_web.0a1b-2c"), "dev_web%2E0a1b-2c");
        assert_eq!(node_name(".."), "%2E%2E");
        assert_eq!(node_name("a/b"), "a%2Fb");
        assert!(!node_name("x:y").contains(':'));
    }

    #[test]
    fn the_data_round_trips_and_junk_is_none() {
        let u = PriorUse {
            at_ms: 1_700_000_000_000,
            addr: "10.0.0.7".parse().unwrap(),
        };
        assert_eq!(parse(&data(&u)), Some(u));
        assert_eq!(parse(b"junk"), None);
        assert_eq!(parse(&[0xff, 0x20, 0x31]), None);
    }
}
