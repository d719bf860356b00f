//! Live endpoints: the running (and, where the app has health checks,
//! healthy) tasks of the apps that config-file templates name with
//! `service("db")`.
//!
//! An input of `render`, produced by the daemon's endpoint follower from
//! Marathon (`reconcile::endpoints`), or offline by placeholders (`pacer
//! render`, `diff`, `validate`) so that a dry run stays deterministic.
//! Every set is sorted, so the same tasks always render the same bytes.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One running task of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The agent's host name, as Marathon reports it.
    pub host: String,
    /// The task's IP addresses (Marathon's `ipAddresses`).
    #[serde(default)]
    pub ips: Vec<String>,
    /// Host ports, by the index of the app's port definitions.
    #[serde(default)]
    pub ports: Vec<u16>,
    pub task_id: String,
    /// The app version the task runs.
    #[serde(default)]
    pub version: String,
    /// When the task started (RFC 3339), empty when not reported.
    #[serde(default)]
    pub started_at: String,
}

/// The tasks of one service, sorted (host, addresses, ports, id).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSet {
    /// Port names by index (`portDefinitions[].name`, or the container's
    /// `portMappings[].name`); `None` where a port has no name.
    #[serde(default)]
    pub port_names: Vec<Option<String>>,
    #[serde(default)]
    pub tasks: Vec<Endpoint>,
}

impl ServiceSet {
    /// A set with its tasks sorted and duplicates (same task id) dropped.
    pub fn new(port_names: Vec<Option<String>>, mut tasks: Vec<Endpoint>) -> ServiceSet {
        tasks.sort();
        let mut seen = BTreeSet::new();
        tasks.retain(|t| seen.insert(t.task_id.clone()));
        ServiceSet { port_names, tasks }
    }

    /// The index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.port_names
            .iter()
            .position(|n| n.as_deref() == Some(name))
    }

    /// The port names this service has, for an error message.
    pub fn named_ports(&self) -> Vec<&str> {
        self.port_names
            .iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

/// Where services not in [`Endpoints::services`] come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Offline (`render`, `diff`, `validate`): an app of the repo gets a
    /// documented placeholder set built from its definition.
    #[default]
    Placeholders,
    /// The daemon: a service not seen yet in Marathon has no tasks.
    Live,
}

/// Every service's set, by Marathon app id (`/prod/db`).
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    pub mode: Mode,
    pub services: BTreeMap<String, Arc<ServiceSet>>,
}

impl Endpoints {
    /// Offline: placeholders for every app of the repo.
    pub fn placeholders() -> Endpoints {
        Endpoints::default()
    }

    /// The daemon's view.
    pub fn live(services: BTreeMap<String, Arc<ServiceSet>>) -> Endpoints {
        Endpoints {
            mode: Mode::Live,
            services,
        }
    }

    /// The services whose sets differ between `self` and `next` (added,
    /// gone or changed).
    pub fn changed(&self, next: &Endpoints) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (id, set) in &next.services {
            match self.services.get(id) {
                Some(old) if Arc::ptr_eq(old, set) || old == set => {}
                _ => {
                    out.insert(id.clone());
                }
            }
        }
        for id in self.services.keys() {
            if !next.services.contains_key(id) {
                out.insert(id.clone());
            }
        }
        out
    }
}

/// Why a set is held back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub reason: String,
    /// Tasks in the set templates see, and in the set held back.
    pub released_tasks: usize,
    pub held_tasks: usize,
    /// Since when (Unix ms).
    pub since_ms: u64,
}

/// One followed service as `/api/v1/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Tasks in the set templates see.
    pub tasks: usize,
    /// Tasks Marathon reported last, when that differs (waiting or held).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_tasks: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
    /// The last read failed: why (the last good set stays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(host: &str, port: u16, id: &str) -> Endpoint {
        Endpoint {
            host: host.into(),
            ips: vec![],
            ports: vec![port],
            task_id: id.into(),
            version: String::new(),
            started_at: String::new(),
        }
    }

    #[test]
    fn sets_are_sorted_whatever_order_marathon_lists_tasks_in() {
        let a = ServiceSet::new(vec![], vec![task("b", 2, "t2"), task("a", 1, "t1")]);
        let b = ServiceSet::new(vec![], vec![task("a", 1, "t1"), task("b", 2, "t2")]);
        assert_eq!(a, b);
        assert_eq!(a.tasks[0].host, "a");
        let dup = ServiceSet::new(vec![], vec![task("a", 1, "t1"), task("a", 1, "t1")]);
        assert_eq!(dup.tasks.len(), 1);
    }

    #[test]
    fn ports_are_found_by_name() {
        let s = ServiceSet::new(vec![None, Some("pg".into())], vec![]);
        assert_eq!(s.port_index("pg"), Some(1));
        assert_eq!(s.port_index("http"), None);
        assert_eq!(s.named_ports(), ["pg"]);
    }

    #[test]
    fn changed_names_added_gone_and_moved_services() {
        let one = Arc::new(ServiceSet::new(vec![], vec![task("a", 1, "t1")]));
        let moved = Arc::new(ServiceSet::new(vec![], vec![task("a", 2, "t2")]));
        let before = Endpoints::live(
            [
                ("/p/db".to_string(), one.clone()),
                ("/p/gone".to_string(), one.clone()),
            ]
            .into(),
        );
        let after = Endpoints::live(
            [
                ("/p/db".to_string(), moved),
                ("/p/new".to_string(), one.clone()),
            ]
            .into(),
        );
        let c: Vec<_> = before.changed(&after).into_iter().collect();
        assert_eq!(c, ["/p/db", "/p/gone", "/p/new"]);
        // An equal set in a new `Arc` is no change.
        let same = Endpoints::live([("/p/db".to_string(), Arc::new((*one).clone()))].into());
        let again = Endpoints::live([("/p/db".to_string(), one)].into());
        assert!(same.changed(&again).is_empty());
    }
}
