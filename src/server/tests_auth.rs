//! The operator API's tokens, the public status, and the webhook's limits,
//! through `router(state).oneshot(req)`.

use super::tests::{ADMIN, READ, SECRET, call, fixture, get, github_push, retry_req};
use super::*;
use crate::status::Problem;
use axum::body::Body;
use axum::http::Request;

fn with_token(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn metric(f: &super::tests::Fixture, series: &str) -> String {
    let text = f.metrics.render(&Default::default());
    text.lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .to_string()
}

#[tokio::test]
async fn writes_need_the_admin_token() {
    let mut f = fixture(8);
    let router = f.router();
    let json = ("content-type", "application/json");
    let read = format!("Bearer {READ}");
    let cases = [
        ("", StatusCode::UNAUTHORIZED, "missingToken"),
        (
            "Bearer not-a-token-this-daemon-has",
            StatusCode::UNAUTHORIZED,
            "badToken",
        ),
        (
            "Basic YWRtaW46YWRtaW4=",
            StatusCode::UNAUTHORIZED,
            "malformedAuthorization",
        ),
        (read.as_str(), StatusCode::FORBIDDEN, "readOnlyToken"),
    ];
    for uri in [
        "/api/v1/retry?env=prod&app=web",
        "/api/v1/endpoints/release",
    ] {
        for (auth, want, reason) in &cases {
            let body = r#"{"service": "/prod/db"}"#;
            let body = if uri.contains("release") { body } else { "" };
            let req = if auth.is_empty() {
                // No Authorization header at all.
                Request::post(uri)
                    .header("host", "localhost:8081")
                    .header(json.0, json.1)
                    .body(Body::from(body))
                    .unwrap()
            } else {
                retry_req(uri, &[json, ("authorization", auth)], body)
            };
            let (status, headers, text) = call(router.clone(), req).await;
            assert_eq!(status, *want, "{uri} {auth}: {text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["reason"], *reason, "{text}");
            assert!(v["error"].is_string(), "{text}");
            let challenge = headers.get(header::WWW_AUTHENTICATE);
            if *want == StatusCode::UNAUTHORIZED {
                assert_eq!(challenge.unwrap(), "Bearer", "{uri} {auth}");
            } else {
                assert!(challenge.is_none());
            }
            assert!(!text.contains(ADMIN) && !text.contains(READ), "{text}");
        }
    }
    assert!(f.rx.try_recv().is_err(), "a refused write queued a run");
    assert!(
        metric(
            &f,
            "pacer_api_refusals_total{route=\"api\",reason=\"readOnlyToken\"}"
        )
        .ends_with(" 2")
    );
    assert!(
        metric(
            &f,
            "pacer_api_refusals_total{route=\"api\",reason=\"missingToken\"}"
        )
        .ends_with(" 2")
    );
    // The admin token writes.
    let req = retry_req("/api/v1/retry?env=prod&app=web", &[json], "");
    let (status, _, text) = call(router, req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert!(matches!(f.rx.try_recv(), Ok(Trigger::Retry { .. })));
}

#[tokio::test]
async fn without_an_admin_token_writes_are_refused_naming_the_flag() {
    let mut f = fixture(4);
    let mut state = f.state.take().unwrap();
    state.access = Access::default();
    let router = router(state);
    let req = retry_req("/api/v1/retry", &[("content-type", "application/json")], "");
    let (status, _, text) = call(router.clone(), req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("--admin-token-file"), "{text}");
    assert!(text.contains("writesDisabled"), "{text}");
    assert!(f.rx.try_recv().is_err());
    // Health, readiness and metrics stay open.
    for uri in ["/healthz", "/metrics"] {
        assert_eq!(
            call(router.clone(), get(uri)).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn the_status_without_a_token_shows_states_not_messages() {
    let mut f = fixture(1);
    let router = f.router();
    {
        let mut w = f.publisher.write();
        w.repo.last_fetch_error = Some("PLANTED-fetch-error".into());
        w.repo.errors = vec![Problem::message("PLANTED-repo-error")];
    }
    let (status, _, public) = call(router.clone(), get("/api/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!public.contains("PLANTED"), "{public}");
    assert!(!public.contains("git.example.com"), "{public}");
    let v: serde_json::Value = serde_json::from_str(&public).unwrap();
    assert_eq!(v["redacted"], true);
    assert_eq!(v["repo"]["errorCount"], 1);
    assert_eq!(v["webhooks"], "on");
    assert_eq!(v["environments"]["prod"]["apps"]["web"]["sync"], "failed");
    for token in [READ, ADMIN] {
        let (status, _, full) = call(router.clone(), with_token("/api/v1/status", token)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(full.contains("PLANTED-repo-error"), "{full}");
        assert!(!full.contains("\"redacted\""), "{full}");
    }
    // A stale or wrong token is told so, not quietly shown less.
    let (status, headers, text) = call(
        router,
        with_token("/api/v1/status", "not-a-token-of-this-daemon"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test]
async fn the_status_says_webhooks_are_off_without_a_secret() {
    let mut f = fixture(1);
    let mut state = f.state.take().unwrap();
    state.webhook_secret = None;
    let router = router(state);
    let (_, _, body) = call(router.clone(), get("/api/v1/status")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["webhooks"], "off", "{body}");
    // And a signed delivery is refused: there is nothing to check it with.
    let (status, _, body) = call(router, github_push("main", SECRET)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("webhooks are off"), "{body}");
    assert!(f.rx.try_recv().is_err());
}

#[tokio::test]
async fn an_oversized_webhook_is_413_naming_the_limit_and_the_flag() {
    let mut f = fixture(4);
    let mut state = f.state.take().unwrap();
    state.access.webhook_max_body = 2048;
    let router = router(state);
    for chunked in [false, true] {
        let body = vec![b' '; 2049];
        let body = if chunked {
            // No Content-Length: the limit holds while the body streams.
            let stream = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]);
            Body::from_stream(stream)
        } else {
            Body::from(body)
        };
        let req = Request::post("/hooks/git")
            .header("x-github-event", "push")
            .body(body)
            .unwrap();
        let (status, _, text) = call(router.clone(), req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        assert!(text.contains("2048 bytes"), "{text}");
        assert!(text.contains("--webhook-max-body"), "{text}");
    }
    assert!(f.rx.try_recv().is_err());
    assert!(
        metric(
            &f,
            "pacer_api_refusals_total{route=\"webhook\",reason=\"tooLarge\"}"
        )
        .ends_with(" 2")
    );
}

#[tokio::test]
async fn webhooks_over_their_rate_get_429_then_pass_again() {
    let mut f = fixture(64);
    let mut state = f.state.take().unwrap();
    let rate = crate::delivery::limit::Rate {
        burst: 2.0,
        per_second: 20.0,
        max_callers: 16,
    };
    state.access = Access::new(super::tests::access().tokens, guard::WEBHOOK_MAX_BODY, rate);
    let router = router(state);
    for _ in 0..2 {
        let (status, _, body) = call(router.clone(), github_push("main", SECRET)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, headers, body) = call(router.clone(), github_push("main", SECRET)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(body.contains("rateLimited"), "{body}");
    // A bucket refills: within a second (20 a second), one passes again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _) = call(router.clone(), github_push("main", SECRET)).await;
        if status == StatusCode::ACCEPTED {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after 5s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !metric(
            &f,
            "pacer_api_refusals_total{route=\"webhook\",reason=\"rateLimited\"}"
        )
        .ends_with(" 0")
    );
}

#[tokio::test]
async fn no_answer_or_metric_holds_a_token() {
    let mut f = fixture(4);
    let router = f.router();
    let mut texts = Vec::new();
    for token in [ADMIN, READ, "wrong-token-wrong-token"] {
        texts.push(
            call(router.clone(), with_token("/api/v1/status", token))
                .await
                .2,
        );
        let auth = format!("Bearer {token}");
        let req = retry_req("/api/v1/retry", &[("authorization", &auth)], "");
        texts.push(call(router.clone(), req).await.2);
    }
    texts.push(call(router, get("/metrics")).await.2);
    for t in texts {
        assert!(!t.contains(ADMIN) && !t.contains(READ), "{t}");
    }
}
