//! `POST /api/v1/endpoints/release`: an operator lets a held set of live
//! endpoints through (`{"service": "/prod/db"}`). The hold exists because
//! a set shrank too far in one step (see `observe::endpoints`); releasing
//! it renders the smaller set into every app that names the service.
//!
//! Guarded as the retry is: the admin token, same-origin JSON to an
//! allowed host.

use super::guard::unread_body;
use super::{MAX_RETRY_BODY_BYTES, Shared, Trigger, loop_stopped, refuse, refused_write};
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
    if let Some(r) = refused_write(
        &state,
        &headers,
        "endpoint release",
        "with {\"service\": \"/env/app\"}",
    ) {
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return unread_body(&state, "api", &e, MAX_RETRY_BODY_BYTES, None),
    };
    let service = match serde_json::from_slice::<Params>(&body) {
        Ok(p) => p.service,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not a release request ({{\"service\": \"/env/app\"}}): {e}"),
            );
        }
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
