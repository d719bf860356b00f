//! Turns a [`Snapshot`] of the config repo into the desired state of each
//! environment: one Marathon app definition and one bundle of config files
//! per app. Or, when the repo has problems, every problem found, each at its
//! `file:line:column`.
//!
//! Layers, lowest first: `environments/<env>.yaml`, `apps/<app>/app.yaml`,
//! `apps/<app>/env/<env>.yaml`. See `docs/repo-format.md`.

mod diagnostic;
pub mod merge;
pub mod schema;
pub mod template;
pub mod yaml;

pub use diagnostic::{Diagnostic, Diagnostics};

use crate::marathon::validate as marathon_rules;
use crate::model::{AppPath, Digest, EnvName, Secret};
use crate::source::{self, Revision, Snapshot};
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
    /// A digest of the definition pacer wrote (`observe::written_digest`):
    /// tells a version pacer wrote from one made by hand with pacer's
    /// labels copied. Written by `apply`, never rendered, never diffed.
    pub const DIGEST: &str = "pacer.digest";
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
    /// The largest share of the environment's live managed apps one plan
    /// may delete; a larger prune waits for a human.
    #[serde(default)]
    pub max_delete_share: Share,
}

/// A share between 0 and 1 (`maxDeleteShare`), 0.2 unless set. The
/// schema bounds it; anything else read is clamped, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Share(f64);

/// Only finite values in [0, 1] are ever stored (see [`Share::new`]).
impl Eq for Share {}

impl Share {
    pub const DEFAULT: f64 = 0.2;

