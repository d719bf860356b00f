//! What the agent tells the server after each pass (`POST /v1/report`):
//! the bundle index it applied in full, the newest it has seen, and the
//! files of that one it could not apply (`check`, `reload` or `write`).
//! The server counts the tasks that hold each index, and a hot update is
//! delivered once every running task holds it.
//!
//! A report that fails is sent again on the next pass, which then comes
//! soon ([`RETRY`]); it never stops the agent. Busy answers (429, 503) are
//! waited out as their `Retry-After` says, capped at [`MAX_RETRY_AFTER`].

use super::Session;
use serde_json::{Value, json};
use std::time::Duration;

/// The most failed files a report lists (the server's bound).
pub const MAX_FAILED: usize = 64;
/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How soon a pass comes again after a report failed.
pub const RETRY: Duration = Duration::from_secs(2);

/// A busy answer (429: `rateLimited`, `tooManyWatches`; 503): try again
/// after the wait it asks for (else the usual backoff), not a refusal.
#[derive(Debug, thiserror::Error)]
#[error("the config server is busy ({status} {reason})")]
pub struct Busy {
    pub status: u16,
    pub reason: String,
    pub wait: Option<Duration>,
}

/// The wait a busy answer asks for: its `Retry-After` in seconds, capped;
/// `None` without one (or an HTTP date, which no pacer server sends).
pub fn retry_after(header: Option<&str>) -> Option<Duration> {
    let secs: u64 = header?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// `Some(Busy)` for a 429 or 503 answer.
pub fn busy(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) -> Option<Busy> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let header = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok());
    Some(Busy {
        status,
        reason: body["reason"]
            .as_str()
            .unwrap_or("busy")
            .chars()
            .take(64)
            .collect(),
        wait: retry_after(header),
    })
}

/// How long to wait after `e`, the `attempt`th failure in a row: what a
/// busy server asked for, else the capped backoff.
pub fn wait_after(e: &anyhow::Error, attempt: u32) -> Duration {
    e.downcast_ref::<Busy>()
        .and_then(|b| b.wait)
        .unwrap_or_else(|| super::files::backoff(attempt))
}

/// What the agent holds, for the server.
pub struct Holding<'a> {
    pub app: &'a str,
    pub task: &'a str,
    /// The newest index applied in full (0: none yet).
    pub index: u64,
    /// The newest index seen.
    pub latest: u64,
    /// `(file, stage)` of the files of `latest` not applied.
    pub failed: Vec<(String, &'static str)>,
}

/// The report's body. Pure.
pub fn body(h: &Holding<'_>) -> Value {
    let failed: Vec<Value> = h
        .failed
        .iter()
        .take(MAX_FAILED)
        .map(|(file, stage)| json!({"file": file, "stage": stage}))
        .collect();
    json!({
        "appId": h.app,
        "taskId": h.task,
        "index": h.index,
        "latest": h.latest.max(h.index),
        "failed": failed,
    })
}

/// Sends the report once. `Err` carries why, for the log: the caller sends
/// it again on a pass soon.
pub async fn send(s: &Session, h: &Holding<'_>) -> anyhow::Result<()> {
    let resp = s
        .http
        .post(format!("{}/v1/report", s.base))
        .bearer_auth(&s.token)
        .json(&body(h))
        // Short: the loop passes no signal on meanwhile.
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(());
    }
    let headers = resp.headers().clone();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if let Some(b) = busy(status, &headers, &v) {
        return Err(b.into());
    }
    anyhow::bail!(
        "POST /v1/report answered {status}: {}",
        v["message"].as_str().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert_eq!(retry_after(Some("5")), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(Some(" 2 ")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(Some("86400")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        let b = busy(429, &h, &json!({"reason": "tooManyWatches"})).unwrap();
        assert_eq!(
            (b.wait, b.reason.as_str()),
            (Some(Duration::from_secs(7)), "tooManyWatches")
        );
        assert!(
            busy(403, &h, &Value::Null).is_none(),
            "a refusal is not busy"
        );
        let e = anyhow::Error::from(b);
        assert_eq!(wait_after(&e, 1), Duration::from_secs(7));
        let other = anyhow::anyhow!("connection refused");
        assert_eq!(wait_after(&other, 3), super::super::files::backoff(3));
        // A 503 without Retry-After (a proxy's, say) backs off as usual.
        let proxy = busy(503, &reqwest::header::HeaderMap::new(), &Value::Null).unwrap();
        assert_eq!(
            wait_after(&proxy.into(), 3),
            super::super::files::backoff(3)
        );
    }

    #[test]
    fn a_report_says_what_is_held_and_what_failed() {
        let h = Holding {
            app: "/dev/web",
            task: "dev_web.1",
            index: 5,
            latest: 9,
            failed: vec![("nginx.conf".into(), "check")],
        };
        assert_eq!(
            body(&h),
            json!({"appId": "/dev/web", "taskId": "dev_web.1", "index": 5, "latest": 9,
                   "failed": [{"file": "nginx.conf", "stage": "check"}]})
        );
        let many = Holding {
            failed: vec![("x".into(), "write"); MAX_FAILED + 5],
            ..h
        };
        assert_eq!(body(&many)["failed"].as_array().unwrap().len(), MAX_FAILED);
    }
}
