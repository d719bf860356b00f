//! `pacer::marathon::client` against the in-process simulator (and a tiny
//! recording server for headers). Every wait is on a condition with a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pacer::marathon::client::{Auth, ClientConfig, Error, MarathonClient};
use pacer::model::Secret;
use pacer::sim::{Settings, Shared, Sim, SimConfig, serve_sim};
use serde_json::{Value, json};

/// A simulator served in-process on a free port; stops when dropped.
pub struct TestSim {
    pub sim: Sim,
    pub url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestSim {
    /// Tasks start and get healthy in 5 ms: deployments take tens of ms.
    pub async fn fast() -> TestSim {
        TestSim::start(Settings {
            start_delay_ms: 5,
            healthy_delay_ms: 5,
            ..Settings::default()
        })
        .await
    }

    pub async fn start(settings: Settings) -> TestSim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let sim = Shared::new(SimConfig {
            settings,
            state_file: None,
        })
        .expect("simulator");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_sim(listener, sim.clone(), async move {
            let _ = stopped.await;
        }));
        TestSim {
            sim,
            url,
            _stop: stop,
        }
    }

    pub fn client(&self) -> MarathonClient {
        self.client_with(|_| {})
    }

    pub fn client_with(&self, f: impl FnOnce(&mut ClientConfig)) -> MarathonClient {
        let mut cfg = ClientConfig {
            url: self.url.clone(),
            timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(10),
            lock_wait: Duration::from_secs(20),
            ..ClientConfig::default()
        };
        f(&mut cfg);
        MarathonClient::new(cfg).expect("client")
    }

    /// A `/_sim` control call over HTTP.
    pub async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::new()
            .request(method, format!("{}/_sim/{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("control call");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.expect("control json")
    }

    /// `(method, uri, status)` of every logged Marathon request.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.sim
            .log
            .lock()
            .iter()
            .map(|e| (e.method.clone(), e.uri.clone(), e.status))
            .collect()
    }

    pub fn clear_requests(&self) {
        self.sim.log.lock().clear();
    }

    /// Waits (deadline 20 s) until no deployment runs.
    pub async fn idle(&self, client: &MarathonClient) {
        wait_for("no deployments", Duration::from_secs(20), || async {
            client.deployments().await.expect("deployments").is_empty()
        })
        .await;
    }
}

/// Polls `cond` every 5 ms until it holds; panics after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn statuses(log: &[(String, String, u16)], method: &str, uri_prefix: &str) -> Vec<u16> {
    log.iter()
        .filter(|(m, u, _)| m == method && u.starts_with(uri_prefix))
        .map(|(_, _, s)| *s)
        .collect()
}

