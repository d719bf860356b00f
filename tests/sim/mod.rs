//! The simulator as users run it: the real `pacer sim` binary over HTTP.

mod conformance;
mod control;
mod deploy_tool;
mod python_client;
mod semantics;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `pacer sim --listen 127.0.0.1:0`, killed on drop.
pub struct Sim {
    child: Child,
    pub url: String,
    pub http: reqwest::Client,
}

impl Sim {
    /// Fast tasks so whole deployments finish in tens of milliseconds.
    pub fn start() -> Sim {
        Sim::start_with(&["--task-start-delay-ms", "5", "--task-healthy-delay-ms", "5"])
    }

    pub fn start_with(extra: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pacer"))
            .args(["sim", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn pacer sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Sim {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    pub fn u(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut rb = self.http.request(method, self.u(path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v, headers)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.req(reqwest::Method::GET, path, None).await;
        (s, v)
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, v, _) = self.req(reqwest::Method::POST, path, Some(body)).await;
        (s, v)
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, v, _) = self.req(reqwest::Method::PUT, path, Some(body)).await;
        (s, v)
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.req(reqwest::Method::DELETE, path, None).await;
        (s, v)
    }

    /// Poll `GET /v2/deployments` until it is empty.
    pub async fn wait_deployments_done(&self) {
        wait_until("deployments to finish", Duration::from_secs(10), || async {
            let (_, v) = self.get("/v2/deployments").await;
            v.as_array().is_some_and(|a| a.is_empty())
        })
        .await;
    }

    /// Hold every deployment: tasks never leave staging.
    pub async fn slow_tasks(&self) {
        let (s, _) = self
            .put(
                "/_sim/settings",
                serde_json::json!({"taskStartDelayMs": 600_000}),
            )
            .await;
        assert_eq!(s, 200);
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait for `cond` with a deadline; panics naming what did not happen.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `/work/shared/marathon-api`, beside the clone (as in CI).
pub fn shared_api_dir() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/marathon-api");
    assert!(
        p.join("SEMANTICS.md").exists(),
        "Marathon API data not found at {}: check out `shared/` beside the pacer clone",
        p.display()
    );
    p
}
