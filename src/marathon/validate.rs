//! App validation with Marathon 1.10's rules and, where known, its wording.
//!
//! Paths are JSON pointers into the submitted app (`""` for the root), which
//! is also how Marathon 1.10 reports them in a 422 `details` array.
//!
//! Message wording: texts quoted from Marathon (SEMANTICS.md §1/§6 and the
//! RAML examples) are used verbatim. For range checks that Marathon 1.10
//! performs while reading the RAML-generated JSON types, Play JSON reports
//! the keys `error.min` / `error.max`; we use those keys. Where neither is
//! known the wording is our choice and marked so.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::ids;

/// One entry of a 422 `details` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer (`/upgradeStrategy/minimumHealthCapacity`; `""` = the app).
    pub path: String,
    pub errors: Vec<String>,
}

/// `AppValidation`'s message for the cmd/args/container rule.
pub const CMD_ARGS_CONTAINER: &str =
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.";

/// Validate a path id such as `/prod/web`.
pub fn validate_path_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("path must not be empty".into());
    }
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() {
        // Marathon treats the root as a group, never as an app id.
        return Err("Path must contain at least one path element".into());
    }
    for seg in &segs {
        if !ids::is_valid_segment(seg) {
            return Err(format!(
                "must fully match regular expression '{}'",
                ids::SEGMENT_PATTERN
            ));
        }
    }
    let last = segs[segs.len() - 1];
    if ids::RESERVED_LAST_SEGMENTS.contains(&last) {
        // 1.8+ (changelog "Apps names restrictions"); wording is our choice.
        return Err(format!(
            "must not end with any of the following reserved keywords: {}",
            ids::RESERVED_LAST_SEGMENTS.join(", ")
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Sink(BTreeMap<String, Vec<String>>);

impl Sink {
    fn add(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        let e = self.0.entry(path.into()).or_default();
        let msg = msg.into();
        if !e.contains(&msg) {
            e.push(msg);
        }
    }
    fn into_vec(self) -> Vec<Violation> {
        self.0
            .into_iter()
            .map(|(path, errors)| Violation { path, errors })
            .collect()
    }
}

const TYPE_NUMBER: &str = "error.expected.jsnumber";
const TYPE_STRING: &str = "error.expected.jsstring";
const TYPE_BOOL: &str = "error.expected.jsboolean";
const TYPE_ARRAY: &str = "error.expected.jsarray";
const TYPE_OBJECT: &str = "error.expected.jsobject";

/// Checks a number field, if present: type and `[min, max]`.
fn number(
    s: &mut Sink,
    obj: &Map<String, Value>,
    base: &str,
    key: &str,
    min: f64,
    max: Option<f64>,
) {
    // Built only for an error: most fields are fine.
    let path = || format!("{base}/{key}");
    match obj.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if v.is_nan() || v < min {
                s.add(path(), "error.min");
            } else if max.is_some_and(|m| v > m) {
                s.add(path(), "error.max");
            }
        }
        Some(_) => s.add(path(), TYPE_NUMBER),
    }
}

fn integer(s: &mut Sink, obj: &Map<String, Value>, base: &str, key: &str, min: i64) {
    let path = || format!("{base}/{key}");
    match obj.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= min => {}
            Some(_) => s.add(path(), "error.min"),
            // Fractional or huge: Play reports an integer type mismatch.
            None => s.add(path(), "error.expected.int"),
        },
        Some(_) => s.add(path(), TYPE_NUMBER),
    }
}

fn typed(
    s: &mut Sink,
    obj: &Map<String, Value>,
    base: &str,
    key: &str,
    ok: fn(&Value) -> bool,
    err: &str,
) {
    if let Some(v) = obj.get(key)
        && !v.is_null()
        && !ok(v)
    {
        s.add(format!("{base}/{key}"), err);
    }
}

fn string_enum(s: &mut Sink, obj: &Map<String, Value>, base: &str, key: &str, allowed: &[&str]) {
    match obj.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if allowed.contains(&v.as_str()) => {}
        Some(Value::String(_)) => s.add(format!("{base}/{key}"), "error.unknown.enum.literal"),
        Some(_) => s.add(format!("{base}/{key}"), TYPE_STRING),
    }
}

