//! Marathon's event stream, shared by everyone following a deployment on
//! one Marathon.
//!
//! Following a deployment by polling alone either hammers Marathon (a poll
//! per rollout, every fraction of a second, across hundreds of apps) or
//! notices the end late. Marathon announces every step and the end of each
//! deployment on `/v2/events`, so followers sleep until an event names
//! their deployment and poll only as a safety net. One connection per Marathon serves every follower,
//! and it is open only while someone follows: Marathon's docs warn that
//! each event subscriber costs it.
//!
//! Events can be missed (a reconnect, a lagging reader): they only wake a
//! follower, which then reads `/v2/deployments` as before. Nothing is ever
//! decided from an event alone.

use super::client::MarathonClient;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

/// The event types that move a rollout on. Task and health events are
/// left out: a deployment ends only once its tasks are up, and those
/// events come by the hundred.
const EVENT_TYPES: &[&str] = &[
    "deployment_info",
    "deployment_step_success",
    "deployment_step_failure",
    "deployment_success",
    "deployment_failed",
];

/// A live subscription to one Marathon's events. Dropping the last
/// [`Arc`] closes the connection.
pub struct DeploymentWatch {
    tx: broadcast::Sender<String>,
    connected: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for DeploymentWatch {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl DeploymentWatch {
    /// Connects in the background (and reconnects, with backoff, for as
    /// long as the watch lives).
    pub fn start(client: &MarathonClient) -> DeploymentWatch {
        let (tx, _) = broadcast::channel(1024);
        let connected = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(client.clone(), tx.clone(), connected.clone()));
        DeploymentWatch {
            tx,
            connected,
            task: Some(task),
        }
    }

    /// A watch that never connects: followers poll.
    pub fn disabled() -> DeploymentWatch {
        DeploymentWatch {
            tx: broadcast::channel(1).0,
            connected: Arc::new(AtomicBool::new(false)),
            task: None,
        }
    }

    /// Whether events are flowing now; while they aren't, followers must
    /// poll at their own pace.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Subscribe before reading the state the events will change, so no
    /// event in between is lost.
    pub fn subscribe(&self) -> Waker {
        Waker {
            rx: self.tx.subscribe(),
        }
    }
}

/// Waits for events naming one deployment.
pub struct Waker {
    rx: broadcast::Receiver<String>,
}

impl Waker {
    /// Returns when an event names `deployment`, or events were lost (the
    /// caller re-reads Marathon either way). Never returns once the watch
    /// is gone: pair it with a timer.
    pub async fn named(&mut self, deployment: &str) {
        loop {
            match self.rx.recv().await {
                Ok(key) if key == deployment => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

async fn run(client: MarathonClient, tx: broadcast::Sender<String>, connected: Arc<AtomicBool>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        if let Ok(stream) = client.events_as::<DeploymentEvent>(EVENT_TYPES).await {
            connected.store(true, Ordering::Relaxed);
            backoff = Duration::from_millis(250);
            tokio::pin!(stream);
            while let Some(Ok((kind, ev))) = stream.next().await {
                if let Some(id) = deployment_of(&kind, &ev) {
                    // No receiver right now is fine: nobody is waiting.
                    let _ = tx.send(id);
                }
            }
            connected.store(false, Ordering::Relaxed);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The ids of a deployment event, and nothing else of it.
#[derive(serde::Deserialize)]
struct DeploymentEvent {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    plan: Option<PlanId>,
}

#[derive(serde::Deserialize)]
struct PlanId {
    #[serde(default)]
    id: Option<String>,
}

/// The deployment an event is about: `deployment_success` and
/// `deployment_failed` name it as `id` (and `plan.id`), the step events
/// as `plan.id` only.
fn deployment_of(kind: &str, ev: &DeploymentEvent) -> Option<String> {
    let plan = ev.plan.as_ref().and_then(|p| p.id.clone());
    match kind {
        "deployment_success" | "deployment_failed" => ev.id.clone().or(plan),
        _ => plan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(kind: &str, json: &str) -> Option<String> {
        deployment_of(kind, &serde_json::from_str(json).unwrap())
    }

    #[test]
    fn events_name_their_deployment() {
        assert_eq!(
            of("deployment_success", r#"{"id":"d1","plan":{"id":"d1"}}"#).as_deref(),
            Some("d1")
        );
        assert_eq!(
            of("deployment_failed", r#"{"plan":{"id":"d2"}}"#).as_deref(),
            Some("d2")
        );
        assert_eq!(
            of(
                "deployment_step_success",
                r#"{"plan":{"id":"d3","original":{"apps":[]}}}"#
            )
            .as_deref(),
            Some("d3")
        );
        assert_eq!(of("deployment_info", r#"{"id":"not the plan"}"#), None);
    }
}
