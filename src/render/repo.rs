//! The parts of a config repo that every app shares: `pacer.yaml`, the
//! environment files and the list of apps, read and checked once.

use super::*;
use crate::model::endpoints::Endpoints;

/// The parts of a repo shared by all its apps: settings, environment files
/// and the list of apps with their overlays.
pub struct Repo {
    pub(super) snapshot: Arc<Snapshot>,
    pub envs: BTreeMap<EnvName, EnvSettings>,
    pub(super) env_layers: BTreeMap<EnvName, Layer>,
    /// App path → environments its overlays name.
    pub apps: BTreeMap<AppPath, BTreeSet<EnvName>>,
    pub(super) templates: Templates,
    pub(super) shared_digests: parking_lot::Mutex<std::collections::HashMap<AppPath, Digest>>,
    /// Apps made invalid by the shape of the tree (a symlinked directory),
    /// with their problems: they render as errors, never as absent.
    pub(super) broken: BTreeMap<AppPath, Vec<Diagnostic>>,
    pub(super) budgets: Budgets,
    /// When every render from this repo must have ended ([`Budgets::deadline`]).
    pub(super) deadline: Option<std::time::Instant>,
    /// The services templates see through `service()`.
    pub(super) endpoints: Arc<Endpoints>,
    /// What templates may name, and their placeholder sets.
    pub(super) catalog: Arc<services::Catalog>,
    /// The identities sealed files are opened with.
    pub(super) keys: SecretKeys,
    /// `.sops.yaml`'s creation rules, when the repo has one.
    pub(super) rules: Option<Arc<crate::sops::Rules>>,
}

impl Repo {
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The services templates see from now on (placeholders until set).
    pub fn set_endpoints(&mut self, e: Arc<Endpoints>) {
        self.endpoints = e;
    }

    /// Reads `pacer.yaml`, the environment files and the app list. Problems
    /// go to `diags`; what could be read is kept so that later stages can
    /// still report their own problems in the same run.
    pub fn load(snapshot: Arc<Snapshot>, diags: &mut Diagnostics) -> Option<Repo> {
        Self::load_with(snapshot, &Budgets::default(), diags)
    }

    /// [`Repo::load`] with explicit budgets. The deadline counts from now
    /// and covers every later [`render_pairs`] on this repo. Sealed secrets
    /// open with [`SecretKeys::process_default`].
    pub fn load_with(
        snapshot: Arc<Snapshot>,
        budgets: &Budgets,
        diags: &mut Diagnostics,
    ) -> Option<Repo> {
        Self::load_keyed(snapshot, budgets, &SecretKeys::process_default(), diags)
    }

    /// [`Repo::load_with`], opening sealed secrets with `keys`.
    pub fn load_keyed(
        snapshot: Arc<Snapshot>,
        budgets: &Budgets,
        keys: &SecretKeys,
        diags: &mut Diagnostics,
    ) -> Option<Repo> {
        let deadline = budgets.deadline_from(std::time::Instant::now());
        schema::warm_up();
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
                verify: None,
            });
            if let Some(v) = &raw_env.verify {
                verify_policy::check_policy(&config, &name, v, &snapshot, diags);
            }
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
            if group != "/"
                && let Err(e) = marathon_rules::validate_path_id(&group)
            {
                diags.push(
                        config
                            .diag(&format!("{ptr}/group"), Target::Value, format!("environment `{name}`: group `{group}` is not a valid Marathon group id: {e}"))
                            .with_hint("use lower-case letters, digits and dashes, separated by `/`"),
                    );
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
            // The same rule as `--marathon`: no scheme means http.
            let marathon = raw_env.marathon.and_then(|url| {
                crate::marathon::url::http_url(&url)
                    .map_err(|e| {
                        diags.push(
                            config
                                .diag(&format!("{ptr}/marathon"), Target::Value, format!("environment `{name}`: `marathon`: {e}"))
                                .with_hint("write Marathon's base URL, e.g. `http://marathon.example:8080`"),
                        )
                    })
                    .ok()
            });
            envs.insert(
                name.clone(),
                EnvSettings {
                    name,
                    group,
                    marathon,
                    policy: raw_env.policy,
                },
            );
        }
        let known: Vec<String> = envs.keys().cloned().collect();
        let rules = sealed::read_rules(&snapshot, diags);

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
            if let Some(mut layer) =
                read_layer(&snapshot, &file, schema::Kind::Environment, budgets, diags)
            {
                sealed::open(&mut layer, keys, rules.as_deref(), diags);
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
            if let Some(last) = app.rsplit('/').next()
                && ["restart", "tasks", "versions"].contains(&last)
            {
                broken.entry(app.clone()).or_default().push(
                        Diagnostic::file(format!("apps/{app}/app.yaml"), format!("app directory `apps/{app}`: `{last}` is reserved by Marathon as the last part of an id"))
                            .with_hint(format!("rename the directory, e.g. `{last}-app`")),
                    );
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
        let env_marathon = env_layers
            .iter()
            .filter_map(|(n, l)| Some((n.clone(), l.get("/marathon")?.clone())))
            .collect();
        let external = raw
            .external
            .into_iter()
            .map(|(id, e)| (id, e.ports))
            .collect();
        let mut repo = Repo {
            snapshot,
            envs,
            env_layers,
            apps,
            templates: Templates::with_budgets(budgets),
            shared_digests: Default::default(),
            broken,
            budgets: budgets.clone(),
            deadline,
            endpoints: Arc::new(Endpoints::placeholders()),
            catalog: Arc::new(services::Catalog::empty()),
            keys: keys.clone(),
            rules,
        };
        repo.catalog = Arc::new(services::Catalog::new(&repo, env_marathon, external));
        Some(repo)
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
        let rules = crate::sops::rules::RULES_FILE;
        let parts = [
            (CONFIG_FILE, id(CONFIG_FILE)),
            (rules, id(rules)),
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
pub(super) fn group_contains(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner
            .strip_prefix(outer)
            .is_some_and(|r| r.starts_with('/'))
}

/// `app` lies under the directory of app `other` (only a misplaced overlay
/// or a nested app does).
pub(super) fn is_inside(app: &str, other: &str) -> bool {
    app.len() > other.len() && app.starts_with(other) && app.as_bytes()[other.len()] == b'/'
}

pub(super) fn unknown_env(
    file: &str,
    name: &str,
    known: &[String],
    defined_in: &str,
) -> Diagnostic {
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
