//! `POST /api/v1/endpoints/release`: an operator lets a held set of live
//! endpoints through (`{"service": "/prod/db"}`). The hold exists because
//! a set shrank too far in one step (see `observe::endpoints`); releasing
//! it renders the smaller set into every app that names the service.
//!
//! Guarded as the retry is: the admin token, same-origin JSON to an
//! allowed host.

use super::{Shared, Trigger, json_write, loop_stopped, refuse};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    service: String,
}

pub(super) async fn release(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let service = match json_write::<Params>(
        &state,
        &headers,
        body,
        "a release",
        "{\"service\": \"/env/app\"}",
    ) {
        Ok(p) => p.service,
        Err(r) => return *r,
    };
    let snap = state.published.latest();
    let Some(s) = snap.status.endpoints.services.get(&service) else {
        // Never echo more than a short, printable prefix of what was sent.
        let shown: String = service
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no template follows the service `{shown}`"),
        );
    };
    if s.held.is_none() {
        return refuse(
            StatusCode::CONFLICT,
            format!("the endpoints of `{service}` are not held"),
        );
    }
    tracing::warn!(service = %service, "endpoint release requested");
    match state.triggers.try_send(Trigger::Release {
        service: service.clone(),
    }) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"release": "queued", "service": service})),
        )
            .into_response(),
        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop is busy; try again",
        ),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => loop_stopped(),
    }
}
