//! A typed Marathon client (reqwest, rustls) for the reconciler.
//!
//! - Every request has a timeout ([`ClientConfig::timeout`]).
//! - Reads (GETs) are retried with jittered exponential backoff on
//!   connection errors, timeouts and 5xx. Writes (`PUT`, `DELETE` of an app
//!   or a deployment) are never retried automatically: a retried PUT can
//!   start a second deployment, a retried rollback revert twice, so the
//!   caller re-observes instead.
//! - A write refused with 409 "locked by deployment" waits for the named
//!   deployments to leave `/v2/deployments` (up to [`ClientConfig::lock_wait`])
//!   and is tried once more. Nothing is forced unless asked for: even
//!   `DELETE /v2/apps/{id}`, whose `force` defaults to true in Marathon, is
//!   sent with `force=false`.
//! - Read-only `AppInfo` fields are stripped from every PUT body (a `version`
//!   in a PUT body means "roll back" to Marathon).
//! - Credentials never appear in `Debug`, logs or errors.
//!
//! The client is split along its seams: [`transport`] sends a request and
//! retries it, [`error`] turns an answer into an [`Error`], [`apps`] holds
//! the app and deployment calls, [`versions`] an app's version history and
//! [`events`] the `/v2/events` stream.

mod apps;
mod error;
mod events;
mod transport;
mod versions;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;

use crate::marathon::watch::DeploymentWatch;
use crate::model::Secret;

pub use apps::{Deployment, DeploymentRef, READ_ONLY_FIELDS, strip_read_only};
pub use error::Error;
pub use events::MarathonEvent;

/// How to authenticate to Marathon.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTP basic auth (Marathon's `--http_credentials`).
    Basic {
        user: String,
        password: Secret<String>,
    },
    /// DC/OS ACS token, sent as `Authorization: token=<t>`.
    Token(Secret<String>),
}

#[derive(Clone)]
pub struct ClientConfig {
    /// Marathon's base URL, e.g. `http://marathon.mesos:8080` (a DC/OS
    /// `/service/marathon` prefix is fine). Credentials in the URL
    /// (`http://user:pass@host`) become [`Auth::Basic`] when `auth` is `None`.
    pub url: String,
    pub auth: Auth,
    /// Per request (for the event stream: until the response headers arrive).
    pub timeout: Duration,
    /// Retries of an idempotent request after a transient failure.
    pub max_retries: u32,
    /// Base of the exponential backoff between retries.
    pub backoff: Duration,
    /// The longest a write waits for the deployments that lock its app.
    pub lock_wait: Duration,
    /// Whether deployments are followed through `/v2/events`.
    pub events: bool,
    /// Checked right before every write is sent: a replica that is not
    /// the leader (or whose lease ran out) sends none.
    pub fence: crate::model::fence::Fence,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("lock_wait", &self.lock_wait)
            .field("events", &self.events)
            .field("fenced", &self.fence.is_fenced())
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            url: "http://127.0.0.1:8080".into(),
            auth: Auth::None,
            timeout: Duration::from_secs(10),
            max_retries: 4,
            backoff: Duration::from_millis(200),
            lock_wait: Duration::from_secs(300),
            events: true,
            fence: crate::model::fence::Fence::open(),
        }
    }
}

/// A Marathon client; cheap to clone.
#[derive(Clone)]
pub struct MarathonClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without credentials and without a trailing `/`.
    base: String,
    auth: Auth,
    cfg: ClientConfig,
    /// The event subscription followers share while any is alive.
    watch: parking_lot::Mutex<std::sync::Weak<DeploymentWatch>>,
}

impl std::fmt::Debug for MarathonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarathonClient")
            .field("url", &self.inner.base)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl MarathonClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, Error> {
        let mut url =
            Url::parse(cfg.url.trim()).map_err(|e| Error::Config(format!("Marathon URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "Marathon URL must be http or https, not {}",
                url.scheme()
            )));
        }
        let mut auth = cfg.auth.clone();
        if !url.username().is_empty() || url.password().is_some() {
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| Error::Config("credentials in the URL".into()))
            };
            if matches!(auth, Auth::None) {
                auth = Auth::Basic {
                    user: decode(url.username())?,
                    password: Secret::new(decode(url.password().unwrap_or(""))?),
                };
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        url.set_query(None);
        url.set_fragment(None);
        let base = url.as_str().trim_end_matches('/').to_string();
        if let Auth::Token(t) = &auth
            && HeaderValue::from_str(&format!("token={}", t.expose())).is_err()
        {
            return Err(Error::Config(
                "the token has characters not allowed in a header".into(),
            ));
        }
        // No client-wide total timeout: the event stream never ends. Each
        // request sets its own.
        let mut http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("pacer/", env!("CARGO_PKG_VERSION")));
        if url.scheme() == "http" {
            // No TLS to set up: reading the system's CA certificates takes
            // longer than a whole plan's requests. A redirect to https
            // would fail its certificate check, never go unverified.
            http = http.tls_certs_only([]);
        }
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let mut cfg = cfg;
        cfg.url = base.clone();
        cfg.auth = Auth::None;
        Ok(MarathonClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                cfg,
                watch: Default::default(),
            }),
        })
    }

    /// The event stream of this Marathon, shared by every caller; it stays
    /// open while one of them holds it. Needs a Tokio runtime.
    pub fn deployment_watch(&self) -> Arc<DeploymentWatch> {
        let mut slot = self.inner.watch.lock();
        if let Some(w) = slot.upgrade() {
            return w;
        }
        let w = Arc::new(if self.inner.cfg.events {
            DeploymentWatch::start(self)
        } else {
            DeploymentWatch::disabled()
        });
        *slot = Arc::downgrade(&w);
        w
    }

    /// Marathon's base URL, without credentials.
    pub fn url(&self) -> &str {
        &self.inner.base
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let h = (bytes[i + 1] as char).to_digit(16)?;
            let l = (bytes[i + 2] as char).to_digit(16)?;
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = MarathonClient::new(ClientConfig {
            url: "http://alice:hunter2@marathon.example:8080/".into(),
            ..ClientConfig::default()
        })
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(c.url(), "http://marathon.example:8080");
        let cfg = ClientConfig {
            auth: Auth::Token(Secret::new("tok3n".into())),
            url: "https://bob:s3cret@m.example/service/marathon".into(),
            ..ClientConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("tok3n") && !dbg.contains("s3cret"), "{dbg}");
        assert!(
            dbg.contains("https://***@m.example/service/marathon"),
            "{dbg}"
        );
    }

    #[test]
    fn credentials_in_the_url_are_decoded() {
        assert_eq!(percent_decode("p%40ss").as_deref(), Some("p@ss"));
    }
}
