//! The election's I/O: one ZooKeeper session at a time, contending for the
//! latch, holding a lease while leading. What the lease allows is decided
//! by `model::fence`; this only feeds it round trips.

use super::{HaStatus, Role, Settings};
use crate::model::fence::Fence;
use crate::server::Trigger;
use crate::status::published::Publisher;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use zookeeper_client as zk;

/// Where the latch nodes live, under the root.
const LEADER_DIR: &str = "/leader";
/// Curator's `LeaderLatch` name.
const LATCH: &str = "latch-";
/// Bumped by a follower that took a webhook; the leader watches it.
const WAKE: &str = "/wake";
/// The longest pause between attempts to reach ZooKeeper.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub(super) struct Parts {
    pub settings: Settings,
    pub fence: Fence,
    pub writer: super::Writing,
    pub status: Arc<Publisher>,
    pub triggers: mpsc::Sender<Trigger>,
    pub wake: mpsc::Receiver<()>,
}

/// How long a lease runs from the moment a confirming request was sent:
/// the session timeout less a fifth (at least 1 s), for the clocks of
/// ZooKeeper and this host and the time a write takes to leave.
pub fn lease(session_timeout: Duration) -> Duration {
    let margin = (session_timeout / 5).max(Duration::from_secs(1));
    session_timeout.saturating_sub(margin)
}

/// The sequence number of a latch node (`..._c_<uuid>-latch-0000000042`).
pub fn sequence(path: &str) -> Option<u64> {
    let tail = &path[path.rfind(LATCH)? + LATCH.len()..];
    (tail.len() == 10 && tail.bytes().all(|b| b.is_ascii_digit()))
        .then(|| tail.parse().ok())
        .flatten()
}

/// The leader's node among `children`: the lowest sequence.
pub fn lowest(children: &[String]) -> Option<&String> {
    children
        .iter()
        .filter_map(|c| Some((sequence(c)?, c)))
        .min()
        .map(|(_, c)| c)
}

/// Why a session ended.
enum End {
    /// Expired, closed, or a failure that needs a new session.
    Session(String),
}

pub(super) async fn run(mut p: Parts) {
    let mut backoff = Duration::from_millis(500);
    loop {
        set(&p.status, |h| {
            h.zk_connected = false;
            h.role = Role::None;
            h.epoch = None;
        });
        let client = match connect(&p.settings).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "ZooKeeper at {} is not answering ({e}); no writes until it does",
                    p.settings.hosts
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        let End::Session(why) = session(&client, &mut p).await;
        lose(&p, &format!("not the leader: {why}"));
        tracing::warn!("ZooKeeper session ended ({why}); starting a new one");
    }
}

/// A session, with pacer's nodes under the root in place.
async fn connect(s: &Settings) -> Result<zk::Client, zk::Error> {
    let client = zk::Client::connector()
        .with_session_timeout(s.session_timeout)
        .with_connection_timeout(s.session_timeout)
        .connect(&s.hosts)
        .await?;
    let dir = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .mkdir(&format!("{}{LEADER_DIR}", s.root), &dir)
        .await?;
    client.mkdir(&format!("{}{WAKE}", s.root), &dir).await?;
    client
        .chroot(s.root.as_str())
        .map_err(|_| zk::Error::BadArguments(&"chroot"))
}

fn set(status: &Publisher, f: impl FnOnce(&mut HaStatus)) {
    let mut s = status.write();
    if let Some(h) = s.ha.as_mut() {
        f(h);
    }
}

/// Stops writing at once.
fn lose(p: &Parts, why: &str) {
    p.fence.revoke(why);
    (p.writer)(false);
    set(&p.status, |h| {
        if h.role == Role::Leader {
            h.role = Role::Follower;
            h.leader = None;
        }
        h.epoch = None;
    });
}

