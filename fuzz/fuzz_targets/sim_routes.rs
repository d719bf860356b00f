//! The simulator's HTTP API, driven in-process through its axum router.
//!
//! Input: up to eight requests separated by a `%%` line. Each request is a
//! request line (`PUT /v2/apps/web?force=true`), `Name: value` header lines,
//! an empty line and the body. The simulator advances one tick after each.
//!
//! Checked: no panic; every answer has a valid status; a JSON answer (but
//! to HEAD) parses;
//! a 500 is only Marathon's "URI not found" (anything else is the simulator
//! failing); answers stay bounded.

#![no_main]

use std::cell::RefCell;

use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use libfuzzer_sys::fuzz_target;
use pacer::sim::{self, SimConfig};
use serde_json::Value;
use tower::ServiceExt;

const MAX_REQUESTS: usize = 8;
const MAX_ANSWER: usize = 8 << 20;

thread_local! {
    /// Paused time: an injected latency fault sleeps no wall-clock time.
    static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime"),
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let requests: Vec<Request<Body>> = text
        .split("\n%%\n")
        .take(MAX_REQUESTS)
        .filter_map(parse_request)
        .collect();
    if requests.is_empty() {
        return;
    }
    let sim = sim::Shared::new(SimConfig::default()).expect("an in-memory simulator");
    let router = sim::router(sim.clone());
    RUNTIME.with(|rt| {
        rt.borrow().block_on(async {
            for req in requests {
                let what = format!("{} {}", req.method(), req.uri());
                let head = req.method() == axum::http::Method::HEAD;
                let resp = router.clone().oneshot(req).await.expect("infallible");
                let status = resp.status().as_u16();
                assert!((100..600).contains(&status), "{what}: status {status}");
                let content_type = resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static(""));
                // An event stream never ends: leave it unread.
                if content_type.as_bytes().starts_with(b"text/event-stream") {
                    continue;
                }
                let body = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: answer over {MAX_ANSWER} bytes: {e}"));
                // A HEAD answer has the headers of a GET and no body.
                if content_type == "application/json" && !head {
                    let v: Value = serde_json::from_slice(&body)
                        .unwrap_or_else(|e| panic!("{what}: a JSON answer doesn't parse: {e}"));
                    if status == 500 {
                        assert_eq!(
                            v,
                            serde_json::json!({"message": "URI not found"}),
                            "{what}: the simulator failed"
                        );
                    }
                }
                sim.tick();
            }
        })
    });
});

fn parse_request(text: &str) -> Option<Request<Body>> {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let (method, uri) = lines.next()?.split_once(' ')?;
    let mut req = Request::builder().method(method).uri(uri.trim());
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            req = req.header(name.trim(), value.trim());
        }
    }
    req.body(Body::from(body.to_string())).ok()
}
