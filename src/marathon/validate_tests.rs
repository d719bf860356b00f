//! Tests of app validation.

use super::*;
use serde_json::json;

fn paths(app: Value) -> Vec<(String, Vec<String>)> {
    validate_app(&app)
        .into_iter()
        .map(|v| (v.path, v.errors))
        .collect()
}

#[test]
fn minimal_app_is_valid() {
    assert!(validate_app(&json!({"id": "/a", "cmd": "sleep 1"})).is_empty());
    assert!(
        validate_app(&json!({"id": "a/b", "container": {"docker": {"image": "x"}}})).is_empty()
    );
}

#[test]
fn path_ids() {
    assert!(validate_path_id("/prod/web").is_ok());
    assert!(validate_path_id("web").is_ok());
    assert!(validate_path_id("/").is_err());
    assert!(validate_path_id("").is_err());
    assert!(validate_path_id("/Prod").is_err());
    assert!(validate_path_id("/a/restart").is_err());
    assert!(validate_path_id("/a/tasks").is_err());
    assert!(validate_path_id("/restart/a").is_ok());
}

#[test]
fn cmd_args_container() {
    let v = paths(json!({"id": "/a"}));
    assert_eq!(
        v,
        vec![(String::new(), vec![CMD_ARGS_CONTAINER.to_string()])]
    );
    let v = paths(json!({"id": "/a", "cmd": "x", "args": ["y"]}));
    assert_eq!(v[0].0, "");
    assert!(paths(json!({"id": "/a", "args": ["y"]})).is_empty());
    assert_eq!(paths(json!({"id": "/a", "cmd": ""}))[0].0, "/cmd");
}

#[test]
fn ranges() {
    let v = paths(
        json!({"id": "/a", "cmd": "x", "cpus": -1, "mem": -5, "instances": -1,
        "upgradeStrategy": {"minimumHealthCapacity": 1.5, "maximumOverCapacity": -0.1}}),
    );
    let p: Vec<&str> = v.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        p,
        [
            "/cpus",
            "/instances",
            "/mem",
            "/upgradeStrategy/maximumOverCapacity",
            "/upgradeStrategy/minimumHealthCapacity"
        ]
    );
    assert_eq!(v[4].1, vec!["is greater than 1"]);
    assert_eq!(v[3].1, vec!["is less than 0"]);
}

#[test]
fn secrets_must_be_declared() {
    let v = paths(json!({"id": "/a", "cmd": "x", "env": {"PW": {"secret": "pw"}}}));
    assert_eq!(
        v,
        vec![(
            "/env/PW".into(),
            vec!["references an undefined secret".into()]
        )]
    );
    assert!(
        paths(
            json!({"id": "/a", "cmd": "x", "env": {"PW": {"secret": "pw"}},
        "secrets": {"pw": {"source": "/db/pw"}}})
        )
        .is_empty()
    );
}

#[test]
fn constraints_and_ports() {
    let v = paths(json!({"id": "/a", "cmd": "x",
        "constraints": [["hostname", "UNIQUE"], ["rack", "NEAR"], ["x", "MAX_PER", "y"]],
        "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0, "name": "http"}, {"name": "Bad_"}]}));
    let p: Vec<&str> = v.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        p,
        [
            "/constraints/1",
            "/constraints/2",
            "/portDefinitions",
            "/portDefinitions/2/name"
        ]
    );
}

#[test]
fn bogus_docker_network_rejected() {
    let v = paths(
        json!({"id": "/test", "cmd": "ls", "container": {"type": "DOCKER",
        "docker": {"image": "busybox", "network": "bogus"}}}),
    );
    assert_eq!(v[0].0, "/container/docker/network");
}

#[test]
fn health_checks() {
    let v = paths(json!({"id": "/a", "cmd": "x", "healthChecks": [
        {"protocol": "HTTP", "path": "h", "intervalSeconds": 10, "timeoutSeconds": 10},
        {"protocol": "GOPHER"}, {"protocol": "COMMAND"}, {"gracePeriodSeconds": -1}]}));
    let p: Vec<&str> = v.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        p,
        [
            "/healthChecks/0/path",
            "/healthChecks/1/protocol",
            "/healthChecks/2/command",
            "/healthChecks/3/gracePeriodSeconds"
        ]
    );
}

#[test]
fn never_panics_on_odd_input() {
    for v in [
        json!(null),
        json!([]),
        json!({"id": 5, "cpus": "x", "env": [], "constraints": [[1]],
        "container": 3, "healthChecks": [1], "portDefinitions": [2], "upgradeStrategy": []}),
    ] {
        assert!(!validate_app(&v).is_empty());
    }
}
