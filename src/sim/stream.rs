//! `GET /v2/events`: server-sent events (SEMANTICS §7).

use std::collections::HashSet;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response, StatusCode, header};
use futures::StreamExt;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::Sim;
use super::model::{Event, wall_clock_ms};

/// An SSE response that starts with `event_stream_attached` and then relays
/// every event whose type passes the `event_type` filter (all when empty).
pub fn event_stream(sim: &Sim, remote: String, types: Vec<String>) -> Response<Body> {
    let rx = sim.events.subscribe();
    let mut closing = sim.closing.subscribe();
    closing.mark_unchanged();
    let filter: HashSet<String> = types.into_iter().collect();
    let pass = move |t: &str| filter.is_empty() || filter.contains(t);
    let attached = Event::new(
        "event_stream_attached",
        wall_clock_ms(),
        json!({"remoteAddress": remote}),
    );
    let first = if pass("event_stream_attached") {
        Some(Bytes::from(attached.frame()))
    } else {
        None
    };
    let events = BroadcastStream::new(rx).filter_map(move |r| {
        let out = match r {
            Ok(e) if pass(&e.event_type) => Some(Ok::<_, Infallible>(Bytes::from(e.frame()))),
            // A slow reader misses events rather than stalling everyone (Marathon
            // drops slow consumers too); ordering was never guaranteed.
            Ok(_) | Err(BroadcastStreamRecvError::Lagged(_)) => None,
        };
        futures::future::ready(out)
    });
    let stop = async move {
        let _ = closing.changed().await;
    };
    let body = futures::stream::iter(first.map(Ok))
        .chain(events)
        .take_until(stop);
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream;charset=UTF-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    resp
}
