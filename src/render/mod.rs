//! Turns a [`Snapshot`] of the config repo into the desired state of each
//! environment: one Marathon app definition and one bundle of config files
//! per app. Or, when the repo has problems, every problem found, each at its
//! `file:line:column`.
//!
//! Layers, lowest first: `environments/<env>.yaml`, `apps/<app>/app.yaml`,
//! `apps/<app>/env/<env>.yaml`. See `docs/repo-format.md`.

mod app;
pub mod budget;
pub mod checks;
mod diagnostic;
pub mod merge;
pub mod schema;
pub mod secrets;
pub mod template;
pub mod tree;
pub mod yaml;

pub use budget::Budgets;
pub use diagnostic::{Diagnostic, Diagnostics, quote_path};

use crate::marathon::validate as marathon_rules;
use crate::model::{AppPath, Digest, EnvName, Secret};
use crate::source::{self, Revision, Snapshot};
use app::AppContext;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use template::Templates;
use yaml::Target;

pub const CONFIG_FILE: &str = "pacer.yaml";

/// Labels pacer writes on every app; users may not set `pacer.*` labels.
pub mod labels {
    pub const COMMIT: &str = "pacer.commit";
    pub const ENV: &str = "pacer.env";
    pub const SOURCE: &str = "pacer.source";
    pub const CONFIG_HASH: &str = "pacer.config-hash";
    pub const PREFIX: &str = "pacer.";
}

/// What an environment lets the daemon do on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub auto_apply: bool,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub self_heal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvSettings {
    pub name: EnvName,
    /// The Marathon group every app of this environment lives under (`/prod`).
    pub group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marathon: Option<String>,
    pub policy: Policy,
}

