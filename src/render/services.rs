//! `service("db")`, `address("db")` and `addresses("db")`: config-file
//! templates naming other apps' live endpoints.
//!
//! The sets come from [`Endpoints`]: the daemon's view of Marathon, or
//! offline a documented placeholder set per app, so that `render`, `diff`
//! and `validate` stay deterministic. Names are checked against the repo
//! (and `external:` in pacer.yaml) so that a typo fails the render instead
//! of rendering an empty list forever. Only files with `reload: hot` may
//! call them: anything else would relaunch the app every time an endpoint
//! moves.

use super::*;
use crate::model::endpoints::{Endpoint, Endpoints, Mode, ServiceSet};
use minijinja::value::{Kwargs, Object, Value as JinjaValue, from_args};
use minijinja::{Error, ErrorKind, State};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

/// The longest service name a template may give.
pub const MAX_NAME: usize = 256;
/// Placeholder sets have one task per instance, at most this many.
pub const MAX_PLACEHOLDER_TASKS: u64 = 3;
/// The first placeholder port; port `j` of a placeholder task is this + j.
pub const PLACEHOLDER_PORT: u16 = 31000;
/// Version and start time of every placeholder task.
pub const PLACEHOLDER_TIME: &str = "1970-01-01T00:00:00.000Z";

/// What a template may name, built once per [`Repo`] and shared by every
/// app's templates (they must be `'static`, so this is behind an `Arc`).
pub(super) struct Catalog {
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) envs: BTreeMap<EnvName, EnvSettings>,
    /// Each environment file's `marathon`, the lowest layer of its apps.
    pub(super) env_marathon: BTreeMap<EnvName, Value>,
    /// App → environments its overlays name.
    pub(super) apps: BTreeMap<AppPath, BTreeSet<EnvName>>,
    pub(super) broken: BTreeSet<AppPath>,
    /// `external:` in pacer.yaml: Marathon id → its port names.
    pub(super) external: BTreeMap<String, Vec<String>>,
    pub(super) yaml_budget: usize,
    /// Apps' base and overlay files, parsed once and only when named.
    files: Mutex<HashMap<String, Option<Arc<Value>>>>,
    /// Placeholder sets, derived once and only for the apps named.
    placeholders: Mutex<HashMap<String, Arc<ServiceSet>>>,
    /// Every id a template may name, listed once (for did-you-mean hints:
    /// a repo may hold thousands of misspelt names).
    known: std::sync::OnceLock<Vec<String>>,
}

