//! JSON views of state: Task, AppInfo, groups, label selectors.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::model::{AppRecord, Task, TaskState, iso};
use super::progress::ip_of;
use super::state::SimState;
use crate::marathon::ids;

/// Task JSON as 1.10 writes it (task.raml / TaskConversion): options omitted when unset.
pub fn task_json(rec: &AppRecord, t: &Task) -> Value {
    let mut o = Map::new();
    o.insert("appId".into(), json!(t.app_id));
    o.insert("id".into(), json!(t.id));
    o.insert("host".into(), json!(t.host));
    o.insert("state".into(), json!(t.state.mesos()));
    o.insert("role".into(), json!(t.role));
    o.insert("slaveId".into(), json!(t.slave_id));
    o.insert("ports".into(), json!(t.ports));
    o.insert("servicePorts".into(), json!(t.service_ports));
    o.insert(
        "ipAddresses".into(),
        json!([{"ipAddress": ip_of(&t.host), "protocol": "IPv4"}]),
    );
    o.insert("stagedAt".into(), json!(iso(t.staged_at)));
    if let Some(s) = t.started_at {
        o.insert("startedAt".into(), json!(iso(s)));
    }
    o.insert("version".into(), json!(t.version));
    let mut hcr = Vec::new();
    if rec.has_health_checks()
        && let Some(alive) = t.healthy
    {
        let mut r = Map::new();
        r.insert("alive".into(), json!(alive));
        r.insert(
            "consecutiveFailures".into(),
            json!(if alive { 0 } else { 1 }),
        );
        if let Some(fs) = t.first_success {
            r.insert("firstSuccess".into(), json!(iso(fs)));
            r.insert("lastSuccess".into(), json!(iso(fs)));
        } else if let Some(s) = t.started_at {
            r.insert("lastFailure".into(), json!(iso(s)));
            r.insert("lastFailureCause".into(), json!("Simulated: never healthy"));
        }
        r.insert("instanceId".into(), json!(t.instance_id));
        hcr.push(Value::Object(r));
    }
    o.insert("healthCheckResults".into(), Value::Array(hcr));
    o.insert("localVolumes".into(), json!([]));
    Value::Object(o)
}

/// What `embed` asked for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Embed {
    pub tasks: bool,
    pub counts: bool,
    pub deployments: bool,
    pub last_task_failure: bool,
    pub readiness: bool,
}

impl Embed {
    /// Accepts both `apps.*` and `app.*` spellings (clients use either).
    pub fn parse<'a>(values: impl Iterator<Item = &'a str>) -> Embed {
        let mut e = Embed::default();
        for v in values {
            let key = v
                .strip_prefix("apps.")
                .or_else(|| v.strip_prefix("app."))
                .unwrap_or(v);
            match key {
                "tasks" => e.tasks = true,
                "counts" => e.counts = true,
                "deployments" => e.deployments = true,
                "lastTaskFailure" => e.last_task_failure = true,
                "readiness" => e.readiness = true,
                // `failures` is the 1.x alias for lastTaskFailure.
                "failures" => e.last_task_failure = true,
                _ => {}
            }
        }
        e
    }
}

/// AppInfo: definition plus the requested runtime fields.
pub fn app_info(state: &SimState, rec: &AppRecord, embed: Embed) -> Value {
    let mut v = rec.app.clone();
    let Some(o) = v.as_object_mut() else { return v };
    if embed.counts {
        let mut staged = 0;
        let mut running = 0;
        let mut healthy = 0;
        let mut unhealthy = 0;
        for t in &rec.tasks {
            match t.state {
                TaskState::Staging => staged += 1,
                TaskState::Running => running += 1,
            }
            match t.healthy {
                Some(true) if rec.has_health_checks() => healthy += 1,
                Some(false) if rec.has_health_checks() => unhealthy += 1,
                _ => {}
            }
        }
        o.insert("tasksStaged".into(), json!(staged));
        o.insert("tasksRunning".into(), json!(running));
        o.insert("tasksHealthy".into(), json!(healthy));
        o.insert("tasksUnhealthy".into(), json!(unhealthy));
    }
    if embed.deployments {
        let ids: Vec<Value> = state
            .deployments_of(rec.app["id"].as_str().unwrap_or(""))
            .iter()
            .map(|d| json!({"id": d.id}))
            .collect();
        o.insert("deployments".into(), Value::Array(ids));
    }
    if embed.readiness {
        o.insert("readinessCheckResults".into(), json!([]));
    }
    if embed.tasks {
        o.insert(
            "tasks".into(),
            Value::Array(rec.tasks.iter().map(|t| task_json(rec, t)).collect()),
        );
    }
    if embed.last_task_failure
        && let Some(f) = &rec.last_task_failure
    {
        o.insert("lastTaskFailure".into(), f.clone());
    }
    v
}