fn is_name(n: &str) -> bool {
    // strings.LegacyName: ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$
    let b = n.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Validate an app definition as `POST /v2/apps` would (full app, not an update).
pub fn validate_app(app: &Value) -> Vec<Violation> {
    let mut s = Sink::default();
    let Some(obj) = app.as_object() else {
        s.add("", TYPE_OBJECT);
        return s.into_vec();
    };
    match obj.get("id") {
        Some(Value::String(id)) => {
            if let Err(e) = validate_path_id(id) {
                s.add("/id", e);
            }
        }
        None | Some(Value::Null) => s.add("/id", "error.path.missing"),
        Some(_) => s.add("/id", TYPE_STRING),
    }
    check_command(&mut s, obj);
    check_resources(&mut s, obj);
    check_strategy(&mut s, obj);
    check_env_and_secrets(&mut s, obj);
    check_constraints(&mut s, obj);
    check_ports(&mut s, obj);
    check_container(&mut s, obj);
    check_health_checks(&mut s, obj);
    check_misc(&mut s, obj);
    s.into_vec()
}

fn check_command(s: &mut Sink, obj: &Map<String, Value>) {
    typed(s, obj, "", "cmd", Value::is_string, TYPE_STRING);
    if obj.get("cmd").and_then(Value::as_str) == Some("") {
        // RAML: `cmd` has minLength 1.
        s.add("/cmd", "error.minLength");
    }
    let has_cmd = obj.get("cmd").is_some_and(|v| !v.is_null());
    let has_args = match obj.get("args") {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                if !v.is_string() {
                    s.add(format!("/args/{i}"), TYPE_STRING);
                }
            }
            !a.is_empty()
        }
        Some(_) => {
            s.add("/args", TYPE_ARRAY);
            false
        }
    };
    let has_container = obj.get("container").is_some_and(|v| !v.is_null());
    if (has_cmd && has_args) || (!has_cmd && !has_args && !has_container) {
        s.add("", CMD_ARGS_CONTAINER);
    }
}

fn check_resources(s: &mut Sink, obj: &Map<String, Value>) {
    // RAML minimum for cpus is 0.001 (app.raml), stricter than ">= 0".
    number(s, obj, "", "cpus", 0.001, None);
    number(s, obj, "", "mem", 0.0, None);
    number(s, obj, "", "disk", 0.0, None);
    integer(s, obj, "", "gpus", 0);
    integer(s, obj, "", "instances", 0);
    number(s, obj, "", "backoffSeconds", 0.0, None);
    number(s, obj, "", "backoffFactor", 1.0, None);
    integer(s, obj, "", "maxLaunchDelaySeconds", 0);
    integer(s, obj, "", "taskKillGracePeriodSeconds", 0);
    if let Some(Value::String(ex)) = obj.get("executor") {
        let ok = ex.is_empty()
            || ex == "//cmd"
            || ex
                .trim_start_matches('/')
                .split('/')
                .all(|seg| !seg.is_empty());
        if !ok {
            s.add("/executor", "error.pattern");
        }
    } else {
        typed(s, obj, "", "executor", Value::is_string, TYPE_STRING);
    }
}

fn check_strategy(s: &mut Sink, obj: &Map<String, Value>) {
    match obj.get("upgradeStrategy") {
        None | Some(Value::Null) => {}
        Some(Value::Object(u)) => {
            for key in ["minimumHealthCapacity", "maximumOverCapacity"] {
                let path = format!("/upgradeStrategy/{key}");
                match u.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n)) => {
                        let v = n.as_f64().unwrap_or(f64::NAN);
                        // Wording from the 422 example in traits.raml.
                        if v > 1.0 {
                            s.add(path, "is greater than 1");
                        } else if v.is_nan() || v < 0.0 {
                            s.add(path, "is less than 0");
                        }
                    }
                    Some(_) => s.add(path, TYPE_NUMBER),
                }
            }
        }
        Some(_) => s.add("/upgradeStrategy", TYPE_OBJECT),
    }
    match obj.get("unreachableStrategy") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if v == "disabled" => {}
        Some(Value::Object(u)) => {
            integer(s, u, "/unreachableStrategy", "inactiveAfterSeconds", 0);
            integer(s, u, "/unreachableStrategy", "expungeAfterSeconds", 0);
            let get = |k: &str| u.get(k).and_then(Value::as_i64);
            if let (Some(i), Some(e)) = (get("inactiveAfterSeconds"), get("expungeAfterSeconds"))
                && i > e
            {
                // Wording is our choice; Marathon requires inactive <= expunge.
                s.add(
                    "/unreachableStrategy",
                    "inactiveAfterSeconds must be less or equal to expungeAfterSeconds",
                );
            }
        }
        Some(_) => s.add("/unreachableStrategy", "error.invalid"),
    }
    string_enum(
        s,
        obj,
        "",
        "killSelection",
        &["YOUNGEST_FIRST", "OLDEST_FIRST"],
    );
}

