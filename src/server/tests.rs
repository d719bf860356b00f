//! Every route through `router(state).oneshot(req)`, without a socket.

use super::*;
use crate::model::SyncStatus;
use crate::status::Status;
use crate::status::health::Health;
use crate::status::published::Publisher;
use crate::status::{AppStatus, EnvStatus, RepoStatus};
use axum::body::Body;
use axum::http::Request;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tower::ServiceExt;

pub(super) const SECRET: &str = "planted-webhook-secret-4f1c";
const HEAD: &str = "89abcdef0123456789abcdef0123456789abcdef";
pub(super) const ADMIN: &str = "planted-admin-token-81d2e0";
pub(super) const READ: &str = "planted-read-token-5a7c33";

pub(super) struct Fixture {
    pub(super) state: Option<AppState>,
    pub(super) rx: mpsc::Receiver<Trigger>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) publisher: Arc<Publisher>,
}

/// The admin token's header.
pub(super) fn admin() -> (&'static str, String) {
    ("authorization", format!("Bearer {ADMIN}"))
}

pub(super) fn access() -> Access {
    let tokens = auth::Tokens::new(Some(ADMIN.into()), Some(READ.into())).unwrap();
    Access::new(tokens, guard::WEBHOOK_MAX_BODY, guard::WEBHOOK_RATE)
}

pub(super) fn fixture(capacity: usize) -> Fixture {
    let (tx, rx) = mpsc::channel(capacity);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(Duration::from_secs(180)));
    let mut status = Status {
        repo: RepoStatus {
            url: "https://git.example.com/ops/config.git".into(),
            branch: "main".into(),
            head: Some(HEAD.into()),
            ..RepoStatus::default()
        },
        ..Status::default()
    };
    let mut prod = EnvStatus {
        group: "/prod".into(),
        ..EnvStatus::default()
    };
    prod.apps.insert(
        "web".into(),
        std::sync::Arc::new(AppStatus::new("/prod/web", SyncStatus::Failed)),
    );
    status
        .environments
        .insert("prod".to_string(), std::sync::Arc::new(prod));
    let publisher = Arc::new(Publisher::new(status));
    let state = AppState {
        published: publisher.reader(),
        metrics: metrics.clone(),
        health: health.clone(),
        triggers: tx,
        webhook_secret: Some(Secret::new(SECRET.into())),
        access: access(),
        branch: "main".into(),
        allowed_hosts: AllowedHosts::new(&["pacer"]),
        delivery: None,
        history: None,
        streams: Default::default(),
    };
    Fixture {
        state: Some(state),
        rx,
        metrics,
        publisher,
    }
}

impl Fixture {
    pub(super) fn router(&mut self) -> Router {
        router(self.state.take().expect("router built once per fixture"))
    }
}