impl Catalog {
    /// Knows nothing: a stand-in while the repo that builds one loads.
    pub(super) fn empty() -> Catalog {
        Catalog {
            snapshot: Snapshot::from_files(Vec::new()),
            envs: BTreeMap::new(),
            env_marathon: BTreeMap::new(),
            apps: BTreeMap::new(),
            broken: BTreeSet::new(),
            external: BTreeMap::new(),
            yaml_budget: 0,
            files: Mutex::default(),
            placeholders: Mutex::default(),
            known: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn new(
        repo: &Repo,
        env_marathon: BTreeMap<EnvName, Value>,
        external: BTreeMap<String, Vec<String>>,
    ) -> Catalog {
        Catalog {
            snapshot: repo.snapshot.clone(),
            envs: repo.envs.clone(),
            env_marathon,
            apps: repo.apps.clone(),
            broken: repo.broken.keys().cloned().collect(),
            external,
            yaml_budget: repo.budgets.yaml_expanded_bytes,
            files: Mutex::default(),
            placeholders: Mutex::default(),
            known: std::sync::OnceLock::new(),
        }
    }

    /// A file's data, without its schema check: the app's own render
    /// reports its problems; this only looks up a few fields.
    fn data(&self, file: &str) -> Option<Arc<Value>> {
        if let Some(d) = self.files.lock().get(file) {
            return d.clone();
        }
        let d = self
            .snapshot
            .read_text(file)
            .ok()
            .and_then(|t| yaml::parse_within(file, &t, self.yaml_budget).ok())
            .map(Arc::new);
        self.files.lock().insert(file.to_string(), d.clone());
        d
    }

    /// The (environment, app) whose Marathon id is `id`, if an app of the
    /// repo runs there.
    fn app_of(&self, id: &str) -> Option<(&EnvName, &AppPath)> {
        for (env, s) in &self.envs {
            if !repo::group_contains(&s.group, id) {
                continue;
            }
            let app = id[s.group.len()..].trim_start_matches('/');
            let Some((app, _)) = self.apps.get_key_value(app) else {
                continue;
            };
            if self.broken.contains(app) {
                continue;
            }
            let base = self.data(&format!("apps/{app}/app.yaml"))?;
            let runs = match base.get("environments").and_then(Value::as_array) {
                Some(list) => list.iter().any(|v| v.as_str() == Some(env)),
                None => true,
            };
            if runs {
                return Some((env, app));
            }
        }
        None
    }

    fn knows(&self, id: &str) -> bool {
        self.external.contains_key(id) || self.app_of(id).is_some()
    }

    /// Every id a template may name, for a did-you-mean.
    fn known_ids(&self) -> &[String] {
        self.known.get_or_init(|| self.list_known())
    }

    fn list_known(&self) -> Vec<String> {
        let mut out: Vec<String> = self.external.keys().cloned().collect();
        for s in self.envs.values() {
            for app in self.apps.keys() {
                let id = s.app_id(app);
                if self.app_of(&id).is_some() {
                    out.push(id);
                }
            }
        }
        out
    }

    /// The placeholder set of a known service (see docs/repo-format.md).
    pub(super) fn placeholder(&self, id: &str) -> Arc<ServiceSet> {
        if let Some(s) = self.placeholders.lock().get(id) {
            return s.clone();
        }
        let set = Arc::new(self.derive_placeholder(id));
        self.placeholders.lock().insert(id.to_string(), set.clone());
        set
    }

    fn derive_placeholder(&self, id: &str) -> ServiceSet {
        if let Some(ports) = self.external.get(id) {
            let names = if ports.is_empty() {
                vec![None]
            } else {
                ports.iter().cloned().map(Some).collect()
            };
            return placeholder_set(id, names, 1);
        }
        let Some((env, app)) = self.app_of(id) else {
            return ServiceSet::default();
        };
        // The definition as layered, before templates: a placeholder
        // can't depend on values it would take a render to know.
        let mut marathon = self.env_marathon.get(env).cloned().unwrap_or(Value::Null);
        let mut files = vec![format!("apps/{app}/app.yaml")];
        if self.apps[app].contains(env) {
            files.push(format!("apps/{app}/env/{env}.yaml"));
        }
        for f in files {
            if let Some(m) = self.data(&f).and_then(|d| d.get("marathon").cloned()) {
                merge::merge_owned(&mut marathon, m);
            }
        }
        let instances = marathon
            .get("instances")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .min(MAX_PLACEHOLDER_TASKS);
        let ports = marathon.get("portDefinitions").or_else(|| {
            marathon
                .get("container")
                .and_then(|c| c.get("portMappings"))
        });
        let names = match ports.and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .map(|p| p.get("name").and_then(Value::as_str).map(String::from))
                .collect(),
            None => vec![None],
        };
        placeholder_set(id, names, instances as usize)
    }
}

/// `n` placeholder tasks of `id`, with these ports.
pub fn placeholder_set(id: &str, port_names: Vec<Option<String>>, n: usize) -> ServiceSet {
    let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    let ports: Vec<u16> = (0..port_names.len())
        .map(|j| PLACEHOLDER_PORT.saturating_add(j as u16))
        .collect();
    let tasks = (0..n)
        .map(|i| Endpoint {
            host: format!("{}-{i}.pacer.invalid", segments.join("-")),
            ips: vec![format!("192.0.2.{}", i + 1)],
            ports: ports.clone(),
            task_id: format!("{}.instance-placeholder-{i}._app.1", segments.join("_")),
            version: PLACEHOLDER_TIME.into(),
            started_at: PLACEHOLDER_TIME.into(),
        })
        .collect();
    ServiceSet::new(port_names, tasks)
}

/// Where a template runs, which decides whether it may name services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Site {
    /// A field of the app definition.
    Field = 0,
    /// A file with `reload: restart` (or an env entry).
    RestartFile = 1,
    /// A file with `reload: hot`.
    HotFile = 2,
}