fn check_env_and_secrets(s: &mut Sink, obj: &Map<String, Value>) {
    let mut declared: HashSet<&str> = HashSet::new();
    match obj.get("secrets") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, def) in m {
                declared.insert(name.as_str());
                match def.get("source") {
                    Some(Value::String(_)) => {}
                    _ => s.add(format!("/secrets/{name}/source"), "error.path.missing"),
                }
            }
        }
        Some(_) => s.add("/secrets", TYPE_OBJECT),
    }
    match obj.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::String(_) => {}
                    Value::Object(o) => match o.get("secret") {
                        Some(Value::String(name)) if declared.contains(name.as_str()) => {}
                        Some(Value::String(_)) => {
                            s.add(format!("/env/{k}"), "references an undefined secret")
                        }
                        _ => s.add(format!("/env/{k}"), "error.path.missing"),
                    },
                    _ => s.add(format!("/env/{k}"), TYPE_STRING),
                }
            }
        }
        Some(_) => s.add("/env", TYPE_OBJECT),
    }
    match obj.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if !v.is_string() {
                    s.add(format!("/labels/{k}"), TYPE_STRING);
                }
            }
        }
        Some(_) => s.add("/labels", TYPE_OBJECT),
    }
}

const OPERATORS: [&str; 7] = [
    "UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS",
];

fn check_constraints(s: &mut Sink, obj: &Map<String, Value>) {
    let list = match obj.get("constraints") {
        None | Some(Value::Null) => return,
        Some(Value::Array(a)) => a,
        Some(_) => return s.add("/constraints", TYPE_ARRAY),
    };
    for (i, c) in list.iter().enumerate() {
        let path = format!("/constraints/{i}");
        let parts: Option<Vec<&str>> = c
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>());
        let Some(parts) = parts.filter(|p| (2..=3).contains(&p.len())) else {
            // Wording is our choice (RAML: 2 or 3 strings).
            s.add(path, "Each constraint must be an array of 2 or 3 strings");
            continue;
        };
        let (op, value) = (parts[1], parts.get(2).copied());
        if !OPERATORS.contains(&op) {
            // Wording is our choice, listing Marathon's operators.
            s.add(
                path,
                format!(
                    "Constraint operator must be one of {}",
                    OPERATORS.join(", ")
                ),
            );
            continue;
        }
        let err = match (op, value) {
            ("UNIQUE", Some(_)) => Some("Value specified but not used"),
            ("CLUSTER" | "LIKE" | "UNLIKE" | "IS" | "MAX_PER", None) => Some("Missing value"),
            ("LIKE" | "UNLIKE", Some(v)) if regex::Regex::new(&format!("^(?:{v})$")).is_err() => {
                Some("is not a valid regular expression")
            }
            ("MAX_PER", Some(v)) if v.parse::<u32>().is_err() => {
                Some("Value was not a valid number")
            }
            ("GROUP_BY", Some(v)) if v.parse::<u32>().is_err() => {
                Some("Value was not a valid number")
            }
            _ => None,
        };
        if let Some(e) = err {
            s.add(path, e);
        }
    }
}

