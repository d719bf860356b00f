//! The config server under pressure, end to end: a caller looping logins,
//! and Marathon answering nonsense for a while.

use crate::delivery::{Agent, reason, serve, tasks, world};
use crate::util::harness::{metric_value, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_looping_logins_is_rate_limited_and_tasks_still_log_in() {
    let w = world().await;
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;

    // One address looping logins with made-up ids (of the app's form, so
    // each would ask Marathon): its budget runs out.
    let flood = Agent::on("127.0.9.9", &d);
    let mut limited = None;
    for i in 0..2000 {
        let resp = flood
            .http
            .post(format!("{}/v1/login", flood.base))
            .json(&serde_json::json!({"taskId": format!("dev_web.instance-fake{i}._app.1"), "appId": "/dev/web"}))
            .send()
            .await
            .expect("POST /v1/login");
        if resp.status().as_u16() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("a caller looping logins is never answered 429");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After: {retry}");
    let (_, v) = crate::delivery::answer(resp).await;
    assert_eq!(reason(&v), "rateLimited", "{v}");

    // A task on its own host is not held up by it.
    let (task, host) = &web[0];
    Agent::on(host, &d).token(task, "/dev/web").await;
    let metrics = d.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "pacer_config_refusals_total{reason=\"rateLimited\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

impl Agent {
    async fn renew(&self, token: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/token/renew", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST /v1/token/renew");
        crate::delivery::answer(resp).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_marathon_answer_does_not_kill_a_token() {
    let w = world().await;
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let (task, host) = &web[0];
    let agent = Agent::on(host, &d);
    let token = agent.token(task, "/dev/web").await;

    // Marathon answers 404 for everything, as mid-failover: a renewal
    // waits (503), a read goes on; neither kills the token.
    let (s, v) = w
        .sim
        .put(
            "/_sim/faults",
            json!({"errorRate": 1.0, "errorStatus": 404}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // (A live answer of the last second is reused: renew until Marathon
    // is asked.)
    wait_until(
        "a renewal that asks Marathon",
        Duration::from_secs(30),
        || async {
            match agent.renew(&token).await {
                (503, v) if reason(&v) == "busy" => Ok(()),
                (200, _) => Err("reused".to_string()),
                other => panic!("a renewal during a failover: {other:?}"),
            }
        },
    )
    .await;
    let (s, v) = agent.get("/v1/config", &token).await;
    assert_eq!(s, 200, "{v}");

    let (s, v) = w.sim.delete("/_sim/faults").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = agent.renew(&token).await;
    assert_eq!(s, 200, "renewed once Marathon is back: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_works_only_from_the_address_that_logged_in() {
    let w = world().await;
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let (task, host) = &web[0];
    let token = Agent::on(host, &d).token(task, "/dev/web").await;

    // Copied off the host, the token reads and renews nothing.
    let elsewhere = Agent::on("127.0.9.8", &d);
    let (s, v) = elsewhere.get("/v1/config", &token).await;
    assert_eq!((s, reason(&v)), (403, "addressMismatch"), "{v}");
    let (s, v) = elsewhere.renew(&token).await;
    assert_eq!((s, reason(&v)), (403, "addressMismatch"), "{v}");
    // From the task's host, and renewed, it does.
    let (s, v) = Agent::on(host, &d).renew(&token).await;
    assert_eq!(s, 200, "{v}");
    let renewed = v["token"].as_str().unwrap().to_string();
    let (s, v) = Agent::on(host, &d).get("/v1/config", &renewed).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = elsewhere.get("/v1/config", &renewed).await;
    assert_eq!((s, reason(&v)), (403, "addressMismatch"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_capped_per_task_freed_when_the_agent_leaves_and_answer_at_stop() {
    let w = world().await;
    let mut d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let (task, host) = &web[0];
    let agent = Agent::on(host, &d);
    let token = agent.token(task, "/dev/web").await;
    let (s, m) = agent.get("/v1/config", &token).await;
    assert_eq!(s, 200, "{m}");
    let watch = format!("/v1/config?index={}&wait=5m", m["index"]);

    // Two watches of the task wait; a third is refused at once.
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let (agent, token, watch) = (Agent::on(host, &d), token.clone(), watch.clone());
        waiting.push(tokio::spawn(async move { agent.get(&watch, &token).await }));
    }
    wait_until("two watches waiting", Duration::from_secs(30), || async {
        let m = d.metrics().await;
        if metric_value(&m, "pacer_config_watchers") == 2.0 {
            Ok(())
        } else {
            Err(m)
        }
    })
    .await;
    let third = Agent {
        http: reqwest::Client::builder()
            .local_address(host.parse::<std::net::IpAddr>().unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        base: d.url.clone(),
    };
    let (s, v) = third.get(&watch, &token).await;
    assert_eq!((s, reason(&v)), (429, "tooManyWatches"), "{v}");

    // An agent that goes away frees its place at once, not when its wait
    // (5 minutes) runs out: dropping the request closes its connection.
    let left = waiting.pop().unwrap();
    left.abort();
    let watchers = |n: f64| {
        let d = &d;
        move || async move {
            let m = d.metrics().await;
            if metric_value(&m, "pacer_config_watchers") == n {
                Ok(())
            } else {
                Err(m)
            }
        }
    };
    wait_until(
        "the watch of the agent that left to end",
        Duration::from_secs(10),
        watchers(1.0),
    )
    .await;
    let (agent, again, token2) = (Agent::on(host, &d), watch.clone(), token.clone());
    waiting.push(tokio::spawn(
        async move { agent.get(&again, &token2).await },
    ));
    wait_until(
        "its place taken again",
        Duration::from_secs(30),
        watchers(2.0),
    )
    .await;

    // SIGTERM: the waiting watches answer (the current bundle) rather than
    // hold the daemon's drain until they are cut.
    let stopped = tokio::task::spawn_blocking(move || {
        let ok = d.proc.terminate(Duration::from_secs(60));
        (ok, d)
    });
    for w in waiting {
        let (s, v) = w.await.unwrap();
        assert_eq!(s, 200, "a watch as the daemon stops: {v}");
        assert_eq!(v["appId"], "/dev/web");
    }
    let (ok, _d) = stopped.await.unwrap();
    assert!(ok, "the daemon did not stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_cannot_be_made_to_log_in_or_renew() {
    let w = world().await;
    let d = serve(&w, &[]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let (task, host) = &web[0];
    let agent = Agent::on(host, &d);
    let body = json!({"taskId": task, "appId": "/dev/web"}).to_string();
    let post = |path: &str| agent.http.post(format!("{}{path}", agent.base));

    // A form-encoded or text body, as a cross-site form sends it.
    let resp = post("/v1/login")
        .header("Content-Type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let (s, v) = crate::delivery::answer(resp).await;
    assert_eq!((s, reason(&v)), (415, "notJson"), "{v}");
    let resp = post("/v1/login")
        .header("Content-Type", "application/json")
        .header("Origin", "http://evil.example")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let (s, v) = crate::delivery::answer(resp).await;
    assert_eq!((s, reason(&v)), (403, "crossSite"), "{v}");

    // Neither used up the task's one login.
    let token = agent.token(task, "/dev/web").await;
    let resp = post("/v1/token/renew")
        .bearer_auth(&token)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    let (s, v) = crate::delivery::answer(resp).await;
    assert_eq!((s, reason(&v)), (403, "crossSite"), "{v}");
    let (s, v) = agent.renew(&token).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_outlives_its_token_is_refused_when_it_wakes() {
    let w = world().await;
    let d = serve(&w, &["--token-ttl", "4"]);
    d.wait_all("dev", "inSync", Duration::from_secs(60)).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let (task, host) = &web[0];
    let agent = Agent::on(host, &d);
    let token = agent.token(task, "/dev/web").await;
    let (s, m) = agent.get("/v1/config", &token).await;
    assert_eq!(s, 200, "{m}");
    // The watch starts with a good token and wakes past its expiry.
    let watch = format!("/v1/config?index={}&wait=8s", m["index"]);
    let (s, v) = agent.get(&watch, &token).await;
    assert_eq!((s, reason(&v)), (401, "expiredToken"), "{v}");
}
