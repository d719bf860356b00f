//! The incremental render's decision: given the desired state of the last
//! good commit and a new commit's tree, which apps keep their rendered
//! version and which must be rendered again.
//!
//! Pure: equal inputs render equal outputs, so an app whose inputs digest
//! ([`Repo::inputs`]) is unchanged keeps its previous version. Kept apps
//! are shared (`Arc` clones), never copied; the daemon's render job
//! (`reconcile::render_job`) renders the rest and fills them in.

use super::{DesiredEnv, EnvSettings, RenderedApp, Repo, labels};
use crate::model::{AppPath, Digest, EnvName};
use crate::source::delta::Delta;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The desired state per environment before a new commit.
pub type Previous = BTreeMap<EnvName, Arc<DesiredEnv>>;

/// What a new commit needs: the kept apps in place, the rest to render.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per environment, its new settings and the apps kept as they were;
    /// apps to render are not in it yet.
    pub envs: BTreeMap<EnvName, DesiredEnv>,
    /// Apps to render, each with the environments it is needed in.
    pub todo: BTreeMap<AppPath, Vec<EnvName>>,
    /// The last good version of each app to render: what stays when its
    /// new version does not render.
    pub stale: BTreeMap<(EnvName, AppPath), Arc<RenderedApp>>,
    /// Environments whose desired state changes (settings, an app
    /// re-rendered, added or gone).
    pub changed: BTreeSet<EnvName>,
}

/// Decides for `repo` (the new commit) against `previous`. Only the
/// environments in `filter` are kept, when given.
/// `delta` says what differs from the commit `previous` was rendered at:
/// an app it shows untouched keeps its version without its inputs being
/// digested again (at 10,000 apps, most of a one-app commit's cost).
/// The apps in `force` render again whatever their inputs: the live
/// endpoints they name moved, which no digest of the tree can see.
/// Environments in `held` are at an older commit than the one `delta`
/// starts from (their head was refused): only their inputs digest tells.
pub fn plan(
    repo: &Repo,
    previous: &Previous,
    filter: Option<&BTreeSet<EnvName>>,
    delta: &Delta,
    force: &BTreeMap<EnvName, BTreeSet<AppPath>>,
    held: &BTreeSet<EnvName>,
) -> Plan {
    plan_with(
        &repo.envs,
        repo.apps.keys(),
        |env, app, old| {
            !force.get(env).is_some_and(|f| f.contains(app))
                && ((!held.contains(env) && delta.app_unchanged(app))
                    || old == &repo.inputs(env, app))
        },
        previous,
        filter,
    )
}

/// [`plan`] over its parts: the new environments' settings, the apps in
/// the tree, and whether an (environment, app)'s inputs digest is still the
/// one given (its previous version's).
pub fn plan_with<'a>(
    envs: &BTreeMap<EnvName, EnvSettings>,
    apps: impl Iterator<Item = &'a AppPath> + Clone,
    same_inputs: impl Fn(&EnvName, &AppPath, &Digest) -> bool,
    previous: &Previous,
    filter: Option<&BTreeSet<EnvName>>,
) -> Plan {
    let mut out = Plan::default();
    for (env, settings) in envs {
        if filter.is_some_and(|f| !f.contains(env)) {
            continue;
        }
        let prev = previous.get(env);
        if prev.is_none_or(|p| p.settings != *settings) {
            out.changed.insert(env.clone());
        }
        // Collected, then built in one go: most of 10,000 apps are kept on
        // a push, and one bulk build costs less than as many inserts.
        let mut kept = Vec::new();
        let mut seen = 0;
        for app in apps.clone() {
            let old = prev.and_then(|p| p.apps.get(app));
            seen += usize::from(old.is_some());
            match old {
                Some(old) if same_inputs(env, app, &old.inputs) => {
                    kept.push((app.clone(), old.clone()));
                }
                old => {
                    if let Some(old) = old {
                        out.stale.insert((env.clone(), app.clone()), old.clone());
                    }
                    out.changed.insert(env.clone());
                    out.todo.entry(app.clone()).or_default().push(env.clone());
                }
            }
        }
        // Apps of the previous state not in the tree any more are gone.
        if prev.is_some_and(|p| p.apps.len() > seen) {
            out.changed.insert(env.clone());
        }
        out.envs.insert(
            env.clone(),
            DesiredEnv {
                settings: settings.clone(),
                apps: kept.into_iter().collect(),
            },
        );
    }
    out
}

