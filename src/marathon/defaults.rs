//! The defaults Marathon 1.10 fills in and the fields it omits (SEMANTICS §5).
//!
//! `normalize_app` turns a submitted (or 1.4-shaped) app into the form 1.10
//! writes on `GET`, minus what needs cluster state (service-port assignment,
//! `version`/`versionInfo`, the group's role). It is idempotent, so a diff can
//! normalise both sides.

use serde_json::{Map, Value, json};

use super::ids;

/// Fields only `AppInfo` carries; they are not part of a definition.
pub const APP_INFO_FIELDS: [&str; 9] = [
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "tasks",
    "lastTaskFailure",
    "readinessCheckResults",
    "tasksStats",
];

/// Options that 1.10 omits when unset and arrays/maps marked `omitEmpty`.
const OMIT_WHEN_EMPTY: [&str; 17] = [
    "cmd",
    "args",
    "user",
    "container",
    "constraints",
    "dependencies",
    "env",
    "fetch",
    "healthChecks",
    "readinessChecks",
    "secrets",
    "acceptedResourceRoles",
    "taskKillGracePeriodSeconds",
    "residency",
    "check",
    "executorResources",
    "resourceLimits",
];

fn set_default(o: &mut Map<String, Value>, key: &str, v: Value) {
    if o.get(key).is_none_or(Value::is_null) {
        o.insert(key.to_string(), v);
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Whether the app is resident (persistent local volumes) or uses external
/// volumes: such apps get different upgrade/unreachable defaults.
fn is_resident(o: &Map<String, Value>) -> bool {
    o.get("container")
        .and_then(|c| c.get("volumes"))
        .and_then(Value::as_array)
        .is_some_and(|vs| {
            vs.iter()
                .any(|v| v.get("persistent").is_some() || v.get("external").is_some())
        })
        || o.get("residency").is_some_and(|r| !r.is_null())
}

/// The networking mode after migration: `host`, `container/bridge` or `container`.
pub fn network_mode(app: &Value) -> &str {
    app.get("networks")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .map(|n| n.get("mode").and_then(Value::as_str).unwrap_or("container"))
        .unwrap_or("host")
}

/// Integral floats become integers (`"mem": 50.0` ≡ `"mem": 50`): Marathon
/// versions and clients differ in how they print doubles (SEMANTICS §5).
pub fn canonical_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if n.is_f64()
                && let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(canonical_numbers),
        Value::Object(o) => o.values_mut().for_each(canonical_numbers),
        _ => {}
    }
}