/// One app's access to services, in one environment: shared by the
/// callables of its context, recording the services they named.
pub(super) struct ServiceUse {
    catalog: Arc<Catalog>,
    endpoints: Arc<Endpoints>,
    settings: EnvSettings,
    site: AtomicU8,
    used: Mutex<BTreeSet<String>>,
    /// Answers given, by call, id and port: a template that names a large
    /// service in a loop gets the same list again, not a new copy of it
    /// each time (a call costs one step of fuel).
    answers: Mutex<HashMap<(u8, String, String), JinjaValue>>,
}

impl ServiceUse {
    pub(super) fn new(
        catalog: Arc<Catalog>,
        endpoints: Arc<Endpoints>,
        settings: &EnvSettings,
    ) -> Arc<ServiceUse> {
        Arc::new(ServiceUse {
            catalog,
            endpoints,
            settings: settings.clone(),
            site: AtomicU8::new(Site::Field as u8),
            used: Mutex::default(),
            answers: Mutex::default(),
        })
    }

    /// Templates rendered from now on run at `site`.
    pub(super) fn set_site(&self, site: Site) {
        self.site.store(site as u8, Ordering::Relaxed);
    }

    fn site(&self) -> Site {
        match self.site.load(Ordering::Relaxed) {
            2 => Site::HotFile,
            1 => Site::RestartFile,
            _ => Site::Field,
        }
    }

    /// The Marathon ids named so far.
    pub(super) fn used(&self) -> BTreeSet<String> {
        self.used.lock().clone()
    }

    /// The context entries: `service`, `address` and `addresses`.
    pub(super) fn callables(self: &Arc<Self>) -> [(&'static str, JinjaValue); 3] {
        [Call::Service, Call::Address, Call::Addresses].map(|call| {
            let f = ServiceFn {
                call,
                uses: self.clone(),
            };
            (call.name(), JinjaValue::from_object(f))
        })
    }

    /// The Marathon id `name` stands for, checked.
    fn resolve(&self, call: Call, name: &JinjaValue) -> Result<String, Error> {
        let f = call.name();
        let Some(name) = name.as_str() else {
            return Err(failure(
                format!(
                    "{f}(): the service name must be a string, not {}",
                    name.kind()
                ),
                Some(format!("name the app as a string, e.g. {f}(\"db\")")),
            ));
        };
        if let Err(why) = check_name(name) {
            return Err(failure(
                format!("{f}(\"{}\"): {why}", name.escape_debug()),
                Some("name an app by its path under apps/ (`db`), or by its Marathon id (`/prod/db`)".into()),
            ));
        }
        let id = if name.starts_with('/') {
            name.to_string()
        } else {
            self.settings.app_id(name)
        };
        if !self.catalog.knows(&id) {
            // Only names of about its length can be a misspelling of it;
            // comparing each unknown name with every id would cost a
            // hostile repo's daemon seconds per error.
            let len = id.chars().count();
            let known: Vec<String> = self
                .catalog
                .known_ids()
                .iter()
                .filter(|k| k.chars().count().abs_diff(len) <= 3)
                .take(2_000)
                .cloned()
                .collect();
            let known = &known[..];
            let group = format!("{}/", self.settings.group.trim_end_matches('/'));
            let guess = schema::suggest(&id, known).map(|s| {
                if name.starts_with('/') {
                    s.to_string()
                } else {
                    s.strip_prefix(&group).unwrap_or(s).to_string()
                }
            });
            let mut hint = match guess {
                Some(g) => format!("did you mean `{g}`? "),
                None => String::new(),
            };
            hint.push_str(&format!(
                "If `{id}` is not an app of this repo, list it under `external:` in pacer.yaml"
            ));
            return Err(failure(
                format!(
                    "{f}(\"{name}\"): no app of this repo runs as `{id}` in environment `{}`, and it is not listed under `external:`",
                    self.settings.name
                ),
                Some(hint),
            ));
        }
        Ok(id)
    }

    /// The set of `id`: what Marathon has, else (a service not seen yet)
    /// none in the daemon, a placeholder set offline.
    fn set(&self, id: &str) -> Arc<ServiceSet> {
        if let Some(s) = self.endpoints.services.get(id) {
            return s.clone();
        }
        let p = self.catalog.placeholder(id);
        match self.endpoints.mode {
            Mode::Placeholders => p,
            // Its port names still tell a typo in a port name apart.
            Mode::Live => Arc::new(ServiceSet {
                port_names: p.port_names.clone(),
                tasks: Vec::new(),
            }),
        }
    }
}

/// A service name is a Marathon path: lower-case segments of letters,
/// digits, `-` and `.`, none empty, none `.` or `..`.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!(
            "the name is {} characters long, over the limit of {MAX_NAME}",
            name.len()
        ));
    }
    let rest = name.strip_prefix('/').unwrap_or(name);
    if rest.is_empty() {
        return Err("the name is empty".into());
    }
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err("the name has an empty segment (`//` or a trailing `/`)".into());
        }
        if seg == "." || seg == ".." {
            return Err(format!(
                "`{seg}` is not allowed in a name: a service is named by its path, not relative to another"
            ));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '.'))
        {
            return Err(format!(
                "`{}` is not allowed in a name: lower-case letters, digits, `-` and `.` only",
                c.escape_debug()
            ));
        }
    }
    Ok(())
}

