//! One Marathon's event stream, reduced to the app ids its events name.

use crate::marathon::client::MarathonClient;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The event types that can change a service's running, healthy tasks.
const EVENT_TYPES: &[&str] = &[
    "status_update_event",
    "health_status_changed_event",
    "instance_health_changed_event",
    "app_terminated_event",
];

/// What a stream task reports.
pub(super) enum Ev {
    /// An event about this app (URL, app id).
    App(String, String),
    Connected(String),
    Lost,
}

/// The app id an event is about, and nothing else of it.
#[derive(serde::Deserialize)]
struct EventApp {
    #[serde(default, rename = "appId")]
    app_id: Option<String>,
    #[serde(default, rename = "runSpecId")]
    run_spec_id: Option<String>,
}

/// Follows one Marathon's events for as long as the follower keeps it;
/// reconnects with backoff, and says when it connects and when it breaks.
pub(super) async fn follow_stream(
    client: MarathonClient,
    url: String,
    tx: mpsc::Sender<Ev>,
    connected: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let mut backoff = Duration::from_millis(250);
    loop {
        if let Ok(stream) = client.events_as::<EventApp>(EVENT_TYPES).await {
            connected.store(true, Ordering::Relaxed);
            backoff = Duration::from_millis(250);
            if tx.send(Ev::Connected(url.clone())).await.is_err() {
                return;
            }
            tokio::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok((_, ev)) => {
                        let Some(id) = ev.app_id.or(ev.run_spec_id) else {
                            continue;
                        };
                        if tx.send(Ev::App(url.clone(), id)).await.is_err() {
                            return;
                        }
                    }
                    // One frame that doesn't parse is skipped; a broken
                    // connection ends the stream.
                    Err(crate::marathon::client::Error::Decode { .. }) => {}
                    Err(_) => break,
                }
            }
            connected.store(false, Ordering::Relaxed);
            if tx.send(Ev::Lost).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