/// Fill 1.10 defaults and canonicalise. Never panics; non-objects are left alone.
pub fn normalize_app(app: &mut Value) {
    canonical_numbers(app);
    let Some(o) = app.as_object_mut() else { return };
    // 1.4 writes `null` for absent options; null ≡ absent.
    o.retain(|_, v| !v.is_null());
    for k in APP_INFO_FIELDS {
        o.remove(k);
    }
    if let Some(Value::String(id)) = o.get("id") {
        let c = ids::canonical(id);
        o.insert("id".into(), Value::String(c));
    }
    if let Some(Value::Array(deps)) = o.get_mut("dependencies") {
        for d in deps.iter_mut() {
            if let Value::String(s) = d {
                *d = Value::String(ids::canonical(s));
            }
        }
        deps.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        deps.dedup();
    }
    migrate_legacy(o);

    set_default(o, "cpus", json!(1));
    set_default(o, "mem", json!(128));
    set_default(o, "disk", json!(0));
    set_default(o, "gpus", json!(0));
    set_default(o, "instances", json!(1));
    set_default(o, "executor", json!(""));
    set_default(o, "backoffSeconds", json!(1));
    set_default(o, "backoffFactor", json!(1.15));
    // 1.4 (and ≤1.7) default was 3600.
    set_default(o, "maxLaunchDelaySeconds", json!(300));
    set_default(o, "labels", json!({}));
    set_default(o, "killSelection", json!("YOUNGEST_FIRST"));
    set_default(o, "role", json!("*"));
    set_default(o, "networks", json!([{"mode": "host"}]));

    let resident = is_resident(o);
    let (mhc, moc) = if resident {
        (json!(0.5), json!(0))
    } else {
        (json!(1), json!(1))
    };
    match o.get_mut("upgradeStrategy") {
        Some(Value::Object(u)) => {
            set_default(u, "minimumHealthCapacity", mhc);
            set_default(u, "maximumOverCapacity", moc);
        }
        _ => {
            o.insert(
                "upgradeStrategy".into(),
                json!({"maximumOverCapacity": moc, "minimumHealthCapacity": mhc}),
            );
        }
    }
    match o.get_mut("unreachableStrategy") {
        Some(Value::Object(u)) => {
            set_default(u, "inactiveAfterSeconds", json!(0));
            set_default(u, "expungeAfterSeconds", json!(0));
        }
        Some(Value::String(_)) => {}
        _ => {
            let v = if resident {
                json!("disabled")
            } else {
                json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
            };
            o.insert("unreachableStrategy".into(), v);
        }
    }

    let mode = network_mode(&Value::Object(o.clone())).to_string();
    if mode == "host" {
        match o.get_mut("portDefinitions") {
            Some(Value::Array(pds)) => {
                for pd in pds.iter_mut() {
                    if let Some(p) = pd.as_object_mut() {
                        set_default(p, "port", json!(0));
                        set_default(p, "protocol", json!("tcp"));
                        if p.get("labels").is_some_and(is_empty) {
                            p.remove("labels");
                        }
                    }
                }
            }
            _ => {
                o.insert(
                    "portDefinitions".into(),
                    json!([{"port": 0, "name": "default", "protocol": "tcp"}]),
                );
            }
        }
        set_default(o, "requirePorts", json!(false));
    } else {
        o.remove("portDefinitions");
        // Forced false for non-host networks (AppNormalization).
        o.insert("requirePorts".into(), json!(false));
    }

    if let Some(Value::Object(c)) = o.get_mut("container") {
        normalize_container(c, &mode);
    }
    let has_ports = app_has_ports(o, &mode);
    if let Some(Value::Array(hcs)) = o.get_mut("healthChecks") {
        for hc in hcs.iter_mut() {
            if let Some(h) = hc.as_object_mut() {
                normalize_health_check(h, has_ports);
            }
        }
    }
    if let Some(Value::Array(rcs)) = o.get_mut("readinessChecks") {
        for rc in rcs.iter_mut() {
            if let Some(r) = rc.as_object_mut() {
                set_default(r, "name", json!("readinessCheck"));
                set_default(r, "protocol", json!("HTTP"));
                set_default(r, "path", json!("/"));
                set_default(r, "portName", json!("http-api"));
                set_default(r, "intervalSeconds", json!(30));
                set_default(r, "timeoutSeconds", json!(10));
                set_default(r, "httpStatusCodesForReady", json!([200]));
                set_default(r, "preserveLastResponse", json!(false));
            }
        }
    }
    if let Some(Value::Array(f)) = o.get_mut("fetch") {
        for a in f.iter_mut() {
            if let Some(a) = a.as_object_mut() {
                set_default(a, "extract", json!(true));
                set_default(a, "executable", json!(false));
                set_default(a, "cache", json!(false));
            }
        }
    }
    // Set-typed fields (`uniqueItems`): Marathon keeps no order, so a
    // canonical order lets two normalised apps compare equal.
    for k in ["constraints", "acceptedResourceRoles", "healthChecks"] {
        if let Some(Value::Array(items)) = o.get_mut(k) {
            items.sort_by_cached_key(|v| v.to_string());
            items.dedup();
        }
    }
    for k in OMIT_WHEN_EMPTY {
        if o.get(k).is_some_and(is_empty) {
            o.remove(k);
        }
    }
}

