//! Compares two desired states, environment by environment and app by app,
//! and classifies each change by how much it disturbs the running app:
//! `hot` < `scale` < `restart` < `redeploy`.
//!
//! [`compare`] is pure. [`between`] renders two snapshots, re-rendering only
//! the apps whose inputs differ, and compares them. [`format`] prints the
//! report as text, markdown or JSON.

pub mod format;

use crate::model::{AppPath, Digest, EnvName};
use crate::render::{self, Desired, DesiredEnv, Reload, RenderedApp, Scope, labels};
use crate::source::Snapshot;
use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How much a change disturbs a running app, least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Only hot-reloadable config files changed: no relaunch.
    Hot,
    /// Only the instance count changed.
    Scale,
    /// Config files that need a restart changed: the tasks roll.
    Restart,
    /// The Marathon app definition changed: a rolling redeploy.
    Redeploy,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Hot => "hot",
            Class::Scale => "scale",
            Class::Restart => "restart",
            Class::Redeploy => "redeploy",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Added,
    Removed,
    Changed,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    pub name: String,
    pub path: String,
    pub reload: Reload,
    pub status: Status,
    /// A unified diff, secrets replaced; absent when only a secret changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub secret_changed: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppChange {
    pub app: AppPath,
    pub id: String,
    pub status: Status,
    /// For a changed app: the most disruptive aspect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    /// Every aspect that changed, least disruptive first.
    pub aspects: Vec<Class>,
    /// A unified diff of the app definition (sorted keys), secrets replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_diff: Option<String>,
    pub files: Vec<FileChange>,
    /// A secret's value changed where it is used in the app definition.
    pub secret_changed: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvChange {
    pub env: EnvName,
    pub group: String,
    /// Set when the environment itself was added or removed in `pacer.yaml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Changed settings, such as `policy.prune: false → true`.
    pub settings: Vec<String>,
    pub apps: Vec<AppChange>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub dirty: bool,
}

impl From<&crate::source::Revision> for RevisionInfo {
    fn from(r: &crate::source::Revision) -> Self {
        RevisionInfo {
            name: r.name.clone(),
            commit: r.commit.clone(),
            dirty: r.dirty,
        }
    }
}

/// What a merge would change. Serialised as `pacer diff --format json`
/// (see docs/diff-json.md); `version` changes only on breaking changes.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub version: u32,
    pub base: RevisionInfo,
    pub head: RevisionInfo,
    /// Only environments with a change.
    pub environments: Vec<EnvChange>,
    pub summary: Summary,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub hot: usize,
    pub scale: usize,
    pub restart: usize,
    pub redeploy: usize,
    /// Apps that were rendered on both sides; the rest had equal inputs.
    pub rendered: usize,
}

impl Report {
    pub fn has_changes(&self) -> bool {
        !self.environments.is_empty()
    }
}

/// Fields Marathon treats as sets: their order never matters.
const SET_FIELDS: [&str; 4] = [
    "constraints",
    "healthChecks",
    "dependencies",
    "acceptedResourceRoles",
];

/// The app definition as compared: without provenance that changes on
/// every commit, and with set-typed fields in a canonical order.
fn comparable(spec: &Value) -> Value {
    let mut v = spec.clone();
    if let Some(Value::Object(l)) = v.get_mut("labels") {
        l.remove(labels::COMMIT);
    }
    if let Value::Object(m) = &mut v {
        for key in SET_FIELDS {
            if let Some(Value::Array(a)) = m.get_mut(key) {
                a.sort_by_cached_key(|x| x.to_string());
            }
        }
    }
    v
}

/// Pretty JSON with keys sorted at every level, whatever map order serde_json
/// was built with, so equal values always print equal text.
pub fn canonical_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(&sorted_keys(v)).unwrap_or_default();
    s.push('\n');
    s
}

/// A copy of `v` with the keys of every map in sorted order.
pub fn sorted_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, sorted_keys(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// Diffs what people see of two versions of a text (secrets replaced by
/// placeholders, see `render::secrets`), given whether the real texts
/// differ. Returns the diff (None when the shown texts are equal) and
/// whether a secret's value made a difference: the real texts differ where
/// the shown ones don't, or the secrets the text read changed.
fn shown_diff(
    real_differ: bool,
    shown: (&str, &str),
    secret_digests: (Option<&Digest>, Option<&Digest>),
    names: (&str, &str),
) -> (Option<String>, bool) {
    if !real_differ {
        return (None, false);
    }
    if shown.0 == shown.1 {
        return (None, true);
    }
    // A secret may have changed alongside other lines: the diff can't show
    // it, so say so.
    let secret_changed = matches!(secret_digests, (Some(a), Some(b)) if a != b);
    (
        Some(unified(shown.0, shown.1, names.0, names.1)),
        secret_changed,
    )
}

fn text_of(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("(binary, {} bytes)\n", bytes.len()),
    }
}