    pub fn new(v: f64) -> Share {
        Share(if v.is_finite() {
            v.clamp(0.0, 1.0)
        } else {
            Self::DEFAULT
        })
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for Share {
    fn default() -> Share {
        Share(Self::DEFAULT)
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Share, D::Error> {
        f64::deserialize(d).map(Share::new)
    }
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
    /// A digest of every input this app was rendered from. Equal inputs
    /// render equal outputs, so equal fingerprints need no re-render.
    #[serde(skip)]
    pub inputs: Digest,
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
}

impl Repo {
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Reads `pacer.yaml`, the environment files and the app list. Problems
    /// go to `diags`; what could be read is kept so that later stages can
    /// still report their own problems in the same run.
    pub fn load(snapshot: Arc<Snapshot>, diags: &mut Diagnostics) -> Option<Repo> {
        let Some(config) = read_layer(&snapshot, CONFIG_FILE, schema::Kind::Pacer, diags) else {
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
            if let Some(other) = groups.insert(group.clone(), name.clone()) {
                diags.push(
                    config
                        .diag(&format!("{ptr}/group"), Target::Value, format!("environments `{other}` and `{name}` share the group `{group}`, so their apps would have the same Marathon ids"))
                        .with_hint("give each environment its own group"),
                );
            }
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
            if let Some(layer) = read_layer(&snapshot, &file, schema::Kind::Environment, diags) {
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
        for app in &names {
            if marathon_rules::validate_path_id(&format!("/{app}")).is_err() {
                diags.push(
                    Diagnostic::file(format!("apps/{app}/app.yaml"), format!("invalid Marathon id: the app directory `apps/{app}` becomes part of the app's id"))
                        .with_hint("rename the directory: lower-case letters, digits and dashes; a dash can't start or end a name"),
                );
            }
            if let Some(last) = app.rsplit('/').next() {
                if ["restart", "tasks", "versions"].contains(&last) {
                    diags.push(
                        Diagnostic::file(format!("apps/{app}/app.yaml"), format!("app directory `apps/{app}`: `{last}` is reserved by Marathon as the last part of an id"))
                            .with_hint(format!("rename the directory, e.g. `{last}-app`")),
                    );
                }
            }
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
            templates: Templates::new(),
            shared_digests: Default::default(),
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
    let data = match yaml::parse(file, &text) {
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
    let mut diags = Diagnostics::default();
    let Some(repo) = Repo::load(snapshot.clone(), &mut diags) else {
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
            let base = bases.entry(app.as_str()).or_insert_with(|| {
                let file = format!("apps/{app}/app.yaml");
                let layer = read_layer(&repo.snapshot, &file, schema::Kind::App, diags)?;
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
                match read_layer(&repo.snapshot, &overlay_file, schema::Kind::App, diags) {
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
            let ctx = AppContext {
                repo,
                settings,
                app,
                id: &id,
                layers: &layers,
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

struct AppContext<'a> {
    repo: &'a Repo,
    settings: &'a EnvSettings,
    app: &'a str,
    id: &'a str,
    layers: &'a [&'a Layer],
}

impl AppContext<'_> {
    /// The layer that set the value at `pointer` (the topmost one that has
    /// it or, failing that, its nearest ancestor), and the diagnostic there.
    fn diag_at(&self, pointer: &str, target: Target, message: impl Into<String>) -> Diagnostic {
        let mut probe = pointer.to_string();
        loop {
            if let Some(layer) = self.layers.iter().rev().find(|l| l.get(&probe).is_some()) {
                return layer.diag(pointer, target, message);
            }
            match probe.rsplit_once('/') {
                Some((parent, _)) => probe = parent.to_string(),
                None => break,
            }
        }
        // The base always exists; point at it.
        let base = self
            .layers
            .iter()
            .find(|l| l.file.ends_with("/app.yaml"))
            .unwrap_or(&self.layers[0]);
        Diagnostic::file(&base.file, message)
    }

    fn merged(&self, key: &str) -> Value {
        let mut out = Value::Object(Map::new());
        for l in self.layers {
            if let Some(v) = l.data.get(key) {
                merge::merge(&mut out, v);
            }
        }
        out
    }

    fn render(&self, diags: &mut Diagnostics) -> Option<RenderedApp> {
        let before = diags.len();
        let values = self.merged("values");
        let secrets_value = self.merged("secrets");
        let mut secrets = Vec::new();
        if let Value::Object(m) = &secrets_value {
            for (name, v) in m {
                match v {
                    Value::String(s) => secrets.push((name.clone(), Secret::new(s.clone()))),
                    _ => diags.push(
                        self.diag_at(&format!("/secrets/{}", schema::escape(name)), Target::Value, format!("secret `{name}`: encrypted secrets are not supported by this version of pacer"))
                            .with_hint("give the value as a string"),
                    ),
                }
            }
        }
        let ctx = minijinja::Value::from(minijinja::value::Serde(json!({
            "env": self.settings.name,
            "app": self.app,
            "id": self.id,
            "group": self.settings.group,
            "values": values,
            "secrets": secrets_value,
        })));

        // Expand templates layer by layer, so an error points into the file
        // that holds the template.
        let mut spec = Value::Object(Map::new());
        for layer in self.layers {
            if let Some(m) = layer.get("/marathon") {
                let mut m = m.clone();
                self.expand(layer, "/marathon", &mut m, &ctx, diags);
                merge::merge(&mut spec, &m);
            }
        }
        stringify_scalars(&mut spec, "env");
        stringify_scalars(&mut spec, "labels");
        for v in schema::check(schema::Kind::MarathonApp, &spec) {
            let target = if v.unknown_key {
                Target::Key
            } else {
                Target::Value
            };
            let mut d = self.diag_at(&format!("/marathon{}", v.pointer), target, v.message);
            d.hint = v.hint;
            diags.push(d);
        }
        if let Some(Value::Object(l)) = spec.get("labels") {
            for k in l.keys().filter(|k| k.starts_with(labels::PREFIX)) {
                diags.push(
                    self.diag_at(
                        &format!("/marathon/labels/{}", schema::escape(k)),
                        Target::Key,
                        format!("label `{k}` is reserved: pacer sets the `pacer.*` labels itself"),
                    )
                    .with_hint("rename the label"),
                );
            }
        }

        let files = self.render_files(&ctx, diags);
        let restart_parts: Vec<(String, Vec<u8>)> = files
            .iter()
            .filter(|(_, f)| f.reload == Reload::Restart)
            .map(|(name, f)| (format!("{name}\0{}", f.path), f.content.clone()))
            .collect();
        let config_hash = Digest::of_parts(
            restart_parts
                .iter()
                .map(|(n, c)| (n.as_str(), c.as_slice())),
        );

        let obj = spec.as_object_mut()?;
        obj.insert("id".into(), Value::String(self.id.to_string()));
        let labels_map = obj
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(l) = labels_map {
            l.insert(labels::ENV.into(), self.settings.name.clone().into());
            l.insert(labels::SOURCE.into(), format!("apps/{}", self.app).into());
            l.insert(
                labels::COMMIT.into(),
                self.repo.snapshot.revision.label().into(),
            );
            l.insert(labels::CONFIG_HASH.into(), config_hash.to_string().into());
        }
        if diags.len() == before {
            // Marathon's own rules, on the app as it would be sent.
            let both = spec.get("cmd").is_some() && spec.get("args").is_some();
            if both {
                diags.push(
                    self.diag_at(
                        "/marathon/args",
                        Target::Key,
                        "both `cmd` and `args` are set: Marathon takes one or the other",
                    )
                    .with_hint("keep `cmd` (run by a shell) or `args` (run directly), not both"),
                );
            }
            for v in marathon_rules::validate_app(&spec) {
                if both && v.path.is_empty() {
                    continue;
                }
                let pointer = if v.path == "/id" {
                    String::new()
                } else {
                    v.path.clone()
                };
                // Name the secret a reference points at: "undefined secret"
                // alone leaves the reader to find which.
                let secret = spec
                    .pointer(&v.path)
                    .and_then(|x| x.get("secret"))
                    .and_then(Value::as_str)
                    .map(|name| format!(" `{name}`"));
                for e in &v.errors {
                    let field = if v.path.is_empty() {
                        String::new()
                    } else {
                        format!("`{}`: ", v.path.trim_start_matches('/'))
                    };
                    let mut d = self.diag_at(
                        &format!("/marathon{pointer}"),
                        Target::Value,
                        format!("{field}{e}{}", secret.clone().unwrap_or_default()),
                    );
                    if secret.is_some() {
                        d = d.with_hint("declare it under `marathon.secrets`, e.g. `secrets: {name: {source: path/in/store}}`");
                    }
                    diags.push(d);
                }
            }
        }
        let mut ignore: Vec<String> = Vec::new();
        for l in self.layers {
            if let Some(Value::Array(list)) = l.get("/ignore") {
                ignore.extend(list.iter().filter_map(|v| v.as_str().map(String::from)));
            }
        }
        ignore.sort();
        ignore.dedup();
        for p in &ignore {
            merge::remove_pointer(&mut spec, p);
        }
        // The schema bounds it; the last layer that sets it wins.
        let deploy_timeout_seconds = self
            .layers
            .iter()
            .rev()
            .find_map(|l| l.get("/deployTimeoutSeconds")?.as_u64());
        if diags.len() > before {
            return None;
        }
        Some(RenderedApp {
            id: self.id.to_string(),
            app: self.app.to_string(),
            env: self.settings.name.clone(),
            marathon: spec,
            files,
            ignore,
            deploy_timeout_seconds,
            secrets,
            inputs: self.repo.inputs(&self.settings.name, self.app),
        })
    }

    /// Expands templates in every string under `value`, in place.
    fn expand(
        &self,
        layer: &Layer,
        pointer: &str,
        value: &mut Value,
        ctx: &minijinja::Value,
        diags: &mut Diagnostics,
    ) {
        match value {
            Value::String(s) if template::is_template(s) => {
                match self.repo.templates.render_value(s, ctx) {
                    Ok(v) => *value = v,
                    Err(e) => {
                        let mut d = layer.diag(
                            pointer,
                            Target::Value,
                            format!("template error: {}", e.message),
                        );
                        if let (Some(line), true) = (d.line.as_mut(), e.line > 1) {
                            // A block scalar starts on the line after its key.
                            *line += e.line;
                        }
                        diags.push(d.with_hint(
                            "templates see `env`, `app`, `id`, `group`, `values.*` and `secrets.*`",
                        ));
                    }
                }
            }
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    self.expand(
                        layer,
                        &format!("{pointer}/{}", schema::escape(k)),
                        v,
                        ctx,
                        diags,
                    );
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter_mut().enumerate() {
                    self.expand(layer, &format!("{pointer}/{i}"), v, ctx, diags);
                }
            }
            _ => {}
        }
    }

    fn render_files(
        &self,
        ctx: &minijinja::Value,
        diags: &mut Diagnostics,
    ) -> BTreeMap<String, RenderedFile> {
        let mut out = BTreeMap::new();
        let Value::Object(specs) = self.merged("files") else {
            return out;
        };
        for (name, spec) in specs {
            let ptr = format!("/files/{}", schema::escape(&name));
            let source = spec.get("source").and_then(Value::as_str).unwrap_or(&name);
            let Some(path) = spec.get("path").and_then(Value::as_str) else {
                diags.push(
                    self.diag_at(&ptr, Target::Key, format!("file `{name}` has no `path`"))
                        .with_hint("set `path:` to where the agent should write it in the task, e.g. /etc/app/config.yaml"),
                );
                continue;
            };
            let reload = match spec.get("reload").and_then(Value::as_str) {
                Some("hot") => Reload::Hot,
                _ => Reload::Restart,
            };
            let templated = spec
                .get("template")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let file = format!("apps/{}/files/{source}", self.app);
            if source.split('/').any(|s| s == "..") || source.starts_with('/') {
                diags.push(self.diag_at(
                    &format!("{ptr}/source"),
                    Target::Value,
                    format!(
                        "file `{name}`: source `{source}` must stay inside apps/{}/files/",
                        self.app
                    ),
                ));
                continue;
            }
            let bytes = match self.repo.snapshot.read_bytes(&file) {
                Ok(b) => b,
                Err(source::Error::NotFound { .. }) => {
                    diags.push(
                        self.diag_at(
                            &format!("{ptr}/source"),
                            Target::Value,
                            format!("file `{name}`: `{file}` does not exist"),
                        )
                        .with_hint(format!(
                            "add the template at `{file}`, or set `source:` to its name"
                        )),
                    );
                    continue;
                }
                Err(e) => {
                    diags.push(source_diag(&file, &e));
                    continue;
                }
            };
            let content = if templated {
                let text = match self.repo.snapshot.read_text(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        diags.push(source_diag(&file, &e));
                        continue;
                    }
                };
                match self.repo.templates.render_text(&file, &text, ctx) {
                    Ok(s) => s.into_bytes(),
                    Err(e) => {
                        diags.push(
                            Diagnostic::at(&file, e.line, 1, format!("template error: {}", e.message))
                                .with_hint("templates see `env`, `app`, `id`, `group`, `values.*` and `secrets.*`; set `template: false` to deliver the file as it is"),
                        );
                        continue;
                    }
                }
            } else {
                bytes
            };
            out.insert(
                name.clone(),
                RenderedFile {
                    path: path.to_string(),
                    reload,
                    digest: Digest::of(&content),
                    content,
                },
            );
        }
        out
    }
}

/// Marathon wants strings in `env` and `labels`; YAML authors write
/// `PORT: 8080`. Numbers and booleans there become strings.
fn stringify_scalars(spec: &mut Value, key: &str) {
    if let Some(Value::Object(m)) = spec.get_mut(key) {
        for v in m.values_mut() {
            match v {
                Value::Number(n) => *v = Value::String(n.to_string()),
                Value::Bool(b) => *v = Value::String(b.to_string()),
                _ => {}
            }
        }
    }
}

/// Replaces every secret value in `text` with `<secret:name>`. Longer
/// values go first so that a secret containing another is hidden whole.
pub fn redact(text: &str, secrets: &[(String, Secret<String>)]) -> String {
    let mut sorted: Vec<&(String, Secret<String>)> = secrets
        .iter()
        .filter(|(_, s)| !s.expose().is_empty())
        .collect();
    sorted.sort_by_key(|(_, s)| std::cmp::Reverse(s.expose().len()));
    let mut out = text.to_string();
    for (name, s) in sorted {
        if out.contains(s.expose().as_str()) {
            out = out.replace(s.expose().as_str(), &format!("<secret:{name}>"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
