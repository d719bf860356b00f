//! The observation path of `pacer plan`/`apply` and the daemon: what a plan
//! needs beyond the desired state. The live apps (one read of Marathon per
//! cycle, however many environments share it), the Git baselines that tell
//! drift from change, and the definitions that failed before. The caches
//! let the daemon skip work it did in an earlier cycle.

use super::app_diff;
use super::history;
use crate::marathon::client::{Deployment, Error as ClientError, MarathonClient};
use crate::marathon::raw::RawApp;
use crate::model::Digest;
use crate::render::{self, DesiredEnv, Diagnostics, labels};
use crate::source::RepoLocation;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// An app as Marathon runs it.
#[derive(Clone, Debug)]
pub struct LiveApp {
    /// The raw app JSON from `/v2/apps`. For an app in
    /// [`Observed::in_sync`] with no deployment, only its `id`, `version`
    /// and `labels`: a plan reads nothing else of it.
    pub spec: Value,
    /// Deployments touching the app right now.
    pub deployments: Vec<String>,
}

impl LiveApp {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.spec.get("labels")?.get(key)?.as_str()
    }
}

/// Everything a plan depends on besides the desired state.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Apps under the environment's group, by Marathon id.
    pub apps: BTreeMap<String, LiveApp>,
    /// What Git said at the commit each live app was deployed from (its
    /// `pacer.commit`), for the apps that differ from the desired state.
    /// Tells a change in Git from a change made in Marathon by hand.
    pub baselines: BTreeMap<String, Value>,
    /// App definitions whose last deployment failed and was rolled back, by
    /// Marathon id. The same definition is not tried again.
    pub failed: BTreeMap<String, Value>,
    /// The digest of the hot-reload files the config server hands out now.
    pub served_hot: BTreeMap<String, Digest>,
    /// Apps the operator asked to retry (`pacer retry`): failures are forgotten.
    pub retry: BTreeSet<String>,
    /// Apps already known to match Git, so the plan needn't compare them.
    pub in_sync: BTreeSet<String>,
}

/// Apps whose live version differs from Git and whose baseline (Git at the
/// live app's commit) the caller should render: `(id, commit)`.
pub fn baselines_needed(
    desired: &DesiredEnv,
    live: &BTreeMap<String, LiveApp>,
    in_sync: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for app in desired.apps.values().filter(|a| !in_sync.contains(&a.id)) {
        let Some(l) = live.get(&app.id) else { continue };
        let Some(commit) = l.label(labels::COMMIT) else {
            continue;
        };
        if app_diff(&app.marathon, &l.spec, &app.ignore).is_some() {
            out.push((app.id.clone(), commit.to_string()));
        }
    }
    out
}

/// The longest a baseline render (one app at an older commit) may take.
const BASELINE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Work kept between cycles.
#[derive(Default)]
pub struct Caches {
    /// id → (desired inputs, live version) last seen in sync. Neither side
    /// changed since, so neither needs normalising again: a steady cycle
    /// compares nothing.
    in_sync: HashMap<String, (u64, String)>,
    /// (commit, env, app) → the app as Git had it at that commit.
    baselines: HashMap<(String, String, String), Option<Value>>,
    /// (id, live version) → the definition that failed and was rolled back.
    failed: HashMap<(String, String), Option<Value>>,
    /// id → the desired app last fingerprinted, and its fingerprint. An
    /// app a new commit didn't change is the same `Arc` (see
    /// `render::incremental`), so a steady cycle walks no definition. A
    /// `Weak` keeps the allocation, so its address is never reused.
    fingerprints: HashMap<String, (std::sync::Weak<render::RenderedApp>, u64)>,
}

impl Caches {
    /// Drops entries that can no longer be asked for, so a long-running
    /// daemon's memory stays flat.
    pub fn trim(&mut self, max: usize) {
        if self.baselines.len() > max {
            self.baselines.clear();
        }
        if self.failed.len() > max {
            self.failed.clear();
        }
        if self.in_sync.len() > max {
            self.in_sync.clear();
        }
        if self.fingerprints.len() > max {
            self.fingerprints.clear();
        }
    }

    /// [`fingerprint`] of `app`, computed once per version of it.
    fn fingerprint(&mut self, app: &Arc<render::RenderedApp>) -> u64 {
        if let Some((seen, f)) = self.fingerprints.get(&app.id)
            && std::ptr::eq(seen.as_ptr(), Arc::as_ptr(app))
        {
            return *f;
        }
        let f = fingerprint(app);
        self.fingerprints
            .insert(app.id.clone(), (Arc::downgrade(app), f));
        f
    }
}

