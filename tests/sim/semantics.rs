//! One test per rule of SEMANTICS.md, over HTTP against the real binary.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::Sim;

#[tokio::test]
async fn put_answers_201_when_created_and_200_when_updated() {
    let sim = Sim::start();
    let (s, v, h) = sim
        .req(
            Method::PUT,
            "/v2/apps/prod/web",
            Some(json!({"cmd": "sleep 100"})),
        )
        .await;
    assert_eq!(s, 201);
    assert!(
        v["deploymentId"].is_string() && v["version"].is_string(),
        "{v}"
    );
    assert_eq!(
        h["marathon-deployment-id"].to_str().unwrap(),
        v["deploymentId"].as_str().unwrap()
    );
    assert_eq!(h["location"].to_str().unwrap(), "/v2/apps/prod/web");
    sim.wait_deployments_done().await;
    let (s, v) = sim.put("/v2/apps/prod/web", json!({"instances": 2})).await;
    assert_eq!(s, 200, "{v}");
    // PATCH never creates.
    let (s, v, _) = sim
        .req(Method::PATCH, "/v2/apps/nope", Some(json!({"cmd": "x"})))
        .await;
    assert_eq!(
        (s, v),
        (404, json!({"message": "App '/nope' does not exist"}))
    );
}

#[tokio::test]
async fn locked_app_answers_409_with_marathons_body_unless_forced() {
    let sim = Sim::start();
    sim.slow_tasks().await;
    let (_, first) = sim.put("/v2/apps/locked", json!({"cmd": "a"})).await;
    let (s, v) = sim.put("/v2/apps/locked", json!({"cmd": "b"})).await;
    assert_eq!(s, 409);
    assert_eq!(
        v,
        json!({"message": "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
            "deployments": [{"id": first["deploymentId"]}]})
    );
    let (s, _) = sim
        .put("/v2/apps/locked?force=True", json!({"cmd": "b"}))
        .await;
    assert_eq!(s, 200, "force=True is accepted case-insensitively");
    let (_, deps) = sim.get("/v2/deployments").await;
    assert_eq!(
        deps.as_array().unwrap().len(),
        1,
        "the forced plan replaced the first"
    );
}

#[tokio::test]
async fn forced_deployment_delete_is_202_with_empty_body() {
    let sim = Sim::start();
    sim.slow_tasks().await;
    let (_, r) = sim.put("/v2/apps/a", json!({"cmd": "x"})).await;
    let id = r["deploymentId"].as_str().unwrap().to_string();
    let resp = sim
        .http
        .delete(sim.u(&format!("/v2/deployments/{id}?force=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    assert!(resp.text().await.unwrap().is_empty());
    let (s, v) = sim.delete(&format!("/v2/deployments/{id}")).await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"message": format!("DeploymentPlan {id} does not exist")})
        )
    );
}