/// Compares one app across two revisions. `None` when nothing changed.
pub fn compare_app(
    env: &str,
    old: Option<&RenderedApp>,
    new: Option<&RenderedApp>,
) -> Option<AppChange> {
    let any = new.or(old)?;
    let empty = Value::Object(Default::default());
    let old_spec = old.map(|a| comparable(&a.marathon));
    let new_spec = new.map(|a| comparable(&a.marathon));
    let names = (
        format!("a/{env}/{}.json", any.app),
        format!("b/{env}/{}.json", any.app),
    );
    let (spec_diff, spec_secret) = if old_spec == new_spec {
        (None, false)
    } else {
        // People see the placeholder rendering; the real one decides.
        let shown = |a: Option<&RenderedApp>| {
            canonical_json(&a.map_or(empty.clone(), |a| comparable(a.shown_marathon())))
        };
        let (so, sn) = (shown(old), shown(new));
        shown_diff(
            true,
            (&so, &sn),
            (
                old.and_then(|a| a.secret_digest("")),
                new.and_then(|a| a.secret_digest("")),
            ),
            (&names.0, &names.1),
        )
    };

    let no_files = BTreeMap::new();
    let old_files = old.map_or(&no_files, |a| &a.files);
    let new_files = new.map_or(&no_files, |a| &a.files);
    let mut files = Vec::new();
    let mut aspects = BTreeSet::new();
    let all: BTreeSet<&String> = old_files.keys().chain(new_files.keys()).collect();
    for name in all {
        let (o, n) = (old_files.get(name), new_files.get(name));
        if let (Some(o), Some(n)) = (o, n)
            && o.digest == n.digest
            && o.path == n.path
            && o.reload == n.reload
        {
            continue;
        }
        let f = n.or(o).expect("a name from one of the maps");
        let status = match (o, n) {
            (None, Some(_)) => Status::Added,
            (Some(_), None) => Status::Removed,
            _ => Status::Changed,
        };
        // A file moving between reload modes, or to another path, needs
        // the tasks to pick it up again: treat it as a restart.
        let moved =
            matches!((o, n), (Some(o), Some(n)) if o.reload != n.reload || o.path != n.path);
        aspects.insert(if f.reload == Reload::Hot && !moved {
            Class::Hot
        } else {
            Class::Restart
        });
        let shown = |a: Option<&RenderedApp>| {
            a.and_then(|a| a.shown_file(name))
                .map(text_of)
                .unwrap_or_default()
        };
        let real_differ = o.map(|x| &x.digest) != n.map(|x| &x.digest);
        let (diff, secret_changed) = shown_diff(
            real_differ,
            (&shown(old), &shown(new)),
            (
                old.and_then(|a| a.secret_digest(name)),
                new.and_then(|a| a.secret_digest(name)),
            ),
            (
                &format!("a/{env}/{}/{name}", any.app),
                &format!("b/{env}/{}/{name}", any.app),
            ),
        );
        files.push(FileChange {
            name: name.clone(),
            path: f.path.clone(),
            reload: f.reload,
            status,
            diff,
            secret_changed,
        });
    }

    let status = match (old, new) {
        (None, Some(_)) => Status::Added,
        (Some(_), None) => Status::Removed,
        _ => Status::Changed,
    };
    if status == Status::Changed {
        let (o, n) = (old_spec.as_ref()?, new_spec.as_ref()?);
        if o != n {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Value::Object(m) = &mut v {
                    m.remove("instances");
                    if let Some(Value::Object(l)) = m.get_mut("labels") {
                        l.remove(labels::CONFIG_HASH);
                    }
                }
                v
            };
            if o.get("instances") != n.get("instances") {
                aspects.insert(Class::Scale);
            }
            if strip(o) != strip(n) {
                aspects.insert(Class::Redeploy);
            } else if o["labels"].get(labels::CONFIG_HASH) != n["labels"].get(labels::CONFIG_HASH) {
                aspects.insert(Class::Restart);
            }
        }
        if aspects.is_empty() {
            return None;
        }
    }
    let aspects: Vec<Class> = aspects.into_iter().collect();
    Some(AppChange {
        app: any.app.clone(),
        id: any.id.clone(),
        status,
        class: (status == Status::Changed).then(|| *aspects.last().expect("non-empty")),
        aspects: if status == Status::Changed {
            aspects
        } else {
            Vec::new()
        },
        spec_diff,
        files,
        secret_changed: spec_secret,
    })
}

