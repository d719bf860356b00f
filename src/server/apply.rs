//! `POST /api/v1/apply`: an operator applies the plan of an environment
//! whose policy doesn't apply on its own (`autoApply: false`, prod as a
//! rule), as `pacer apply` would, from the dashboard or a script.
//!
//! `{"env": "prod", "plan": "<the digest of the plan reviewed>"}`: the
//! status shows each environment's `plan` (what applying it does, counted,
//! and its digest: every acting step's app, action and diff). The loop
//! applies it only while the plan is still that one, so a push or a change
//! in Marathon that lands between the review and the click is never
//! applied unseen; what became of the ask is the environment's `apply` in
//! the status. Deletes held for a human (`maxDeleteShare`) stay held: that
//! takes `pacer apply`.
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
    plan: String,
}

/// Whether `env`'s plan `plan` (its digest) may be applied now:
/// `Err((status, why))` otherwise. Pure.
pub fn check(
    status: &Status,
    auto_apply: Option<bool>,
    env: &str,
    plan: &str,
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
    match &e.plan {
        Some(p) if p.digest == plan && p.changes() > 0 => Ok(()),
        Some(p) if p.digest == plan => Err((
            StatusCode::CONFLICT,
            format!("`{env}`'s plan changes nothing"),
        )),
        Some(_) => Err((
            StatusCode::CONFLICT,
            format!("`{env}`'s plan changed since it was reviewed: review it again"),
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
    let Params { env, plan } = match json_write(
        &state,
        &headers,
        body,
        "an apply",
        "{\"env\": …, \"plan\": …}",
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let snap = state.published.latest();
    let auto = snap.desired.get(&env).map(|d| d.settings.policy.auto_apply);
    if let Err((code, why)) = check(&snap.status, auto, &env, &plan) {
        return refuse(code, why);
    }
    tracing::warn!(env = %env, plan = %plan, "apply requested");
    match state.triggers.try_send(Trigger::Apply {
        env: env.clone(),
        plan: plan.clone(),
    }) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"apply": "queued", "env": env, "plan": plan})),
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
    use crate::model::PlanSummary;
    use crate::status::{EnvStatus, HaStatus};
    use std::sync::Arc;

    fn status(creates: usize) -> Status {
        let mut s = Status::default();
        s.environments.insert(
            "prod".into(),
            Arc::new(EnvStatus {
                plan: Some(PlanSummary {
                    creates,
                    digest: "sha256:p".into(),
                    ..PlanSummary::default()
                }),
                ..EnvStatus::default()
            }),
        );
        s
    }

    #[test]
    fn only_the_reviewed_plan_of_a_known_manual_environment_is_applied() {
        let s = status(4);
        assert!(check(&s, Some(false), "prod", "sha256:p").is_ok());
        let (code, why) = check(&s, Some(false), "prod", "sha256:other").unwrap_err();
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(why.contains("review it again"), "{why}");
        let (code, _) = check(&s, Some(false), "stage\u{7}", "sha256:p").unwrap_err();
        assert_eq!(code, StatusCode::NOT_FOUND);
        let (code, why) = check(&s, Some(true), "prod", "sha256:p").unwrap_err();
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(why.contains("autoApply"), "{why}");
        let (code, why) = check(&status(0), Some(false), "prod", "sha256:p").unwrap_err();
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(why.contains("changes nothing"), "{why}");
    }

    #[test]
    fn a_follower_sends_the_operator_to_the_leader() {
        let mut s = status(4);
        s.ha = Some(HaStatus {
            role: Role::Follower,
            leader: Some("pacer-2".into()),
            ..HaStatus::default()
        });
        let (code, why) = check(&s, Some(false), "prod", "sha256:p").unwrap_err();
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(why.contains("pacer-2"), "{why}");
    }
}
