//! `POST /api/v1/apply`: an operator applies the plan of an environment
//! whose policy doesn't apply on its own (`autoApply: false`, prod as a
//! rule), as `pacer apply` would, from the dashboard or a script.
//!
//! `{"env": "prod", "commit": "<the commit whose plan was reviewed>"}`.
//! The commit is required: the loop applies the plan only while the
//! environment is still at it, so a push that lands between the review
//! and the click is never applied unseen. Deletes held for a human
//! (`maxDeleteShare`) stay held: that takes `pacer apply`.
//!
//! Guarded as the retry is: the admin token (or an admin session), and
//! same-origin JSON to an allowed host.

use super::{Shared, Trigger, json_write, loop_stopped, refuse};
use crate::status::{Role, Status};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    env: String,
    commit: String,
}

/// Whether `env` may be applied at `commit` now: `Err((status, why))`
/// otherwise. Pure.
pub fn check(
    status: &Status,
    auto_apply: Option<bool>,
    env: &str,
    commit: &str,
) -> Result<(), (StatusCode, String)> {
    let shown: String = env.chars().filter(|c| !c.is_control()).take(64).collect();
    let Some(e) = status.environments.get(env) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no environment `{shown}` is reconciled here"),
        ));
    };
    if status.ha.as_ref().is_some_and(|h| h.role != Role::Leader) {
        let leader = status.ha.as_ref().and_then(|h| h.leader.clone());
        return Err((
            StatusCode::CONFLICT,
            format!(
                "this replica does not write to Marathon; apply on the leader{}",
                leader.map(|l| format!(" ({l})")).unwrap_or_default()
            ),
        ));
    }
    if auto_apply == Some(true) {
        return Err((
            StatusCode::CONFLICT,
            format!("`{env}` applies its plans on its own (autoApply: true)"),
        ));
    }
    match e.commit.as_deref() {
        Some(c) if c == commit => Ok(()),
        Some(c) => Err((
            StatusCode::CONFLICT,
            format!(
                "`{env}` is at {} now, not at the commit whose plan was reviewed: review its plan again",
                &c[..c.len().min(12)]
            ),
        )),
        None => Err((
            StatusCode::CONFLICT,
            format!("`{env}` has not been reconciled yet"),
        )),
    }
}

pub(super) async fn apply(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Params { env, commit } = match json_write(
        &state,
        &headers,
        body,
        "an apply",
        "{\"env\": …, \"commit\": …}",
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let snap = state.published.latest();
    let auto = snap.desired.get(&env).map(|d| d.settings.policy.auto_apply);
    if let Err((code, why)) = check(&snap.status, auto, &env, &commit) {
        return refuse(code, why);
    }
    tracing::warn!(env = %env, commit = %commit, "apply requested");
    match state.triggers.try_send(Trigger::Apply {
        env: env.clone(),
        commit: commit.clone(),
    }) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"apply": "queued", "env": env, "commit": commit})),
        )
            .into_response(),
        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop is busy; try again",
        ),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => loop_stopped(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{EnvStatus, HaStatus};
    use std::sync::Arc;

    fn status() -> Status {
        let mut s = Status::default();
        s.environments.insert(
            "prod".into(),
            Arc::new(EnvStatus {
                commit: Some("c".repeat(40)),
                ..EnvStatus::default()
            }),
        );
        s
    }

    #[test]
    fn only_the_reviewed_commit_of_a_known_manual_environment_is_applied() {
        let s = status();
        let c = "c".repeat(40);
        assert!(check(&s, Some(false), "prod", &c).is_ok());
        let (code, why) = check(&s, Some(false), "prod", &"d".repeat(40)).unwrap_err();
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(why.contains("review its plan again"), "{why}");
        let (code, _) = check(&s, Some(false), "stage\u{7}", &c).unwrap_err();
        assert_eq!(code, StatusCode::NOT_FOUND);
        let (code, why) = check(&s, Some(true), "prod", &c).unwrap_err();
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(why.contains("autoApply"), "{why}");
    }

    #[test]
    fn a_follower_sends_the_operator_to_the_leader() {
        let mut s = status();
        s.ha = Some(HaStatus {
            role: Role::Follower,
            leader: Some("pacer-2".into()),
            ..HaStatus::default()
        });
        let (code, why) = check(&s, Some(false), "prod", &"c".repeat(40)).unwrap_err();
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(why.contains("pacer-2"), "{why}");
    }
}