/// Everything one Marathon runs: its apps and deployments, read once per
/// cycle however many environments share it.
pub struct Snapshot {
    /// By id; each environment takes its own apps out (groups don't overlap).
    pub apps: BTreeMap<String, RawApp>,
    pub deployments: Vec<Deployment>,
}

pub async fn snapshot(client: &MarathonClient) -> Result<Snapshot, ClientError> {
    let apps = client
        .list_apps_raw("/")
        .await?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    Ok(Snapshot {
        apps,
        deployments: client.deployments().await?,
    })
}

/// Takes the live apps under `group` out of the snapshot, with the
/// deployments touching each.
pub fn take_group(snap: &mut Snapshot, group: &str) -> BTreeMap<String, (RawApp, Vec<String>)> {
    let prefix = if group == "/" {
        "/".to_string()
    } else {
        format!("{group}/")
    };
    let ids: Vec<String> = snap
        .apps
        .range(prefix.clone()..)
        .take_while(|(id, _)| id.starts_with(&prefix))
        .map(|(id, _)| id.clone())
        .collect();
    let mut out = BTreeMap::new();
    for id in ids {
        let Some(raw) = snap.apps.remove(&id) else {
            continue;
        };
        let deployments = snap
            .deployments
            .iter()
            .filter(|d| d.affected_apps.contains(&id))
            .map(|d| d.id.clone())
            .collect();
        out.insert(id, (raw, deployments));
    }
    out
}