/// Port names must match `LegacyName` and be unique; explicit non-zero ports unique.
fn check_port_list(s: &mut Sink, list: &[Value], base: &str, port_key: &str) {
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    for (i, p) in list.iter().enumerate() {
        let path = format!("{base}/{i}");
        let Some(o) = p.as_object() else {
            s.add(path, TYPE_OBJECT);
            continue;
        };
        for key in ["containerPort", "hostPort", "servicePort", "port"] {
            if let Some(v) = o.get(key).filter(|v| !v.is_null()) {
                match v.as_i64() {
                    Some(n) if (0..=65535).contains(&n) => {}
                    Some(n) if n < 0 => s.add(format!("{path}/{key}"), "error.min"),
                    Some(_) => s.add(format!("{path}/{key}"), "error.max"),
                    None => s.add(format!("{path}/{key}"), TYPE_NUMBER),
                }
            }
        }
        if let Some(n) = o.get("name").filter(|v| !v.is_null()) {
            match n.as_str() {
                Some(name) if is_name(name) => {
                    if !names.insert(name.to_string()) {
                        s.add(base, "Port names must be unique.");
                    }
                }
                Some(_) => s.add(format!("{path}/name"), "error.pattern"),
                None => s.add(format!("{path}/name"), TYPE_STRING),
            }
        }
        string_enum(s, o, &path, "protocol", &["tcp", "udp", "udp,tcp"]);
        if let Some(port) = o.get(port_key).and_then(Value::as_i64)
            && port != 0
            && !ports.insert(port)
        {
            s.add(base, "Ports must be unique.");
        }
    }
}

fn check_ports(s: &mut Sink, obj: &Map<String, Value>) {
    match obj.get("portDefinitions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => check_port_list(s, a, "/portDefinitions", "port"),
        Some(_) => s.add("/portDefinitions", TYPE_ARRAY),
    }
    match obj.get("ports") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(|p| p.as_u64().is_some_and(|n| n <= 65535)) => {}
        Some(_) => s.add("/ports", "error.expected.jsarray"),
    }
    typed(s, obj, "", "requirePorts", Value::is_boolean, TYPE_BOOL);
    match obj.get("networks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, n) in a.iter().enumerate() {
                let Some(o) = n.as_object() else {
                    s.add(format!("/networks/{i}"), TYPE_OBJECT);
                    continue;
                };
                string_enum(
                    s,
                    o,
                    &format!("/networks/{i}"),
                    "mode",
                    &["container", "container/bridge", "host"],
                );
            }
            let modes: Vec<&str> = a
                .iter()
                .map(|n| n.get("mode").and_then(Value::as_str).unwrap_or("container"))
                .collect();
            if modes.len() > 1 && modes.iter().any(|m| *m != "container") {
                // Wording is our choice: only several container networks may be joined.
                s.add(
                    "/networks",
                    "host or bridge networking may not be combined with other networks",
                );
            }
        }
        Some(_) => s.add("/networks", TYPE_ARRAY),
    }
}

fn check_container(s: &mut Sink, obj: &Map<String, Value>) {
    let c = match obj.get("container") {
        None | Some(Value::Null) => return,
        Some(Value::Object(c)) => c,
        Some(_) => return s.add("/container", TYPE_OBJECT),
    };
    string_enum(s, c, "/container", "type", &["DOCKER", "MESOS"]);
    let ctype = c.get("type").and_then(Value::as_str).unwrap_or("DOCKER");
    match c.get("docker") {
        None | Some(Value::Null) => {
            if ctype == "DOCKER" {
                // Wording is our choice: a Docker container needs an image.
                s.add("/container/docker", "error.path.missing");
            }
        }
        Some(Value::Object(d)) => {
            if ctype == "DOCKER" && !d.get("image").is_some_and(Value::is_string) {
                s.add("/container/docker/image", "error.path.missing");
            }
            // Deprecated 1.4 field, still read (and migrated) by 1.10.
            string_enum(
                s,
                d,
                "/container/docker",
                "network",
                &["HOST", "BRIDGE", "USER", "NONE"],
            );
            typed(
                s,
                d,
                "/container/docker",
                "privileged",
                Value::is_boolean,
                TYPE_BOOL,
            );
            typed(
                s,
                d,
                "/container/docker",
                "forcePullImage",
                Value::is_boolean,
                TYPE_BOOL,
            );
            if let Some(Value::Array(pm)) = d.get("portMappings") {
                check_port_list(s, pm, "/container/docker/portMappings", "servicePort");
            }
        }
        Some(_) => s.add("/container/docker", TYPE_OBJECT),
    }
    match c.get("portMappings") {
        None | Some(Value::Null) => {}
        Some(Value::Array(pm)) => check_port_list(s, pm, "/container/portMappings", "servicePort"),
        Some(_) => s.add("/container/portMappings", TYPE_ARRAY),
    }
    match c.get("volumes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(vs)) => {
            for (i, v) in vs.iter().enumerate() {
                let path = format!("/container/volumes/{i}");
                match v.get("containerPath") {
                    Some(Value::String(p)) if !p.is_empty() => {}
                    _ => s.add(format!("{path}/containerPath"), "error.path.missing"),
                }
                if let Some(o) = v.as_object() {
                    string_enum(s, o, &path, "mode", &["RO", "RW"]);
                }
            }
        }
        Some(_) => s.add("/container/volumes", TYPE_ARRAY),
    }
}

