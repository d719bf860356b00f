//! Driven by Marathon's own data in `shared/marathon-api`: every request
//! example is accepted with 1.10's defaults or rejected as Marathon would, and
//! responses have the shape of the canned go-marathon responses.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Sim, shared_api_dir};

/// Content negotiation: the body type each endpoint answers for an `Accept`.
mod negotiation;

/// Request examples that Marathon 1.10 itself rejects, and why.
const REJECTED: &[(&str, &str)] = &[
    (
        "clients/dcos-cli/apps_app_add_400.json",
        "container.docker.network \"bogus\"",
    ),
    (
        "v1.10/api/v2/examples/app.json",
        "both cmd and args; env references an undeclared secret",
    ),
];

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn json_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

fn is_group(v: &Value) -> bool {
    v.get("apps").is_some() || v.get("groups").is_some()
}

/// The 1.10 default fields every stored app shows (SEMANTICS §5).
const ALWAYS: [&str; 16] = [
    "id",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "instances",
    "executor",
    "backoffSeconds",
    "backoffFactor",
    "maxLaunchDelaySeconds",
    "requirePorts",
    "labels",
    "killSelection",
    "upgradeStrategy",
    "unreachableStrategy",
    "networks",
];

/// A stored app must be in canonical 1.10 form: defaults present and
/// normalising it again changes nothing.
fn assert_canonical(app: &Value, origin: &str) {
    for k in ALWAYS {
        assert!(app.get(k).is_some(), "{origin}: {k} missing in {app}");
    }
    assert!(
        app["version"].is_string() && app["versionInfo"].is_object(),
        "{origin}: {app}"
    );
    let mut def = app.clone();
    for k in ["version", "versionInfo"] {
        def.as_object_mut().unwrap().remove(k);
    }
    for k in pacer::marathon::defaults::APP_INFO_FIELDS {
        def.as_object_mut().unwrap().remove(k);
    }
    let mut again = def.clone();
    pacer::marathon::normalize_app(&mut again);
    assert_eq!(again, def, "{origin}: not in canonical form");
    for k in ["ports", "uris", "ipAddress"] {
        assert!(app.get(k).is_none(), "{origin}: 1.10 never writes {k}");
    }
}

/// The request's own values survive (numbers compared numerically).
fn assert_kept(req: &Value, app: &Value, origin: &str) {
    for k in ["cmd", "instances", "cpus", "mem", "disk"] {
        if let Some(want) = req.get(k) {
            let got = &app[k];
            let same = match (want.as_f64(), got.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                _ => want == got,
            };
            assert!(same, "{origin}: {k} {want} became {got}");
        }
    }
}

