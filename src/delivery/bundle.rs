//! Each app's bundle as the config server hands it out: its files' names,
//! paths, modes, hashes and reload actions, and its **index**, a number
//! that grows whenever the bundle changes (Consul's `X-Consul-Index`).
//!
//! One [`Tracker`] follows the published snapshots and keeps the manifests
//! (no file content: that stays in the snapshot) and their indexes in an
//! `Arc<Bundles>` behind a `watch` channel, so a blocked watch costs one
//! receiver, not a task or a copy. An index is never smaller than the wall
//! clock in ms when its bundle was seen to change, so it doesn't go back
//! across a daemon restart; a bundle seen for the first time after a start
//! gets the start's time.
//!
//! The tracker holds only `Weak` references to the published environments:
//! it never keeps the reconcile loop from moving apps into the next render.

use crate::model::{Digest, EnvName};
use crate::render::file_actions::FileActions;
use crate::render::{DesiredEnv, Reload, RenderedApp};
use crate::status::published::Published;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// One file of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMeta {
    pub name: String,
    /// Where the agent writes it inside the task.
    pub path: String,
    /// Octal file mode: `0600` for a file that reads a secret, else `0644`.
    pub mode: &'static str,
    /// `sha256:<hex>` of the content.
    pub hash: Digest,
    pub reload: Reload,
    /// The agent's `check` and `onReload`, when the repo sets them.
    #[serde(flatten)]
    pub actions: FileActions,
}

/// One app's manifest (`GET /v1/config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub env: EnvName,
    pub app_id: String,
    /// The commit the app was rendered at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub index: u64,
    pub files: Vec<FileMeta>,
    /// Of the files' names, paths, reloads and hashes: what an index follows.
    #[serde(skip)]
    pub digest: Digest,
    /// When the index was given, Unix ms (the start, for a bundle first
    /// seen then): when its delivery began.
    #[serde(skip)]
    pub since_ms: u64,
}

/// Every app's bundle, by Marathon app id, and each environment's Marathon.
#[derive(Debug, Default)]
pub struct Bundles {
    pub apps: HashMap<String, Arc<Bundle>>,
    /// Per environment: its `marathon:` URL from `pacer.yaml`.
    pub marathons: BTreeMap<EnvName, Option<String>>,
}

/// Follows published snapshots; see the module docs.
#[derive(Default)]
pub struct Tracker {
    seen: BTreeMap<EnvName, Weak<DesiredEnv>>,
    last_index: u64,
    current: Arc<Bundles>,
}

impl Tracker {
    /// Indexes start at `start_ms` (the wall clock at start-up).
    pub fn new(start_ms: u64) -> Tracker {
        Tracker {
            last_index: start_ms.saturating_sub(1),
            ..Tracker::default()
        }
    }

    pub fn current(&self) -> Arc<Bundles> {
        self.current.clone()
    }

    /// Takes in a snapshot; the new bundles when any environment changed.
    pub fn update(&mut self, snap: &Published, now_ms: u64) -> Option<Arc<Bundles>> {
        if snap.desired.is_empty() && snap.commit.is_some() {
            // The loop has lent the desired state to a render: the bundles
            // stay as they are until it is published again.
            return None;
        }
        let same = self.seen.len() == snap.desired.len()
            && snap.desired.iter().all(|(name, env)| {
                self.seen
                    .get(name)
                    .is_some_and(|w| Weak::ptr_eq(w, &Arc::downgrade(env)))
            });
        if same {
            return None;
        }
        let mut next = Bundles {
            apps: HashMap::with_capacity(self.current.apps.len()),
            marathons: BTreeMap::new(),
        };
        for (name, env) in &snap.desired {
            next.marathons
                .insert(name.clone(), env.settings.marathon.clone());
            let unchanged = self
                .seen
                .get(name)
                .is_some_and(|w| Weak::ptr_eq(w, &Arc::downgrade(env)));
            for app in env.apps.values() {
                let app: &RenderedApp = app;
                if unchanged && let Some(b) = self.current.apps.get(&app.id) {
                    next.apps.insert(app.id.clone(), b.clone());
                    continue;
                }
                let mut b = manifest(name, app, snap.commit.as_deref());
                match self.current.apps.get(&b.app_id) {
                    Some(old) if old.digest == b.digest => {
                        b.index = old.index;
                        b.since_ms = old.since_ms;
                    }
                    _ => {
                        self.last_index = (self.last_index + 1).max(now_ms);
                        b.index = self.last_index;
                        b.since_ms = now_ms;
                    }
                }
                next.apps.insert(b.app_id.clone(), Arc::new(b));
            }
        }
        self.seen = snap
            .desired
            .iter()
            .map(|(k, v)| (k.clone(), Arc::downgrade(v)))
            .collect();
        self.current = Arc::new(next);
        Some(self.current.clone())
    }
}