#[tokio::test]
async fn deployment_delete_rolls_back_that_plan() {
    let sim = Sim::start();
    sim.put("/v2/apps/a", json!({"cmd": "one"})).await;
    sim.wait_deployments_done().await;
    sim.slow_tasks().await;
    let (_, r) = sim
        .put("/v2/apps/a", json!({"cmd": "two", "instances": 2}))
        .await;
    let (s, v) = sim
        .delete(&format!(
            "/v2/deployments/{}",
            r["deploymentId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200);
    assert!(v["deploymentId"].is_string() && v["deploymentId"] != r["deploymentId"]);
    let (_, app) = sim.get("/v2/apps/a").await;
    assert_eq!(app["app"]["cmd"], "one");
    assert_eq!(app["app"]["instances"], 1);
}

#[tokio::test]
async fn get_shows_exactly_the_1_10_default_field_set() {
    let sim = Sim::start();
    sim.post("/v2/apps", json!({"id": "/d", "cmd": "sleep 1"}))
        .await;
    sim.wait_deployments_done().await;
    let (_, v) = sim.get("/v2/apps/d").await;
    let app = v["app"].as_object().unwrap();
    let mut keys: Vec<&str> = app.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "backoffFactor",
            "backoffSeconds",
            "cmd",
            "cpus",
            "deployments",
            "disk",
            "executor",
            "gpus",
            "id",
            "instances",
            "killSelection",
            "labels",
            "lastTaskFailure",
            "maxLaunchDelaySeconds",
            "mem",
            "networks",
            "portDefinitions",
            "requirePorts",
            "role",
            "tasks",
            "tasksHealthy",
            "tasksRunning",
            "tasksStaged",
            "tasksUnhealthy",
            "unreachableStrategy",
            "upgradeStrategy",
            "version",
            "versionInfo"
        ]
        .into_iter()
        .filter(|k| *k != "lastTaskFailure")
        .collect::<Vec<_>>()
    );
    assert_eq!(app["maxLaunchDelaySeconds"], 300);
    assert_eq!(
        app["upgradeStrategy"],
        json!({"maximumOverCapacity": 1, "minimumHealthCapacity": 1})
    );
    let port = app["portDefinitions"][0]["port"].as_u64().unwrap();
    assert!((10000..=20000).contains(&port));
}

#[tokio::test]
async fn empty_and_null_fields_are_omitted() {
    let sim = Sim::start();
    let (s, _) = sim
        .post("/v2/apps", json!({"id": "/e", "cmd": "x", "args": null, "env": {}, "constraints": [], "healthChecks": [],
            "uris": [], "user": null, "dependencies": [], "acceptedResourceRoles": [], "secrets": {}}))
        .await;
    assert_eq!(s, 201);
    let (_, v) = sim.get("/v2/apps/e").await;
    for k in [
        "args",
        "env",
        "constraints",
        "healthChecks",
        "uris",
        "user",
        "dependencies",
        "acceptedResourceRoles",
        "secrets",
        "ports",
        "ipAddress",
    ] {
        assert!(
            v["app"].get(k).is_none(),
            "{k} should be omitted: {}",
            v["app"]
        );
    }
}

#[tokio::test]
async fn versions_follow_config_change_vs_scale_rules() {
    let sim = Sim::start();
    sim.put("/v2/apps/v", json!({"cmd": "x"})).await;
    sim.wait_deployments_done().await;
    let (_, a1) = sim.get("/v2/apps/v").await;
    let (_, r) = sim.put("/v2/apps/v", json!({"instances": 2})).await;
    sim.wait_deployments_done().await;
    let (_, a2) = sim.get("/v2/apps/v").await;
    assert_eq!(a2["app"]["version"], r["version"]);
    assert_eq!(a2["app"]["versionInfo"]["lastScalingAt"], r["version"]);
    assert_eq!(
        a2["app"]["versionInfo"]["lastConfigChangeAt"],
        a1["app"]["versionInfo"]["lastConfigChangeAt"]
    );
    let (_, r3) = sim.put("/v2/apps/v", json!({"cmd": "y"})).await;
    sim.wait_deployments_done().await;
    let (_, a3) = sim.get("/v2/apps/v").await;
    assert_eq!(
        a3["app"]["versionInfo"]["lastConfigChangeAt"],
        r3["version"]
    );
    // Same ports kept across updates.
    assert_eq!(a3["app"]["portDefinitions"], a1["app"]["portDefinitions"]);
    let (_, vs) = sim.get("/v2/apps/v/versions").await;
    assert_eq!(vs["versions"].as_array().unwrap().len(), 3);
    let first = vs["versions"][2].as_str().unwrap();
    let (s, old) = sim.get(&format!("/v2/apps/v/versions/{first}")).await;
    assert_eq!((s, old["cmd"].clone()), (200, json!("x")));
    assert!(old.get("tasks").is_none(), "bare App JSON, not AppInfo");
}

#[tokio::test]
async fn rolling_restart_keeps_within_upgrade_strategy_bounds() {
    let sim = Sim::start_with(&[
        "--task-start-delay-ms",
        "40",
        "--task-healthy-delay-ms",
        "40",
    ]);
    let strategy = json!({"minimumHealthCapacity": 1, "maximumOverCapacity": 0});
    sim.put("/v2/apps/r", json!({"cmd": "a", "instances": 3, "upgradeStrategy": strategy, "healthChecks": [{"protocol": "TCP"}]})).await;
    sim.wait_deployments_done().await;
    let (_, r) = sim.post("/v2/apps/r/restart", json!({})).await;
    assert!(r["deploymentId"].is_string());
    let mut max_tasks = 0;
    let mut min_healthy = usize::MAX;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, app) = sim.get("/v2/apps/r").await;
        let tasks = app["app"]["tasks"].as_array().unwrap();
        max_tasks = max_tasks.max(tasks.len());
        min_healthy = min_healthy.min(app["app"]["tasksHealthy"].as_u64().unwrap() as usize);
        if app["app"]["deployments"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "restart did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // minHealthy = ceil(3×1) = 3 = maxCapacity ⇒ one extra instance: at most 4.
    assert_eq!(max_tasks, 4);
    assert_eq!(min_healthy, 3);
}

#[tokio::test]
async fn validation_errors_use_marathons_bodies() {
    let sim = Sim::start();
    let (s, v) = sim
        .post(
            "/v2/apps",
            json!({"id": "/x", "cmd": "c", "upgradeStrategy": {"minimumHealthCapacity": 2}}),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(
        v,
        json!({"message": "Object is not valid", "details": [{"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["is greater than 1"]}]})
    );
    let (s, v) = sim.post("/v2/apps", json!({"id": "/x"})).await;
    assert_eq!(s, 422);
    assert_eq!(
        v["details"][0]["errors"][0],
        "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
    );
    let resp = sim
        .http
        .post(sim.u("/v2/apps"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["message"], "Invalid JSON");
    assert!(
        v["details"].is_string(),
        "details is a string for parse errors"
    );
    sim.post("/v2/apps", json!({"id": "/dup", "cmd": "c"}))
        .await;
    let (s, v) = sim
        .post("/v2/apps", json!({"id": "/dup", "cmd": "c"}))
        .await;
    assert_eq!(
        (s, v),
        (
            409,
            json!({"message": "An app with id [/dup] already exists."})
        )
    );
    let (s, _) = sim
        .post("/v2/apps", json!({"id": "/a/restart", "cmd": "c"}))
        .await;
    assert_eq!(s, 422, "reserved last segment");
}

#[tokio::test]
async fn event_frames_follow_marathons_format_and_filter() {
    let sim = Sim::start();
    let resp = sim
        .http
        .get(sim.u("/v2/events?event_type=event_stream_attached&event_type=deployment_success&event_type=api_post_event"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut posted = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("event: deployment_success\n") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        if !posted && text.contains("\n\n") {
            sim.post("/v2/apps", json!({"id": "/ev", "cmd": "x"})).await;
            posted = true;
        }
    }
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert!(
        frames[0].starts_with("event: event_stream_attached\ndata: {"),
        "{}",
        frames[0]
    );
    for f in &frames {
        let mut lines = f.lines();
        let ev = lines
            .next()
            .unwrap()
            .strip_prefix("event: ")
            .expect("event line");
        let data: Value = serde_json::from_str(
            lines
                .next()
                .unwrap()
                .strip_prefix("data: ")
                .expect("data line"),
        )
        .unwrap();
        assert!(lines.next().is_none(), "one-line data");
        assert_eq!(data["eventType"], ev);
        assert!(data["timestamp"].is_string());
        assert!(
            [
                "event_stream_attached",
                "deployment_success",
                "api_post_event"
            ]
            .contains(&ev),
            "filtered: {ev}"
        );
    }
    assert!(text.contains("event: api_post_event\n"));
}

#[tokio::test]
async fn lenient_paths_and_prefixes() {
    let sim = Sim::start();
    let (s, _) = sim.put("//v2//apps//lenient/", json!({"cmd": "x"})).await;
    assert_eq!(s, 201);
    let (s, v) = sim.get("/service/marathon/v2/apps/lenient/").await;
    assert_eq!((s, v["app"]["id"].clone()), (200, json!("/lenient")));
    let resp = sim.http.get(sim.u("/ping")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap().trim(), "pong");
    let (s, v) = sim.get("/v2/apps/missing").await;
    assert_eq!(
        (s, v),
        (404, json!({"message": "App '/missing' does not exist"}))
    );
}

#[tokio::test]
async fn list_selectors_and_embeds() {
    let sim = Sim::start();
    sim.post(
        "/v2/apps",
        json!({"id": "/p/a", "cmd": "nginx -g", "labels": {"env": "prod", "tier": "web"}}),
    )
    .await;
    sim.post(
        "/v2/apps",
        json!({"id": "/p/b", "cmd": "redis", "labels": {"env": "dev"}}),
    )
    .await;
    sim.wait_deployments_done().await;
    let ids = |v: &Value| {
        v["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (_, v) = sim.get("/v2/apps?label=env%3D%3Dprod").await;
    assert_eq!(ids(&v), ["/p/a"]);
    let (_, v) = sim.get("/v2/apps?label=env%20in%20(dev,qa)").await;
    assert_eq!(ids(&v), ["/p/b"]);
    let (_, v) = sim.get("/v2/apps?label=env!%3Ddev,tier").await;
    assert_eq!(ids(&v), ["/p/a"]);
    let (_, v) = sim.get("/v2/apps?cmd=redis").await;
    assert_eq!(ids(&v), ["/p/b"]);
    let (_, v) = sim.get("/v2/apps?id=p/a").await;
    assert_eq!(ids(&v), ["/p/a"]);
    let (_, v) = sim.get("/v2/apps?embed=app.tasks").await;
    assert_eq!(v["apps"][0]["tasks"].as_array().unwrap().len(), 1);
    assert!(
        v["apps"][0]["tasksRunning"].is_number(),
        "counts always embedded on the list"
    );
    let (_, v) = sim.get("/v2/apps").await;
    assert!(v["apps"][0].get("tasks").is_none());
    let (_, g) = sim.get("/v2/groups").await;
    assert_eq!(g["groups"][0]["id"], "/p");
    assert_eq!(g["groups"][0]["apps"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn task_kill_with_scale_and_task_id_format() {
    let sim = Sim::start();
    sim.post(
        "/v2/apps",
        json!({"id": "/g/k", "cmd": "x", "instances": 3}),
    )
    .await;
    sim.wait_deployments_done().await;
    let (_, v) = sim.get("/v2/apps/g/k/tasks").await;
    let id = v["tasks"][0]["id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("g_k.instance-") && id.ends_with("._app.1"),
        "{id}"
    );
    let (s, v) = sim
        .delete(&format!("/v2/apps/g/k/tasks/{id}?scale=true"))
        .await;
    assert_eq!(s, 200);
    assert!(v["deploymentId"].is_string());
    sim.wait_deployments_done().await;
    let (_, app) = sim.get("/v2/apps/g/k").await;
    assert_eq!(app["app"]["instances"], 2);
    let (s, v) = sim
        .post("/v2/tasks/delete", json!({"ids": ["not_known"]}))
        .await;
    assert_eq!(
        (s, v),
        (400, json!({"message": "Invalid task id not_known"}))
    );
    let (s, v) = sim.delete("/v2/apps/g/k").await;
    assert_eq!(s, 200, "{v}");
    sim.wait_deployments_done().await;
    let (_, v) = sim.get("/v2/tasks").await;
    assert!(v["tasks"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn library_entry_serves_in_process_and_shuts_down_with_open_streams() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pacer::sim::serve(
        listener,
        pacer::sim::SimConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    let (s, leader) = {
        let r = http.get(format!("{url}/v2/leader")).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(s, 200);
    assert_eq!(leader["leader"], url.trim_start_matches("http://"));
    let events = http
        .get(format!("{url}/v2/events"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns although an event stream was open")
        .unwrap()
        .unwrap();
}
