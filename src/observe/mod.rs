//! Live Marathon state, and the comparison of a desired app with its live
//! counterpart, normalised so that an app Marathon runs as desired never
//! shows a diff (no flapping). [`gather`] reads what a plan needs (the one
//! observation path of `pacer plan`/`apply` and the daemon); [`history`]
//! reads an app's versions and tells what each one was.
//!
//! [`comparable`] puts both sides in one canonical form:
//!
//! 1. status fields go (`tasks*`, `deployments`, `version`, `versionInfo`,
//!    `lastTaskFailure`, `readinessCheckResults`, `tasksStats`);
//! 2. Marathon's defaults are filled in on both sides
//!    ([`crate::marathon::normalize_app`]: 1.10 and 1.4 shapes, `null` ≡ absent);
//! 3. defaults Marathon takes from the cluster or that changed between
//!    versions are accepted when the desired app does not set them: assigned
//!    service ports (a desired `0` matches any port), the `role`, 1.4's
//!    `maxLaunchDelaySeconds` 3600 and `unreachableStrategy` {300, 600}, the
//!    unnamed default port of 1.4;
//! 4. integral floats become integers (`1.0` ≡ `1`), set-typed fields
//!    (`constraints`, `healthChecks`, `dependencies`, `acceptedResourceRoles`)
//!    get a canonical order, an empty list or map ≡ absent;
//! 5. the app's `ignore` pointers and the provenance labels (`pacer.commit`,
//!    `pacer.digest`) are removed from both sides.

use serde_json::{Map, Value};

use crate::marathon::normalize_app;

pub mod endpoints;
pub mod gather;
pub mod history;
#[cfg(test)]
mod tests;

pub use gather::{LiveApp, Observed};

/// The provenance label: it changes with every commit, so it is never diffed.
pub const COMMIT_LABEL: &str = crate::render::labels::COMMIT;

/// Labels that say where a definition came from, not what it is: never
/// diffed, never part of [`written_digest`].
const PROVENANCE_LABELS: [&str; 2] = [COMMIT_LABEL, crate::render::labels::DIGEST];

/// Status fields: never part of a definition (the same ones a PUT must not send).
use crate::marathon::client::READ_ONLY_FIELDS as STATUS_FIELDS;

/// Fields whose arrays Marathon treats as sets (`uniqueItems`).
const SET_FIELDS: [&str; 4] = [
    "constraints",
    "healthChecks",
    "dependencies",
    "acceptedResourceRoles",
];

/// Both sides in comparable form. `ignore`: the app's JSON pointers (e.g.
/// `"/instances"`) that are neither diffed nor written.
pub fn comparable(desired: &Value, live: &Value, ignore: &[String]) -> (Value, Value) {
    let mut d = desired.clone();
    let mut l = live.clone();
    for v in [&mut d, &mut l] {
        if let Some(o) = v.as_object_mut() {
            for k in STATUS_FIELDS {
                o.remove(k);
            }
        }
        drop_nulls(v);
    }
    accept_cluster_defaults(&mut d, &l);
    normalize_app(&mut d);
    normalize_app(&mut l);
    match_assigned_ports(&mut d, &l);
    for v in [&mut d, &mut l] {
        for p in ignore {
            remove_pointer(v, p);
        }
        if let Some(Value::Object(labels)) = v.get_mut("labels") {
            for k in PROVENANCE_LABELS {
                labels.remove(k);
            }
        }
        canonical(v);
    }
    prune_empty_pairs(&mut d, &mut l);
    (d, l)
}