/// A 64-bit fingerprint of what an app's comparison depends on (its
/// definition and its ignore pointers), from a walk rather than its text:
/// cheaper than keeping a copy to compare with.
fn fingerprint(app: &render::RenderedApp) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(v: &Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(a) => {
                (4u8, a.len()).hash(h);
                for x in a {
                    walk(x, h);
                }
            }
            Value::Object(m) => {
                (5u8, m.len()).hash(h);
                for (k, x) in m {
                    k.hash(h);
                    walk(x, h);
                }
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    walk(&app.marathon, &mut h);
    app.ignore.hash(&mut h);
    h.finish()
}

/// Renders one app of one environment at an older commit.
fn render_at(loc: &RepoLocation, commit: &str, env: &str, app: &str) -> Option<Value> {
    let snap = Arc::new(loc.at_rev(commit).ok()?);
    let mut diags = Diagnostics::default();
    let repo = render::Repo::load(snap, &mut diags)?;
    let d = render::render_pairs(
        &repo,
        &[(env.to_string(), vec![app.to_string()])],
        &mut diags,
    );
    d.envs.get(env)?.apps.get(app).map(|a| a.marathon.clone())
}

/// Everything [`crate::plan::plan`] needs for `desired`, read from Marathon and Git.
pub async fn observe(
    client: &MarathonClient,
    loc: Option<&RepoLocation>,
    desired: &DesiredEnv,
    caches: &mut Caches,
) -> Result<Observed, ClientError> {
    let mut snap = snapshot(client).await?;
    observe_in(client, &mut snap, loc, desired, &BTreeMap::new(), caches).await
}

/// Like [`observe`], from a snapshot of Marathon taken by the caller.
pub async fn observe_in(
    client: &MarathonClient,
    snap: &mut Snapshot,
    loc: Option<&RepoLocation>,
    desired: &DesiredEnv,
    known: &BTreeMap<String, (String, Value)>,
    caches: &mut Caches,
) -> Result<Observed, ClientError> {
    let mut live = take_group(snap, &desired.settings.group);
    let mut observed = Observed::default();
    // Compare each app once; remember the pairs found equal. An app found
    // in sync keeps only its summary: nothing reads the rest, and keeping
    // every live definition parsed cost more memory than the desired state.
    let mut differing = Vec::new();
    for app in desired.apps.values() {
        let Some((raw, deployments)) = live.remove(&app.id) else {
            continue;
        };
        // Keyed by the definition itself (and what it leaves to others),
        // not by its inputs: whatever produced it, a different definition
        // is compared again.
        let fingerprint = caches.fingerprint(app);
        let known = caches
            .in_sync
            .get(&app.id)
            .is_some_and(|(d, v)| *v == raw.version && *d == fingerprint);
        let mut parsed = None;
        if !known {
            let spec = raw.parse()?;
            if app_diff(&app.marathon, &spec, &app.ignore).is_some() {
                caches.in_sync.remove(&app.id);
                differing.push(app.id.clone());
                observed
                    .apps
                    .insert(app.id.clone(), LiveApp { spec, deployments });
                continue;
            }
            caches
                .in_sync
                .insert(app.id.clone(), (fingerprint, raw.version.clone()));
            parsed = Some(spec);
        }
        observed.in_sync.insert(app.id.clone());
        // A rollout in progress may be rolled back to what runs: that
        // needs the whole definition.
        let spec = match parsed {
            _ if deployments.is_empty() => raw.summary(),
            Some(spec) => spec,
            None => raw.parse()?,
        };
        observed
            .apps
            .insert(app.id.clone(), LiveApp { spec, deployments });
    }
    // Apps Git doesn't have (unmanaged, or to be pruned): few, and whole.
    for (id, (raw, deployments)) in live {
        let spec = raw.parse()?;
        observed.apps.insert(id, LiveApp { spec, deployments });
    }
    let env = desired.settings.name.clone();
    let by_id: BTreeMap<&str, &str> = desired
        .apps
        .values()
        .map(|a| (a.id.as_str(), a.app.as_str()))
        .collect();
    for (id, commit) in baselines_needed(desired, &observed.apps, &observed.in_sync) {
        // The version a newer commit replaced is usually what still runs.
        if let Some((c, spec)) = known.get(&id)
            && *c == commit
        {
            observed.baselines.insert(id, spec.clone());
            continue;
        }
        let Some(loc) = loc else { break };
        let Some(app) = by_id.get(id.as_str()) else {
            continue;
        };
        let key = (commit.clone(), env.clone(), app.to_string());
        let baseline = match caches.baselines.get(&key) {
            Some(b) => b.clone(),
            None => {
                let loc_path = loc
                    .git
                    .as_ref()
                    .map(|g| (g.repo_path.clone(), g.prefix.clone()));
                let (commit2, env2, app2) = key.clone();
                // git2 and rendering are blocking work.
                // On its own thread with a deadline: an older commit's
                // template may never end either, and a baseline is only an
                // aid (without it, a difference reads as a change).
                let (tx, rx) = tokio::sync::oneshot::channel();
                let spawned = std::thread::Builder::new()
                    .name("pacer-baseline".into())
                    .spawn(move || {
                        let b = loc_path.and_then(|(path, prefix)| {
                            render_at(&RepoLocation::bare(&path, &prefix), &commit2, &env2, &app2)
                        });
                        let _ = tx.send(b);
                    });
                let b = match spawned {
                    Ok(_) => tokio::time::timeout(BASELINE_DEADLINE, rx)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten(),
                    Err(_) => None,
                };
                caches.baselines.insert(key, b.clone());
                b
            }
        };
        if let Some(b) = baseline {
            observed.baselines.insert(id, b);
        }
    }
    // Failures only matter for apps that differ from Git: an app in sync
    // has nothing to retry.
    for id in differing {
        let version = observed.apps[&id]
            .spec
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let key = (id.clone(), version);
        let failed = match caches.failed.get(&key) {
            Some(f) => f.clone(),
            None => match history::versions(client, &id, 3).await {
                Ok(v) => {
                    let f = history::failed_definition(&v);
                    caches.failed.insert(key, f.clone());
                    f
                }
                // Not knowing whether this definition failed before must not
                // read as "it didn't" (nor be cached as such): that planned a
                // rolled-back deployment again on every transient error
                // (found by `a_failed_definition_is_not_retried_when_its_history_cannot_be_read`).
                // Marathon is failing: the caller retries later.
                Err(e) if e.is_transient() => return Err(e),
                // Gone or unreadable for good (deleted meanwhile): nothing
                // to remember, and nothing cached.
                Err(_) => None,
            },
        };
        if let Some(f) = failed {
            observed.failed.insert(id, f);
        }
    }
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(id: &str, apps: &[&str]) -> Deployment {
        Deployment {
            id: id.into(),
            version: "v".into(),
            affected_apps: apps.iter().map(|a| a.to_string()).collect(),
            current_step: 1,
            total_steps: 2,
            steps: vec![],
            current_actions: vec![],
        }
    }

    fn snap(ids: &[&str], deployments: Vec<Deployment>) -> Snapshot {
        let apps: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "version": "v1", "cmd": "x"}))
            .collect();
        let body = json!({ "apps": apps }).to_string();
        Snapshot {
            apps: RawApp::list(body)
                .unwrap()
                .into_iter()
                .map(|a| (a.id.clone(), a))
                .collect(),
            deployments,
        }
    }

    #[test]
    fn a_group_takes_its_own_apps_with_the_deployments_touching_each() {
        let mut s = snap(
            &["/dev/web", "/prod/api/v1", "/prod/web", "/production/x"],
            vec![
                deployment("d1", &["/prod/web"]),
                deployment("d2", &["/prod/api/v1", "/dev/web"]),
            ],
        );
        let prod = take_group(&mut s, "/prod");
        assert_eq!(
            prod.keys().collect::<Vec<_>>(),
            ["/prod/api/v1", "/prod/web"],
            "a sibling group with the same prefix is not a subgroup"
        );
        assert_eq!(prod["/prod/web"].1, ["d1"]);
        assert_eq!(prod["/prod/api/v1"].1, ["d2"]);
        assert_eq!(prod["/prod/web"].0.id, "/prod/web");
        // Taken out: the next environment on this Marathon sees the rest.
        assert_eq!(
            s.apps.keys().collect::<Vec<_>>(),
            ["/dev/web", "/production/x"]
        );
        let dev = take_group(&mut s, "/dev");
        assert_eq!(dev["/dev/web"].1, ["d2"]);
        let root = take_group(&mut s, "/");
        assert_eq!(root.keys().collect::<Vec<_>>(), ["/production/x"]);
        assert!(root["/production/x"].1.is_empty());
        assert!(s.apps.is_empty());
    }

    #[test]
    fn baselines_are_asked_for_differing_apps_with_a_commit_label() {
        use crate::model::Digest;
        use crate::render::{EnvSettings, Policy, RenderedApp};
        let app = |name: &str| {
            let marathon = json!({"id": format!("/prod/{name}"), "cmd": "new"});
            RenderedApp {
                id: format!("/prod/{name}"),
                app: name.into(),
                env: "prod".into(),
                inputs: Digest::of(marathon.to_string().as_bytes()),
                services: Default::default(),
                unreadable_secrets: Default::default(),
                marathon,
                files: BTreeMap::new(),
                ignore: Vec::new(),
                deploy_timeout_seconds: None,
                secrets: Vec::new(),
                shown: None,
            }
        };
        let desired = DesiredEnv {
            settings: EnvSettings {
                name: "prod".into(),
                group: "/prod".into(),
                marathon: None,
                policy: Policy::default(),
            },
            apps: ["same", "old", "nolabel", "known", "absent"]
                .into_iter()
                .map(|n| (n.to_string(), Arc::new(app(n))))
                .collect(),
        };
        let live = |id: &str, cmd: &str, commit: Option<&str>| {
            let mut spec = json!({"id": id, "cmd": cmd});
            if let Some(c) = commit {
                spec["labels"] = json!({ "pacer.commit": c });
            }
            let l = LiveApp {
                spec,
                deployments: vec![],
            };
            (id.to_string(), l)
        };
        let observed: BTreeMap<String, LiveApp> = [
            live("/prod/same", "new", Some("c1")),
            live("/prod/old", "old", Some("c0")),
            live("/prod/nolabel", "old", None),
            live("/prod/known", "old", Some("c0")),
        ]
        .into();
        let in_sync = BTreeSet::from(["/prod/known".to_string()]);
        assert_eq!(
            baselines_needed(&desired, &observed, &in_sync),
            [("/prod/old".to_string(), "c0".to_string())]
        );
    }

    fn app(cmd: &str) -> Arc<render::RenderedApp> {
        Arc::new(render::RenderedApp {
            id: "/dev/web".into(),
            app: "web".into(),
            env: "dev".into(),
            marathon: serde_json::json!({"id": "/dev/web", "cmd": cmd}),
            files: BTreeMap::new(),
            ignore: Vec::new(),
            deploy_timeout_seconds: None,
            secrets: Vec::new(),
            shown: None,
            inputs: crate::model::Digest(cmd.into()),
            services: Default::default(),
            unreadable_secrets: Default::default(),
        })
    }

    #[test]
    fn a_fingerprint_is_kept_per_version_of_an_app() {
        let mut c = Caches::default();
        let v1 = app("a");
        let f1 = c.fingerprint(&v1);
        assert_eq!(c.fingerprint(&v1), f1);
        assert_eq!(c.fingerprints["/dev/web"].1, f1);
        // A new version is a new `Arc`: fingerprinted anew.
        let v2 = app("b");
        let f2 = c.fingerprint(&v2);
        assert_ne!(f1, f2);
        assert_eq!(f2, fingerprint(&v2));
        // An equal definition in a new `Arc` fingerprints the same.
        assert_eq!(c.fingerprint(&app("a")), f1);
        c.trim(0);
        assert!(c.fingerprints.is_empty());
    }
}
