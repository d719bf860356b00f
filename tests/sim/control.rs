//! The `/_sim` control API and `--state`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Sim, wait_until};

#[tokio::test]
async fn whole_deployment_finishes_in_tens_of_milliseconds() {
    let sim = Sim::start_with(&["--task-start-delay-ms", "0", "--task-healthy-delay-ms", "0"]);
    let t = Instant::now();
    sim.post(
        "/v2/apps",
        json!({"id": "/fast", "cmd": "x", "instances": 5, "healthChecks": [{}]}),
    )
    .await;
    sim.wait_deployments_done().await;
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "took {:?}",
        t.elapsed()
    );
    let (_, v) = sim.get("/v2/apps/fast").await;
    assert_eq!(v["app"]["tasksHealthy"], 5);
}

#[tokio::test]
async fn never_healthy_version_fails_after_timeout() {
    let sim = Sim::start();
    sim.put(
        "/v2/apps/h",
        json!({"cmd": "a", "healthChecks": [{"protocol": "HTTP", "path": "/health"}]}),
    )
    .await;
    sim.wait_deployments_done().await;
    let (s, _) = sim.post("/_sim/apps/h/never-healthy", json!({})).await;
    assert_eq!(s, 200);
    sim.put("/_sim/settings", json!({"deploymentTimeoutMs": 300}))
        .await;
    let (_, r) = sim.put("/v2/apps/h", json!({"cmd": "b"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, deps) = sim.get("/v2/deployments").await;
    assert_eq!(
        deps[0]["id"], r["deploymentId"],
        "still running: the new version is not healthy"
    );
    sim.wait_deployments_done().await;
    let (_, app) = sim.get("/v2/apps/h").await;
    assert!(
        app["app"]["tasksUnhealthy"].as_u64().unwrap() >= 1,
        "{}",
        app["app"]
    );
}

#[tokio::test]
async fn failed_task_comes_back_elsewhere() {
    let sim = Sim::start();
    sim.post("/v2/apps", json!({"id": "/f", "cmd": "x"})).await;
    sim.wait_deployments_done().await;
    let (_, v) = sim.get("/v2/apps/f/tasks").await;
    let old = v["tasks"][0].clone();
    let (s, _) = sim
        .post(
            &format!("/_sim/tasks/{}/fail", old["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let new = loop {
        let (_, v) = sim.get("/v2/apps/f/tasks").await;
        let t = v["tasks"][0].clone();
        if t["state"] == "TASK_RUNNING" && t["id"] != old["id"] {
            break t;
        }
        assert!(Instant::now() < deadline, "no replacement task: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_ne!(new["host"], old["host"], "endpoint moved to another host");
    let (_, app) = sim.get("/v2/apps/f").await;
    assert_eq!(app["app"]["lastTaskFailure"]["taskId"], old["id"]);
}

#[tokio::test]
async fn faults_outage_and_request_log() {
    let sim = Sim::start();
    let (s, _) = sim
        .put(
            "/_sim/faults",
            json!({"errorRate": 1.0, "errorStatus": 500}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(sim.get("/v2/apps").await.0, 500);
    sim.delete("/_sim/faults").await;
    sim.put("/_sim/faults", json!({"latencyMs": 200})).await;
    let t = Instant::now();
    assert_eq!(sim.get("/v2/apps").await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
    sim.delete("/_sim/faults").await;
    sim.post("/_sim/down", json!({})).await;
    assert_eq!(sim.get("/ping").await.0, 503);
    sim.post("/_sim/up", json!({})).await;
    assert_eq!(sim.get("/ping").await.0, 200);
    let (_, log) = sim.get("/_sim/requests").await;
    let statuses: Vec<(String, u64)> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["uri"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("/v2/apps".to_string(), 500),
            ("/v2/apps".into(), 200),
            ("/ping".into(), 503),
            ("/ping".into(), 200)
        ]
    );
}

#[tokio::test]
async fn state_file_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim-state.json");
    let f = file.to_str().unwrap();
    let version;
    {
        let sim = Sim::start_with(&["--state", f, "--task-start-delay-ms", "5"]);
        let (s, r) = sim
            .put("/v2/apps/keep", json!({"cmd": "x", "instances": 2}))
            .await;
        assert_eq!(s, 201);
        version = r["version"].clone();
        // Killed right after the acknowledgement: the write must already be on disk.
    }
    let sim = Sim::start_with(&["--state", f, "--task-start-delay-ms", "5"]);
    let (s, v) = sim.get("/v2/apps/keep").await;
    assert_eq!(s, 200);
    assert_eq!(v["app"]["version"], version);
    sim.wait_deployments_done().await;
    wait_until("tasks to run", Duration::from_secs(5), || async {
        sim.get("/v2/apps/keep").await.1["app"]["tasksRunning"] == 2
    })
    .await;
}

#[tokio::test]
async fn control_inputs_are_checked_with_the_reason() {
    let sim = Sim::start();
    let cases = [
        (
            "/_sim/faults",
            json!({"errorRate": 1.0, "errorStatus": 0}),
            "errorStatus",
        ),
        (
            "/_sim/faults",
            json!({"errorRate": 1.0, "errorStatus": 101}),
            "errorStatus",
        ),
        ("/_sim/faults", json!({"errorStatus": 200}), "errorStatus"),
        ("/_sim/faults", json!({"latencyMs": u64::MAX}), "latencyMs"),
        ("/_sim/faults", json!({"latencyMs": -1}), "latencyMs"),
        (
            "/_sim/settings",
            json!({"taskStartDelayMs": -5}),
            "taskStartDelayMs",
        ),
        (
            "/_sim/settings",
            json!({"taskHealthyDelayMs": "soon"}),
            "taskHealthyDelayMs",
        ),
        (
            "/_sim/settings",
            json!({"deploymentTimeoutMs": -1}),
            "deploymentTimeoutMs",
        ),
        (
            "/_sim/settings",
            json!({"taskStartDelay": 5}),
            "taskStartDelay",
        ),
    ];
    for (path, body, names) in cases {
        let (s, v) = sim.put(path, body.clone()).await;
        assert_eq!(s, 400, "{path} {body}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(names),
            "{path} {body}: {v}"
        );
    }
    // Nothing refused was applied.
    let (_, faults) = sim.get("/_sim/faults").await;
    assert_eq!(faults["errorStatus"], 503, "{faults}");
    assert_eq!(faults["latencyMs"], 0, "{faults}");
    let (_, settings) = sim.get("/_sim/settings").await;
    assert!(
        settings["taskStartDelayMs"].as_i64().unwrap() >= 0,
        "{settings}"
    );
    // Marathon answers /v2 normally.
    let (s, v) = sim.get("/v2/apps").await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn the_simulator_refuses_more_than_it_holds() {
    let sim = Sim::start();
    let (s, v) = sim
        .post(
            "/v2/apps",
            json!({"id": "/huge", "cmd": "x", "instances": 100_000_000}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("maxTasks"), "{v}");
    let (s, _) = sim.get("/v2/apps/huge").await;
    assert_eq!(s, 404, "a refused app was stored");
    let (s, v) = sim.put("/_sim/settings", json!({"maxApps": 1})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sim
        .post("/v2/apps", json!({"id": "/one", "cmd": "x"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = sim.put("/v2/apps/two", json!({"cmd": "x"})).await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("at most 1 apps"), "{v}");
}
