//! Table-driven tests, one table per normalisation rule. Each case is
//! (name, desired, live, ignore, expected changed paths); `[]` = in sync.

use super::*;
use serde_json::json;

type Case = (
    &'static str,
    Value,
    Value,
    Vec<&'static str>,
    Vec<&'static str>,
);

fn check(cases: Vec<Case>) {
    for (name, desired, live, ignore, expected) in cases {
        let ignore: Vec<String> = ignore.into_iter().map(String::from).collect();
        let paths = changed_paths(&desired, &live, &ignore);
        assert_eq!(paths, expected, "{name}: changed paths");
        let diff = app_diff(&desired, &live, &ignore);
        assert_eq!(
            diff.is_none(),
            expected.is_empty(),
            "{name}: app_diff {diff:?}"
        );
        // Normalisation is symmetric enough that comparing a side with
        // itself never shows a diff.
        assert_eq!(
            app_diff(&live, &live, &ignore),
            None,
            "{name}: live vs live"
        );
        assert_eq!(
            app_diff(&desired, &desired, &ignore),
            None,
            "{name}: desired vs desired"
        );
    }
}

/// What Marathon 1.10 answers on GET for `{"id": "/prod/web", "cmd": "./serve"}`.
fn live_1_10() -> Value {
    json!({
        "id": "/prod/web", "cmd": "./serve", "cpus": 1, "mem": 128, "disk": 0, "gpus": 0,
        "instances": 1, "executor": "", "backoffSeconds": 1, "backoffFactor": 1.15,
        "maxLaunchDelaySeconds": 300, "labels": {}, "killSelection": "YOUNGEST_FIRST",
        "role": "*", "networks": [{"mode": "host"}], "requirePorts": false,
        "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
        "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
        "portDefinitions": [{"port": 10001, "name": "default", "protocol": "tcp"}],
        "version": "2026-11-25T10:00:00.000Z",
        "versionInfo": {"lastScalingAt": "2026-11-25T10:00:00.000Z",
            "lastConfigChangeAt": "2026-11-25T10:00:00.000Z"},
        "tasksStaged": 0, "tasksRunning": 1, "tasksHealthy": 0, "tasksUnhealthy": 0,
        "deployments": [],
        "tasks": [{"id": "prod_web.instance-1._app.1", "state": "TASK_RUNNING"}],
        "lastTaskFailure": {"message": "oops"},
        "readinessCheckResults": [],
        "tasksStats": {"startedAfterLastScaling": {"stats": {"counts": {"running": 1}}}}
    })
}

fn minimal() -> Value {
    json!({"id": "/prod/web", "cmd": "./serve"})
}