/// The manifest of one app (its index still 0).
fn manifest(env: &str, app: &RenderedApp, commit: Option<&str>) -> Bundle {
    let files: Vec<FileMeta> = app
        .files
        .iter()
        .map(|(name, f)| FileMeta {
            name: name.clone(),
            path: f.path.clone(),
            mode: if app.secret_digest(name).is_some() {
                "0600"
            } else {
                "0644"
            },
            hash: f.digest.clone(),
            reload: f.reload,
            actions: f.actions.clone(),
        })
        .collect();
    let parts: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| {
            let reload = match f.reload {
                Reload::Hot => "hot",
                Reload::Restart => "restart",
            };
            // The actions change what the agent does: a change is a new index.
            let actions = serde_json::to_string(&f.actions).unwrap_or_default();
            (
                f.name.clone(),
                format!("{}\0{}\0{reload}\0{}\0{actions}", f.path, f.mode, f.hash).into_bytes(),
            )
        })
        .collect();
    let digest = Digest::of_parts(parts.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    let commit = app
        .marathon
        .pointer(&format!("/labels/{}", crate::render::labels::COMMIT))
        .and_then(|v| v.as_str())
        .or(commit)
        .map(str::to_string);
    Bundle {
        env: env.to_string(),
        app_id: app.id.clone(),
        commit,
        index: 0,
        files,
        digest,
        since_ms: 0,
    }
}

/// The longest a watch may wait (`?wait=`), as Consul caps it.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Parses `?wait=` (`60s`, `5m`, `1500ms`, or bare seconds), capped at
/// [`MAX_WAIT`].
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    let bad = || format!("wait `{s:.16}` is not a duration such as 60s, 5m or 1500ms");
    if s.is_empty() || s.len() > 16 {
        return Err(bad());
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(bad()),
    };
    Ok(d.min(MAX_WAIT))
}

