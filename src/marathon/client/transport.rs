//! Sending a request: credentials, the per-request timeout, and the retry
//! rules of the module doc ([`super`]): reads retried with jittered
//! exponential backoff on transient failures, writes never, but a write
//! refused because its app is locked waits for the locking deployments.

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tracing::debug;

use super::apps::DeploymentRef;
use super::error::{deployment_result, error_chain, locked_by};
use super::{Auth, Error, MarathonClient};

/// How a request may be repeated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Idempotent: retry transient failures.
    Transient,
    /// Never repeat.
    Never,
}

/// A finished response: status and body text.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: String,
}

impl MarathonClient {
    pub(super) fn url_for(&self, path_and_query: &str) -> Result<Url, Error> {
        Url::parse(&format!("{}{}", self.inner.base, path_and_query))
            .map_err(|e| Error::Config(format!("URL for {path_and_query}: {e}")))
    }

    pub(super) fn authorize(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.inner.auth {
            Auth::None => rb,
            Auth::Basic { user, password } => rb.basic_auth(user, Some(password.expose())),
            Auth::Token(t) => match HeaderValue::from_str(&format!("token={}", t.expose())) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    rb.header(AUTHORIZATION, v)
                }
                // Checked in `new`.
                Err(_) => rb,
            },
        }
    }

    pub(super) fn timeout_error(&self) -> Error {
        Error::Timeout {
            url: self.inner.base.clone(),
            timeout: self.inner.cfg.timeout,
        }
    }

    pub(super) fn transport_error(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return self.timeout_error();
        }
        // reqwest's message names the URL; ours has no credentials in it.
        Error::Connect {
            url: self.inner.base.clone(),
            message: error_chain(e),
        }
    }

    /// The pause before retry number `attempt + 1`: base·2^attempt, ±50 %,
    /// capped at 30 s.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        jittered(self.inner.cfg.backoff, attempt, Duration::from_secs(30))
    }

    /// One request, sent once.
    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Error> {
        // The last moment before a write leaves: a leader that lost its
        // lease meanwhile (a pause, a lost session) sends nothing.
        if *method != Method::GET
            && let Err(why) = self.inner.cfg.fence.check()
        {
            return Err(Error::Fenced(why));
        }
        let url = self.url_for(path)?;
        let mut rb = self
            .authorize(self.inner.http.request(method.clone(), url))
            .header(ACCEPT, "application/json")
            .timeout(self.inner.cfg.timeout);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| self.transport_error(&e))?;
        Ok(Answer { status, body })
    }

    /// A request, retried per `retry`. Returns any HTTP answer; transport
    /// failures (and, after the last retry, 5xx answers) as they are.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Answer, Error> {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let res = self.send_once(&method, path, body).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let transient = match &res {
                Ok(a) => {
                    debug!(%method, path, status = a.status.as_u16(), attempt, elapsed_ms, "marathon");
                    a.status.is_server_error()
                }
                Err(e) => {
                    debug!(%method, path, error = %e, attempt, elapsed_ms, "marathon");
                    e.is_transient()
                }
            };
            if !(transient && retry == Retry::Transient && attempt < self.inner.cfg.max_retries) {
                return res;
            }
            let pause = self.backoff(attempt);
            debug!(%method, path, attempt, pause_ms = pause.as_millis() as u64, "marathon: retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// A write to an app: never retried, but a 409 "locked" waits for the
    /// locking deployments to finish and tries once more.
    pub(super) async fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<DeploymentRef, Error> {
        let a = self.call(method.clone(), path, body, Retry::Never).await?;
        let deployments = match locked_by(&a) {
            Some(ids) => ids,
            None => return deployment_result(&a),
        };
        debug!(%method, path, ?deployments, "marathon: app locked, waiting for deployments");
        self.wait_deployments_gone(&deployments).await?;
        let a = self.call(method, path, body, Retry::Never).await?;
        match locked_by(&a) {
            Some(deployments) => Err(Error::Locked { deployments }),
            None => deployment_result(&a),
        }
    }

    /// Polls `/v2/deployments` until none of `ids` is listed, up to `lock_wait`.
    async fn wait_deployments_gone(&self, ids: &[String]) -> Result<(), Error> {
        let deadline = Instant::now() + self.inner.cfg.lock_wait;
        let cap = Duration::from_secs(5);
        let mut attempt = 0u32;
        loop {
            let running = self.deployments().await?;
            let still: Vec<String> = ids
                .iter()
                .filter(|id| running.iter().any(|d| &d.id == *id))
                .cloned()
                .collect();
            if still.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Locked { deployments: still });
            }
            let pause = jittered(self.inner.cfg.backoff, attempt, cap).min(deadline - now);
            tokio::time::sleep(pause).await;
            attempt = attempt.saturating_add(1);
        }
    }
}

fn jittered(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let factor: f64 = rand::rng().random_range(0.5..1.5);
    exp.mul_f64(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 0..40 {
            let d = jittered(base, attempt, Duration::from_secs(30));
            assert!(d <= Duration::from_secs(30));
            if attempt < 5 {
                let exp = base * (1 << attempt);
                assert!(d >= exp / 2 && d <= exp * 3 / 2, "{attempt}: {d:?}");
            }
        }
    }
}