/// Compares two desired states. Apps present on one side only are added or
/// removed; `skipped` apps are known unchanged (equal inputs) and may be
/// missing from both.
pub fn compare(base: &Desired, head: &Desired) -> Report {
    let mut environments = Vec::new();
    let mut summary = Summary::default();
    let envs: BTreeSet<&EnvName> = base.envs.keys().chain(head.envs.keys()).collect();
    for env in envs {
        let (b, h) = (base.envs.get(env), head.envs.get(env));
        let empty = BTreeMap::new();
        let b_apps = b.map_or(&empty, |e: &DesiredEnv| &e.apps);
        let h_apps = h.map_or(&empty, |e: &DesiredEnv| &e.apps);
        let mut apps = Vec::new();
        let names: BTreeSet<&AppPath> = b_apps.keys().chain(h_apps.keys()).collect();
        for app in names {
            let (o, n) = (b_apps.get(app).map(|a| &**a), h_apps.get(app).map(|a| &**a));
            if o.is_some() && n.is_some() {
                summary.rendered += 1;
            }
            // An app whose group moved is a new Marathon app: show it as
            // removed and added, because that is what would happen.
            if let (Some(o), Some(n)) = (o, n)
                && o.id != n.id
            {
                apps.extend(compare_app(env, Some(o), None));
                apps.extend(compare_app(env, None, Some(n)));
                continue;
            }
            apps.extend(compare_app(env, o, n));
        }
        let settings = match (b, h) {
            (Some(b), Some(h)) => settings_changes(&b.settings, &h.settings),
            _ => Vec::new(),
        };
        let status = match (b, h) {
            (None, Some(_)) => Some(Status::Added),
            (Some(_), None) => Some(Status::Removed),
            _ => None,
        };
        for a in &apps {
            match a.status {
                Status::Added => summary.added += 1,
                Status::Removed => summary.removed += 1,
                Status::Changed => {
                    summary.changed += 1;
                    match a.class {
                        Some(Class::Hot) => summary.hot += 1,
                        Some(Class::Scale) => summary.scale += 1,
                        Some(Class::Restart) => summary.restart += 1,
                        Some(Class::Redeploy) => summary.redeploy += 1,
                        None => {}
                    }
                }
            }
        }
        if apps.is_empty() && settings.is_empty() && status.is_none() {
            continue;
        }
        let group = h
            .or(b)
            .map(|e| e.settings.group.clone())
            .unwrap_or_default();
        environments.push(EnvChange {
            env: env.clone(),
            group,
            status,
            settings,
            apps,
        });
    }
    Report {
        version: 1,
        base: (&base.revision).into(),
        head: (&head.revision).into(),
        environments,
        summary,
    }
}

fn settings_changes(b: &render::EnvSettings, h: &render::EnvSettings) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, o: String, n: String| {
        if o != n {
            out.push(format!("{name}: {o} → {n}"));
        }
    };
    field("group", b.group.clone(), h.group.clone());
    // A Marathon URL may carry credentials: never print them.
    let url = |u: &Option<String>| match u {
        Some(u) => crate::redact::url(u),
        None => "(none)".to_string(),
    };
    let credentials_changed = b.marathon != h.marathon && url(&b.marathon) == url(&h.marathon);
    field("marathon", url(&b.marathon), url(&h.marathon));
    field(
        "policy.autoApply",
        b.policy.auto_apply.to_string(),
        h.policy.auto_apply.to_string(),
    );
    field(
        "policy.prune",
        b.policy.prune.to_string(),
        h.policy.prune.to_string(),
    );
    field(
        "policy.selfHeal",
        b.policy.self_heal.to_string(),
        h.policy.self_heal.to_string(),
    );
    field(
        "policy.maxDeleteShare",
        b.policy.max_delete_share.get().to_string(),
        h.policy.max_delete_share.get().to_string(),
    );
    if credentials_changed {
        out.push("marathon: (credentials changed)".to_string());
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the {side} revision does not render:\n{}", render_list(.diagnostics))]
    Render {
        side: &'static str,
        diagnostics: Vec<render::Diagnostic>,
    },
    #[error("{0}")]
    Scope(String),
}

