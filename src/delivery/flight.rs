//! One Marathon read of an app serves every login (and renewal) of its
//! tasks that arrives while it is in flight, and, for a task it shows, for
//! [`REUSE`] after: a burst of tasks starting together, or a caller looping
//! logins, costs one read per app at a time, not one per request.
//!
//! An answer that does not show the task is reused only when the read was
//! issued after the request arrived: a task that just started is never
//! refused on an answer older than itself.

use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an answer that shows the task is reused.
pub const REUSE: Duration = Duration::from_secs(1);

/// The most apps tracked; the config server serves the apps of the
/// published desired state, far fewer.
const MAX_APPS: usize = 10_000;

#[derive(Clone)]
struct Answer {
    issued: Instant,
    app: Option<Arc<Value>>,
}

#[derive(Default)]
struct Slot {
    /// Held while a read is in flight.
    reading: tokio::sync::Mutex<()>,
    last: Mutex<Option<Answer>>,
}

/// The reads, per app id.
#[derive(Default)]
pub struct AppReads {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl AppReads {
    /// `app`'s definition as Marathon gave it (`None`: no such app), read
    /// with `fetch` unless an answer can be reused: one issued since this
    /// call began, or one younger than [`REUSE`] of which `shows` holds.
    pub async fn read<F, Fut, E>(
        &self,
        app: &str,
        shows: impl Fn(&Value) -> bool,
        fetch: F,
    ) -> Result<Option<Arc<Value>>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Value>, E>>,
    {
        let asked = Instant::now();
        let slot = {
            let mut slots = self.slots.lock();
            if slots.len() >= MAX_APPS && !slots.contains_key(app) {
                slots.clear();
            }
            slots.entry(app.to_string()).or_default().clone()
        };
        let reusable = |a: &Answer, since: bool| {
            (since && a.issued >= asked)
                || (a.issued.elapsed() <= REUSE && a.app.as_deref().is_some_and(&shows))
        };
        // A recent answer showing the task: no wait behind other reads.
        if let Some(a) = slot.last.lock().clone()
            && reusable(&a, false)
        {
            return Ok(a.app);
        }
        let _reading = slot.reading.lock().await;
        if let Some(a) = slot.last.lock().clone()
            && reusable(&a, true)
        {
            return Ok(a.app);
        }
        let issued = Instant::now();
        let app = fetch().await?.map(Arc::new);
        *slot.last.lock() = Some(Answer {
            issued,
            app: app.clone(),
        });
        Ok(app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_reads_of_one_app_share_one_fetch() {
        let reads = Arc::new(AppReads::default());
        let fetched = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut joins = Vec::new();
        for _ in 0..20 {
            let (reads, fetched, mut gate) = (reads.clone(), fetched.clone(), gate.clone());
            joins.push(tokio::spawn(async move {
                reads
                    .read(
                        "/dev/web",
                        |_| false,
                        || async move {
                            fetched.fetch_add(1, Ordering::SeqCst);
                            let _ = gate.wait_for(|open| *open).await;
                            Ok::<_, ()>(Some(json!({"id": "/dev/web"})))
                        },
                    )
                    .await
            }));
        }
        // Every caller is waiting on the one read in flight (or has it).
        let deadline = Instant::now() + Duration::from_secs(30);
        while fetched.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no read started");
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.send_replace(true);
        for j in joins {
            assert!(j.await.unwrap().unwrap().is_some());
        }
        // The first read, plus at most one for those who came during it.
        assert!(fetched.load(Ordering::SeqCst) <= 2, "{fetched:?}");
    }

    #[tokio::test]
    async fn an_answer_is_reused_only_for_a_task_it_shows() {
        let reads = AppReads::default();
        let fetched = AtomicUsize::new(0);
        let fetch = || async {
            fetched.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Some(json!({"tasks": [{"id": "dev_web.a"}]})))
        };
        let shows = |task: &'static str| {
            move |v: &Value| {
                v["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["id"] == task)
            }
        };
        reads
            .read("/dev/web", shows("dev_web.a"), fetch)
            .await
            .unwrap();
        reads
            .read("/dev/web", shows("dev_web.a"), fetch)
            .await
            .unwrap();
        assert_eq!(fetched.load(Ordering::SeqCst), 1, "reused");
        reads
            .read("/dev/web", shows("dev_web.b"), fetch)
            .await
            .unwrap();
        assert_eq!(
            fetched.load(Ordering::SeqCst),
            2,
            "read again for a task not shown"
        );
        // An error is not remembered.
        let failed = reads
            .read("/dev/api", shows("x"), || async {
                Err::<Option<Value>, _>("down")
            })
            .await;
        assert_eq!(failed, Err("down"));
    }
}