/// A digest of a definition in the form observe compares, on its own: the
/// value of the `pacer.digest` label pacer writes with each PUT. The same
/// definition as Marathon keeps it (defaults filled in, service ports
/// assigned, the group's role, 1.4's older defaults) gives the same digest,
/// so a version whose label doesn't match its own definition was not
/// written by pacer. Left out, as things that change without a new
/// definition from pacer: the provenance labels, `instances` (a scale keeps
/// the labels) and what Marathon assigns (service port numbers, `role`).
pub fn written_digest(spec: &Value) -> String {
    let (mut v, _) = comparable(spec, spec, &[]);
    if let Some(o) = v.as_object_mut() {
        for k in ["instances", "role", "id"] {
            o.remove(k);
        }
        // 1.4's defaults ≡ 1.10's (see `accept_cluster_defaults`).
        let defaults = {
            let mut d = Value::Object(Map::new());
            normalize_app(&mut d);
            canonical(&mut d);
            d
        };
        if o.get("maxLaunchDelaySeconds").and_then(Value::as_f64) == Some(3600.0) {
            o.insert(
                "maxLaunchDelaySeconds".into(),
                defaults["maxLaunchDelaySeconds"].clone(),
            );
        }
        let old_unreachable = o.get("unreachableStrategy").is_some_and(|u| {
            u.get("inactiveAfterSeconds").and_then(Value::as_f64) == Some(300.0)
                && u.get("expungeAfterSeconds").and_then(Value::as_f64) == Some(600.0)
        });
        if old_unreachable {
            o.insert(
                "unreachableStrategy".into(),
                defaults["unreachableStrategy"].clone(),
            );
        }
    }
    let zero_ports = |ports: Option<&mut Value>, key: &str| {
        for p in ports.and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(p) = p.as_object_mut() {
                if p.contains_key(key) {
                    p.insert(key.into(), Value::from(0));
                }
                if p.get("name").and_then(Value::as_str) == Some("default") {
                    p.remove("name");
                }
            }
        }
    };
    zero_ports(v.get_mut("portDefinitions"), "port");
    zero_ports(
        v.get_mut("container")
            .and_then(|c| c.get_mut("portMappings")),
        "servicePort",
    );
    // An empty list or map ≡ absent, as `prune_empty_pairs` has it, but
    // with no other side to pair with: dropped at every depth.
    drop_empties(&mut v);
    let mut text = crate::diff::canonical_json(&v);
    // Short: it is a label every reader of the app sees.
    text = crate::model::Digest::of(text.as_bytes()).0;
    text.trim_start_matches("sha256:")[..16].to_string()
}

fn drop_empties(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.values_mut().for_each(drop_empties);
            o.retain(|_, x| !is_empty(x));
        }
        Value::Array(a) => a.iter_mut().for_each(drop_empties),
        _ => {}
    }
}

/// Whether pacer wrote this definition: `Some(true)` when its
/// `pacer.digest` label matches the definition itself, `Some(false)` when
/// it doesn't (changed by hand, labels and all), `None` without the label
/// (deployed before pacer wrote it).
pub fn written_by_pacer(spec: &Value) -> Option<bool> {
    let label = spec
        .get("labels")?
        .get(crate::render::labels::DIGEST)?
        .as_str()?;
    Some(label == written_digest(spec))
}

/// `None` when in sync; otherwise a unified diff of canonical pretty JSON
/// (sorted keys) from live to desired: what applying would change, read as
/// `kubectl diff` and `terraform plan` read (and as `pacer diff` reads base
/// to head), so raising cpus 0.2 → 0.3 shows `-0.2` then `+0.3`.
pub fn app_diff(desired: &Value, live: &Value, ignore: &[String]) -> Option<String> {
    let (d, l) = comparable(desired, live, ignore);
    if d == l {
        return None;
    }
    let (ds, ls) = (
        crate::diff::canonical_json(&d),
        crate::diff::canonical_json(&l),
    );
    Some(
        similar::TextDiff::from_lines(&ls, &ds)
            .unified_diff()
            .context_radius(3)
            .header("live", "desired")
            .to_string(),
    )
}

/// The spec fields that differ, as JSON pointers, sorted. Objects are
/// followed down to the differing keys (`/env/LOG_LEVEL`,
/// `/labels/pacer.config-hash`, `/upgradeStrategy/minimumHealthCapacity`);
/// a differing array is reported whole (`/constraints`); a key on one side
/// only is reported at that key, or at each of its keys if it is a map
/// (`/env/A` when live has no `env`). Only `["/instances"]` means a pure scale.
pub fn changed_paths(desired: &Value, live: &Value, ignore: &[String]) -> Vec<String> {
    let (d, l) = comparable(desired, live, ignore);
    let mut out = Vec::new();
    collect_changes(&d, &l, String::new(), &mut out);
    out.sort();
    out
}

fn collect_changes(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{at}/{}", escape_token(k));
                let empty = Value::Object(Map::new());
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => collect_changes(u, v, p, out),
                    // A map on one side only: its keys (`/env/A`), as if
                    // the other side had an empty map.
                    (Some(u @ Value::Object(_)), None) => collect_changes(u, &empty, p, out),
                    (None, Some(v @ Value::Object(_))) => collect_changes(&empty, v, p, out),
                    _ => out.push(p),
                }
            }
        }
        _ => out.push(if at.is_empty() { "/".into() } else { at }),
    }
}