async fn all_apps(sim: &Sim) -> Vec<Value> {
    sim.get("/v2/apps").await.1["apps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn every_request_example_is_accepted_with_defaults_or_rejected_like_marathon() {
    let root = shared_api_dir();
    let mut files = Vec::new();
    for dir in [
        "v1.10/request-examples",
        "v1.4/request-examples",
        "clients/dcos-cli",
    ] {
        files.extend(json_files(&root.join(dir)));
    }
    for f in [
        "app.json",
        "app-check-http-example.json",
        "apps_create.json",
        "app_patch.json",
        "apps_patch.json",
    ] {
        files.push(root.join("v1.10/api/v2/examples").join(f));
    }
    let mut checked = 0;
    for path in files {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let body = read(&path);
        // A fresh simulator per example so ids never collide.
        let sim = Sim::start_with(&[
            "--task-start-delay-ms",
            "0",
            "--task-healthy-delay-ms",
            "0",
            "--enable-features",
            "secrets",
        ]);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (status, resp, _) = match name.as_str() {
            // Updates need their target first.
            "apps_update_zero_instance_sleep.json" => {
                let base = read(&root.join("clients/dcos-cli/apps_zero_instance_sleep.json"));
                let id = base["id"].as_str().unwrap().to_string();
                assert_eq!(sim.post("/v2/apps", base).await.0, 201);
                sim.wait_deployments_done().await;
                sim.req(
                    Method::PUT,
                    &format!("/v2/apps{}", pacer::marathon::ids::canonical(&id)),
                    Some(body.clone()),
                )
                .await
            }
            "groups_update_good.json" => {
                let base = read(&root.join("clients/dcos-cli/groups_good.json"));
                assert_eq!(sim.post("/v2/groups", base).await.0, 201);
                sim.wait_deployments_done().await;
                sim.req(Method::PUT, "/v2/groups/test-group", Some(body.clone()))
                    .await
            }
            "app_patch.json" => {
                assert_eq!(
                    sim.post("/v2/apps", json!({"id": "/foo", "cmd": "sleep 1"}))
                        .await
                        .0,
                    201
                );
                sim.wait_deployments_done().await;
                sim.req(Method::PATCH, "/v2/apps/foo", Some(body.clone()))
                    .await
            }
            "apps_patch.json" => {
                let create = read(&root.join("v1.10/api/v2/examples/apps_create.json"));
                assert_eq!(sim.put("/v2/apps", create).await.0, 200);
                sim.wait_deployments_done().await;
                sim.req(Method::PATCH, "/v2/apps", Some(body.clone())).await
            }
            _ if body.is_array() => sim.req(Method::PUT, "/v2/apps", Some(body.clone())).await,
            _ if is_group(&body) => {
                sim.req(Method::POST, "/v2/groups", Some(body.clone()))
                    .await
            }
            _ => sim.req(Method::POST, "/v2/apps", Some(body.clone())).await,
        };
        if let Some((_, why)) = REJECTED.iter().find(|(f, _)| *f == rel) {
            assert!(
                (400..500).contains(&status),
                "{rel} ({why}) must be rejected, got {status}: {resp}"
            );
            assert!(resp["message"].is_string(), "{rel}: error body {resp}");
            if status == 422 {
                assert!(
                    resp["details"].as_array().is_some_and(|d| !d.is_empty()),
                    "{rel}: {resp}"
                );
            }
            checked += 1;
            continue;
        }
        assert!(
            status == 200 || status == 201,
            "{rel} rejected with {status}: {resp}"
        );
        sim.wait_deployments_done().await;
        let apps = all_apps(&sim).await;
        assert!(!apps.is_empty(), "{rel}: no app stored");
        for app in &apps {
            assert_canonical(app, &rel);
        }
        if body.is_object() && !is_group(&body) && body.get("id").is_some() {
            let id = pacer::marathon::ids::canonical(body["id"].as_str().unwrap());
            let app = apps
                .iter()
                .find(|a| a["id"] == id.as_str())
                .unwrap_or_else(|| panic!("{rel}: {id} not stored"));
            if !name.contains("update") && !name.contains("patch") {
                assert_kept(&body, app, &rel);
            } else {
                assert_eq!(app["instances"], body["instances"], "{rel}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} examples found");
}

#[tokio::test]
async fn bogus_docker_network_is_rejected_like_the_dcos_cli_expects() {
    let root = shared_api_dir();
    let sim = Sim::start();
    let (s, v) = sim
        .post(
            "/v2/apps",
            read(&root.join("clients/dcos-cli/apps_app_add_400.json")),
        )
        .await;
    assert!((400..500).contains(&s), "{s}");
    assert_eq!(v["details"][0]["path"], "/container/docker/network");
}

/// Same JSON kind (ignoring ids/timestamps, which are compared by type only).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Fields of old Marathon responses that 1.10 no longer writes (SEMANTICS §5/§9).
const GONE_IN_1_10: [&str; 6] = [
    "ports",
    "uris",
    "storeUrls",
    "ipAddress",
    "taskId",
    "tasksStats",
];

/// Every field of `canned` that 1.10 still writes exists in `ours` with the same kind.
fn assert_shape(canned: &Value, ours: &Value, at: &str) {
    match (canned, ours) {
        (Value::Object(c), Value::Object(o)) => {
            for (k, cv) in c {
                let empty = cv.is_null()
                    || cv.as_array().is_some_and(|a| a.is_empty())
                    || cv.as_object().is_some_and(|m| m.is_empty());
                if empty || GONE_IN_1_10.contains(&k.as_str()) {
                    continue;
                }
                let ov = o
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}/{k} missing; ours: {ours}"));
                assert_eq!(kind(cv), kind(ov), "{at}/{k}: {cv} vs {ov}");
                assert_shape(cv, ov, &format!("{at}/{k}"));
            }
        }
        (Value::Array(c), Value::Array(o)) => {
            if let (Some(c0), Some(o0)) = (c.first(), o.first()) {
                assert_shape(c0, o0, &format!("{at}/0"));
            }
        }
        _ => assert_eq!(kind(canned), kind(ours), "{at}"),
    }
}

fn canned(methods: &[serde_yaml::Value], uri: &str, method: &str) -> Value {
    let entry = methods
        .iter()
        .find(|m| {
            m["uri"].as_str() == Some(uri)
                && m["method"].as_str() == Some(method)
                && m.get("scope").is_none()
        })
        .unwrap_or_else(|| panic!("no canned {method} {uri}"));
    let text = entry["content"].as_str().expect("content");
    serde_json::from_str(text).unwrap_or(Value::String(text.to_string()))
}

#[tokio::test]
async fn responses_have_the_shape_of_go_marathons_canned_responses() {
    let root = shared_api_dir();
    let text = std::fs::read_to_string(root.join("clients/go-marathon/methods.yml")).unwrap();
    let methods: Vec<serde_yaml::Value> = serde_yaml::from_str(&text).expect("methods.yml parses");
    let sim = Sim::start_with(&["--task-start-delay-ms", "0", "--task-healthy-delay-ms", "0"]);
    // The canned app, as a request (the 1.x-only and AppInfo fields drop out on normalisation).
    let mut app = canned(&methods, "/v2/apps/fake-app", "GET")["app"].clone();
    for k in [
        "args",
        "user",
        "residency",
        "lastTaskFailure",
        "tasks",
        "deployments",
        "tasksRunning",
        "tasksStaged",
        "version",
        "storeUrls",
    ] {
        app.as_object_mut().unwrap().remove(k);
    }
    app["healthChecks"][0]
        .as_object_mut()
        .unwrap()
        .remove("command");
    let (s, created) = sim.post("/v2/apps", app).await;
    assert_eq!(s, 201, "{created}");
    let post_canned = canned(&methods, "/v2/apps", "POST");
    for k in [
        "id",
        "deployments",
        "instances",
        "cpus",
        "mem",
        "backoffFactor",
        "upgradeStrategy",
    ] {
        assert_eq!(kind(&post_canned[k]), kind(&created[k]), "POST echo {k}");
    }
    sim.wait_deployments_done().await;
    // The fake-app is killed once so lastTaskFailure exists, as in the canned GET.
    let (_, tasks) = sim.get("/v2/apps/fake-app/tasks").await;
    let tid = tasks["tasks"][0]["id"].as_str().unwrap().to_string();
    sim.post(&format!("/_sim/tasks/{tid}/fail"), json!({}))
        .await;
    super::wait_until("replacement", std::time::Duration::from_secs(5), || async {
        sim.get("/v2/apps/fake-app").await.1["app"]["tasksHealthy"] == 2
    })
    .await;

    let (_, got) = sim.get("/v2/apps/fake-app").await;
    let mut want = canned(&methods, "/v2/apps/fake-app", "GET");
    // 1.10 reports the service port it assigned, and health results per instance.
    want["app"]["tasks"][0]["healthCheckResults"][0]
        .as_object_mut()
        .unwrap()
        .remove("taskId");
    // Not sent (1.10 only accepts residency with persistent volumes).
    want["app"].as_object_mut().unwrap().remove("residency");
    assert_shape(&want, &got, "GET /v2/apps/fake-app");

    for (uri, method) in [
        ("/v2/apps", "GET"),
        ("/v2/tasks", "GET"),
        ("/v2/apps/fake-app/versions", "GET"),
        ("/v2/info", "GET"),
    ] {
        let (s, got) = sim.get(uri).await;
        assert_eq!(s, 200, "{uri}");
        let mut want = canned(&methods, uri, method);
        if uri == "/v2/apps" {
            // The canned list holds differently configured apps; compare the envelope and AppInfo counters.
            want = json!({"apps": [{"id": "", "tasksRunning": 0, "tasksStaged": 0, "deployments": [{"id": ""}], "version": ""}]});
            sim.put("/_sim/settings", json!({"taskStartDelayMs": 600000}))
                .await;
            sim.put("/v2/apps/fake-app", json!({"instances": 3})).await;
            let (_, g) = sim.get(uri).await;
            assert_shape(&want, &g, uri);
            continue;
        }
        if uri == "/v2/info" {
            // The canned answer is from 0.7; compare with 1.10's own example instead
            // (HTTP callback subscriptions, `event_subscriber`, are gone since 1.7).
            want = read(&root.join("v1.10/api/v2/examples/info.json"));
            // Flags the example sets but a default Marathon leaves unset answer null.
            let unset: Vec<String> = got["marathon_config"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone())
                .collect();
            for k in unset {
                want["marathon_config"].as_object_mut().unwrap().remove(&k);
            }
        }
        if uri == "/v2/tasks" {
            want["tasks"][0]["healthCheckResults"][0]
                .as_object_mut()
                .unwrap()
                .remove("taskId");
        }
        assert_shape(&want, &got, uri);
    }
    let resp = sim.http.get(sim.u("/ping")).send().await.unwrap();
    assert_eq!(
        resp.text().await.unwrap().trim(),
        canned(&methods, "/ping", "GET").as_str().unwrap().trim()
    );
    let (s, v) = sim.delete("/v2/apps/fake-app?force=true").await;
    assert_eq!(s, 200);
    assert_shape(
        &canned(&methods, "/v2/apps/fake-app?force=true", "DELETE"),
        &v,
        "DELETE",
    );
}

#[tokio::test]
async fn deployments_list_matches_the_raml_example_shape() {
    let root = shared_api_dir();
    let example = read(&root.join("v1.10/api/v2/examples/deployments.json"));
    let result_example = read(&root.join("v1.10/api/v2/examples/deployments_result.json"));
    let sim = Sim::start();
    sim.slow_tasks().await;
    let (_, r) = sim.put("/v2/apps/foo", json!({"cmd": "x"})).await;
    assert_shape(&result_example, &r, "deploymentResult");
    let (_, got) = sim.get("/v2/deployments").await;
    let mut want = example.clone();
    // Pods are not simulated; the step/action shape is what matters.
    want[0]["steps"] = json!([{"actions": [{"action": "", "app": ""}]}]);
    want[0]["currentActions"][0]["readinessCheckResults"] = json!([]);
    assert_shape(&want, &got, "/v2/deployments");
    assert_eq!(
        got[0]["currentStep"], 2,
        "1-based: StartApplication done, ScaleApplication running"
    );
    assert_eq!(got[0]["totalSteps"], 2);
}

#[tokio::test]
async fn task_lists_match_the_raml_example_shapes() {
    let root = shared_api_dir();
    let sim = Sim::start();
    sim.post(
        "/v2/apps",
        json!({"id": "/tools/docker/registry", "cmd": "x", "instances": 2}),
    )
    .await;
    sim.wait_deployments_done().await;
    for (example, uri) in [
        ("tasks.json", "/v2/tasks"),
        ("app_tasks.json", "/v2/apps/tools/docker/registry/tasks"),
    ] {
        let mut want = read(&root.join("v1.10/api/v2/examples").join(example));
        // Fault-domain fields appear only when agents report a region/zone.
        for t in want["tasks"].as_array_mut().unwrap() {
            let t = t.as_object_mut().unwrap();
            t.remove("region");
            t.remove("zone");
        }
        let (s, got) = sim.get(uri).await;
        assert_eq!(s, 200);
        assert_eq!(got["tasks"].as_array().unwrap().len(), 2, "{uri}");
        assert_shape(&want, &got, uri);
    }
    let (_, running) = sim.get("/v2/tasks?status=running").await;
    assert_eq!(running["tasks"].as_array().unwrap().len(), 2);
    let (_, staging) = sim.get("/v2/tasks?status=staging").await;
    assert_eq!(
        staging,
        json!({"tasks": []}),
        "as go-marathon's canned answer"
    );
}