const HC_PROTOCOLS: [&str; 7] = [
    "HTTP",
    "HTTPS",
    "TCP",
    "COMMAND",
    "MESOS_TCP",
    "MESOS_HTTP",
    "MESOS_HTTPS",
];

fn check_health_checks(s: &mut Sink, obj: &Map<String, Value>) {
    let list = match obj.get("healthChecks") {
        None | Some(Value::Null) => return,
        Some(Value::Array(a)) => a,
        Some(_) => return s.add("/healthChecks", TYPE_ARRAY),
    };
    for (i, hc) in list.iter().enumerate() {
        let base = format!("/healthChecks/{i}");
        let Some(h) = hc.as_object() else {
            s.add(base, TYPE_OBJECT);
            continue;
        };
        string_enum(s, h, &base, "protocol", &HC_PROTOCOLS);
        string_enum(s, h, &base, "ipProtocol", &["IPv4", "IPv6"]);
        for key in [
            "gracePeriodSeconds",
            "intervalSeconds",
            "timeoutSeconds",
            "maxConsecutiveFailures",
            "delaySeconds",
        ] {
            integer(s, h, &base, key, 0);
        }
        integer(s, h, &base, "portIndex", 0);
        integer(s, h, &base, "port", 0);
        let proto = h.get("protocol").and_then(Value::as_str).unwrap_or("HTTP");
        let has = |k: &str| h.get(k).is_some_and(|v| !v.is_null());
        if has("port") && has("portIndex") {
            // Wording is our choice.
            s.add(
                base.clone(),
                "Health check port indices and port must not both be specified",
            );
        }
        if proto == "COMMAND" {
            if !h
                .get("command")
                .and_then(|c| c.get("value"))
                .is_some_and(Value::is_string)
            {
                s.add(format!("{base}/command"), "error.path.missing");
            }
        } else if let Some(p) = h.get("path").and_then(Value::as_str)
            && !p.starts_with('/')
        {
            s.add(format!("{base}/path"), "error.pattern");
        }
    }
}

fn check_misc(s: &mut Sink, obj: &Map<String, Value>) {
    for key in [
        "dependencies",
        "acceptedResourceRoles",
        "fetch",
        "uris",
        "readinessChecks",
    ] {
        typed(s, obj, "", key, Value::is_array, TYPE_ARRAY);
    }
    if let Some(Value::Array(deps)) = obj.get("dependencies") {
        for (i, d) in deps.iter().enumerate() {
            match d.as_str() {
                Some(id) => {
                    if let Err(e) = validate_path_id(id) {
                        s.add(format!("/dependencies/{i}"), e);
                    }
                }
                None => s.add(format!("/dependencies/{i}"), TYPE_STRING),
            }
        }
    }
    if let Some(Value::Array(f)) = obj.get("fetch") {
        for (i, a) in f.iter().enumerate() {
            if !a.get("uri").is_some_and(Value::is_string) {
                s.add(format!("/fetch/{i}/uri"), "error.path.missing");
            }
        }
    }
    if let Some(Value::Object(labels)) = obj.get("labels")
        && let Some(v) = labels.get("MARATHON_SINGLE_INSTANCE_APP")
        && v.as_str() == Some("true")
    {
        let instances = obj.get("instances").and_then(Value::as_i64).unwrap_or(1);
        if instances > 1 {
            // Wording is our choice.
            s.add(
                "/instances",
                "got more than one instance for a single-instance app",
            );
        }
    }
    typed(s, obj, "", "role", Value::is_string, TYPE_STRING);
    typed(s, obj, "", "tty", Value::is_boolean, TYPE_BOOL);
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
