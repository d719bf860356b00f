//! JSON views of state: Task, AppInfo, groups, label selectors.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::model::{AppRecord, Task, TaskState, iso};
use super::progress::ip_of;
use super::state::SimState;
use crate::marathon::ids;

#[derive(Serialize)]
struct IpView {
    #[serde(rename = "ipAddress")]
    ip_address: String,
    protocol: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthView<'a> {
    alive: bool,
    consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_success: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_success: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failure_cause: Option<&'static str>,
    instance_id: &'a str,
}

/// Task JSON as 1.10 writes it (task.raml / TaskConversion): options omitted
/// when unset. (1.4 wrote `healthCheckResults`, `servicePorts` and
/// `ipAddresses` only when non-empty; 1.10 always writes them.) A typed view so the big list endpoints serialise without
/// building `Value` trees.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView<'a> {
    app_id: &'a str,
    id: &'a str,
    host: &'a str,
    state: &'static str,
    role: &'a str,
    slave_id: &'a str,
    ports: &'a [u16],
    service_ports: &'a [u16],
    ip_addresses: [IpView; 1],
    staged_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    version: &'a str,
    health_check_results: Vec<HealthView<'a>>,
    local_volumes: [u8; 0],
}

impl<'a> TaskView<'a> {
    pub fn new(rec: &AppRecord, t: &'a Task) -> TaskView<'a> {
        let mut hcr = Vec::new();
        if rec.has_health_checks()
            && let Some(alive) = t.healthy
        {
            let success = t.first_success.map(iso);
            let failure = if success.is_none() {
                t.started_at.map(iso)
            } else {
                None
            };
            hcr.push(HealthView {
                alive,
                consecutive_failures: if alive { 0 } else { 1 },
                last_success: success.clone(),
                first_success: success,
                last_failure_cause: failure.as_ref().map(|_| "Simulated: never healthy"),
                last_failure: failure,
                instance_id: &t.instance_id,
            });
        }
        TaskView {
            app_id: &t.app_id,
            id: &t.id,
            host: &t.host,
            state: t.state.mesos(),
            role: &t.role,
            slave_id: &t.slave_id,
            ports: &t.ports,
            service_ports: &t.service_ports,
            ip_addresses: [IpView {
                ip_address: ip_of(&t.host),
                protocol: "IPv4",
            }],
            staged_at: iso(t.staged_at),
            started_at: t.started_at.map(iso),
            version: &t.version,
            health_check_results: hcr,
            local_volumes: [],
        }
    }
}

pub fn task_json(rec: &AppRecord, t: &Task) -> Value {
    serde_json::to_value(TaskView::new(rec, t)).unwrap_or_default()
}

/// `{"apps":[AppInfo...]}` written straight to bytes (the 10,000-app case).
pub fn write_app_list<'a>(
    state: &SimState,
    apps: impl Iterator<Item = &'a AppRecord>,
    embed: Embed,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(b"{\"apps\":[");
    for (i, rec) in apps.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_app_info(&mut out, state, rec, embed);
    }
    out.extend_from_slice(b"]}");
    out
}

/// AppInfo into `out`: the stored definition with the runtime fields spliced in.
pub fn write_app_info(out: &mut Vec<u8>, state: &SimState, rec: &AppRecord, embed: Embed) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, &rec.app).is_err()
        || out.last() != Some(&b'}')
        || out.len() - start < 3
    {
        return;
    }
    out.pop();
    let field = |out: &mut Vec<u8>, key: &str, v: &dyn erased::Ser| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        v.write(out);
    };
    if embed.counts {
        let c = counts(rec);
        field(out, "tasksStaged", &c.0);
        field(out, "tasksRunning", &c.1);
        field(out, "tasksHealthy", &c.2);
        field(out, "tasksUnhealthy", &c.3);
    }
    if embed.deployments {
        let ids: Vec<Value> = state
            .deployments_of(rec.app["id"].as_str().unwrap_or(""))
            .iter()
            .map(|d| json!({"id": d.id}))
            .collect();
        field(out, "deployments", &ids);
    }
    if embed.readiness {
        field(out, "readinessCheckResults", &Vec::<Value>::new());
    }
    if embed.tasks {
        let tasks: Vec<TaskView> = rec.tasks.iter().map(|t| TaskView::new(rec, t)).collect();
        field(out, "tasks", &tasks);
    }
    if embed.last_task_failure
        && let Some(f) = &rec.last_task_failure
    {
        field(out, "lastTaskFailure", f);
    }
    out.push(b'}');
}

/// Object-safe "serialise to bytes" for the splicing above.
mod erased {
    pub trait Ser {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Ser for T {
        fn write(&self, out: &mut Vec<u8>) {
            let _ = serde_json::to_writer(out, self);
        }
    }
}

/// (staged, running, healthy, unhealthy)
fn counts(rec: &AppRecord) -> (usize, usize, usize, usize) {
    let mut c = (0, 0, 0, 0);
    let hc = rec.has_health_checks();
    for t in &rec.tasks {
        match t.state {
            TaskState::Staging => c.0 += 1,
            TaskState::Running => c.1 += 1,
        }
        match t.healthy {
            Some(true) if hc => c.2 += 1,
            Some(false) if hc => c.3 += 1,
            _ => {}
        }
    }
    c
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

/// AppInfo as a `Value` (single-app answers).
pub fn app_info(state: &SimState, rec: &AppRecord, embed: Embed) -> Value {
    let mut out = Vec::new();
    write_app_info(&mut out, state, rec, embed);
    serde_json::from_slice(&out).unwrap_or_else(|_| rec.app.clone())
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
