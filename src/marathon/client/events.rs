//! `/v2/events`: Marathon's server-sent event stream, opened with the read
//! retries of [`super::transport`] and parsed frame by frame.

use std::time::Instant;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::header::ACCEPT;
use serde_json::Value;
use tracing::debug;

use super::error::{error_chain, status_error};
use super::transport::Answer;
use super::{Error, MarathonClient};

/// One frame of `/v2/events`.
#[derive(Debug, Clone)]
pub struct MarathonEvent {
    /// `deployment_success`, `status_update_event`, …
    pub event_type: String,
    /// The payload (`eventType`, `timestamp`, …).
    pub data: Value,
}

impl MarathonClient {
    /// `GET /v2/events` (SSE), filtered to `event_types` (all when empty).
    /// The stream ends when Marathon closes the connection; reconnect and
    /// re-observe then. Marathon's first frame is `event_stream_attached`
    /// (when not filtered out).
    pub async fn events(
        &self,
        event_types: &[&str],
    ) -> Result<impl Stream<Item = Result<MarathonEvent, Error>> + Send + 'static, Error> {
        Ok(self
            .events_as::<Value>(event_types)
            .await?
            .map(|r| r.map(|(event_type, data)| MarathonEvent { event_type, data })))
    }

    /// Like [`events`](Self::events), each payload read as `T`: only what
    /// `T` names is kept. Marathon 1.4–1.7 put the whole root group (every
    /// app) in each deployment event's plan; a reader that wants only ids
    /// shouldn't hold that.
    pub async fn events_as<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        event_types: &[&str],
    ) -> Result<impl Stream<Item = Result<(String, T), Error>> + Send + 'static, Error> {
        let mut url = self.url_for("/v2/events")?;
        if !event_types.is_empty() {
            let mut q = url.query_pairs_mut();
            for t in event_types {
                q.append_pair("event_type", t);
            }
        }
        let timeout = self.inner.cfg.timeout;
        let mut attempt = 0;
        let resp = loop {
            let rb = self
                .authorize(self.inner.http.get(url.clone()))
                .header(ACCEPT, "text/event-stream");
            let started = Instant::now();
            let res = match tokio::time::timeout(timeout, rb.send()).await {
                Ok(r) => r.map_err(|e| self.transport_error(&e)),
                Err(_) => Err(self.timeout_error()),
            };
            let res = match res {
                Ok(r) if r.status().is_success() => Ok(r),
                Ok(r) => {
                    let status = r.status();
                    let body = tokio::time::timeout(timeout, r.text())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    Err(status_error(&Answer { status, body }))
                }
                Err(e) => Err(e),
            };
            debug!(
                path = "/v2/events",
                attempt,
                elapsed_ms = started.elapsed().as_millis() as u64,
                ok = res.is_ok(),
                "marathon event stream"
            );
            match res {
                Ok(r) => break r,
                Err(e) if e.is_transient() && attempt < self.inner.cfg.max_retries => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let base = self.inner.base.clone();
        let stream = resp.bytes_stream().eventsource().filter_map(move |r| {
            let out = match r {
                Ok(ev) => {
                    if ev.data.trim().is_empty() {
                        None
                    } else {
                        match serde_json::from_str::<T>(&ev.data) {
                            Ok(data) => {
                                let event_type = if ev.event.is_empty() || ev.event == "message" {
                                    #[derive(serde::Deserialize)]
                                    struct Kind {
                                        #[serde(rename = "eventType")]
                                        event_type: Option<String>,
                                    }
                                    serde_json::from_str::<Kind>(&ev.data)
                                        .ok()
                                        .and_then(|k| k.event_type)
                                        .unwrap_or_else(|| "message".to_string())
                                } else {
                                    ev.event
                                };
                                Some(Ok((event_type, data)))
                            }
                            Err(e) => Some(Err(Error::Decode {
                                message: format!("event {:?}: {e}", ev.event),
                            })),
                        }
                    }
                }
                Err(eventsource_stream::EventStreamError::Transport(e)) => {
                    Some(Err(Error::Connect {
                        url: base.clone(),
                        message: format!("event stream broken: {}", error_chain(&e)),
                    }))
                }
                Err(e) => Some(Err(Error::Decode {
                    message: format!("event stream: {e}"),
                })),
            };
            futures::future::ready(out)
        });
        Ok(stream)
    }
}