/// Consul's jitter: up to a sixteenth of the wait more, so watchers woken
/// together don't all come back at once.
pub fn jitter(wait: Duration) -> Duration {
    let max = wait.as_millis() as u64 / 16;
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::random_range(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{EnvSettings, RenderedFile};
    use serde_json::json;

    fn env(files: &[(&str, &str, Reload)]) -> Arc<DesiredEnv> {
        let files = files
            .iter()
            .map(|(name, content, reload)| {
                (
                    name.to_string(),
                    RenderedFile {
                        path: format!("/etc/{name}"),
                        reload: *reload,
                        digest: Digest::of(content.as_bytes()),
                        content: content.as_bytes().to_vec(),
                        actions: Default::default(),
                    },
                )
            })
            .collect();
        let app = RenderedApp {
            id: "/dev/web".into(),
            app: "web".into(),
            env: "dev".into(),
            marathon: json!({"labels": {"pacer.commit": "c1"}}),
            files,
            ignore: vec![],
            deploy_timeout_seconds: None,
            secrets: vec![],
            shown: None,
            inputs: Digest::of(b""),
            services: Default::default(),
            unreadable_secrets: Default::default(),
        };
        Arc::new(DesiredEnv {
            settings: EnvSettings {
                name: "dev".into(),
                group: "/dev".into(),
                marathon: Some("http://m".into()),
                policy: Default::default(),
            },
            // `into`: the apps may be held as they are or behind an `Arc`.
            #[allow(clippy::useless_conversion)]
            apps: [("web".to_string(), app.into())].into(),
        })
    }

    fn snap(commit: &str, env: Option<Arc<DesiredEnv>>) -> Published {
        Published {
            commit: Some(commit.into()),
            desired: env.into_iter().map(|e| ("dev".to_string(), e)).collect(),
            ..Published::default()
        }
    }

    #[test]
    fn the_index_grows_only_when_the_bundle_changes() {
        let mut t = Tracker::new(1_000);
        let e1 = env(&[("nginx.conf", "a", Reload::Hot)]);
        let b = t.update(&snap("c1", Some(e1.clone())), 500).expect("new");
        let first = &b.apps["/dev/web"];
        assert_eq!(first.index, 1_000, "seeded from the start time");
        assert_eq!(first.commit.as_deref(), Some("c1"));
        assert_eq!(first.files[0].mode, "0644");
        assert_eq!(b.marathons["dev"].as_deref(), Some("http://m"));
        // A status-only change: the same environment, nothing to do.
        assert!(t.update(&snap("c1", Some(e1.clone())), 600).is_none());
        // The render borrowed the desired state: the bundles stay.
        assert!(t.update(&snap("c2", None), 700).is_none());
        assert_eq!(t.current().apps["/dev/web"].index, 1_000);
        // A new commit rendering the same files keeps the index.
        let same = env(&[("nginx.conf", "a", Reload::Hot)]);
        let b = t.update(&snap("c2", Some(same)), 800).expect("new env");
        assert_eq!(b.apps["/dev/web"].index, 1_000);
        assert_eq!(b.apps["/dev/web"].since_ms, 500, "kept with the index");
        // Changed content: a larger index, at least the clock.
        let changed = env(&[("nginx.conf", "b", Reload::Hot)]);
        let b = t.update(&snap("c3", Some(changed)), 5_000).unwrap();
        assert_eq!(b.apps["/dev/web"].index, 5_000);
        assert_eq!(b.apps["/dev/web"].since_ms, 5_000, "its delivery starts");
        // Even when the clock went back.
        let again = env(&[("nginx.conf", "c", Reload::Hot)]);
        let b = t.update(&snap("c4", Some(again)), 10).unwrap();
        assert_eq!(b.apps["/dev/web"].index, 5_001);
        // A changed reload is a change too.
        let reload = env(&[("nginx.conf", "c", Reload::Restart)]);
        let b = t.update(&snap("c5", Some(reload)), 10).unwrap();
        assert_eq!(b.apps["/dev/web"].index, 5_002);
        // And so is a changed check: the agent must learn of it.
        let checked = env(&[("nginx.conf", "c", Reload::Restart)]);
        let mut e = Arc::try_unwrap(checked).unwrap();
        let app = Arc::make_mut(e.apps.get_mut("web").unwrap());
        app.files.get_mut("nginx.conf").unwrap().actions.check = Some(vec!["true".into()]);
        let b = t.update(&snap("c6", Some(Arc::new(e))), 10).unwrap();
        assert_eq!(b.apps["/dev/web"].index, 5_003);
        assert_eq!(
            b.apps["/dev/web"].files[0].actions.check.as_deref(),
            Some(&["true".to_string()][..])
        );
    }

    #[test]
    fn the_tracker_never_keeps_an_environment_alive() {
        let mut t = Tracker::new(1);
        let e = env(&[("a", "x", Reload::Hot)]);
        t.update(&snap("c1", Some(e.clone())), 1);
        // The loop can take its environment back without a copy.
        assert!(Arc::try_unwrap(e).is_ok());
    }

    #[test]
    fn waits_parse_and_are_capped() {
        assert_eq!(parse_wait("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_wait("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_wait("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_wait("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_wait("99m"), Ok(MAX_WAIT));
        for bad in ["", "s", "-1s", "1h", "1.5s", "99999999999999999999"] {
            assert!(parse_wait(bad).is_err(), "{bad}");
        }
        assert!(jitter(Duration::from_secs(16)) <= Duration::from_secs(1));
    }
}