impl EnvSettings {
    pub fn app_id(&self, app: &str) -> String {
        if self.group == "/" {
            format!("/{app}")
        } else {
            format!("{}/{app}", self.group)
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvSettings {
    group: Option<String>,
    marathon: Option<String>,
    #[serde(default)]
    policy: Policy,
}

#[derive(Deserialize)]
struct RawConfig {
    environments: BTreeMap<String, Option<RawEnvSettings>>,
}

/// How a config file reaches the running tasks after a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reload {
    /// The agent rewrites it and the app reloads in place; no relaunch.
    Hot,
    /// The tasks are rolled (through the `pacer.config-hash` label).
    Restart,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RenderedFile {
    /// Where the agent writes it inside the task.
    pub path: String,
    pub reload: Reload,
    pub digest: Digest,
    #[serde(skip)]
    pub content: Vec<u8>,
}

/// One app's desired state in one environment.
#[derive(Clone, Debug, Serialize)]
pub struct RenderedApp {
    pub id: String,
    pub app: AppPath,
    pub env: EnvName,
    /// The exact body pacer PUTs to `/v2/apps/{id}`.
    pub marathon: Value,
    pub files: BTreeMap<String, RenderedFile>,
    /// JSON pointers pacer neither diffs nor writes.
    pub ignore: Vec<String>,
    /// How long a deployment may take before it is rolled back; `None`:
    /// the daemon's (or `apply`'s) default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_timeout_seconds: Option<u64>,
    /// Values to keep out of every output, by name.
    #[serde(skip)]
    pub secrets: Vec<(String, Secret<String>)>,
    /// The app as people see it, with `<secret:name>` for every secret its
    /// templates read; `None` when they read none (it is `marathon` and
    /// `files` then). Everything printed comes from here: see [`secrets`].
    #[serde(skip)]
    pub shown: Option<Arc<secrets::Shown>>,
    /// A digest of every input this app was rendered from. Equal inputs
    /// render equal outputs, so equal fingerprints need no re-render.
    #[serde(skip)]
    pub inputs: Digest,
}

impl RenderedApp {
    /// The app definition to show people: placeholders for secrets.
    pub fn shown_marathon(&self) -> &Value {
        self.shown.as_ref().map_or(&self.marathon, |s| &s.marathon)
    }

    /// A file's content to show people: placeholders for secrets.
    pub fn shown_file(&self, name: &str) -> Option<&[u8]> {
        if let Some(c) = self.shown.as_ref().and_then(|s| s.files.get(name)) {
            return Some(c);
        }
        self.files.get(name).map(|f| f.content.as_slice())
    }

    /// The digest of the secrets a part read (`""`: the app definition,
    /// else a file's name), if it read any. Never printed.
    pub fn secret_digest(&self, part: &str) -> Option<&Digest> {
        self.shown.as_ref()?.secret_digests.get(part)
    }

    /// `live` (as Marathon has it) fit to show beside [`Self::shown_marathon`]:
    /// see [`secrets::shown_live`].
    pub fn shown_live(&self, live: &Value) -> Value {
        match &self.shown {
            Some(s) => secrets::shown_live(&self.marathon, &s.marathon, live, &self.secrets),
            None if self.secrets.is_empty() => live.clone(),
            None => secrets::shown_live(&self.marathon, &self.marathon, live, &self.secrets),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DesiredEnv {
    pub settings: EnvSettings,
    pub apps: BTreeMap<AppPath, RenderedApp>,
}

/// The desired state of the environments that were rendered.
#[derive(Clone, Debug)]
pub struct Desired {
    pub revision: Revision,
    pub envs: BTreeMap<EnvName, DesiredEnv>,
}

/// Which part of the repo to render.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// `None`: every environment.
    pub envs: Option<BTreeSet<EnvName>>,
    /// `None`: every app.
    pub apps: Option<BTreeSet<AppPath>>,
}

/// A parsed YAML file, kept with its text so diagnostics can find lines.
#[derive(Debug)]
struct Layer {
    file: String,
    text: Arc<str>,
    data: Value,
}

impl Layer {
    fn get(&self, pointer: &str) -> Option<&Value> {
        self.data.pointer(pointer)
    }

    fn diag(&self, pointer: &str, target: Target, message: impl Into<String>) -> Diagnostic {
        Diagnostic::file(&self.file, message)
            .with_position(yaml::locate(&self.text, pointer, target))
    }
}

/// The parts of a repo shared by all its apps: settings, environment files
/// and the list of apps with their overlays.
pub struct Repo {
    snapshot: Arc<Snapshot>,
    pub envs: BTreeMap<EnvName, EnvSettings>,
    env_layers: BTreeMap<EnvName, Layer>,
    /// App path → environments its overlays name.
    pub apps: BTreeMap<AppPath, BTreeSet<EnvName>>,
    templates: Templates,
    shared_digests: parking_lot::Mutex<std::collections::HashMap<AppPath, Digest>>,
    /// Apps made invalid by the shape of the tree (a symlinked directory),
    /// with their problems: they render as errors, never as absent.
    broken: BTreeMap<AppPath, Vec<Diagnostic>>,
    budgets: Budgets,
    /// When every render from this repo must have ended ([`Budgets::deadline`]).
    deadline: Option<std::time::Instant>,
}

impl Repo {
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Reads `pacer.yaml`, the environment files and the app list. Problems
    /// go to `diags`; what could be read is kept so that later stages can
    /// still report their own problems in the same run.
    pub fn load(snapshot: Arc<Snapshot>, diags: &mut Diagnostics) -> Option<Repo> {
        Self::load_with(snapshot, &Budgets::default(), diags)
    }

    /// [`Repo::load`] with explicit budgets. The deadline counts from now
    /// and covers every later [`render_pairs`] on this repo.
    pub fn load_with(
        snapshot: Arc<Snapshot>,
        budgets: &Budgets,
        diags: &mut Diagnostics,
    ) -> Option<Repo> {
        let deadline = budgets.deadline_from(std::time::Instant::now());
        let Some(config) = read_layer(&snapshot, CONFIG_FILE, schema::Kind::Pacer, budgets, diags)
        else {
            if !snapshot.contains(CONFIG_FILE) {
                diags.push(
                    Diagnostic::file(CONFIG_FILE, "missing: this is not a pacer config repo")
                        .with_hint("create pacer.yaml with `version: 1` and your `environments` (see docs/repo-format.md)"),
                );
            }
            return None;
        };
        let raw: RawConfig = match serde_json::from_value(config.data.clone()) {
            Ok(r) => r,
            Err(e) => {
                // The schema should have caught this; keep a readable error anyway.
                diags.push(config.diag("", Target::Value, format!("invalid settings: {e}")));
                return None;
            }
        };
        let mut envs = BTreeMap::new();
        let mut groups: BTreeMap<String, EnvName> = BTreeMap::new();
        for (name, raw_env) in raw.environments {
            let ptr = format!("/environments/{}", schema::escape(&name));
            let raw_env = raw_env.unwrap_or(RawEnvSettings {
                group: None,
                marathon: None,
                policy: Policy::default(),
            });
            let group = raw_env.group.unwrap_or_else(|| format!("/{name}"));
            let group = if group.starts_with('/') {
                group
            } else {
                format!("/{group}")
            };
            let group = group.trim_end_matches('/').to_string();
            let group = if group.is_empty() {
                "/".to_string()
            } else {
                group
            };
            if group != "/" {
                if let Err(e) = marathon_rules::validate_path_id(&group) {
                    diags.push(
                        config
                            .diag(&format!("{ptr}/group"), Target::Value, format!("environment `{name}`: group `{group}` is not a valid Marathon group id: {e}"))
                            .with_hint("use lower-case letters, digits and dashes, separated by `/`"),
                    );
                }
            }
            // Groups may not overlap: an environment whose group holds
            // another's would own (and prune, and heal) the other's apps.
            for (other_group, other) in &groups {
                let message = if *other_group == group {
                    format!(
                        "environments `{other}` and `{name}` share the group `{group}`, so their apps would have the same Marathon ids"
                    )
                } else if group_contains(other_group, &group) {
                    format!(
                        "environment `{name}`'s group `{group}` is inside environment `{other}`'s group `{other_group}`: each would take the other's apps for its own"
                    )
                } else if group_contains(&group, other_group) {
                    format!(
                        "environment `{name}`'s group `{group}` holds environment `{other}`'s group `{other_group}`: each would take the other's apps for its own"
                    )
                } else {
                    continue;
                };
                diags.push(
                    config
                        .diag(&format!("{ptr}/group"), Target::Value, message)
                        .with_hint("give each environment its own group, outside every other environment's (e.g. `/dev` and `/qa`, not `/dev/qa`)"),
                );
            }
            groups.insert(group.clone(), name.clone());
            envs.insert(
                name.clone(),
                EnvSettings {
                    name,
                    group,
                    marathon: raw_env.marathon,
                    policy: raw_env.policy,
                },
            );
        }
        let known: Vec<String> = envs.keys().cloned().collect();

        let mut env_layers = BTreeMap::new();
        for name in envs.keys() {
            let file = format!("environments/{name}.yaml");
            if !snapshot.contains(&file) {
                diags.push(
                    config
                        .diag(
                            &format!("/environments/{}", schema::escape(name)),
                            Target::Key,
                            format!("environment `{name}` has no file `{file}`"),
                        )
                        .with_hint(format!("create `{file}` (it may be empty: `values: {{}}`)")),
                );
                continue;
            }
            if let Some(layer) =
                read_layer(&snapshot, &file, schema::Kind::Environment, budgets, diags)
            {
                env_layers.insert(name.clone(), layer);
            }
        }
        for (path, _) in snapshot.under("environments") {
            let Some(name) = path
                .strip_prefix("environments/")
                .and_then(|n| n.strip_suffix(".yaml").or_else(|| n.strip_suffix(".yml")))
            else {
                continue;
            };
            if !envs.contains_key(name) {
                diags.push(unknown_env(path, name, &known, "pacer.yaml"));
            }
        }

        let mut apps: BTreeMap<AppPath, BTreeSet<EnvName>> = BTreeMap::new();
        for (path, _) in snapshot.under("apps") {
            if let Some(app) = path
                .strip_prefix("apps/")
                .and_then(|p| p.strip_suffix("/app.yaml"))
            {
                apps.insert(app.to_string(), BTreeSet::new());
            }
        }
        // Apps don't nest: `apps/a/b/app.yaml` under `apps/a/` would make
        // `a`'s files ambiguous.
        let names: Vec<AppPath> = apps.keys().cloned().collect();
        for pair in names.windows(2) {
            if pair[1].starts_with(&format!("{}/", pair[0])) {
                diags.push(
                    Diagnostic::file(
                        format!("apps/{}/app.yaml", pair[1]),
                        format!(
                            "app `{}` is inside app `{}`: apps do not nest",
                            pair[1], pair[0]
                        ),
                    )
                    .with_hint(format!("move it out of `apps/{}/`", pair[0])),
                );
            }
        }
        // An app whose directory can't be a Marathon id gets that one error
        // (Marathon's own check of the id would repeat it as a regular
        // expression at every layer): it is not rendered.
        let mut broken: BTreeMap<AppPath, Vec<Diagnostic>> = BTreeMap::new();
        for app in &names {
            if marathon_rules::validate_path_id(&format!("/{app}")).is_err() {
                broken.entry(app.clone()).or_default().push(
                    Diagnostic::file(format!("apps/{app}/app.yaml"), format!("invalid Marathon id: the app directory `apps/{app}` becomes part of the app's id"))
                        .with_hint("rename the directory: lower-case letters, digits and dashes; a dash can't start or end a name"),
                );
            }
            if let Some(last) = app.rsplit('/').next() {
                if ["restart", "tasks", "versions"].contains(&last) {
                    broken.entry(app.clone()).or_default().push(
                        Diagnostic::file(format!("apps/{app}/app.yaml"), format!("app directory `apps/{app}`: `{last}` is reserved by Marathon as the last part of an id"))
                            .with_hint(format!("rename the directory, e.g. `{last}-app`")),
                    );
                }
            }
        }
        let problems = tree::check(&snapshot, &names);
        for d in problems.repo {
            diags.push(d);
        }
        for (app, list) in problems.apps {
            apps.entry(app.clone()).or_default();
            broken.entry(app).or_default().extend(list);
        }
        // Overlays: apps/<app>/env/<env>.yaml.
        for (path, _) in snapshot.under("apps") {
            let Some((dir, file)) = path.rsplit_once("/env/") else {
                continue;
            };
            let Some(env) = file
                .strip_suffix(".yaml")
                .or_else(|| file.strip_suffix(".yml"))
            else {
                continue;
            };
            if env.contains('/') {
                continue;
            }
            let app = dir.trim_start_matches("apps/");
            if let Some(set) = apps.get_mut(app) {
                if envs.contains_key(env) {
                    set.insert(env.to_string());
                } else {
                    diags.push(unknown_env(path, env, &known, "pacer.yaml"));
                }
            } else if !apps.keys().any(|a| is_inside(app, a)) {
                diags.push(
                    Diagnostic::file(path.clone(), format!("overlay for `{app}`, but there is no `apps/{app}/app.yaml`"))
                        .with_hint(format!("create `apps/{app}/app.yaml`, or move this file under the app it belongs to")),
                );
            }
        }
        Some(Repo {
            snapshot,
            envs,
            env_layers,
            apps,
            templates: Templates::with_budgets(budgets),
            shared_digests: Default::default(),
            broken,
            budgets: budgets.clone(),
            deadline,
        })
    }

    /// A digest of every input of `app` in `env`: the repo settings, the
    /// environment file, the app's own overlay and everything else under
    /// the app's directory except other environments' overlays (a prod-only
    /// change must not re-render dev). Symlinks count by what they point at.
    pub fn inputs(&self, env: &str, app: &str) -> Digest {
        let snap = &self.snapshot;
        let id = |path: &str| {
            snap.content_id(path)
                .map(|o| o.as_bytes().to_vec())
                .unwrap_or_default()
        };
        let shared = self.shared_inputs(app);
        let overlay = format!("apps/{app}/env/{env}.yaml");
        let env_file = format!("environments/{env}.yaml");
        let parts = [
            (CONFIG_FILE, id(CONFIG_FILE)),
            (env_file.as_str(), id(&env_file)),
            (overlay.as_str(), id(&overlay)),
            ("shared", shared.0.into_bytes()),
        ];
        Digest::of_parts(parts.iter().map(|(p, b)| (*p, b.as_slice())))
    }

    /// The digest of an app's directory without its overlays, computed once
    /// per app and shared by every environment.
    fn shared_inputs(&self, app: &str) -> Digest {
        if let Some(d) = self.shared_digests.lock().get(app) {
            return d.clone();
        }
        let snap = &self.snapshot;
        let overlays = format!("apps/{app}/env/");
        let parts: Vec<(&String, Vec<u8>)> = snap
            .under(&format!("apps/{app}"))
            .filter(|(path, _)| !path.starts_with(&overlays))
            .map(|(path, _)| {
                (
                    path,
                    snap.content_id(path)
                        .map(|o| o.as_bytes().to_vec())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let d = Digest::of_parts(parts.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
        self.shared_digests
            .lock()
            .insert(app.to_string(), d.clone());
        d
    }

    /// Which (environment, app) pairs the scope covers, checking that the
    /// names it gives exist.
    pub fn resolve_scope(&self, scope: &Scope) -> Result<Vec<(EnvName, Vec<AppPath>)>, String> {
        let known_envs: Vec<String> = self.envs.keys().cloned().collect();
        if let Some(want) = &scope.envs {
            for e in want {
                if !self.envs.contains_key(e) {
                    let hint = schema::suggest(e, &known_envs)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(format!(
                        "unknown environment `{e}`{hint}; pacer.yaml has: {}",
                        known_envs.join(", ")
                    ));
                }
            }
        }
        if let Some(want) = &scope.apps {
            let known: Vec<String> = self.apps.keys().cloned().collect();
            for a in want {
                if !self.apps.contains_key(a) {
                    let hint = schema::suggest(a, &known)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(format!(
                        "unknown app `{a}`{hint}: there is no `apps/{a}/app.yaml`"
                    ));
                }
            }
        }
        Ok(self
            .envs
            .keys()
            .filter(|e| scope.envs.as_ref().is_none_or(|w| w.contains(*e)))
            .map(|e| {
                let apps = self
                    .apps
                    .keys()
                    .filter(|a| scope.apps.as_ref().is_none_or(|w| w.contains(*a)))
                    .cloned()
                    .collect();
                (e.clone(), apps)
            })
            .collect())
    }
}

/// Marathon group `outer` holds group `inner` (`/dev` holds `/dev/qa`; `/`
/// holds every group).
fn group_contains(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner
            .strip_prefix(outer)
            .is_some_and(|r| r.starts_with('/'))
}

/// `app` lies under the directory of app `other` (only a misplaced overlay
/// or a nested app does).
fn is_inside(app: &str, other: &str) -> bool {
    app.len() > other.len() && app.starts_with(other) && app.as_bytes()[other.len()] == b'/'
}

fn unknown_env(file: &str, name: &str, known: &[String], defined_in: &str) -> Diagnostic {
    let hint = match schema::suggest(name, known) {
        Some(s) => {
            format!("did you mean `{s}`? Or add `{name}` to the environments in {defined_in}")
        }
        None => format!(
            "known environments: {}; add `{name}` to {defined_in} or remove this file",
            known.join(", ")
        ),
    };
    Diagnostic::file(
        file,
        format!("environment `{name}` is not defined in {defined_in}"),
    )
    .with_hint(hint)
}

/// Reads, parses and schema-checks one YAML file. Schema problems under
/// `/marathon` wait for the merged app, where templates have been expanded.
fn read_layer(
    snap: &Snapshot,
    file: &str,
    kind: schema::Kind,
    budgets: &Budgets,
    diags: &mut Diagnostics,
) -> Option<Layer> {
    let text = match snap.read_text(file) {
        Ok(t) => t,
        Err(source::Error::NotFound { .. }) => return None,
        Err(e) => {
            diags.push(source_diag(file, &e));
            return None;
        }
    };
    let data = match yaml::parse_within(file, &text, budgets.yaml_expanded_bytes) {
        Ok(d) => d,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let layer = Layer {
        file: file.to_string(),
        text: text.into(),
        data,
    };
    if !layer.data.is_object() {
        diags.push(layer.diag(
            "",
            Target::Value,
            "expected a map of settings at the top of the file",
        ));
        return None;
    }
    let mut ok = true;
    for v in schema::check(kind, &layer.data) {
        let merged_later = kind == schema::Kind::App || kind == schema::Kind::Environment;
        if merged_later && v.pointer.starts_with("/marathon/") {
            continue;
        }
        ok = false;
        let target = if v.unknown_key {
            Target::Key
        } else {
            Target::Value
        };
        let mut d = layer.diag(&v.pointer, target, v.message);
        d.hint = v.hint;
        diags.push(d);
    }
    ok.then_some(layer)
}

fn source_diag(file: &str, e: &source::Error) -> Diagnostic {
    match e {
        source::Error::NotUtf8 { path, line, column } => {
            Diagnostic::at(path, *line, *column, "file is not valid UTF-8")
                .with_hint("save the file as UTF-8")
        }
        source::Error::TooLarge { path, size, limit } => Diagnostic::file(
            path,
            format!(
                "file is {:.1} MiB, over the {} MiB limit for config files",
                *size as f64 / 1048576.0,
                limit / 1048576
            ),
        )
        .with_hint("config files should be small; keep large artifacts out of the config repo"),
        source::Error::SymlinkOutside { path, target } => Diagnostic::file(
            path,
            format!("symlink to `{target}` points outside the config repo"),
        )
        .with_hint("pacer reads only files inside the repo; copy the file in instead"),
        other => Diagnostic::file(file, other.to_string()),
    }
}

/// Renders the environments and apps in `scope`. On any problem, returns
/// all problems found, sorted by file and line.
pub fn render(snapshot: Arc<Snapshot>, scope: &Scope) -> Result<Desired, Vec<Diagnostic>> {
    render_with(snapshot, scope, &Budgets::default())
}

/// [`render`] within explicit budgets.
pub fn render_with(
    snapshot: Arc<Snapshot>,
    scope: &Scope,
    budgets: &Budgets,
) -> Result<Desired, Vec<Diagnostic>> {
    let mut diags = Diagnostics::default();
    let Some(repo) = Repo::load_with(snapshot.clone(), budgets, &mut diags) else {
        return Err(diags.finish());
    };
    let pairs = match repo.resolve_scope(scope) {
        Ok(p) => p,
        Err(e) => {
            diags.push(Diagnostic::file(CONFIG_FILE, e));
            return Err(diags.finish());
        }
    };
    let desired = render_pairs(&repo, &pairs, &mut diags);
    if diags.is_empty() {
        Ok(desired)
    } else {
        Err(diags.finish())
    }
}

/// Renders the given (environment, apps) pairs of a loaded repo.
pub fn render_pairs(
    repo: &Repo,
    pairs: &[(EnvName, Vec<AppPath>)],
    diags: &mut Diagnostics,
) -> Desired {
    let mut bases: BTreeMap<&str, Option<Layer>> = BTreeMap::new();
    let mut envs = BTreeMap::new();
    let mut ids: BTreeMap<String, (EnvName, AppPath)> = BTreeMap::new();
    for (env, apps) in pairs {
        let settings = &repo.envs[env];
        let mut rendered = BTreeMap::new();
        for app in apps {
            if let Some(problems) = repo.broken.get(app) {
                for d in problems {
                    diags.push(d.clone());
                }
                continue;
            }
            let base = bases.entry(app.as_str()).or_insert_with(|| {
                let file = format!("apps/{app}/app.yaml");
                let layer = read_layer(
                    &repo.snapshot,
                    &file,
                    schema::Kind::App,
                    &repo.budgets,
                    diags,
                )?;
                check_app_envs(&layer, &repo.envs, &repo.apps[app.as_str()], diags);
                Some(layer)
            });
            let Some(base) = base.as_ref() else { continue };
            if !runs_in(base, env) {
                continue;
            }
            let id = settings.app_id(app);
            if let Some((other_env, other_app)) = ids.insert(id.clone(), (env.clone(), app.clone()))
            {
                diags.push(
                    Diagnostic::file(&base.file, format!("app `{app}` in `{env}` has the Marathon id `{id}`, as app `{other_app}` in `{other_env}` does"))
                        .with_hint("Marathon ids must be unique: change one environment's group or rename one app"),
                );
                continue;
            }
            let overlay_file = format!("apps/{app}/env/{env}.yaml");
            let overlay = if repo.apps[app.as_str()].contains(env) {
                match read_layer(
                    &repo.snapshot,
                    &overlay_file,
                    schema::Kind::App,
                    &repo.budgets,
                    diags,
                ) {
                    Some(l) => {
                        if l.get("/environments").is_some() {
                            diags.push(
                                l.diag("/environments", Target::Key, "`environments` belongs in the app's base `app.yaml`, not in an overlay")
                                    .with_hint("move it to app.yaml"),
                            );
                        }
                        Some(l)
                    }
                    None => continue,
                }
            } else {
                None
            };
            let layers: Vec<&Layer> = repo
                .env_layers
                .get(env)
                .into_iter()
                .chain([base])
                .chain(overlay.as_ref())
                .collect();
            if repo
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
            {
                let secs = repo.budgets.deadline.unwrap_or_default().as_secs();
                diags.push(
                    Diagnostic::file(&base.file, format!("app `{app}` in `{env}` was not rendered: the whole render passed its deadline of {secs} s"))
                        .with_hint("simplify the templates of the apps rendered before it"),
                );
                continue;
            }
            let ctx = AppContext {
                repo,
                settings,
                app,
                id: &id,
                layers: &layers,
                spent: std::cell::Cell::new(0),
            };
            if let Some(r) = ctx.render(diags) {
                rendered.insert(app.clone(), r);
            }
        }
        envs.insert(
            env.clone(),
            DesiredEnv {
                settings: settings.clone(),
                apps: rendered,
            },
        );
    }
    Desired {
        revision: repo.snapshot.revision.clone(),
        envs,
    }
}

fn runs_in(base: &Layer, env: &str) -> bool {
    match base.get("/environments").and_then(Value::as_array) {
        Some(list) => list.iter().any(|v| v.as_str() == Some(env)),
        None => true,
    }
}

fn check_app_envs(
    base: &Layer,
    envs: &BTreeMap<EnvName, EnvSettings>,
    overlays: &BTreeSet<EnvName>,
    diags: &mut Diagnostics,
) {
    let known: Vec<String> = envs.keys().cloned().collect();
    if let Some(list) = base.get("/environments").and_then(Value::as_array) {
        for (i, v) in list.iter().enumerate() {
            if let Some(name) = v.as_str() {
                if !envs.contains_key(name) {
                    let mut d = base.diag(
                        &format!("/environments/{i}"),
                        Target::Value,
                        format!("environment `{name}` is not defined in pacer.yaml"),
                    );
                    d.hint = schema::suggest(name, &known).map(|s| format!("did you mean `{s}`?"));
                    diags.push(d);
                }
            }
        }
        for o in overlays {
            if !runs_in(base, o) {
                diags.push(
                    Diagnostic::file(format!("{}/env/{o}.yaml", base.file.trim_end_matches("/app.yaml")), format!("overlay for `{o}`, but the app's `environments` in {} leaves `{o}` out", base.file))
                        .with_hint(format!("add `{o}` to `environments` in app.yaml, or delete this overlay")),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
