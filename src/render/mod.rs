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
mod endpoints_file;
pub use crate::model::file_actions;
pub use endpoints_file::{ENDPOINTS_FILE_LIMIT, read_endpoints};
mod files;
pub mod incremental;
pub mod merge;
mod pairs;
mod repo;
pub mod schema;
mod sealed;
pub mod secrets;
pub mod services;
pub mod template;
pub mod tree;
mod verify_policy;
pub mod yaml;

pub use budget::Budgets;
pub use diagnostic::{Diagnostic, Diagnostics, quote_path};
pub use pairs::render_pairs;
pub use repo::Repo;
pub use sealed::SecretKeys;
pub use verify_policy::{VerifyPolicy, verify_policies};

use crate::marathon::validate as marathon_rules;
use crate::model::{AppPath, Digest, EnvName, Secret};
use crate::source::{self, Revision, Snapshot};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
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
    /// Printed without the credentials a URL may carry.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_redacted_url"
    )]
    pub marathon: Option<String>,
    pub policy: Policy,
}

fn serialize_redacted_url<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&crate::redact::url(u)),
        None => s.serialize_none(),
    }
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
    /// Read on its own by [`verify_policies`]; checked here by `validate`.
    #[serde(default)]
    verify: Option<VerifyPolicy>,
}

#[derive(Deserialize)]
struct RawConfig {
    environments: BTreeMap<String, Option<RawEnvSettings>>,
    /// Services outside the repo that templates may name, by Marathon id.
    #[serde(default)]
    external: BTreeMap<String, RawExternal>,
}

#[derive(Deserialize)]
struct RawExternal {
    #[serde(default)]
    ports: Vec<String>,
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
    /// The agent's `check` and `onReload` for this file.
    #[serde(flatten)]
    pub actions: file_actions::FileActions,
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
    /// The Marathon ids of the services its config files named with
    /// `service()`, `address()` or `addresses()`: only these apps need a
    /// new render when a service's endpoints move.
    #[serde(skip)]
    pub services: BTreeSet<String>,
    /// Secrets its templates read whose values are placeholders: no
    /// identity held opens the file that seals them (only when rendering
    /// with [`SecretKeys::placeholders`]). Such an app must never be
    /// deployed: see [`RenderedApp::unreadable`].
    #[serde(skip)]
    pub unreadable_secrets: BTreeSet<String>,
}

impl RenderedApp {
    /// Why this app can't be deployed as rendered: it read secrets that
    /// no identity held opens, and holds placeholders in their place.
    pub fn unreadable(&self) -> Option<String> {
        if self.unreadable_secrets.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .unreadable_secrets
            .iter()
            .map(|n| format!("`{n}`"))
            .collect();
        Some(format!(
            "app `{}` in `{}`: secrets unreadable: {} (sealed, and no age identity held opens them; set {})",
            self.app,
            self.env,
            names.join(", "),
            crate::sops::keys::WHERE
        ))
    }

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
    /// Each app behind its own `Arc`: a new commit's desired state shares
    /// the apps it didn't change with the previous one, and a reader (the
    /// published snapshot, a background apply) never holds up or copies
    /// the others.
    pub apps: BTreeMap<AppPath, Arc<RenderedApp>>,
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
    /// What its sealed secrets came to (see [`sealed`]).
    sealing: sealed::Sealing,
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
        sealing: Default::default(),
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
    render_with_endpoints(snapshot, scope, budgets, None)
}

/// [`render_with`] with the services templates see (`--endpoints`);
/// `None`: placeholders for all.
pub fn render_with_endpoints(
    snapshot: Arc<Snapshot>,
    scope: &Scope,
    budgets: &Budgets,
    endpoints: Option<Arc<crate::model::endpoints::Endpoints>>,
) -> Result<Desired, Vec<Diagnostic>> {
    render_keyed(
        snapshot,
        scope,
        budgets,
        endpoints,
        &SecretKeys::process_default(),
    )
}

/// [`render_with_endpoints`] opening sealed secrets with `keys`.
pub fn render_keyed(
    snapshot: Arc<Snapshot>,
    scope: &Scope,
    budgets: &Budgets,
    endpoints: Option<Arc<crate::model::endpoints::Endpoints>>,
    keys: &SecretKeys,
) -> Result<Desired, Vec<Diagnostic>> {
    let mut diags = Diagnostics::default();
    let Some(mut repo) = Repo::load_keyed(snapshot.clone(), budgets, keys, &mut diags) else {
        return Err(diags.finish());
    };
    if let Some(e) = endpoints {
        repo.set_endpoints(e);
    }
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
            if let Some(name) = v.as_str()
                && !envs.contains_key(name)
            {
                let mut d = base.diag(
                    &format!("/environments/{i}"),
                    Target::Value,
                    format!("environment `{name}` is not defined in pacer.yaml"),
                );
                d.hint = schema::suggest(name, &known).map(|s| format!("did you mean `{s}`?"));
                diags.push(d);
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