fn task_ids(app: &Value) -> Vec<String> {
    let mut ids: Vec<String> = app["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_get_and_list_under_a_group() {
    let s = TestSim::fast().await;
    let c = s.client();
    c.ping().await.expect("ping");
    assert_eq!(c.get_app("/prod/web").await.expect("get"), None);
    for id in [
        "/prod/web",
        "/prod/payments/api",
        "/production/x",
        "/dev/web",
    ] {
        c.put_app(id, &json!({"cmd": "sleep 100"}), false)
            .await
            .expect("put");
    }
    let mut ids: Vec<String> = c
        .list_apps("/prod")
        .await
        .expect("list")
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["/prod/payments/api", "/prod/web"]);
    assert_eq!(c.list_apps("/").await.unwrap().len(), 4);
    let app = c.get_app("prod/web").await.unwrap().expect("app");
    assert_eq!(app["id"], "/prod/web");
    assert!(app.get("deployments").is_some(), "raw AppInfo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_creates_with_201_then_updates_with_200() {
    let s = TestSim::fast().await;
    let c = s.client();
    let r1 = c
        .put_app(
            "/prod/web",
            &json!({"cmd": "sleep 1", "instances": 1}),
            false,
        )
        .await
        .expect("create");
    assert!(!r1.deployment_id.is_empty() && !r1.version.is_empty());
    s.idle(&c).await;
    // A GET's AppInfo, changed and PUT back: read-only fields (version!)
    // are stripped, so this is an update, not a rollback.
    let mut live = c.get_app("/prod/web").await.unwrap().expect("app");
    live["cmd"] = json!("sleep 2");
    let r2 = c.put_app("/prod/web", &live, false).await.expect("update");
    assert_ne!(r1.deployment_id, r2.deployment_id);
    assert_eq!(
        statuses(&s.requests(), "PUT", "/v2/apps/prod/web"),
        [201, 200]
    );
    let puts: Vec<String> = s
        .requests()
        .into_iter()
        .filter(|(m, _, _)| m == "PUT")
        .map(|(_, u, _)| u)
        .collect();
    assert!(
        puts.iter()
            .all(|u| u.contains("partialUpdate=false") && !u.contains("force"))
    );
    s.idle(&c).await;
    let app = c.get_app("/prod/web").await.unwrap().unwrap();
    assert_eq!(app["cmd"], "sleep 2");
    assert_eq!(app["version"], json!(r2.version));

    let versions = c.app_versions("/prod/web").await.expect("versions");
    assert_eq!(versions.len(), 2);
    for v in &versions {
        let old = c.app_version("/prod/web", v).await.expect("version");
        assert_eq!(old["id"], "/prod/web");
    }
    assert!(matches!(
        c.app_versions("/nope").await,
        Err(Error::NotFound { .. })
    ));

    // Invalid apps are refused with Marathon's details, not retried.
    let e = c
        .put_app("/prod/bad", &json!({"cmd": "x", "cpus": -1}), false)
        .await
        .expect_err("invalid");
    match &e {
        Error::Status {
            status: 422,
            message,
        } => assert!(message.contains("/cpus"), "{message}"),
        other => panic!("expected 422, got {other:?}"),
    }
    assert!(!e.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_changes_instances_without_restarting() {
    let s = TestSim::fast().await;
    let c = s.client();
    c.put_app(
        "/prod/web",
        &json!({"cmd": "sleep 1", "instances": 1}),
        false,
    )
    .await
    .unwrap();
    s.idle(&c).await;
    wait_for("one running task", Duration::from_secs(10), || async {
        let a = c.get_app("/prod/web").await.unwrap().unwrap();
        a["tasksRunning"] == json!(1)
    })
    .await;
    let before = c.get_app("/prod/web").await.unwrap().unwrap();
    let r = c.scale_app("/prod/web", 3).await.expect("scale");
    assert!(!r.deployment_id.is_empty());
    s.idle(&c).await;
    wait_for("three running tasks", Duration::from_secs(10), || async {
        let a = c.get_app("/prod/web").await.unwrap().unwrap();
        a["tasksRunning"] == json!(3)
    })
    .await;
    let after = c.get_app("/prod/web").await.unwrap().unwrap();
    assert_eq!(after["instances"], 3);
    assert_eq!(after["cmd"], "sleep 1", "a partial update keeps the rest");
    assert_eq!(
        after["versionInfo"]["lastConfigChangeAt"],
        before["versionInfo"]["lastConfigChangeAt"]
    );
    let (old, new) = (task_ids(&before), task_ids(&after));
    assert!(
        old.iter().all(|t| new.contains(t)),
        "the old task survives: {old:?} ⊂ {new:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_app_waits_for_the_deployment_then_succeeds() {
    let s = TestSim::fast().await;
    let c = s.client();
    // The first deployment hangs (its tasks never leave staging) until we
    // let it finish.
    s.control(
        reqwest::Method::POST,
        "apps/prod/web/never-healthy",
        json!({}),
    )
    .await;
    let first = c
        .put_app(
            "/prod/web",
            &json!({"cmd": "sleep 1", "instances": 2}),
            false,
        )
        .await
        .unwrap();
    let running = c.deployments().await.unwrap();
    let d = running
        .iter()
        .find(|d| d.id == first.deployment_id)
        .expect("the first deployment is running");
    assert_eq!(d.affected_apps, ["/prod/web"]);
    assert!(d.total_steps >= 1);

    let second = tokio::spawn({
        let c = c.clone();
        async move {
            c.put_app(
                "/prod/web",
                &json!({"cmd": "sleep 2", "instances": 2}),
                false,
            )
            .await
        }
    });
    // The second PUT was refused as locked and is waiting, polling
    // /v2/deployments.
    wait_for("a 409 and a poll", Duration::from_secs(10), || async {
        let log = s.requests();
        log.iter()
            .position(|(_, _, st)| *st == 409)
            .is_some_and(|i| {
                log[i..]
                    .iter()
                    .any(|(m, u, _)| m == "GET" && u == "/v2/deployments")
            })
    })
    .await;
    assert!(
        !second.is_finished(),
        "still waiting for the first deployment"
    );
    // Let the first deployment finish: the waiting PUT goes through.
    s.control(
        reqwest::Method::DELETE,
        "apps/prod/web/never-healthy",
        json!({}),
    )
    .await;
    let second = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second PUT returns once the first deployment is done")
        .unwrap()
        .expect("and succeeds");
    assert_ne!(second.deployment_id, first.deployment_id);
    // 201, then 409 (locked), then — once the first deployment was gone —
    // 200; never forced, so the first deployment was not cancelled.
    assert_eq!(
        statuses(&s.requests(), "PUT", "/v2/apps/prod/web"),
        [201, 409, 200]
    );
    assert!(
        !s.requests()
            .iter()
            .any(|(_, u, _)| u.contains("force=true"))
    );
    s.idle(&c).await;
    assert_eq!(
        c.get_app("/prod/web").await.unwrap().unwrap()["cmd"],
        "sleep 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_outlasts_lock_wait_is_an_error() {
    let s = TestSim::fast().await;
    let c = s.client_with(|cfg| cfg.lock_wait = Duration::from_millis(100));
    s.control(
        reqwest::Method::PUT,
        "settings",
        json!({"taskStartDelayMs": 60000}),
    )
    .await;
    let first = c
        .put_app("/prod/web", &json!({"cmd": "sleep 1"}), false)
        .await
        .unwrap();
    let e = c.scale_app("/prod/web", 2).await.expect_err("still locked");
    match &e {
        Error::Locked { deployments } => {
            assert_eq!(deployments, std::slice::from_ref(&first.deployment_id))
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(!e.is_transient());
    // force=true goes through, cancelling the running deployment.
    c.put_app("/prod/web", &json!({"cmd": "sleep 3"}), true)
        .await
        .expect("forced");
    assert!(
        s.requests()
            .iter()
            .any(|(m, u, st)| m == "PUT" && u.contains("force=true") && *st == 200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_rollback() {
    let s = TestSim::fast().await;
    let c = s.client();
    c.put_app("/prod/web", &json!({"cmd": "sleep 1"}), false)
        .await
        .unwrap();
    s.idle(&c).await;
    // A slow update, rolled back while it runs.
    s.control(
        reqwest::Method::PUT,
        "settings",
        json!({"taskStartDelayMs": 60000}),
    )
    .await;
    let update = c
        .put_app("/prod/web", &json!({"cmd": "sleep 2"}), false)
        .await
        .unwrap();
    let rollback = c
        .rollback_deployment(&update.deployment_id)
        .await
        .expect("rollback")
        .expect("the deployment was running");
    assert_ne!(rollback.deployment_id, update.deployment_id);
    s.control(
        reqwest::Method::PUT,
        "settings",
        json!({"taskStartDelayMs": 5}),
    )
    .await;
    s.idle(&c).await;
    assert_eq!(
        c.get_app("/prod/web").await.unwrap().unwrap()["cmd"],
        "sleep 1"
    );
    assert_eq!(
        c.rollback_deployment(&update.deployment_id).await.unwrap(),
        None,
        "a finished deployment is Ok(None)"
    );

    c.delete_app("/prod/web").await.expect("delete");
    assert!(
        s.requests()
            .iter()
            .any(|(m, u, _)| m == "DELETE" && u == "/v2/apps/prod/web?force=false"),
        "never forced by default"
    );
    s.idle(&c).await;
    assert_eq!(c.get_app("/prod/web").await.unwrap(), None);
    assert!(matches!(
        c.delete_app("/prod/web").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_are_retried_on_503() {
    let s = TestSim::fast().await;
    let c = s.client_with(|cfg| cfg.max_retries = 10);
    s.sim.faults.lock().error_rate = 1.0;
    // Heal Marathon after the client has seen three 503s.
    let sim = s.sim.clone();
    let healer = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let failures = sim.log.lock().iter().filter(|e| e.status == 503).count();
            if failures >= 3 {
                sim.faults.lock().error_rate = 0.0;
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let apps = c.list_apps("/").await.expect("retried until healed");
    assert!(apps.is_empty());
    healer.await.unwrap();
    let gets = statuses(&s.requests(), "GET", "/v2/apps");
    assert!(gets.len() >= 4, "{gets:?}");
    assert!(
        gets[..gets.len() - 1].iter().all(|st| *st == 503),
        "{gets:?}"
    );
    assert_eq!(gets.last(), Some(&200));

    // Marathon stays down: max_retries + 1 attempts, then the 503.
    s.clear_requests();
    s.sim.faults.lock().error_rate = 1.0;
    let c = s.client_with(|cfg| cfg.max_retries = 2);
    let e = c.get_app("/prod/web").await.expect_err("down");
    assert!(matches!(e, Error::Status { status: 503, .. }), "{e:?}");
    assert!(e.is_transient());
    assert_eq!(statuses(&s.requests(), "GET", "/v2/apps"), [503, 503, 503]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_apps_are_never_retried() {
    let s = TestSim::fast().await;
    let c = s.client_with(|cfg| cfg.max_retries = 5);
    c.put_app("/prod/web", &json!({"cmd": "sleep 1"}), false)
        .await
        .unwrap();
    s.idle(&c).await;
    s.clear_requests();
    s.sim.faults.lock().error_rate = 1.0;
    let e = c
        .put_app("/prod/web", &json!({"cmd": "sleep 2"}), false)
        .await
        .expect_err("503");
    assert!(e.is_transient(), "the caller may re-observe and try later");
    let e = c.scale_app("/prod/web", 2).await.expect_err("503");
    assert!(e.is_transient());
    let e = c.delete_app("/prod/web").await.expect_err("503");
    assert!(e.is_transient());
    let log = s.requests();
    assert_eq!(statuses(&log, "PUT", "/v2/apps"), [503, 503]);
    assert_eq!(statuses(&log, "DELETE", "/v2/apps"), [503]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_time_out() {
    let s = TestSim::fast().await;
    s.sim.faults.lock().latency_ms = 3000;
    let c = s.client_with(|cfg| {
        cfg.timeout = Duration::from_millis(150);
        cfg.max_retries = 1;
    });
    let started = Instant::now();
    let e = c.get_app("/prod/web").await.expect_err("timeout");
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(e.is_transient());
    // Two attempts of 150 ms and one short pause, well under the latency.
    assert!(started.elapsed() < Duration::from_millis(2000));
    let started = Instant::now();
    let e = c
        .put_app("/prod/web", &json!({"cmd": "x"}), false)
        .await
        .expect_err("timeout");
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_marathon_is_a_transient_connect_error_without_secrets() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = MarathonClient::new(ClientConfig {
        url: format!("http://ops:hunter2@127.0.0.1:{port}"),
        max_retries: 1,
        backoff: Duration::from_millis(1),
        ..ClientConfig::default()
    })
    .unwrap();
    let e = c.ping().await.expect_err("nothing listens");
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert!(e.is_transient());
    let shown = format!("{e} {e:?} {c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A server that records the `Authorization` header of every request.
async fn recording_server() -> (String, Arc<parking_lot::Mutex<Vec<String>>>) {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let record = record.clone();
        async move {
            let h = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("<none>")
                .to_string();
            record.lock().push(h);
            axum::Json(json!({"apps": []}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_headers_are_sent() {
    use base64::Engine as _;
    let (url, seen) = recording_server().await;
    let basic = MarathonClient::new(ClientConfig {
        url: url.clone(),
        auth: Auth::Basic {
            user: "ops".into(),
            password: Secret::new("hunter2".into()),
        },
        ..ClientConfig::default()
    })
    .unwrap();
    basic.ping().await.unwrap();
    basic.list_apps("/prod").await.unwrap();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:hunter2")
    );
    assert_eq!(*seen.lock(), [expected.clone(), expected.clone()]);
    assert!(!format!("{basic:?}").contains("hunter2"));

    // Credentials in the URL become basic auth and leave the URL.
    let in_url = MarathonClient::new(ClientConfig {
        url: url.replace("http://", "http://ops:hunter2@"),
        ..ClientConfig::default()
    })
    .unwrap();
    assert_eq!(in_url.url(), url);
    in_url.ping().await.unwrap();
    assert_eq!(seen.lock().last(), Some(&expected));

    let token = MarathonClient::new(ClientConfig {
        url: url.clone(),
        auth: Auth::Token(Secret::new("t0k3n".into())),
        ..ClientConfig::default()
    })
    .unwrap();
    token.ping().await.unwrap();
    assert_eq!(seen.lock().last().map(String::as_str), Some("token=t0k3n"));

    let none = MarathonClient::new(ClientConfig {
        url,
        ..ClientConfig::default()
    })
    .unwrap();
    none.ping().await.unwrap();
    assert_eq!(seen.lock().last().map(String::as_str), Some("<none>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_yields_deployment_success() {
    let s = TestSim::fast().await;
    let c = s.client();
    let mut events = Box::pin(
        c.events(&["deployment_success", "event_stream_attached"])
            .await
            .expect("events"),
    );
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("first frame in time")
        .expect("a frame")
        .expect("an event");
    assert_eq!(first.event_type, "event_stream_attached");
    let r = c
        .put_app("/prod/web", &json!({"cmd": "sleep 1"}), false)
        .await
        .unwrap();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.next().await {
            let ev = ev.expect("event");
            assert_eq!(ev.event_type, "deployment_success", "filtered: {ev:?}");
            assert_eq!(ev.data["eventType"], "deployment_success");
            if ev.data["id"] == json!(r.deployment_id) {
                return true;
            }
        }
        false
    })
    .await
    .expect("deployment_success in time");
    assert!(found);

    // Marathon going away ends the stream (the caller reconnects).
    s.control(reqwest::Method::POST, "down", json!({})).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.next().await {
            if ev.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends when Marathon goes down");
    let e = match c.events(&[]).await {
        Ok(_) => panic!("Marathon is down"),
        Err(e) => e,
    };
    assert!(e.is_transient(), "{e:?}");
}