pub(super) async fn call(router: Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let resp = router.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        headers,
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

pub(super) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub(super) fn github_push(branch: &str, signature_key: &str) -> Request<Body> {
    let body =
        serde_json::json!({"ref": format!("refs/heads/{branch}"), "after": HEAD}).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(signature_key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    Request::post("/hooks/git")
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "d-42")
        .header("x-hub-signature-256", format!("sha256={sig}"))
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn healthz_is_ok() {
    let mut f = fixture(1);
    let (status, _, body) = call(f.router(), get("/healthz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn readyz_follows_the_loop_with_a_reason() {
    let mut f = fixture(1);
    let router = f.router();
    f.publisher
        .set_ready(Err("Marathon at http://m:8080 is not answering".into()));
    let (status, _, body) = call(router.clone(), get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert!(v["reason"].as_str().unwrap().contains("Marathon"), "{body}");
    f.publisher.set_ready(Ok(()));
    let (status, _, _) = call(router, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn healthz_reports_a_stuck_loop_with_what_it_was_doing() {
    let (tx, _rx) = mpsc::channel(1);
    let health = Arc::new(Health::new(Duration::ZERO));
    health.doing("rendering commit 0123456789ab");
    let state = AppState {
        published: Publisher::default().reader(),
        metrics: Arc::new(Metrics::new()),
        health,
        triggers: tx,
        webhook_secret: None,
        access: Access::default(),
        branch: "main".into(),
        allowed_hosts: AllowedHosts::new(&["pacer"]),
        delivery: None,
        history: None,
        streams: Default::default(),
    };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = call(router(state), get("/healthz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["healthy"], false);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("rendering commit 0123456789ab"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_are_openmetrics_text() {
    let mut f = fixture(1);
    f.metrics.git_fetch_error();
    let (status, headers, body) = call(f.router(), get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], metrics::CONTENT_TYPE);
    assert!(body.contains("pacer_git_fetch_errors_total 1"), "{body}");
    // The gauges are the published status's: its one failed app.
    assert!(
        body.contains("pacer_apps{env=\"prod\",status=\"failed\"} 1"),
        "{body}"
    );
}

#[tokio::test]
async fn status_is_json() {
    let mut f = fixture(1);
    let req = Request::get("/api/v1/status")
        .header("authorization", format!("Bearer {READ}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = call(f.router(), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["repo"]["head"], HEAD);
    assert_eq!(v["environments"]["prod"]["group"], "/prod");
}

#[tokio::test]
async fn status_strips_credentials_from_the_repo_url() {
    let mut f = fixture(1);
    f.publisher.write().repo.url =
        "https://x-access-token:ghp_planted123@github.com/ops/config.git".into();
    let req = Request::get("/api/v1/status")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(f.router(), req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("ghp_planted123"), "{body}");
    assert!(
        body.contains("\"url\":\"https://***@github.com/ops/config.git\""),
        "{body}"
    );
}

#[tokio::test]
async fn signed_github_push_triggers_a_run() {
    let mut f = fixture(4);
    let (status, _, body) = call(f.router(), github_push("main", SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"decision": "accepted"})
    );
    match f.rx.try_recv() {
        Ok(Trigger::Webhook {
            provider,
            delivery,
            commit,
        }) => {
            assert_eq!(provider, "github");
            assert_eq!(delivery.as_deref(), Some("d-42"));
            assert_eq!(commit.as_deref(), Some(HEAD));
        }
        other => panic!("want a webhook trigger, got {other:?}"),
    }
    assert!(
        f.metrics
            .render(&Default::default())
            .contains("pacer_webhooks_total{decision=\"accepted\",provider=\"github\"} 1")
    );
}

#[tokio::test]
async fn full_channel_still_accepts() {
    let mut f = fixture(1);
    let router = f.router();
    for _ in 0..3 {
        let (status, _, _) = call(router.clone(), github_push("main", SECRET)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert!(f.rx.try_recv().is_ok());
    assert!(f.rx.try_recv().is_err(), "one queued run is enough");
}

#[tokio::test]
async fn bad_signature_is_rejected_and_counted() {
    let mut f = fixture(4);
    let (status, _, body) = call(f.router(), github_push("main", "wrong-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.contains(SECRET));
    assert!(f.rx.try_recv().is_err());
    assert!(
        f.metrics
            .render(&Default::default())
            .contains("pacer_webhooks_total{decision=\"rejected\",provider=\"github\"} 1")
    );
}

#[tokio::test]
async fn other_branch_is_ignored_and_counted() {
    let mut f = fixture(4);
    let (status, _, body) = call(f.router(), github_push("feature", SECRET)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["decision"], "ignored");
    assert!(v["reason"].as_str().unwrap().contains("feature"));
    assert!(f.rx.try_recv().is_err());
    assert!(
        f.metrics
            .render(&Default::default())
            .contains("pacer_webhooks_total{decision=\"ignored\",provider=\"github\"} 1")
    );
}

#[tokio::test]
async fn unknown_sender_is_rejected_as_unknown_provider() {
    let mut f = fixture(4);
    let req = Request::post("/hooks/git").body(Body::from("{}")).unwrap();
    let (status, _, _) = call(f.router(), req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        f.metrics
            .render(&Default::default())
            .contains("pacer_webhooks_total{decision=\"rejected\",provider=\"unknown\"} 1")
    );
}

#[tokio::test]
async fn retry_sends_a_trigger() {
    let mut f = fixture(4);
    let router = f.router();
    let req = Request::post("/api/v1/retry?env=prod&app=web")
        .header("host", "127.0.0.1:8081")
        .header("content-type", "application/json")
        .header(admin().0, admin().1)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = call(router.clone(), req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    match f.rx.try_recv() {
        Ok(Trigger::Retry { env, app }) => {
            assert_eq!(env.as_deref(), Some("prod"));
            assert_eq!(app.as_deref(), Some("web"));
        }
        other => panic!("want a retry trigger, got {other:?}"),
    }
    let req = Request::post("/api/v1/retry")
        .header("host", "[::1]:8081")
        .header("content-type", "application/json")
        .header(admin().0, admin().1)
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, _) = call(router, req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(matches!(
        f.rx.try_recv(),
        Ok(Trigger::Retry {
            env: None,
            app: None
        })
    ));
}

/// A retry request with the admin token, to `Host: localhost:8081`
/// unless `headers` name one.
pub(super) fn retry_req(uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut req = Request::post(uri);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", "localhost:8081");
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        req = req.header(admin().0, admin().1);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn retry_refuses_forms_cross_origin_requests_and_unknown_names() {
    let mut f = fixture(8);
    let router = f.router();
    let json = ("content-type", "application/json");
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        // A cross-site HTML form can send these without a preflight.
        (
            retry_req(
                "/api/v1/retry",
                &[("content-type", "application/x-www-form-urlencoded")],
                "env=prod&app=web",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            retry_req(
                "/api/v1/retry?env=prod",
                &[("content-type", "text/plain")],
                "x",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            retry_req("/api/v1/retry?env=prod", &[], ""),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            retry_req(
                "/api/v1/retry?env=prod",
                &[
                    json,
                    ("origin", "https://evil.example"),
                    ("host", "pacer:8081"),
                ],
                "",
            ),
            StatusCode::FORBIDDEN,
        ),
        // DNS rebinding: same origin as far as the browser knows.
        (
            retry_req(
                "/api/v1/retry?env=prod",
                &[
                    json,
                    ("origin", "http://evil.example:8081"),
                    ("host", "evil.example:8081"),
                ],
                "",
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            retry_req(
                "/api/v1/retry?env=prod",
                &[json, ("sec-fetch-site", "cross-site")],
                "",
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            retry_req("/api/v1/retry?env=nope", &[json], ""),
            StatusCode::NOT_FOUND,
        ),
        (
            retry_req(
                "/api/v1/retry",
                &[json],
                r#"{"env": "prod", "app": "nope"}"#,
            ),
            StatusCode::NOT_FOUND,
        ),
        (
            retry_req("/api/v1/retry", &[json], r#"{"envs": "prod"}"#),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (req, want) in cases {
        let what = format!("{} {:?}", req.uri(), req.headers());
        let (status, _, body) = call(router.clone(), req).await;
        assert_eq!(status, want, "{what}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].is_string(), "{body}");
    }
    assert!(f.rx.try_recv().is_err(), "a refused retry queued a run");
    // Same origin, a JSON body naming a known app: accepted.
    let req = retry_req(
        "/api/v1/retry",
        &[
            json,
            ("origin", "http://pacer:8081"),
            ("host", "pacer:8081"),
        ],
        r#"{"env": "prod", "app": "web"}"#,
    );
    assert_eq!(call(router, req).await.0, StatusCode::ACCEPTED);
    assert!(matches!(f.rx.try_recv(), Ok(Trigger::Retry { .. })));
}

#[tokio::test]
async fn stopped_loop_is_reported() {
    let mut f = fixture(1);
    let router = f.router();
    drop(f.rx);
    let (status, _, _) = call(router, github_push("main", SECRET)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn no_response_contains_the_webhook_secret() {
    let mut f = fixture(4);
    let router = f.router();
    let mut bodies = Vec::new();
    for uri in ["/api/v1/status", "/metrics", "/readyz", "/healthz"] {
        bodies.push(call(router.clone(), get(uri)).await.2);
    }
    for branch in ["main", "other"] {
        bodies.push(call(router.clone(), github_push(branch, SECRET)).await.2);
        bodies.push(call(router.clone(), github_push(branch, "bad")).await.2);
    }
    for body in bodies {
        assert!(!body.contains(SECRET), "{body}");
    }
}

#[tokio::test]
async fn serve_answers_on_a_socket_and_shuts_down() {
    let mut f = fixture(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = crate::listen::Limits::default();
    let server = tokio::spawn(serve(listener, f.state.take().unwrap(), limits, async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok"), "{resp}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

#[test]
fn triggers_say_why_a_run_happened() {
    let cases = [
        (Trigger::Poll, "poll"),
        (
            Trigger::Webhook {
                provider: "github".into(),
                delivery: Some("d-42".into()),
                commit: Some(HEAD.into()),
            },
            "webhook github d-42 at 89abcdef0123",
        ),
        (
            Trigger::Retry {
                env: Some("prod".into()),
                app: None,
            },
            "retry env=prod",
        ),
    ];
    for (t, want) in cases {
        assert_eq!(t.to_string(), want);
    }
}

#[tokio::test]
async fn a_retry_body_over_its_small_limit_is_refused() {
    let mut f = fixture(4);
    let router = f.router();
    let pad = "x".repeat(8 * 1024);
    let req = retry_req(
        "/api/v1/retry",
        &[("content-type", "application/json")],
        &format!(r#"{{"env":"prod","app":"web","pad":"{pad}"}}"#),
    );
    let (status, _, body) = call(router, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("4096 bytes"), "{body}");
    assert!(f.rx.try_recv().is_err(), "no retry from an oversized body");
}
