//! Content negotiation, endpoint by endpoint, as Marathon 1.10 answers it:
//! the body type each endpoint's RAML lists for the request's `Accept`, 406
//! (with a JSON body, and before anything is written) where it lists none.

use reqwest::Method;
use serde_json::{Value, json};

use super::super::Sim;

/// What the body must be.
enum Body {
    /// Exactly this text.
    Text(&'static str),
    /// JSON equal to this.
    Json(Value),
    /// A JSON object with this key.
    JsonKey(&'static str),
    /// A JSON array.
    JsonArray,
}

struct Row {
    method: Method,
    path: &'static str,
    accept: &'static str,
    status: u16,
    content_type: &'static str,
    body: Body,
}

fn row(
    method: Method,
    path: &'static str,
    accept: &'static str,
    status: u16,
    content_type: &'static str,
    body: Body,
) -> Row {
    Row {
        method,
        path,
        accept,
        status,
        content_type,
        body,
    }
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

fn not_acceptable() -> Body {
    Body::Json(json!({"message": "HTTP 406 Not Acceptable"}))
}

fn table() -> Vec<Row> {
    use Body::*;
    let get = || Method::GET;
    vec![
        // /ping: text/plain `pong` or the JSON string "pong" (ping.raml).
        row(get(), "/ping", "*/*", 200, TEXT, Text("pong")),
        row(get(), "/ping", "text/plain", 200, TEXT, Text("pong")),
        row(
            get(),
            "/ping",
            "application/json",
            200,
            JSON,
            Json(json!("pong")),
        ),
        row(
            get(),
            "/ping",
            "text/plain;q=0.1, application/json",
            200,
            JSON,
            Json(json!("pong")),
        ),
        row(
            get(),
            "/ping",
            "text/html,application/xhtml+xml,*/*;q=0.8",
            200,
            TEXT,
            Text("pong"),
        ),
        row(get(), "/ping", "text/html", 406, JSON, not_acceptable()),
        // JSON-only resources.
        row(
            get(),
            "/v2/info",
            "application/json",
            200,
            JSON,
            JsonKey("version"),
        ),
        row(get(), "/v2/info", "text/plain", 406, JSON, not_acceptable()),
        row(
            get(),
            "/v2/leader",
            "application/json",
            200,
            JSON,
            JsonKey("leader"),
        ),
        row(
            get(),
            "/v2/leader",
            "text/html",
            406,
            JSON,
            not_acceptable(),
        ),
        row(get(), "/v2/apps", "*/*", 200, JSON, JsonKey("apps")),
        row(
            get(),
            "/v2/apps",
            "application/*",
            200,
            JSON,
            JsonKey("apps"),
        ),
        row(get(), "/v2/apps", "text/plain", 406, JSON, not_acceptable()),
        row(
            get(),
            "/v2/apps/conneg/none",
            "application/json",
            404,
            JSON,
            JsonKey("message"),
        ),
        row(
            get(),
            "/v2/apps/conneg/none",
            "text/plain",
            406,
            JSON,
            not_acceptable(),
        ),
        row(
            get(),
            "/v2/deployments",
            "application/json",
            200,
            JSON,
            JsonArray,
        ),
        row(
            get(),
            "/v2/deployments",
            "text/plain",
            406,
            JSON,
            not_acceptable(),
        ),
        row(
            get(),
            "/v2/groups",
            "application/json",
            200,
            JSON,
            JsonKey("apps"),
        ),
        row(
            get(),
            "/v2/groups/conneg",
            "text/plain",
            406,
            JSON,
            not_acceptable(),
        ),
        row(
            get(),
            "/v2/queue",
            "application/json",
            200,
            JSON,
            JsonKey("queue"),
        ),
        row(get(), "/v2/pods", "application/json", 200, JSON, JsonArray),
        // No plugins loaded (plugins.raml's shape).
        row(
            get(),
            "/v2/plugins",
            "application/json",
            200,
            JSON,
            Json(json!({"plugins": []})),
        ),
        row(get(), "/v2/plugins", "*/*", 200, JSON, JsonKey("plugins")),
        row(
            get(),
            "/v2/plugins",
            "text/plain",
            406,
            JSON,
            not_acceptable(),
        ),
        row(
            get(),
            "/v2/plugins/webjar/index.html",
            "*/*",
            404,
            JSON,
            JsonKey("message"),
        ),
        row(
            get(),
            "/metrics",
            "application/json",
            200,
            JSON,
            JsonKey("gauges"),
        ),
        row(get(), "/metrics", "text/plain", 406, JSON, not_acceptable()),
        // The tasks lists' text form is soft-removed in 1.10 (changelog): 406.
        row(
            get(),
            "/v2/tasks",
            "application/json",
            200,
            JSON,
            JsonKey("tasks"),
        ),
        row(get(), "/v2/tasks", "*/*", 200, JSON, JsonKey("tasks")),
        row(
            get(),
            "/v2/tasks",
            "text/plain",
            406,
            JSON,
            not_acceptable(),
        ),
        row(
            get(),
            "/v2/apps/conneg/web/tasks",
            "text/plain",
            406,
            JSON,
            not_acceptable(),
        ),
        // Writes that accept no JSON answer are refused before they run.
        row(
            Method::POST,
            "/v2/apps",
            "text/plain",
            406,
            JSON,
            not_acceptable(),
        ),
        row(
            Method::PUT,
            "/v2/apps/conneg/web",
            "text/html",
            406,
            JSON,
            not_acceptable(),
        ),
        row(
            Method::DELETE,
            "/v2/apps/conneg/web",
            "text/plain",
            406,
            JSON,
            not_acceptable(),
        ),
        // /v2/events keeps its own rule (events.raml: 405 without the stream type).
        row(
            get(),
            "/v2/events",
            "application/json",
            405,
            JSON,
            JsonKey("message"),
        ),
        // Unknown routes: 500 "URI not found" whatever is accepted (SEMANTICS §1).
        row(
            get(),
            "/v2/nope",
            "text/plain",
            500,
            JSON,
            Json(json!({"message": "URI not found"})),
        ),
    ]
}

#[tokio::test]
async fn every_endpoint_answers_the_media_type_marathon_would() {
    let sim = Sim::start();
    let app =
        json!({"id": "/conneg/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 1});
    let mut failures = Vec::new();
    for r in table() {
        let mut req = sim
            .http
            .request(r.method.clone(), sim.u(r.path))
            .header("Accept", r.accept);
        if r.method == Method::POST || r.method == Method::PUT {
            req = req.json(&app);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.expect("body");
        let what = format!("{} {} (Accept: {})", r.method, r.path, r.accept);
        if status != r.status {
            failures.push(format!(
                "{what}: status {status}, want {} ({text})",
                r.status
            ));
            continue;
        }
        if !content_type.starts_with(r.content_type) {
            failures.push(format!(
                "{what}: content-type {content_type:?}, want {}",
                r.content_type
            ));
            continue;
        }
        let json = serde_json::from_str::<Value>(&text);
        let ok = match &r.body {
            Body::Text(want) => text == *want,
            Body::Json(want) => json.as_ref().is_ok_and(|v| v == want),
            Body::JsonKey(k) => json.as_ref().is_ok_and(|v| v.get(k).is_some()),
            Body::JsonArray => json.as_ref().is_ok_and(Value::is_array),
        };
        if !ok {
            failures.push(format!("{what}: body {text:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // None of the refused writes reached the simulator's state.
    let (status, _) = sim.get("/v2/apps/conneg/web").await;
    assert_eq!(status, 404, "a write answered 406 must not create the app");
}

/// A write to a JSON endpoint with another body type: 415 before the
/// resource runs, also when the `Accept` is wrong too.
#[tokio::test]
async fn json_endpoints_refuse_other_body_types() {
    let sim = Sim::start();
    let app = r#"{"id": "/ctype/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32}"#;
    let group = r#"{"id": "/ctype", "apps": [{"id": "web", "cmd": "sleep 1000"}]}"#;
    let unsupported = json!({"message": "HTTP 415 Unsupported Media Type"});
    let rows: Vec<(Method, &str, &str, &str, &str, u16)> = vec![
        // method, path, Content-Type, Accept, body, status
        (Method::POST, "/v2/apps", "text/plain", "*/*", app, 415),
        (
            Method::POST,
            "/v2/apps",
            "application/x-www-form-urlencoded",
            "*/*",
            app,
            415,
        ),
        (Method::POST, "/v2/apps", "text/json", "*/*", app, 415),
        (
            Method::POST,
            "/v2/apps",
            "text/plain",
            "text/plain",
            app,
            415,
        ),
        (
            Method::PUT,
            "/v2/apps/ctype/web",
            "multipart/form-data; boundary=x",
            "*/*",
            app,
            415,
        ),
        (
            Method::PATCH,
            "/v2/apps/ctype/web",
            "application/merge-patch+json",
            "*/*",
            app,
            415,
        ),
        (Method::PUT, "/v2/apps", "text/plain", "*/*", "[]", 415),
        (
            Method::POST,
            "/v2/apps/ctype/web/restart",
            "text/plain",
            "*/*",
            "",
            415,
        ),
        (Method::POST, "/v2/groups", "text/plain", "*/*", group, 415),
        (
            Method::PUT,
            "/v2/groups/ctype",
            "text/plain",
            "*/*",
            group,
            415,
        ),
        (
            Method::POST,
            "/v2/tasks/delete",
            "text/plain",
            "*/*",
            r#"{"ids": []}"#,
            415,
        ),
        // JSON in any spelling is taken; a missing type too (restart below).
        (
            Method::POST,
            "/v2/apps",
            "Application/JSON; charset=UTF-8",
            "*/*",
            app,
            201,
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, ct, accept, body, want) in rows {
        let resp = sim
            .http
            .request(method.clone(), sim.u(path))
            .header("Content-Type", ct)
            .header("Accept", accept)
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let what = format!("{method} {path} (Content-Type: {ct}, Accept: {accept})");
        if status != want {
            failures.push(format!("{what}: status {status}, want {want} ({text})"));
            continue;
        }
        if want == 415 && serde_json::from_str::<Value>(&text).ok() != Some(unsupported.clone()) {
            failures.push(format!("{what}: body {text:?}"));
        }
        if want == 415 {
            // Nothing was written: the app is not there yet (the one create
            // that succeeds is the last row).
            let (code, _) = sim.get("/v2/apps/ctype/web").await;
            if code != 404 {
                failures.push(format!("{what}: the refused write changed state ({code})"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // No Content-Type at all is taken, as Jersey does (curl -X POST).
    let resp = sim
        .http
        .post(sim.u("/v2/apps/ctype/web/restart?force=true"))
        .send()
        .await
        .expect("restart");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}