fn with(mut v: Value, patch: Value) -> Value {
    for (k, x) in patch.as_object().unwrap() {
        if x.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    v
}

#[test]
fn status_fields_and_defaults() {
    check(vec![
        ("identical", minimal(), minimal(), vec![], vec![]),
        (
            "1.10 GET of the minimal app",
            minimal(),
            live_1_10(),
            vec![],
            vec![],
        ),
        (
            "defaults written out in desired",
            with(
                minimal(),
                json!({"cpus": 1, "mem": 128, "instances": 1, "labels": {},
                "upgradeStrategy": {"minimumHealthCapacity": 1}, "networks": [{"mode": "host"}]}),
            ),
            live_1_10(),
            vec![],
            vec![],
        ),
        (
            "a non-default on one side",
            with(minimal(), json!({"backoffSeconds": 5})),
            live_1_10(),
            vec![],
            vec!["/backoffSeconds"],
        ),
        (
            "explicit empty portDefinitions is not the default port",
            with(minimal(), json!({"portDefinitions": []})),
            live_1_10(),
            vec![],
            vec!["/portDefinitions"],
        ),
    ]);
}

#[test]
fn null_absent_and_empty() {
    check(vec![
        (
            "nulls and empties in desired",
            with(
                minimal(),
                json!({"env": {}, "constraints": [], "healthChecks": [],
                "dependencies": [], "acceptedResourceRoles": [], "fetch": [],
                "secrets": {}, "readinessChecks": []}),
            ),
            live_1_10(),
            vec![],
            vec![],
        ),
        (
            "nulls in live",
            minimal(),
            {
                let mut l = live_1_10();
                for k in [
                    "args",
                    "user",
                    "container",
                    "acceptedResourceRoles",
                    "residency",
                ] {
                    l[k] = Value::Null;
                }
                l["upgradeStrategy"]["extra"] = Value::Null;
                l
            },
            vec![],
            vec![],
        ),
        (
            "empty nested maps",
            with(
                minimal(),
                json!({"portDefinitions": [{"port": 0, "labels": {}}]}),
            ),
            with(
                live_1_10(),
                json!({"portDefinitions": [{"port": 10001, "protocol": "tcp"}]}),
            ),
            vec![],
            vec![],
        ),
        (
            "an env var that is set is not empty",
            with(minimal(), json!({"env": {"A": ""}})),
            live_1_10(),
            vec![],
            vec!["/env/A"],
        ),
    ]);
}

#[test]
fn marathon_1_4_shapes() {
    // Marathon 1.4's GET (shared/marathon-api/v1.4/api/v2/examples/app_list.json).
    let live_1_4: Value = serde_json::from_str(
        r#"{
        "id": "/myapp", "cmd": "env && sleep 60", "args": null, "user": null,
        "env": {"LD_LIBRARY_PATH": "/usr/local/lib/myLib"}, "instances": 3, "cpus": 0.1,
        "mem": 5.0, "disk": 0, "executor": "", "constraints": [["hostname", "UNIQUE", ""]],
        "uris": ["https://example.com/README.md"],
        "fetch": [{"uri": "https://example.com/README.md", "extract": true, "executable": false,
            "cache": false}],
        "storeUrls": [], "ports": [10013, 10015],
        "portDefinitions": [{"port": 10013, "protocol": "tcp", "labels": {}},
            {"port": 10015, "protocol": "tcp", "labels": {}}],
        "requirePorts": false, "backoffSeconds": 1, "backoffFactor": 1.15,
        "maxLaunchDelaySeconds": 3600, "container": null, "healthChecks": [],
        "readinessChecks": [], "dependencies": [], "secrets": {},
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
        "unreachableStrategy": {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600},
        "killSelection": "YOUNGEST_FIRST", "gpus": 0, "labels": {},
        "acceptedResourceRoles": null, "ipAddress": null, "residency": null,
        "taskKillGracePeriodSeconds": null,
        "version": "2015-09-25T15:13:48.343Z",
        "versionInfo": {"lastScalingAt": "2015-09-25T15:13:48.343Z",
            "lastConfigChangeAt": "2015-09-25T15:13:48.343Z"},
        "tasksStaged": 0, "tasksRunning": 0, "tasksHealthy": 0, "tasksUnhealthy": 0,
        "deployments": [{"id": "9538079c-3898-4e32-aa31-799bf9097f74"}]
    }"#,
    )
    .unwrap();
    let desired = json!({"id": "/myapp", "cmd": "env && sleep 60",
        "env": {"LD_LIBRARY_PATH": "/usr/local/lib/myLib"}, "instances": 3, "cpus": 0.1, "mem": 5,
        "constraints": [["hostname", "UNIQUE"]], "fetch": [{"uri": "https://example.com/README.md"}],
        "portDefinitions": [{"port": 0}, {"port": 0}]});
    // The default port, unnamed in 1.4.
    let live_default_port = with(
        live_1_10(),
        json!({"portDefinitions": [{"port": 10001, "protocol": "tcp"}], "role": Value::Null,
            "networks": Value::Null, "maxLaunchDelaySeconds": 3600}),
    );
    // A 1.4 Docker bridge app: networking under `container.docker`, and
    // `ports`/`portDefinitions` mirroring the service ports.
    let live_1_4_bridge: Value = serde_json::from_str(
        r#"{
        "id": "/b", "cmd": null, "args": null, "user": null, "env": {}, "instances": 1,
        "cpus": 1, "mem": 128, "disk": 0, "gpus": 0, "executor": "", "constraints": [],
        "uris": [], "fetch": [], "storeUrls": [], "backoffSeconds": 1, "backoffFactor": 1.15,
        "maxLaunchDelaySeconds": 3600,
        "container": {"type": "DOCKER", "volumes": [], "docker": {"image": "nginx",
            "network": "BRIDGE", "portMappings": [{"containerPort": 80, "hostPort": 0,
            "servicePort": 10001, "protocol": "tcp", "labels": {}}], "privileged": false,
            "parameters": [], "forcePullImage": false}},
        "ports": [10001], "portDefinitions": [{"port": 10001, "protocol": "tcp", "labels": {}}],
        "requirePorts": false, "healthChecks": [], "readinessChecks": [], "dependencies": [],
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
        "unreachableStrategy": {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600},
        "killSelection": "YOUNGEST_FIRST", "labels": {}, "ipAddress": null, "secrets": {},
        "residency": null, "taskKillGracePeriodSeconds": null, "version": "2017-01-01T00:00:00.000Z"
    }"#,
    )
    .unwrap();
    let bridge_1_10 = json!({"id": "/b", "networks": [{"mode": "container/bridge"}],
        "container": {"docker": {"image": "nginx"},
            "portMappings": [{"containerPort": 80, "hostPort": 0}]}});
    let bridge_1_4_style = json!({"id": "/b", "container": {"type": "DOCKER",
        "docker": {"image": "nginx", "network": "BRIDGE",
            "portMappings": [{"containerPort": 80, "hostPort": 0, "servicePort": 0}]}}});
    check(vec![
        (
            "1.4 bridge app, 1.10 desired",
            bridge_1_10.clone(),
            live_1_4_bridge.clone(),
            vec![],
            vec![],
        ),
        (
            "1.4 bridge app, 1.4 desired",
            bridge_1_4_style,
            live_1_4_bridge.clone(),
            vec![],
            vec![],
        ),
        (
            "1.4 bridge app, another container port",
            {
                let mut d = bridge_1_10;
                d["container"]["portMappings"][0]["containerPort"] = json!(8080);
                d
            },
            live_1_4_bridge,
            vec![],
            vec!["/container/portMappings"],
        ),
        (
            "1.4 app list entry",
            desired.clone(),
            live_1_4.clone(),
            vec![],
            vec![],
        ),
        (
            "uris in desired",
            with(
                desired.clone(),
                json!({"fetch": Value::Null,
                "uris": ["https://example.com/README.md"]}),
            ),
            live_1_4.clone(),
            vec![],
            vec![],
        ),
        (
            "1.4 default port",
            minimal(),
            live_default_port,
            vec![],
            vec![],
        ),
        (
            "a real change on 1.4",
            with(desired.clone(), json!({"mem": 64})),
            live_1_4.clone(),
            vec![],
            vec!["/mem"],
        ),
        (
            "desired that sets maxLaunchDelaySeconds is compared",
            with(desired, json!({"maxLaunchDelaySeconds": 300})),
            live_1_4,
            vec![],
            vec!["/maxLaunchDelaySeconds"],
        ),
    ]);
}