fn render_list(d: &[render::Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders `base` and `head` and compares them. Apps whose inputs are equal
/// on both sides are not rendered at all: a one-app change in a monorepo
/// costs one app's render, not the repo's.
pub fn between(
    base: Arc<Snapshot>,
    head: Arc<Snapshot>,
    envs: Option<BTreeSet<EnvName>>,
) -> Result<Report, Error> {
    between_with(base, head, envs, None)
}

/// [`between`], both sides seeing `endpoints` through `service()`
/// (`None`: placeholders).
pub fn between_with(
    base: Arc<Snapshot>,
    head: Arc<Snapshot>,
    envs: Option<BTreeSet<EnvName>>,
    endpoints: Option<Arc<crate::model::endpoints::Endpoints>>,
) -> Result<Report, Error> {
    let mut bd = render::Diagnostics::default();
    let mut hd = render::Diagnostics::default();
    let mut base_repo = render::Repo::load(base.clone(), &mut bd);
    let mut head_repo = render::Repo::load(head.clone(), &mut hd);
    if let Some(e) = endpoints {
        for r in [&mut base_repo, &mut head_repo].into_iter().flatten() {
            r.set_endpoints(e.clone());
        }
    }
    if !hd.is_empty() || head_repo.is_none() {
        return Err(Error::Render {
            side: "head",
            diagnostics: hd.finish(),
        });
    }
    let head_repo = head_repo.expect("checked above");
    // A base that doesn't load (say, before pacer.yaml existed) is empty:
    // everything in head is new.
    let base_repo = base_repo.filter(|_| bd.is_empty());
    if let Some(want) = &envs {
        let scope = Scope {
            envs: Some(want.clone()),
            apps: None,
        };
        let in_head = head_repo.resolve_scope(&scope);
        let in_base = base_repo.as_ref().map(|r| r.resolve_scope(&scope));
        if let (Err(e), None | Some(Err(_))) = (&in_head, &in_base) {
            return Err(Error::Scope(e.clone()));
        }
    }
    let wanted = |e: &EnvName| envs.as_ref().is_none_or(|w| w.contains(e));

    let mut head_pairs: Vec<(EnvName, Vec<AppPath>)> = Vec::new();
    let mut base_pairs: Vec<(EnvName, Vec<AppPath>)> = Vec::new();
    for env in head_repo.envs.keys().filter(|e| wanted(e)) {
        let same_env = base_repo
            .as_ref()
            .and_then(|r| r.envs.get(env))
            .is_some_and(|s| *s == head_repo.envs[env]);
        let mut h_apps = Vec::new();
        let mut b_apps = Vec::new();
        for app in head_repo.apps.keys() {
            let unchanged = same_env
                && base_repo.as_ref().is_some_and(|r| {
                    r.apps.contains_key(app) && r.inputs(env, app) == head_repo.inputs(env, app)
                });
            if !unchanged {
                h_apps.push(app.clone());
                if base_repo
                    .as_ref()
                    .is_some_and(|r| r.apps.contains_key(app) && r.envs.contains_key(env))
                {
                    b_apps.push(app.clone());
                }
            }
        }
        head_pairs.push((env.clone(), h_apps));
        if base_repo.as_ref().is_some_and(|r| r.envs.contains_key(env)) {
            base_pairs.push((env.clone(), b_apps));
        }
    }
    if let Some(r) = &base_repo {
        // Apps and environments that only the base has: all removed.
        for env in r.envs.keys().filter(|e| wanted(e)) {
            let gone: Vec<AppPath> = r
                .apps
                .keys()
                .filter(|a| !head_repo.apps.contains_key(*a) || !head_repo.envs.contains_key(env))
                .cloned()
                .collect();
            match base_pairs.iter_mut().find(|(e, _)| e == env) {
                Some((_, list)) => list.extend(gone),
                None => base_pairs.push((env.clone(), gone)),
            }
        }
    }

    let head_desired = render::render_pairs(&head_repo, &head_pairs, &mut hd);
    if !hd.is_empty() {
        return Err(Error::Render {
            side: "head",
            diagnostics: hd.finish(),
        });
    }
    let base_desired = match &base_repo {
        Some(r) => {
            let d = render::render_pairs(r, &base_pairs, &mut bd);
            if !bd.is_empty() {
                // The base broke: whatever it had for these apps can't be
                // known. Compare against nothing rather than fail the PR
                // that may be fixing it.
                tracing::warn!(
                    "the base revision has problems; apps that don't render there show as added"
                );
            }
            d
        }
        None => Desired {
            revision: base.revision.clone(),
            envs: BTreeMap::new(),
        },
    };
    Ok(compare(&base_desired, &head_desired))
}

#[cfg(test)]
mod tests;