/// A service error with a hint, which `template::to_error` shows as one.
#[derive(Debug)]
pub struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}

fn failure(message: String, hint: Option<String>) -> Error {
    // Always a source: it marks the error as one of ours.
    Error::new(ErrorKind::InvalidOperation, message).with_source(Hint(hint.unwrap_or_default()))
}

/// The hint a service error carries, and that it is one.
pub(super) fn hint_of(e: &Error) -> Option<&str> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<Hint>() {
            return Some(&h.0);
        }
        source = s.source();
    }
    None
}

#[derive(Clone, Copy, Debug)]
enum Call {
    Service,
    Address,
    Addresses,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Service => "service",
            Call::Address => "address",
            Call::Addresses => "addresses",
        }
    }
}

struct ServiceFn {
    call: Call,
    uses: Arc<ServiceUse>,
}

impl std::fmt::Debug for ServiceFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}()", self.call.name())
    }
}

impl Object for ServiceFn {
    fn call(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        args: &[JinjaValue],
    ) -> Result<JinjaValue, Error> {
        let f = self.call.name();
        let refused = match self.uses.site() {
            Site::HotFile => None,
            Site::Field => Some((
                "a field of the app definition",
                "read endpoints in a config file with `reload: hot` instead (see docs/repo-format.md)",
            )),
            Site::RestartFile => Some((
                "a file with `reload: restart`",
                "set `reload: hot` on this file, and have the app reload it when it changes",
            )),
        };
        if let Some((site, fix)) = refused {
            return Err(failure(
                format!(
                    "{f}() can't be used in {site}: the app would be relaunched every time an endpoint of the service moves"
                ),
                Some(fix.into()),
            ));
        }
        let (name, port, kwargs): (JinjaValue, Option<JinjaValue>, Kwargs) = from_args(args)?;
        let port = match self.call {
            Call::Service => None,
            _ => match port {
                Some(p) => Some(p),
                None => kwargs.get::<Option<JinjaValue>>("port")?,
            },
        };
        kwargs.assert_all_used()?;
        if port.is_some() && matches!(self.call, Call::Service) {
            return Err(failure(
                "service() takes only the service's name".into(),
                Some("pick a port with `address(name, port=...)`, or with `task.ports[i]` or `task.named.<name>`".into()),
            ));
        }
        let id = self.uses.resolve(self.call, &name)?;
        self.uses.used.lock().insert(id.clone());
        let key = (
            self.call as u8,
            id.clone(),
            port.as_ref().map(ToString::to_string).unwrap_or_default(),
        );
        if let Some(v) = self.uses.answers.lock().get(&key) {
            return Ok(v.clone());
        }
        let answer = self.answer(&id, port.as_ref())?;
        self.uses.answers.lock().insert(key, answer.clone());
        Ok(answer)
    }
}