fn escape_token(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

fn unescape_token(k: &str) -> String {
    k.replace("~1", "/").replace("~0", "~")
}

/// Remove the value at a JSON pointer, if there is one.
fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some(rest) = pointer.strip_prefix('/') else {
        return;
    };
    let tokens: Vec<String> = rest.split('/').map(unescape_token).collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut cur = v;
    for t in parents {
        cur = match cur {
            Value::Object(o) => match o.get_mut(t) {
                Some(next) => next,
                None => return,
            },
            Value::Array(a) => match t.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
    }
    match cur {
        Value::Object(o) => {
            o.remove(last);
        }
        Value::Array(a) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// `null` ≡ absent, at every depth (1.4 writes `null` for unset options).
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, x| !x.is_null());
            o.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Defaults that depend on the cluster or on Marathon's version, accepted as
/// they are live when the desired app leaves them unset. Runs before
/// normalisation, so "unset" means "not written by the user".
fn accept_cluster_defaults(d: &mut Value, l: &Value) {
    let (Some(d), Some(l)) = (d.as_object_mut(), l.as_object()) else {
        return;
    };
    // The role is the group's (1.9+ multi-role) or `*`.
    if !d.contains_key("role")
        && let Some(r) = l.get("role")
    {
        d.insert("role".into(), r.clone());
    }
    // ≤1.7 (1.4 too) defaulted maxLaunchDelaySeconds to 3600.
    if !d.contains_key("maxLaunchDelaySeconds")
        && l.get("maxLaunchDelaySeconds").and_then(Value::as_f64) == Some(3600.0)
    {
        d.insert("maxLaunchDelaySeconds".into(), Value::from(3600));
    }
    // 1.4.0–1.4.8 defaulted unreachableStrategy to {300, 600}.
    if !d.contains_key("unreachableStrategy")
        && let Some(u) = l.get("unreachableStrategy")
        && u.get("inactiveAfterSeconds").and_then(Value::as_f64) == Some(300.0)
        && u.get("expungeAfterSeconds").and_then(Value::as_f64) == Some(600.0)
    {
        d.insert("unreachableStrategy".into(), u.clone());
    }
}

/// A desired service port 0 (`portDefinitions[].port`,
/// `container.portMappings[].servicePort`) matches the port Marathon
/// assigned; and 1.4's unnamed default port matches the desired default one.
fn match_assigned_ports(d: &mut Value, l: &Value) {
    fn fill(d: Option<&mut Value>, l: Option<&Value>, key: &str) {
        let (Some(Value::Array(ds)), Some(Value::Array(ls))) = (d, l) else {
            return;
        };
        if ds.len() != ls.len() {
            return;
        }
        for (dp, lp) in ds.iter_mut().zip(ls) {
            let (Some(dp), Some(lp)) = (dp.as_object_mut(), lp.as_object()) else {
                continue;
            };
            if dp.get(key).and_then(Value::as_f64) == Some(0.0)
                && let Some(assigned) = lp.get(key).filter(|v| v.is_number())
            {
                dp.insert(key.into(), assigned.clone());
            }
            // The default port: named "default" by 1.10, unnamed by 1.4.
            if dp.get("name").and_then(Value::as_str) == Some("default") && !lp.contains_key("name")
            {
                dp.remove("name");
            }
        }
    }
    fill(
        d.get_mut("portDefinitions"),
        l.get("portDefinitions"),
        "port",
    );
    fill(
        d.get_mut("container")
            .and_then(|c| c.get_mut("portMappings")),
        l.get("container").and_then(|c| c.get("portMappings")),
        "servicePort",
    );
}

/// Integral floats → integers everywhere; set-typed fields sorted and deduplicated.
fn canonical(v: &mut Value) {
    crate::marathon::defaults::canonical_numbers(v);
    if let Some(o) = v.as_object_mut() {
        for k in SET_FIELDS {
            if let Some(Value::Array(items)) = o.get_mut(k) {
                if k == "constraints" {
                    items.iter_mut().for_each(trim_constraint);
                }
                items.sort_by_cached_key(canonical_string);
                items.dedup();
            }
        }
    }
}

/// `["hostname", "UNIQUE", ""]` ≡ `["hostname", "UNIQUE"]`.
fn trim_constraint(c: &mut Value) {
    if let Value::Array(parts) = c
        && parts.len() == 3
        && parts[2].as_str() == Some("")
    {
        parts.pop();
    }
}

/// Compact JSON with sorted keys, whatever map order serde_json keeps.
fn canonical_string(v: &Value) -> String {
    crate::diff::sorted_keys(v).to_string()
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// An empty list or map on one side ≡ the key absent on the other, at every
/// depth (1.4 always writes `env: {}`, `storeUrls: []`, …). Defaults where
/// absent ≠ empty (`portDefinitions`, `networks`) were filled in before.
fn prune_empty_pairs(a: &mut Value, b: &mut Value) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            prune_side(x, y);
            prune_side(y, x);
            for (k, u) in x.iter_mut() {
                if let Some(v) = y.get_mut(k) {
                    prune_empty_pairs(u, v);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (u, v) in x.iter_mut().zip(y.iter_mut()) {
                prune_empty_pairs(u, v);
            }
        }
        _ => {}
    }
}

fn prune_side(x: &mut Map<String, Value>, other: &Map<String, Value>) {
    x.retain(|k, v| !is_empty(v) || other.contains_key(k));
}