/// What a re-rendered app replaced, as the daemon remembers it: the commit
/// it was rendered at (its `pacer.commit` label, `""` when absent) and its
/// Marathon definition.
pub fn replaced(old: &RenderedApp) -> (String, Value) {
    let commit = old
        .marathon
        .get("labels")
        .and_then(|l| l.get(labels::COMMIT))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (commit, old.marathon.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Policy;
    use serde_json::json;

    fn settings(name: &str) -> EnvSettings {
        EnvSettings {
            name: name.into(),
            group: format!("/{name}"),
            marathon: None,
            policy: Policy::default(),
        }
    }

    fn app(env: &str, name: &str, inputs: &str) -> Arc<RenderedApp> {
        Arc::new(RenderedApp {
            id: format!("/{env}/{name}"),
            app: name.into(),
            env: env.into(),
            marathon: json!({"id": format!("/{env}/{name}"), "labels": {labels::COMMIT: "c1"}}),
            files: BTreeMap::new(),
            ignore: Vec::new(),
            deploy_timeout_seconds: None,
            secrets: Vec::new(),
            shown: None,
            inputs: Digest(inputs.into()),
            services: Default::default(),
            unreadable_secrets: Default::default(),
        })
    }

    fn previous(env: &str, apps: &[(&str, &str)]) -> Previous {
        let apps = apps
            .iter()
            .map(|(name, inputs)| (name.to_string(), app(env, name, inputs)))
            .collect();
        BTreeMap::from([(
            env.to_string(),
            Arc::new(DesiredEnv {
                settings: settings(env),
                apps,
            }),
        )])
    }

    fn digests(
        table: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&EnvName, &AppPath, &Digest) -> bool {
        move |_, app, old| {
            *old == Digest(
                table
                    .iter()
                    .find(|(a, _)| a == app)
                    .map_or("new", |(_, d)| d)
                    .into(),
            )
        }
    }

    #[test]
    fn unchanged_apps_are_shared_and_changed_ones_rendered() {
        let prev = previous("dev", &[("api", "a1"), ("web", "w1")]);
        let envs = BTreeMap::from([("dev".to_string(), settings("dev"))]);
        let apps = ["api".to_string(), "web".to_string()];
        let p = plan_with(
            &envs,
            apps.iter(),
            digests(&[("api", "a1"), ("web", "w2")]),
            &prev,
            None,
        );
        let kept = &p.envs["dev"].apps;
        assert!(Arc::ptr_eq(&kept["api"], &prev["dev"].apps["api"]));
        assert!(!kept.contains_key("web"));
        assert_eq!(p.todo, BTreeMap::from([("web".into(), vec!["dev".into()])]));
        assert!(Arc::ptr_eq(
            &p.stale[&("dev".into(), "web".into())],
            &prev["dev"].apps["web"]
        ));
        assert_eq!(p.changed, BTreeSet::from(["dev".to_string()]));
    }

    #[test]
    fn nothing_changed_renders_nothing() {
        let prev = previous("dev", &[("api", "a1")]);
        let envs = BTreeMap::from([("dev".to_string(), settings("dev"))]);
        let apps = ["api".to_string()];
        let p = plan_with(&envs, apps.iter(), digests(&[("api", "a1")]), &prev, None);
        assert!(p.todo.is_empty() && p.stale.is_empty() && p.changed.is_empty());
        assert!(Arc::ptr_eq(
            &p.envs["dev"].apps["api"],
            &prev["dev"].apps["api"]
        ));
    }

    #[test]
    fn an_app_gone_from_git_or_new_settings_change_the_environment() {
        let prev = previous("dev", &[("api", "a1"), ("old", "o1")]);
        let envs = BTreeMap::from([("dev".to_string(), settings("dev"))]);
        let apps = ["api".to_string()];
        let p = plan_with(&envs, apps.iter(), digests(&[("api", "a1")]), &prev, None);
        assert!(p.todo.is_empty());
        assert_eq!(p.changed, BTreeSet::from(["dev".to_string()]));
        assert!(!p.envs["dev"].apps.contains_key("old"));

        let mut moved = settings("dev");
        moved.group = "/elsewhere".into();
        let envs = BTreeMap::from([("dev".to_string(), moved)]);
        let prev = previous("dev", &[("api", "a1")]);
        let p = plan_with(&envs, apps.iter(), digests(&[("api", "a1")]), &prev, None);
        assert_eq!(p.changed, BTreeSet::from(["dev".to_string()]));
        assert_eq!(p.envs["dev"].settings.group, "/elsewhere");
    }

    #[test]
    fn a_new_environment_renders_everything_and_the_filter_holds() {
        let envs = BTreeMap::from([
            ("dev".to_string(), settings("dev")),
            ("prod".to_string(), settings("prod")),
        ]);
        let apps = ["api".to_string(), "web".to_string()];
        let only_prod = BTreeSet::from(["prod".to_string()]);
        let p = plan_with(
            &envs,
            apps.iter(),
            digests(&[]),
            &Previous::new(),
            Some(&only_prod),
        );
        assert_eq!(p.envs.keys().collect::<Vec<_>>(), ["prod"]);
        assert_eq!(p.todo["api"], ["prod"]);
        assert_eq!(p.todo["web"], ["prod"]);
        assert_eq!(p.changed, only_prod);
    }

    #[test]
    fn a_real_tree_keeps_the_apps_whose_files_did_not_change() {
        use crate::render::{Diagnostics, Scope, render};
        use crate::source::Snapshot;
        let files = |web: &str| {
            Snapshot::from_files(vec![
                (
                    "pacer.yaml".into(),
                    b"version: 1\nenvironments:\n  dev: {}\n".to_vec(),
                ),
                ("environments/dev.yaml".into(), b"values: {}\n".to_vec()),
                (
                    "apps/api/app.yaml".into(),
                    b"marathon: {cmd: api}\n".to_vec(),
                ),
                ("apps/web/app.yaml".into(), web.as_bytes().to_vec()),
            ])
        };
        let first = render(files("marathon: {cmd: web}\n"), &Scope::default()).unwrap();
        let prev: Previous = first
            .envs
            .into_iter()
            .map(|(e, d)| (e, Arc::new(d)))
            .collect();
        let mut diags = Diagnostics::default();
        let repo = Repo::load(files("marathon: {cmd: web2}\n"), &mut diags).unwrap();
        let none = BTreeMap::new();
        let held = BTreeSet::new();
        let p = plan(&repo, &prev, None, &Delta::everything(), &none, &held);
        assert_eq!(p.todo.keys().collect::<Vec<_>>(), ["web"]);
        assert!(Arc::ptr_eq(
            &p.envs["dev"].apps["api"],
            &prev["dev"].apps["api"]
        ));
        // Told which paths changed, the plan is the same.
        let delta = Delta::Paths {
            changed: BTreeSet::from(["apps/web/app.yaml".to_string()]),
            symlinks: false,
        };
        let q = plan(&repo, &prev, None, &delta, &none, &held);
        assert_eq!(q.todo, p.todo);
        assert!(Arc::ptr_eq(
            &q.envs["dev"].apps["api"],
            &prev["dev"].apps["api"]
        ));
        // A changed environment file re-digests every app; api's inputs
        // are still the same, so it stays.
        let delta = Delta::Paths {
            changed: BTreeSet::from(["environments/dev.yaml".to_string()]),
            symlinks: false,
        };
        assert_eq!(plan(&repo, &prev, None, &delta, &none, &held).todo, p.todo);
        // Nothing changed, but api's endpoints moved: it renders again,
        // and only it.
        let force = BTreeMap::from([("dev".to_string(), BTreeSet::from(["api".to_string()]))]);
        let r = plan(&repo, &prev, None, &Delta::nothing(), &force, &held);
        assert_eq!(r.todo.keys().collect::<Vec<_>>(), ["api"]);
        assert!(
            r.stale
                .contains_key(&("dev".to_string(), "api".to_string()))
        );
        // dev was held at an older commit (its head refused): "nothing
        // changed since the last head" says nothing of it, and web, whose
        // inputs differ from its held version, renders again.
        let held = BTreeSet::from(["dev".to_string()]);
        let h = plan(&repo, &prev, None, &Delta::nothing(), &none, &held);
        assert_eq!(h.todo.keys().collect::<Vec<_>>(), ["web"]);
        assert!(Arc::ptr_eq(
            &h.envs["dev"].apps["api"],
            &prev["dev"].apps["api"]
        ));
    }

    #[test]
    fn replaced_names_the_commit_of_the_old_version() {
        let old = app("dev", "api", "a1");
        let (commit, def) = replaced(&old);
        assert_eq!(commit, "c1");
        assert_eq!(def["id"], "/dev/api");
    }
}
