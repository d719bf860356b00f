//! Marathon's answers as errors: its `message` and validation `details`,
//! the deployments that lock an app, and transport failures without URLs
//! that could carry credentials.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::apps::DeploymentRef;
use super::transport::Answer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be built (bad URL, bad credentials).
    #[error("invalid Marathon client configuration: {0}")]
    Config(String),
    #[error("cannot reach Marathon at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("Marathon at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// Any other non-success answer. `message` is Marathon's `message` (and
    /// validation `details`), or the start of the body.
    #[error("Marathon answered {status}: {message}")]
    Status { status: u16, message: String },
    /// 409: the app is locked by these running deployments (and waiting for
    /// them did not help, or took longer than `lock_wait`).
    #[error("the app is locked by deployment(s) {}", deployments.join(", "))]
    Locked { deployments: Vec<String> },
    /// 404 where the thing must exist (an app's versions, deleting an app).
    #[error("not found: {message}")]
    NotFound { message: String },
    /// Marathon answered something that is not what its API promises.
    #[error("unexpected answer from Marathon: {message}")]
    Decode { message: String },
    /// Not sent: this replica may not write now (not the leader, or its
    /// lease ran out).
    #[error("{0}")]
    Fenced(String),
}

impl Error {
    /// Connection errors, timeouts and 5xx: worth retrying later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// An error and its sources, without reqwest's URL (ours is in the variant).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        // reqwest's own line ("error sending request for url (…)") adds nothing.
        if !s.starts_with("error sending request") && !parts.contains(&s) {
            parts.push(s);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        "request failed".into()
    } else {
        parts.join(": ")
    }
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(a: &Answer) -> Result<T, Error> {
    serde_json::from_str(&a.body).map_err(|e| Error::Decode {
        message: format!("{e} in a {} answer", a.status.as_u16()),
    })
}

/// The deployment ids of a 409 "locked by deployment" answer.
pub(super) fn locked_by(a: &Answer) -> Option<Vec<String>> {
    if a.status != StatusCode::CONFLICT {
        return None;
    }
    let body: Value = serde_json::from_str(&a.body).ok()?;
    let ds = body.get("deployments")?.as_array()?;
    Some(
        ds.iter()
            .filter_map(|d| {
                d.get("id")
                    .and_then(Value::as_str)
                    .or_else(|| d.as_str())
                    .map(str::to_string)
            })
            .collect(),
    )
}

pub(super) fn deployment_result(a: &Answer) -> Result<DeploymentRef, Error> {
    if a.status.is_success() {
        decode(a)
    } else {
        Err(status_error(a))
    }
}

/// Marathon's `message` (plus validation `details`) or the start of the body.
pub(super) fn status_error(a: &Answer) -> Error {
    let status = a.status.as_u16();
    let message = match serde_json::from_str::<Value>(&a.body) {
        Ok(v) => {
            let mut m = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match v.get("details") {
                Some(Value::Array(ds)) => {
                    for d in ds {
                        let path = d.get("path").and_then(Value::as_str).unwrap_or("");
                        let errs: Vec<&str> = d
                            .get("errors")
                            .and_then(Value::as_array)
                            .map(|es| es.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        m.push_str(&format!("; {path}: {}", errs.join(", ")));
                    }
                }
                Some(Value::String(s)) => m.push_str(&format!("; {s}")),
                _ => {}
            }
            if m.is_empty() { short(&a.body) } else { m }
        }
        Err(_) => short(&a.body),
    };
    let message = if message.is_empty() {
        a.status.canonical_reason().unwrap_or("").to_string()
    } else {
        message
    };
    if status == 404 {
        return Error::NotFound { message };
    }
    Error::Status { status, message }
}

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_carry_marathon_messages() {
        let a = Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: r#"{"message":"Object is not valid","details":[{"path":"/cpus","errors":["error.min"]}]}"#.into(),
        };
        let e = status_error(&a);
        assert_eq!(
            e.to_string(),
            "Marathon answered 422: Object is not valid; /cpus: error.min"
        );
        assert!(!e.is_transient());
        let a = Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: "<html>down</html>".into(),
        };
        assert!(status_error(&a).is_transient());
        let a = Answer {
            status: StatusCode::CONFLICT,
            body: r#"{"message":"App is locked","deployments":[{"id":"d1"},{"id":"d2"}]}"#.into(),
        };
        assert_eq!(
            locked_by(&a),
            Some(vec!["d1".to_string(), "d2".to_string()])
        );
    }
}