#[test]
fn sets_are_compared_without_order() {
    let hc_a = json!({"protocol": "HTTP", "path": "/a"});
    let hc_b = json!({"protocol": "COMMAND", "command": {"value": "true"}});
    check(vec![
        (
            "constraints",
            with(
                minimal(),
                json!({"constraints": [["rack", "GROUP_BY", "3"], ["hostname", "UNIQUE"]]}),
            ),
            with(
                live_1_10(),
                json!({"constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"]]}),
            ),
            vec![],
            vec![],
        ),
        (
            "health checks",
            with(
                minimal(),
                json!({"healthChecks": [hc_a.clone(), hc_b.clone()]}),
            ),
            with(
                live_1_10(),
                json!({"healthChecks": [
                {"protocol": "COMMAND", "command": {"value": "true"}, "gracePeriodSeconds": 300,
                 "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                 "delaySeconds": 15},
                {"protocol": "HTTP", "path": "/a", "portIndex": 0, "gracePeriodSeconds": 300.0,
                 "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                 "delaySeconds": 15, "ipProtocol": "IPv4", "ignoreHttp1xx": false}]}),
            ),
            vec![],
            vec![],
        ),
        (
            "dependencies, relative ids",
            with(
                minimal(),
                json!({"dependencies": ["/prod/db", "prod/cache"]}),
            ),
            with(
                live_1_10(),
                json!({"dependencies": ["/prod/cache", "/prod/db"]}),
            ),
            vec![],
            vec![],
        ),
        (
            "accepted resource roles",
            with(
                minimal(),
                json!({"acceptedResourceRoles": ["slave_public", "*"]}),
            ),
            with(
                live_1_10(),
                json!({"acceptedResourceRoles": ["*", "slave_public"]}),
            ),
            vec![],
            vec![],
        ),
        (
            "a changed constraint",
            with(minimal(), json!({"constraints": [["hostname", "UNIQUE"]]})),
            with(
                live_1_10(),
                json!({"constraints": [["hostname", "CLUSTER", "a"]]}),
            ),
            vec![],
            vec!["/constraints"],
        ),
        (
            "order still matters elsewhere (args)",
            with(minimal(), json!({"cmd": Value::Null, "args": ["a", "b"]})),
            with(live_1_10(), json!({"cmd": Value::Null, "args": ["b", "a"]})),
            vec![],
            vec!["/args"],
        ),
    ]);
}

#[test]
fn numbers_compare_numerically() {
    check(vec![
        (
            "floats and integers",
            with(
                minimal(),
                json!({"cpus": 1.0, "mem": 50, "disk": 0.0, "instances": 2,
                "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}}),
            ),
            with(
                live_1_10(),
                json!({"cpus": 1, "mem": 50.0, "disk": 0, "instances": 2.0,
                "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}}),
            ),
            vec![],
            vec![],
        ),
        (
            "a different fraction",
            with(minimal(), json!({"cpus": 0.25})),
            with(live_1_10(), json!({"cpus": 0.5})),
            vec![],
            vec!["/cpus"],
        ),
        (
            "a number is not its string",
            with(minimal(), json!({"mem": "128"})),
            live_1_10(),
            vec![],
            vec!["/mem"],
        ),
    ]);
}

#[test]
fn service_ports_zero_match_assigned_ones() {
    let bridge = |service_port: u64| {
        json!({"id": "/prod/web", "networks": [{"mode": "container/bridge"}],
            "container": {"type": "DOCKER", "docker": {"image": "nginx"},
                "portMappings": [{"containerPort": 80, "hostPort": 0, "servicePort": service_port,
                    "name": "http"}]}})
    };
    check(vec![
        (
            "portDefinitions",
            with(
                minimal(),
                json!({"portDefinitions": [{"port": 0, "name": "http"}, {"port": 0}]}),
            ),
            with(
                live_1_10(),
                json!({"portDefinitions": [{"port": 10004, "name": "http",
                "protocol": "tcp"}, {"port": 10005, "protocol": "tcp"}]}),
            ),
            vec![],
            vec![],
        ),
        (
            "a fixed port must match",
            with(minimal(), json!({"portDefinitions": [{"port": 10009}]})),
            with(
                live_1_10(),
                json!({"portDefinitions": [{"port": 10001, "protocol": "tcp"}]}),
            ),
            vec![],
            vec!["/portDefinitions"],
        ),
        (
            "one more port",
            with(
                minimal(),
                json!({"portDefinitions": [{"port": 0}, {"port": 0}]}),
            ),
            with(
                live_1_10(),
                json!({"portDefinitions": [{"port": 10001, "protocol": "tcp"}]}),
            ),
            vec![],
            vec!["/portDefinitions"],
        ),
        ("portMappings", bridge(0), bridge(10007), vec![], vec![]),
        (
            "fixed servicePort",
            bridge(10008),
            bridge(10007),
            vec![],
            vec!["/container/portMappings"],
        ),
        (
            "default portMappings",
            json!({"id": "/prod/web", "networks": [{"mode": "container/bridge"}],
                "container": {"docker": {"image": "nginx"}}}),
            json!({"id": "/prod/web", "networks": [{"mode": "container/bridge"}],
                "container": {"type": "DOCKER", "volumes": [], "docker": {"image": "nginx",
                    "forcePullImage": false, "privileged": false, "parameters": []},
                    "portMappings": [{"containerPort": 0, "hostPort": 0, "servicePort": 10002,
                        "protocol": "tcp", "name": "default", "labels": {}}]}}),
            vec![],
            vec![],
        ),
    ]);
}

#[test]
fn ignore_pointers_and_the_commit_label() {
    let labelled = |commit: &str, hash: &str| {
        with(
            live_1_10(),
            json!({"labels": {"pacer.commit": commit, "pacer.config-hash": hash, "team": "a"}}),
        )
    };
    check(vec![
        (
            "ignored instances",
            with(minimal(), json!({"instances": 2})),
            with(live_1_10(), json!({"instances": 7})),
            vec!["/instances"],
            vec![],
        ),
        (
            "ignored label, escaped pointer",
            with(minimal(), json!({"labels": {"a/b": "1"}})),
            with(live_1_10(), json!({"labels": {"a/b": "2"}})),
            vec!["/labels/a~1b"],
            vec![],
        ),
        (
            "ignored env var absent in desired",
            minimal(),
            with(live_1_10(), json!({"env": {"INJECTED": "x"}})),
            vec!["/env/INJECTED"],
            vec![],
        ),
        (
            "an ignore pointer that matches nothing",
            minimal(),
            live_1_10(),
            vec!["/nope/deeper", "/portDefinitions/9/port", "no-slash"],
            vec![],
        ),
        (
            "other fields still count",
            with(minimal(), json!({"instances": 2, "cmd": "./serve --v2"})),
            with(live_1_10(), json!({"instances": 7})),
            vec!["/instances"],
            vec!["/cmd"],
        ),
        (
            "pacer.commit changes with every commit",
            with(
                minimal(),
                json!({"labels": {"pacer.commit": "abc", "pacer.config-hash": "1",
                "team": "a"}}),
            ),
            labelled("def", "1"),
            vec![],
            vec![],
        ),
        (
            "pacer.commit absent live",
            with(minimal(), json!({"labels": {"pacer.commit": "abc"}})),
            live_1_10(),
            vec![],
            vec![],
        ),
        (
            "the config hash counts",
            with(
                minimal(),
                json!({"labels": {"pacer.commit": "abc", "pacer.config-hash": "2",
                "team": "a"}}),
            ),
            labelled("abc", "1"),
            vec![],
            vec!["/labels/pacer.config-hash"],
        ),
    ]);
}

#[test]
fn cluster_defaults() {
    check(vec![
        (
            "the group's role",
            minimal(),
            with(live_1_10(), json!({"role": "prod"})),
            vec![],
            vec![],
        ),
        (
            "a role that is set is compared",
            with(minimal(), json!({"role": "*"})),
            with(live_1_10(), json!({"role": "prod"})),
            vec![],
            vec!["/role"],
        ),
        (
            "1.4.0–1.4.8 unreachableStrategy default",
            minimal(),
            with(
                live_1_10(),
                json!({"unreachableStrategy":
                {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600}}),
            ),
            vec![],
            vec![],
        ),
        (
            "a custom unreachableStrategy live is drift",
            minimal(),
            with(
                live_1_10(),
                json!({"unreachableStrategy":
                {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 600}}),
            ),
            vec![],
            vec![
                "/unreachableStrategy/expungeAfterSeconds",
                "/unreachableStrategy/inactiveAfterSeconds",
            ],
        ),
    ]);
}

#[test]
fn real_changes_are_reported_where_they_are() {
    check(vec![
        (
            "cmd",
            with(minimal(), json!({"cmd": "./serve --v2"})),
            live_1_10(),
            vec![],
            vec!["/cmd"],
        ),
        (
            "instances only: a scale",
            with(minimal(), json!({"instances": 3})),
            live_1_10(),
            vec![],
            vec!["/instances"],
        ),
        (
            "an env var",
            with(minimal(), json!({"env": {"A": "1", "B": "2"}})),
            with(live_1_10(), json!({"env": {"A": "1", "B": "3"}})),
            vec![],
            vec!["/env/B"],
        ),
        (
            "an env var added",
            with(minimal(), json!({"env": {"A": "1", "B": "2"}})),
            with(live_1_10(), json!({"env": {"A": "1"}})),
            vec![],
            vec!["/env/B"],
        ),
        (
            "a label removed",
            minimal(),
            with(live_1_10(), json!({"labels": {"team": "a"}})),
            vec![],
            vec!["/labels/team"],
        ),
        (
            "upgrade strategy",
            with(
                minimal(),
                json!({"upgradeStrategy": {"minimumHealthCapacity": 0.5}}),
            ),
            live_1_10(),
            vec![],
            vec!["/upgradeStrategy/minimumHealthCapacity"],
        ),
        (
            "a secret env ref",
            with(
                minimal(),
                json!({"env": {"DB": {"secret": "db"}}, "secrets": {"db": {"source": "a"}}}),
            ),
            with(
                live_1_10(),
                json!({"env": {"DB": {"secret": "db"}}, "secrets": {"db": {"source": "b"}}}),
            ),
            vec![],
            vec!["/secrets/db/source"],
        ),
        (
            "an app that is not there",
            minimal(),
            json!({}),
            vec![],
            // Defaults are filled on both sides: only what the user wrote differs.
            vec!["/cmd", "/id"],
        ),
    ]);
}

#[test]
fn the_diff_is_unified_canonical_json() {
    let d = app_diff(
        &with(
            minimal(),
            json!({"cmd": "./serve --v2", "labels": {"pacer.commit": "abc"}}),
        ),
        &live_1_10(),
        &[],
    )
    .expect("a diff");
    // Live → desired: what applying would change.
    assert!(d.starts_with("--- live\n+++ desired\n"), "{d}");
    assert!(d.contains("-  \"cmd\": \"./serve\",\n"), "{d}");
    assert!(d.contains("+  \"cmd\": \"./serve --v2\",\n"), "{d}");
    assert!(!d.contains("pacer.commit") && !d.contains("tasks"), "{d}");
    // Sorted keys: `backoffFactor` comes before `cmd`.
    let (c, _) = comparable(&minimal(), &live_1_10(), &[]);
    let text = crate::diff::canonical_json(&c);
    assert!(text.find("backoffFactor") < text.find("\"cmd\""));
}

#[test]
fn comparable_returns_both_sides() {
    let (d, l) = comparable(
        &with(minimal(), json!({"instances": 2})),
        &live_1_10(),
        &["/instances".to_string()],
    );
    assert_eq!(d, l);
    assert!(d.get("instances").is_none());
    assert!(l.get("version").is_none() && l.get("tasks").is_none());
    assert_eq!(l["portDefinitions"][0]["port"], 10001);
}

#[test]
fn the_written_digest_survives_marathon_and_not_a_hand_edit() {
    let written = with(minimal(), json!({"labels": {"pacer.commit": "c1"}}));
    let digest = written_digest(&written);
    // As Marathon keeps it: defaults, status fields, an assigned port,
    // the group's role, and 1.4's older defaults.
    let mut live = with(
        live_1_10(),
        json!({"labels": {"pacer.commit": "c1", "pacer.digest": digest}}),
    );
    assert_eq!(written_by_pacer(&live), Some(true));
    for patch in [
        json!({"role": "prod"}),
        json!({"maxLaunchDelaySeconds": 3600}),
        json!({"unreachableStrategy": {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600}}),
        json!({"portDefinitions": [{"port": 10017, "protocol": "tcp"}]}),
        // A scale keeps the labels of the version it scaled.
        json!({"instances": 4}),
        // Empty lists and maps Marathon writes, at any depth.
        json!({"env": {}, "fetch": [], "upgradeStrategy":
            {"maximumOverCapacity": 1, "minimumHealthCapacity": 1, "x": {}}}),
    ] {
        live = with(live, patch.clone());
        assert_eq!(written_by_pacer(&live), Some(true), "{patch}");
    }
    // Changed by hand, pacer's labels copied: not pacer's.
    for patch in [
        json!({"mem": 256}),
        json!({"cmd": "./serve --debug"}),
        json!({"labels": {"pacer.commit": "c1", "pacer.digest": digest, "owner": "me"}}),
    ] {
        assert_eq!(
            written_by_pacer(&with(live.clone(), patch.clone())),
            Some(false),
            "{patch}"
        );
    }
    // Deployed before the label existed: unknown.
    assert_eq!(written_by_pacer(&live_1_10()), None);
}