impl ServiceFn {
    fn answer(&self, id: &str, port: Option<&JinjaValue>) -> Result<JinjaValue, minijinja::Error> {
        let f = self.call.name();
        let set = self.uses.set(id);
        match self.call {
            Call::Service => Ok(JinjaValue::from(minijinja::value::Serde(
                set.tasks.iter().map(|t| task(t, &set)).collect::<Vec<_>>(),
            ))),
            Call::Address | Call::Addresses => {
                let j = port_index(id, &set, port)?;
                let mut out = Vec::with_capacity(set.tasks.len());
                for t in &set.tasks {
                    let Some(p) = t.ports.get(j) else {
                        return Err(failure(
                            format!("{f}(\"{id}\"): task `{}` has no port {j}", t.task_id),
                            Some(format!(
                                "it has {} port(s): pick one by index from 0, or by name",
                                t.ports.len()
                            )),
                        ));
                    };
                    out.push(format!("{}:{p}", t.host));
                }
                if let Call::Address = self.call {
                    return Ok(out
                        .into_iter()
                        .next()
                        .map_or(JinjaValue::from(()), JinjaValue::from));
                }
                Ok(JinjaValue::from(out))
            }
        }
    }
}

/// The index of the port `port` names (an index or a port name).
fn port_index(id: &str, set: &ServiceSet, port: Option<&JinjaValue>) -> Result<usize, Error> {
    let Some(port) = port else { return Ok(0) };
    if let Some(name) = port.as_str() {
        return set.port_index(name).ok_or_else(|| {
            let names = set.named_ports();
            let has = if names.is_empty() {
                "it has no named ports: pick one by index, e.g. `port=0`".to_string()
            } else {
                format!("its named ports: {}", names.join(", "))
            };
            let guess = schema::suggest(
                name,
                &names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .map(|g| format!("did you mean `{g}`? "))
            .unwrap_or_default();
            failure(
                format!("service `{id}` has no port named `{name}`"),
                Some(format!("{guess}{has}")),
            )
        });
    }
    let j = port
        .as_i64()
        .filter(|j| *j >= 0)
        .and_then(|j| usize::try_from(j).ok())
        .ok_or_else(|| {
            failure(
                format!(
                    "service `{id}`: port must be an index from 0 or a port name, not `{port}`"
                ),
                None,
            )
        })?;
    if !set.port_names.is_empty() && j >= set.port_names.len() {
        return Err(failure(
            format!(
                "service `{id}` has {} port(s): there is no port {j}",
                set.port_names.len()
            ),
            Some("ports count from 0".into()),
        ));
    }
    Ok(j)
}

/// A task as templates see it.
fn task(t: &Endpoint, set: &ServiceSet) -> Value {
    let named: Map<String, Value> = set
        .port_names
        .iter()
        .enumerate()
        .filter_map(|(j, n)| Some((n.clone()?, Value::from(*t.ports.get(j)?))))
        .collect();
    let port = t.ports.first();
    serde_json::json!({
        "host": t.host,
        "ip": t.ips.first().unwrap_or(&t.host),
        "ips": t.ips,
        "port": port,
        "ports": t.ports,
        "named": named,
        "id": t.task_id,
        "version": t.version,
        "startedAt": t.started_at,
        "address": port.map(|p| format!("{}:{p}", t.host)),
    })
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