async fn session(client: &zk::Client, p: &mut Parts) -> End {
    let mut states = client.state_watcher();
    set(&p.status, |h| {
        h.zk_connected = true;
        h.role = Role::Follower;
    });
    let prefix = match zk::LockPrefix::new_curator(LEADER_DIR, LATCH) {
        Ok(x) => x,
        Err(e) => return End::Session(e.to_string()),
    };
    let contend = client.lock(prefix, p.settings.id.as_bytes(), zk::Acls::anyone_all());
    tokio::pin!(contend);
    let mut tick = tokio::time::interval(p.settings.session_timeout / 3);
    // While waiting: follow who leads, and pass pushes on to the leader.
    let lock = loop {
        tokio::select! {
            r = &mut contend => match r {
                Ok(lock) => break lock,
                Err(e) => return End::Session(format!("contending for leadership: {e}")),
            },
            s = states.changed() => {
                if let Some(end) = state_change(p, s, false) {
                    return end;
                }
            }
            _ = tick.tick() => {
                let leader = leader_id(client).await;
                set(&p.status, |h| h.leader = leader);
            }
            Some(()) = p.wake.recv() => wake(client).await,
        }
    };
    let path = lock.lock_path().to_string();
    let Some(epoch) = sequence(&path) else {
        return End::Session(format!("unexpected latch node {path}"));
    };
    // Leading: confirm the node is ours before the first write.
    if !confirm(client, &path, epoch, p, true).await {
        return End::Session("the latch node was not confirmed".into());
    }
    tracing::info!(epoch, id = %p.settings.id, "leading: writing to Marathon");
    set(&p.status, |h| {
        h.role = Role::Leader;
        h.epoch = Some(epoch);
        h.leader = Some(h.id.clone());
    });
    (p.writer)(true);
    let mut renew = tokio::time::interval(p.settings.session_timeout / 4);
    let mut wakes = watch_wake(client).await;
    loop {
        tokio::select! {
            _ = renew.tick() => {
                if !confirm(client, &path, epoch, p, false).await
                    && p.fence.check().is_err()
                {
                    // The node is gone (a session lost and expired), or the
                    // lease ran out with ZooKeeper unconfirmed.
                    if client.check_stat(&path).await.ok().flatten().is_none() {
                        return End::Session("the latch node is gone".into());
                    }
                }
            }
            s = states.changed() => {
                if let Some(end) = state_change(p, s, true) {
                    return end;
                }
                if s == zk::SessionState::SyncConnected
                    && confirm(client, &path, epoch, p, true).await
                {
                    (p.writer)(true);
                }
            }
            event = async {
                match wakes.take() {
                    Some(w) => Some(w.changed().await),
                    None => std::future::pending().await,
                }
            } => {
                if event.is_some() {
                    let _ = p.triggers.try_send(Trigger::Webhook {
                        provider: "replica".into(),
                        delivery: None,
                        commit: None,
                    });
                }
                wakes = watch_wake(client).await;
            }
            // A push to this replica: the leader's own loop has it already.
            Some(()) = p.wake.recv() => {}
        }
    }
}

/// Handles a session state change; `Some` ends the session.
fn state_change(p: &Parts, s: zk::SessionState, leading: bool) -> Option<End> {
    match s {
        zk::SessionState::Disconnected => {
            // The session may expire while we can't tell: stop now.
            if leading {
                tracing::warn!("lost the ZooKeeper connection: writes stop until it is back");
            }
            lose(p, "the ZooKeeper connection is lost");
            set(&p.status, |h| h.zk_connected = false);
            None
        }
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
            set(&p.status, |h| h.zk_connected = true);
            None
        }
        other => Some(End::Session(format!("session {other:?}"))),
    }
}

/// One round trip that finds the latch node: the lease runs from when it
/// was sent. `grant`: a new lease (leadership won or regained), else an
/// extension of the current one.
async fn confirm(client: &zk::Client, path: &str, epoch: u64, p: &Parts, grant: bool) -> bool {
    let sent = Instant::now();
    let lease = lease(p.settings.session_timeout);
    let found = tokio::time::timeout(lease, client.check_stat(path)).await;
    match found {
        Ok(Ok(Some(_))) => {
            if grant {
                p.fence.grant(epoch, sent + lease);
            } else {
                p.fence.extend(epoch, sent + lease);
            }
            true
        }
        _ => false,
    }
}

async fn leader_id(client: &zk::Client) -> Option<String> {
    let children = client.list_children(LEADER_DIR).await.ok()?;
    let first = lowest(&children)?;
    let (data, _) = client
        .get_data(&format!("{LEADER_DIR}/{first}"))
        .await
        .ok()?;
    String::from_utf8(data).ok().filter(|s| s.len() <= 256)
}

/// Bumps the wake node: the leader's watch fires.
async fn wake(client: &zk::Client) {
    if let Err(e) = client.set_data(WAKE, b"push", None).await {
        tracing::debug!("waking the leader through ZooKeeper failed: {e}");
    }
}

async fn watch_wake(client: &zk::Client) -> Option<zk::OneshotWatcher> {
    client
        .get_and_watch_data(WAKE)
        .await
        .ok()
        .map(|(_, _, w)| w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latch_sequences_and_the_lowest() {
        assert_eq!(sequence("/leader/_c_2f1e-uuid-latch-0000000042"), Some(42));
        assert_eq!(sequence("/leader/other-0000000042"), None);
        assert_eq!(sequence("/leader/_c_x-latch-42"), None);
        let c = vec![
            "_c_b-latch-0000000007".to_string(),
            "stray".to_string(),
            "_c_a-latch-0000000003".to_string(),
        ];
        assert_eq!(lowest(&c).unwrap(), "_c_a-latch-0000000003");
        assert_eq!(lowest(&[]), None);
    }

    #[test]
    fn the_lease_ends_before_the_session_can() {
        assert_eq!(lease(Duration::from_secs(6)), Duration::from_millis(4800));
        assert_eq!(lease(Duration::from_secs(2)), Duration::from_secs(1));
        assert!(lease(Duration::from_millis(500)) < Duration::from_millis(500));
    }
}
