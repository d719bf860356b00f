//! One environment's reconcile: observe, plan, start the applies in the
//! background, and project the result into the status.

use super::*;

impl Daemon {
    /// Plans and starts the changed `apps` of `env` from their own live
    /// state: a few GETs instead of the whole app list. Failures are left to
    /// the full pass, which follows at once.
    pub(super) async fn fast_apply(&mut self, env: &str, apps: &BTreeSet<AppPath>, head: &str) {
        let Some(full) = self.desired.get(env).cloned() else {
            return;
        };
        // The repo's policy alone decides: nothing applies an `autoApply: false`
        // environment on its own. Paused (not the leader): nothing is sent.
        if !full.settings.policy.auto_apply || self.writer.is_paused() {
            return;
        }
        let Some(url) = self.clients.url_for(full.settings.marathon.as_deref()) else {
            return;
        };
        let Some(client) = self.client_for(&url) else {
            return;
        };
        let subset = Arc::new(render::DesiredEnv {
            settings: full.settings.clone(),
            apps: apps
                .iter()
                .filter_map(|a| Some((a.clone(), full.apps.get(a)?.clone())))
                .collect(),
        });
        let mut snap = gather::Snapshot {
            apps: BTreeMap::new(),
            deployments: match client.deployments().await {
                Ok(d) => d,
                Err(_) => return,
            },
        };
        for app in subset.apps.values() {
            match client.get_app_raw(&app.id).await {
                Ok(Some(raw)) => {
                    snap.apps.insert(app.id.clone(), raw);
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
        let loc = RepoLocation::bare(self.mirror.git_dir(), &self.cfg.prefix);
        let Ok(mut observed) = gather::observe_in(
            &client,
            &mut snap,
            Some(&loc),
            &subset,
            &self.known_baselines,
            &mut self.caches,
        )
        .await
        else {
            return;
        };
        observed.served_hot = subset
            .apps
            .values()
            .filter_map(|a| Some((a.id.clone(), self.served_hot.get(&a.id)?.clone())))
            .collect();
        observed.retry = self.retry.clone();
        if !self.cfg.allow_rewind && self.rewinds(head, &observed).is_some() {
            return;
        }
        let p = plan::plan(&subset, &observed, &self.unrendered(env));
        let commit = self.gate.commit_of(env, head).to_string();
        self.start_apply(env, &commit, &client, &subset, &observed, &p);
    }

    /// The apps of `env` in Git at the rendered commit that don't render.
    fn unrendered(&self, env: &str) -> BTreeSet<AppPath> {
        self.invalid
            .get(env)
            .map(|i| i.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts the acting steps of `p` that aren't already running, in the
    /// background. Returns the ids started.
    pub(super) fn start_apply(
        &mut self,
        env: &str,
        head: &str,
        client: &MarathonClient,
        desired: &Arc<render::DesiredEnv>,
        observed: &plan::Observed,
        p: &plan::Plan,
    ) -> BTreeSet<String> {
        // Checked here, at the last moment: the fast path awaits Marathon
        // between its own check and this call, and a pause may land then.
        if self.writer.is_paused() {
            return BTreeSet::new();
        }
        let inflight = self.inflight.lock().clone();
        let to_run: Vec<plan::Step> = p
            .steps
            .iter()
            .filter(|s| s.action.acts() || matches!(s.action, Action::Wait { ours: true, .. }))
            .filter(|s| !inflight.contains(&s.id))
            .cloned()
            .collect();
        let started: BTreeSet<String> = to_run.iter().map(|s| s.id.clone()).collect();
        if to_run.is_empty() {
            return started;
        }
        self.inflight.lock().extend(started.iter().cloned());
        let run = plan::Plan {
            env: p.env.clone(),
            group: p.group.clone(),
            steps: to_run,
        };
        let (client, desired, observed, opts) = (
            client.clone(),
            desired.clone(),
            observed.clone(),
            self.cfg.apply.clone(),
        );
        let done = self.done_tx.clone();
        let (env, head) = (env.to_string(), head.to_string());
        // Deployments are followed in the background: a ten-minute
        // rollout in one environment doesn't hold up the others.
        tokio::spawn(async move {
            let results = apply::apply(
                &client,
                &run,
                &desired,
                &observed,
                &opts,
                Arc::new(LogProgress),
            )
            .await;
            // The loop records it as soon as it is between cycles.
            let _ = done.send(Finished {
                env,
                head,
                desired,
                steps: run.steps,
                results,
            });
        });
        started
    }

    pub(super) async fn reconcile_env(
        &mut self,
        env: &str,
        client: &MarathonClient,
        snap: &mut gather::Snapshot,
        head: &str,
    ) -> bool {
        let Some(desired) = self.desired.get(env).cloned() else {
            return true;
        };
        let loc = RepoLocation::bare(self.mirror.git_dir(), &self.cfg.prefix);
        let mut observed = match gather::observe_in(
            client,
            snap,
            Some(&loc),
            &desired,
            &self.known_baselines,
            &mut self.caches,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => {
                self.metrics.marathon_error();
                self.env_error(env, &format!("reading Marathon: {e}"));
                return false;
            }
        };
        // Reading 1,000 apps' answers is CPU work: an apply a push started
        // (waiting on this worker) sends its write first.
        tokio::task::yield_now().await;
        // The config server hands out the current hot files from the start;
        // only later changes are hot updates.
        for app in desired.apps.values() {
            self.served_hot
                .entry(app.id.clone())
                .or_insert_with(|| plan::served_digest(app));
        }
        observed.served_hot = desired
            .apps
            .values()
            .filter_map(|a| Some((a.id.clone(), self.served_hot.get(&a.id)?.clone())))
            .collect();
        observed.retry = self.retry.clone();
        // An app that doesn't render is still in Git. A daemon that never
        // saw it render (just restarted) has no desired version of it: the
        // plan is told, so it never prunes it for a typo (the e2e test
        // `a_daemon_restarted_on_a_broken_app_does_not_prune_it`).
        let p = plan::plan(&desired, &observed, &self.unrendered(env));
        tokio::task::yield_now().await;
        // After a restart the daemon has no memory of what it applied; the
        // live apps' `pacer.commit` labels say it instead.
        let rewind = if self.cfg.allow_rewind {
            None
        } else {
            self.rewinds(head, &observed)
        };
        // An environment held back by the signed-commit gate deploys (heals,
        // scales) its last good commit, and its records say so.
        let commit = self.gate.commit_of(env, head).to_string();
        let shown_commit = match self.gate.refused.contains_key(env) {
            true => commit.clone(),
            false => self.rendered_at.as_deref().unwrap_or(head).to_string(),
        };
        // An operator's apply (`POST /api/v1/apply`) counts for the plan
        // they reviewed, once.
        let summary = p.summary();
        let blocked = match (&rewind, self.writer.is_paused()) {
            (Some(_), _) => Some("the head is a refused rewind"),
            (None, true) => Some("this replica does not write to Marathon (not the leader)"),
            (None, false) => None,
        };
        let asked = self.take_apply(env, &summary.digest, blocked);
        // Paused (not the leader): plan and show, send nothing.
        let auto_apply = (desired.settings.policy.auto_apply || asked) && blocked.is_none();
        let inflight = self.inflight.lock().clone();
        let started = if auto_apply {
            self.start_apply(env, &commit, client, &desired, &observed, &p)
        } else {
            BTreeSet::new()
        };
        let now = chrono::Utc::now();
        let previous = self.status.read().environments.get(env).cloned();
        let previous = previous.as_deref();
        if let Some(msg) = &rewind
            && previous.is_none_or(|e| !e.errors.iter().any(|p| p.message == *msg))
        {
            tracing::error!(env = %env, "commit refused: {msg}");
        }
        let mut planned = Vec::with_capacity(p.steps.len());
        for step in &p.steps {
            let key = step.app.clone().unwrap_or_else(|| step.id.clone());
            if let Action::Drifted { heal, changed } = &step.action
                && project::newly_drifted(previous, &key)
            {
                tracing::info!(
                    env = %env,
                    app = %step.id,
                    heal,
                    changed = %changed.join(", "),
                    "drift found: changed in Marathon outside Git{}",
                    if *heal { "; putting Git's version back" } else { "; reported only (selfHeal is off)" }
                );
            }
            let live = observed.apps.get(&step.id);
            planned.push(project::Planned {
                key,
                id: step.id.clone(),
                sync: step.action.sync_status(),
                foreign_deployment: matches!(step.action, Action::Wait { ours: false, .. }),
                running: started.contains(&step.id) || inflight.contains(&step.id),
                live_commit: live
                    .and_then(|l| l.label(render::labels::COMMIT))
                    .map(String::from),
                // An app with a deployment is read whole (`LiveApp::spec`).
                rollout: live.and_then(|l| Rollout::of(&l.spec, &l.deployments)),
                diff: step.diff.as_deref().map(Arc::from),
            });
        }
        let mut errors = self.env_problems(env);
        errors.extend(rewind.as_deref().map(Problem::message));
        // Deletes held for a human (maxDeleteShare) are not sent; say why.
        errors.extend(p.held().map(Problem::message));
        let no_problems = BTreeMap::new();
        let status = project::env_status(
            previous,
            project::EnvReport {
                settings: &desired.settings,
                // The desired state comes from the newest commit that
                // rendered, not from a head that doesn't load or is a
                // refused rewind.
                commit: shown_commit,
                head,
                at: now.to_rfc3339(),
                errors,
                planned,
                invalid: self.invalid.get(env).unwrap_or(&no_problems),
                plan: summary,
            },
        );
        // A new environment status, not a copy of the published one
        // changed in place.
        self.status
            .write()
            .environments
            .insert(env.to_string(), Arc::new(status));
        true
    }
}