fn app_has_ports(o: &Map<String, Value>, mode: &str) -> bool {
    let list = if mode == "host" {
        o.get("portDefinitions")
    } else {
        o.get("container").and_then(|c| c.get("portMappings"))
    };
    list.and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// 1.4-era fields that 1.10 migrates on read: `uris`, `ports`, `ipAddress`,
/// `container.docker.network`, `container.docker.portMappings`.
fn migrate_legacy(o: &mut Map<String, Value>) {
    if let Some(Value::Array(uris)) = o.remove("uris")
        && !uris.is_empty()
        && o.get("fetch").is_none_or(is_empty)
    {
        let fetch: Vec<Value> = uris
            .into_iter()
            .filter_map(|u| u.as_str().map(|u| json!({"uri": u})))
            .collect();
        o.insert("fetch".into(), Value::Array(fetch));
    }
    if let Some(Value::Array(ports)) = o.remove("ports")
        && o.get("portDefinitions").is_none()
    {
        let pds: Vec<Value> = ports
            .into_iter()
            .map(|p| json!({"port": p, "protocol": "tcp"}))
            .collect();
        o.insert("portDefinitions".into(), Value::Array(pds));
    }
    let ip = o.remove("ipAddress");
    let mut docker_net: Option<String> = None;
    if let Some(Value::Object(c)) = o.get_mut("container") {
        c.retain(|_, v| !v.is_null());
        let mut moved_mappings = None;
        if let Some(Value::Object(d)) = c.get_mut("docker") {
            docker_net = d
                .remove("network")
                .and_then(|n| n.as_str().map(str::to_string));
            moved_mappings = d.remove("portMappings").filter(|m| !m.is_null());
        }
        if let Some(m) = moved_mappings
            && c.get("portMappings").is_none_or(Value::is_null)
        {
            c.insert("portMappings".into(), m);
        }
    }
    if o.get("networks").is_none() {
        let ip_net = ip
            .as_ref()
            .and_then(|i| i.get("networkName"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let networks = match (docker_net.as_deref(), ip.as_ref()) {
            (Some("BRIDGE"), _) => Some(json!([{"mode": "container/bridge"}])),
            (Some("USER"), _) | (_, Some(Value::Object(_))) => Some(match ip_net {
                Some(n) => json!([{"mode": "container", "name": n}]),
                None => json!([{"mode": "container"}]),
            }),
            (Some("HOST"), _) => Some(json!([{"mode": "host"}])),
            _ => None,
        };
        if let Some(n) = networks {
            o.insert("networks".into(), n);
        }
    }
    if let Some(Value::Array(nets)) = o.get_mut("networks") {
        for n in nets.iter_mut() {
            if let Some(n) = n.as_object_mut() {
                set_default(n, "mode", json!("container"));
                if n.get("labels").is_some_and(is_empty) {
                    n.remove("labels");
                }
            }
        }
    }
}

fn normalize_container(c: &mut Map<String, Value>, mode: &str) {
    set_default(c, "type", json!("DOCKER"));
    set_default(c, "volumes", json!([]));
    if let Some(Value::Object(d)) = c.get_mut("docker") {
        set_default(d, "forcePullImage", json!(false));
        set_default(d, "privileged", json!(false));
        set_default(d, "parameters", json!([]));
    }
    if mode == "host" {
        c.remove("portMappings");
        return;
    }
    let bridge = mode == "container/bridge";
    match c.get_mut("portMappings") {
        Some(Value::Array(pms)) => {
            for pm in pms.iter_mut() {
                if let Some(p) = pm.as_object_mut() {
                    set_default(p, "containerPort", json!(0));
                    if bridge {
                        set_default(p, "hostPort", json!(0));
                    }
                    set_default(p, "servicePort", json!(0));
                    set_default(p, "protocol", json!("tcp"));
                    set_default(p, "labels", json!({}));
                }
            }
        }
        _ => {
            let mut pm = json!({"containerPort": 0, "servicePort": 0, "protocol": "tcp",
                "name": "default", "labels": {}});
            if bridge {
                pm["hostPort"] = json!(0);
            }
            c.insert("portMappings".into(), json!([pm]));
        }
    }
}

fn normalize_health_check(h: &mut Map<String, Value>, app_has_ports: bool) {
    h.retain(|_, v| !v.is_null());
    set_default(h, "protocol", json!("HTTP"));
    set_default(h, "gracePeriodSeconds", json!(300));
    set_default(h, "intervalSeconds", json!(60));
    set_default(h, "timeoutSeconds", json!(20));
    set_default(h, "maxConsecutiveFailures", json!(3));
    set_default(h, "delaySeconds", json!(15));
    let proto = h
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("HTTP")
        .to_string();
    if proto != "COMMAND" {
        set_default(h, "ipProtocol", json!("IPv4"));
        if app_has_ports && h.get("port").is_none() && h.get("portIndex").is_none() {
            h.insert("portIndex".into(), json!(0));
        }
    }
    if proto == "HTTP" || proto == "HTTPS" {
        set_default(h, "ignoreHttp1xx", json!(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: Value) -> Value {
        let mut v = v;
        normalize_app(&mut v);
        v
    }

    #[test]
    fn fills_the_1_10_default_set() {
        let v = norm(json!({"id": "web", "cmd": "sleep 1"}));
        assert_eq!(
            v,
            json!({"id": "/web", "cmd": "sleep 1", "cpus": 1, "mem": 128, "disk": 0, "gpus": 0,
                "instances": 1, "executor": "", "backoffSeconds": 1, "backoffFactor": 1.15,
                "maxLaunchDelaySeconds": 300, "labels": {}, "killSelection": "YOUNGEST_FIRST",
                "role": "*", "networks": [{"mode": "host"}], "requirePorts": false,
                "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
                "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
                "portDefinitions": [{"port": 0, "name": "default", "protocol": "tcp"}]})
        );
    }

    #[test]
    fn omits_empties_and_nulls() {
        let v = norm(
            json!({"id": "/a", "cmd": "x", "args": null, "env": {}, "constraints": [],
            "healthChecks": [], "user": null, "uris": [], "ports": [], "ipAddress": null,
            "tasksRunning": 3, "acceptedResourceRoles": []}),
        );
        for k in [
            "args",
            "env",
            "constraints",
            "healthChecks",
            "user",
            "uris",
            "ports",
            "ipAddress",
            "tasksRunning",
            "acceptedResourceRoles",
        ] {
            assert!(v.get(k).is_none(), "{k} should be omitted");
        }
        // `ports: []` migrates to an explicit empty portDefinitions, which stays.
        assert_eq!(v["portDefinitions"], json!([]));
    }

    #[test]
    fn idempotent() {
        for app in [
            json!({"id": "a", "cmd": "x", "healthChecks": [{"path": "/h"}], "uris": ["http://x/y.tgz"]}),
            json!({"id": "/b", "container": {"docker": {"image": "nginx", "network": "BRIDGE",
                "portMappings": [{"containerPort": 80}]}}}),
            json!({"id": "/c", "cmd": "x", "container": {"type": "DOCKER", "volumes": [
                {"containerPath": "d", "mode": "RW", "persistent": {"size": 5}}], "docker": {"image": "x"}}}),
        ] {
            let once = norm(app);
            assert_eq!(norm(once.clone()), once);
        }
    }

    #[test]
    fn migrates_docker_bridge() {
        let v = norm(
            json!({"id": "/b", "container": {"type": "DOCKER", "docker": {"image": "nginx",
            "network": "BRIDGE", "portMappings": [{"containerPort": 80, "hostPort": 0}]}}}),
        );
        assert_eq!(v["networks"], json!([{"mode": "container/bridge"}]));
        assert!(v.get("portDefinitions").is_none());
        assert_eq!(
            v["container"],
            json!({"type": "DOCKER", "volumes": [], "docker": {"image": "nginx", "forcePullImage": false,
                "privileged": false, "parameters": []},
                "portMappings": [{"containerPort": 80, "hostPort": 0, "servicePort": 0, "protocol": "tcp", "labels": {}}]})
        );
    }

    #[test]
    fn health_check_defaults() {
        let v = norm(
            json!({"id": "/a", "cmd": "x", "healthChecks": [{"path": "/h"}, {"protocol": "COMMAND",
            "command": {"value": "true"}}]}),
        );
        assert_eq!(
            v["healthChecks"][1],
            json!({"path": "/h", "protocol": "HTTP", "gracePeriodSeconds": 300, "intervalSeconds": 60,
                "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "delaySeconds": 15, "ipProtocol": "IPv4",
                "portIndex": 0, "ignoreHttp1xx": false})
        );
        assert!(v["healthChecks"][0].get("portIndex").is_none());
    }

    #[test]
    fn resident_defaults() {
        let v = norm(
            json!({"id": "/c", "cmd": "x", "container": {"type": "MESOS", "volumes": [
            {"containerPath": "d", "mode": "RW", "persistent": {"size": 5}}]}}),
        );
        assert_eq!(
            v["upgradeStrategy"],
            json!({"maximumOverCapacity": 0, "minimumHealthCapacity": 0.5})
        );
        assert_eq!(v["unreachableStrategy"], json!("disabled"));
    }

    #[test]
    fn numbers_and_sets_are_canonical() {
        let a = norm(
            json!({"id": "/a", "cmd": "x", "mem": 50.0, "cpus": 0.5, "disk": 0.0,
            "constraints": [["rack", "GROUP_BY"], ["hostname", "UNIQUE"]],
            "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5}}),
        );
        let b = norm(
            json!({"id": "/a", "cmd": "x", "mem": 50, "cpus": 0.5, "disk": 0,
            "constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY"]],
            "upgradeStrategy": {"maximumOverCapacity": 0.5, "minimumHealthCapacity": 1}}),
        );
        assert_eq!(a, b);
        assert_eq!(a["mem"], json!(50));
        assert_eq!(a["cpus"], json!(0.5));
    }

    #[test]
    fn non_object_is_left_alone() {
        assert_eq!(norm(json!([1])), json!([1]));
    }
}