/// One term of a label selector (apps.raml).
#[derive(Debug, PartialEq)]
enum Term {
    Exists(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Parsed `?label=` selector; terms are ANDed.
#[derive(Debug, PartialEq)]
pub struct LabelSelector(Vec<Term>);

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

fn set_of(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|s| s.trim().to_string()).collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut terms = Vec::new();
        for raw in split_top(s) {
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            let term = if let Some((k, v)) = t.split_once("!=") {
                Term::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once("==") {
                Term::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = t.split_once(" notin ") {
                Term::NotIn(
                    k.trim().into(),
                    set_of(rest).ok_or_else(|| format!("Can not parse label selector {s}"))?,
                )
            } else if let Some((k, rest)) = t.split_once(" in ") {
                Term::In(
                    k.trim().into(),
                    set_of(rest).ok_or_else(|| format!("Can not parse label selector {s}"))?,
                )
            } else if t.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)) {
                Term::Exists(t.into())
            } else {
                return Err(format!("Can not parse label selector {s}"));
            };
            terms.push(term);
        }
        Ok(LabelSelector(terms))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|t| match t {
            Term::Exists(k) => labels.contains_key(k),
            Term::Eq(k, v) => labels.get(k) == Some(v),
            Term::Ne(k, v) => labels.get(k) != Some(v),
            Term::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Term::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
        })
    }
}

pub fn labels_of(app: &Value) -> BTreeMap<String, String> {
    app.get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The group tree under `root` (`/` for all), apps at their parent group.
pub fn group_json(state: &SimState, root: &str) -> Option<Value> {
    let prefix = if root == "/" {
        "/".to_string()
    } else {
        format!("{root}/")
    };
    let apps: Vec<&AppRecord> = state
        .apps
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(_, r)| r)
        .collect();
    if apps.is_empty() && root != "/" {
        return None;
    }
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<String>)> = BTreeMap::new();
    groups.entry(root.to_string()).or_default();
    for rec in &apps {
        let id = rec.app["id"].as_str().unwrap_or("/");
        let mut g = ids::parent(id);
        groups.entry(g.clone()).or_default().0.push(rec.app.clone());
        while g != root && g != "/" {
            let p = ids::parent(&g);
            let e = groups.entry(p.clone()).or_default();
            if !e.1.contains(&g) {
                e.1.push(g.clone());
            }
            g = p;
        }
    }
    fn build(
        id: &str,
        groups: &BTreeMap<String, (Vec<Value>, Vec<String>)>,
        version: &str,
    ) -> Value {
        let (apps, subs) = groups.get(id).cloned().unwrap_or_default();
        json!({"id": id, "apps": apps, "groups": subs.iter().map(|s| build(s, groups, version)).collect::<Vec<_>>(),
            "pods": [], "dependencies": [], "version": version, "enforceRole": false})
    }
    let version = super::model::iso(state.last_version_ms.max(state.leader_since));
    Some(build(root, &groups, &version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let labels = l(&[("env", "prod"), ("tier", "web")]);
        for (sel, want) in [
            ("env", true),
            ("missing", false),
            ("env==prod", true),
            ("env!=prod", false),
            ("env in (dev, prod)", true),
            ("env notin (dev,prod)", false),
            ("env==prod,tier in (web)", true),
            ("env==prod,tier==db", false),
            ("x notin (a)", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&labels),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("env in prod").is_err());
    }

    #[test]
    fn embed_spellings() {
        let e = Embed::parse(["app.tasks", "apps.counts", "apps.lastTaskFailure"].into_iter());
        assert!(e.tasks && e.counts && e.last_task_failure && !e.deployments);
    }
}
