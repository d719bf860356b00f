//! Live endpoints in the loop: the follower is started with the daemon,
//! and when it releases a moved set, the apps that name that service
//! render again at the same commit and reach their tasks as a hot change.
//!
//! Such a re-render is not a deployment: nothing changes in Marathon and
//! no commit is involved, so it writes no deployment record. The config
//! server hands out the new bundles at once (they are published with the
//! desired state), and the hot digest the loop remembers moves with them,
//! so the next plan does not count them as a change from Git.

use super::*;
use crate::reconcile::endpoints::{self, Handle};

/// Starts the endpoint follower with the daemon's Marathon settings.
pub(super) fn start(cfg: &Config, reader: crate::status::published::Reader) -> Handle {
    // Its own event stream: task and health events, not deployments.
    let mut clients = clients_of(cfg, false);
    let override_url = cfg.marathon_url.clone();
    let dir = crate::delivery::state_dir(cfg.state_dir.as_deref(), &cfg.workdir);
    endpoints::spawn(
        endpoints::Config {
            settings: cfg.endpoints,
            resync: cfg.endpoints_resync,
            url_for: Box::new(move |own| override_url.clone().or(own.map(str::to_string))),
            client_for: Box::new(move |url| clients.get(url)),
            state_file: Some(dir.join("endpoints.json")),
        },
        reader,
    )
}

/// Per environment, the apps of `desired` that name one of `services`.
pub fn dependents(
    desired: &BTreeMap<EnvName, Arc<render::DesiredEnv>>,
    services: &BTreeSet<String>,
) -> BTreeMap<EnvName, BTreeSet<AppPath>> {
    let mut out: BTreeMap<EnvName, BTreeSet<AppPath>> = BTreeMap::new();
    for (env, d) in desired {
        for (name, app) in &d.apps {
            if app.services.iter().any(|s| services.contains(s)) {
                out.entry(env.clone()).or_default().insert(name.clone());
            }
        }
    }
    out
}

impl Daemon {
    /// The follower published: the status shows it, and the apps that name
    /// a service whose released set moved render again.
    pub(super) async fn endpoints_moved(&mut self) {
        let view = self.follower.latest();
        let shown = crate::status::EndpointsStatus {
            services: view.services.clone(),
            streams: view.streams.clone(),
        };
        self.metrics
            .endpoints_held(shown.services.values().filter(|s| s.held.is_some()).count());
        if self.status.read().endpoints != shown {
            self.status.write().endpoints = shown;
        }
        let moved = self.live.changed(&view.endpoints);
        if moved.is_empty() {
            return;
        }
        self.live = view.endpoints.clone();
        let Some(head) = self.rendered_at.clone() else {
            return;
        };
        let mut force = dependents(&self.desired, &moved);
        // Apps kept back because a service they name could not be read try
        // again now (and only those: an app broken by a typo waits for a
        // commit, not for every move).
        let retried = self.unread_invalid.clone();
        for (env, app) in &retried {
            force.entry(env.clone()).or_default().insert(app.clone());
        }
        force.retain(|_, apps| !apps.is_empty());
        if force.is_empty() {
            return;
        }
        let started = Instant::now();
        let before = self.desired.clone();
        let (_, rerendered) = self.render_forced(&head, force).await;
        let mut count = 0;
        for (env, apps) in &rerendered {
            for app in apps {
                let (Some(old), Some(new)) = (
                    before.get(env).and_then(|d| d.apps.get(app)),
                    self.desired.get(env).and_then(|d| d.apps.get(app)),
                ) else {
                    continue;
                };
                count += 1;
                // Retried at the head's version: that may carry a commit's
                // hot change, which the plan must still see and record.
                if retried.contains(&(env.clone(), app.clone())) {
                    continue;
                }
                // Served as it was: what the config server hands out now
                // is the new version, and no commit asked for it.
                let old_digest = plan::served_digest(old);
                if self.served_hot.get(&old.id) == Some(&old_digest) {
                    self.served_hot
                        .insert(new.id.clone(), plan::served_digest(new));
                }
            }
        }
        self.metrics.endpoint_renders(count as u64);
        let moved: Vec<&str> = moved.iter().map(String::as_str).collect();
        tracing::info!(
            services = %moved.join(","),
            apps = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "live endpoints moved; the apps that name them rendered again"
        );
    }

    /// Whether the follower released sets the desired state was not
    /// rendered with yet.
    pub(super) fn endpoints_pending(&self) -> bool {
        !Arc::ptr_eq(&self.follower.latest().endpoints, &self.live)
    }

    /// An operator's release of a held service.
    pub(super) async fn release(&mut self, service: &str) {
        if !self.follower.release(service) {
            tracing::warn!(
                service,
                "the endpoint follower is busy; the release was dropped"
            );
        }
    }
}
