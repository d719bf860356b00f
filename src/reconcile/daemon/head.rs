//! The newest commit: fetching it, refusing a rewind, rendering it off the
//! loop within its deadline.

use super::*;
use crate::source::rewind;

impl Daemon {
    /// A message when `head` does not descend from a commit a live app of
    /// the environment was deployed from (a force-push rewound the branch).
    pub(super) fn rewinds(&mut self, head: &str, observed: &plan::Observed) -> Option<String> {
        let head_oid = git2::Oid::from_str(head).ok()?;
        let running = observed
            .apps
            .iter()
            .filter_map(|(id, live)| Some((id, live.label(render::labels::COMMIT)?)));
        let (memo, mirror) = (&mut self.descends, &self.mirror);
        let r = rewind::check(head_oid, running, |head, commit| {
            *memo
                .entry((head.to_string(), commit.to_string()))
                .or_insert_with(|| mirror.is_descendant(head, commit).unwrap_or(false))
        })?;
        Some(format!("{r}; restart with --allow-rewind to deploy it"))
    }

    /// Fetches the branch; on failure keeps the last good commit.
    pub(super) async fn fetch(&mut self) -> Option<String> {
        let mirror = self.mirror.clone();
        let remote = self.cfg.remote.clone();
        let result = tokio::task::spawn_blocking(move || mirror.fetch(&remote)).await;
        match result {
            Ok(Ok(oid)) => {
                let head = oid.to_string();
                // Published only when it changes: a poll that finds nothing
                // new makes no new snapshot.
                let s = self.status.read();
                let same = s.repo.head.as_deref() == Some(head.as_str())
                    && s.repo.last_fetch_error.is_none();
                drop(s);
                if !same {
                    let mut s = self.status.write();
                    s.repo.head = Some(head.clone());
                    s.repo.last_fetch_error = None;
                }
                Some(head)
            }
            Ok(Err(e)) => {
                self.metrics.git_fetch_error();
                // With its cause: "fetching branch main" alone says nothing
                // an operator can act on. Causes are scrubbed of secrets.
                let e = crate::redact::text(&format!("{:#}", anyhow::Error::new(e)));
                tracing::warn!(
                    "fetching the config repo failed, keeping the last good commit: {e}"
                );
                self.status.write().repo.last_fetch_error = Some(e);
                None
            }
            Err(e) => {
                tracing::error!("the fetch task ended abnormally: {e}");
                None
            }
        }
    }

    /// Brings the desired state to `head` when it may go there: not a
    /// refused rewind, not a commit already found not to load. Keeps
    /// [`Self::head_problems`] in step with the head, so a problem that is
    /// gone (a force-push undone) leaves the status at once.
    pub(super) async fn advance(
        &mut self,
        head: &str,
    ) -> (BTreeSet<EnvName>, BTreeMap<EnvName, BTreeSet<AppPath>>) {
        let rewind = self.rewind_of(head);
        if rewind != self.rewind {
            match &rewind {
                Some(msg) => tracing::error!("commit refused: {msg}"),
                None if self.rewind.is_some() => {
                    tracing::info!(
                        commit = short(head),
                        "the head descends from the commit applied again; rewind cleared"
                    )
                }
                None => {}
            }
            self.rewind = rewind;
        }
        let out = if self.rewind.is_some()
            || self.rendered_at.as_deref() == Some(head)
            || self.refused.as_ref().is_some_and(|(h, _)| h == head)
        {
            Default::default()
        } else {
            self.render(head).await
        };
        self.head_problems = match (&self.rewind, &self.refused) {
            (Some(msg), _) => vec![Problem::message(msg)],
            (None, Some((h, problems))) if h == head => problems.clone(),
            _ => Vec::new(),
        };
        if self.status.read().repo.errors != self.head_problems {
            self.status.write().repo.errors = self.head_problems.clone();
        }
        out
    }

    /// Why `head` is a rewind the daemon refuses: it doesn't descend from
    /// the commit last applied (a force-push).
    pub(super) fn rewind_of(&self, head: &str) -> Option<String> {
        let (applied, h) = (self.applied?, git2::Oid::from_str(head).ok()?);
        if self.cfg.allow_rewind {
            return None;
        }
        rewind::check(h, [((), applied.to_string())], |h, applied| {
            self.mirror.is_descendant(h, applied).unwrap_or(false)
        })?;
        Some(format!(
            "refusing to rewind: {head} does not descend from {applied}, the commit last applied (a force-push?); restart with --allow-rewind to deploy it"
        ))
    }

    /// Renders `head`, re-rendering only apps whose inputs changed, off the
    /// loop and within the render deadline. Apps and environments that
    /// don't render keep their last good version. Returns the environments
    /// whose desired state changed.
    pub(super) async fn render(
        &mut self,
        head: &str,
    ) -> (BTreeSet<EnvName>, BTreeMap<EnvName, BTreeSet<AppPath>>) {
        self.render_forced(head, BTreeMap::new()).await
    }

    /// [`Self::render`], with the apps in `force` rendered again whatever
    /// their inputs (the live endpoints they name moved).
    pub(super) async fn render_forced(
        &mut self,
        head: &str,
        force: BTreeMap<EnvName, BTreeSet<AppPath>>,
    ) -> (BTreeSet<EnvName>, BTreeMap<EnvName, BTreeSet<AppPath>>) {
        self.health
            .doing(format!("rendering commit {}", short(head)));
        // Shared, not copied: each app is an `Arc`, and the unchanged ones
        // go into the new state as they are.
        let started = Instant::now();
        let since = self.snapshot.clone();
        let mut outcome = self
            .render_job(head, since, self.desired.clone(), force)
            .await;
        // A render never publishes a set of endpoints it has not read: the
        // services named for the first time are read now, and the apps
        // that name them render again with what Marathon says.
        if let render_job::Outcome::Rendered(r) = &mut outcome {
            let missing = self.unread_services(r);
            if !missing.is_empty() {
                let wanted: Vec<(String, String)> = missing
                    .values()
                    .flat_map(|ids| ids.iter().cloned())
                    .collect();
                self.follower
                    .ensure(wanted, self.cfg.marathon_timeout)
                    .await;
                // Only the services just read join the view: a set released
                // meanwhile for another service stays pending, so the apps
                // that name it still render again (`endpoints_moved`).
                let latest = self.follower.latest().endpoints.clone();
                let mut view = (*self.live).clone();
                for id in missing.values().flatten().map(|(_, id)| id) {
                    if let Some(set) = latest.services.get(id) {
                        view.services.insert(id.clone(), set.clone());
                    }
                }
                self.live = Arc::new(view);
                let force = missing.into_keys().fold(
                    BTreeMap::<EnvName, BTreeSet<AppPath>>::new(),
                    |mut m, (env, app)| {
                        m.entry(env).or_default().insert(app);
                        m
                    },
                );
                let previous = std::mem::take(&mut r.envs)
                    .into_iter()
                    .map(|(e, d)| (e, Arc::new(d)))
                    .collect();
                let again = self
                    .render_job(head, r.snapshot.clone(), previous, force)
                    .await;
                match again {
                    render_job::Outcome::Rendered(mut second) => {
                        r.envs = std::mem::take(&mut second.envs);
                        r.changed.append(&mut second.changed);
                        for (env, apps) in second.rerendered {
                            r.rerendered.entry(env).or_default().extend(apps);
                        }
                        for (env, apps) in second.invalid {
                            r.invalid.entry(env).or_default().extend(apps);
                        }
                        r.timed_out = r.timed_out.take().or(second.timed_out);
                    }
                    not_loaded => outcome = not_loaded,
                }
            }
        }
        if let render_job::Outcome::Rendered(r) = &mut outcome {
            let unread = self.keep_unread_at_last_good(r);
            self.unread_invalid.extend(unread);
            // Last: an environment that refuses the head gets its last
            // good state back whole, whatever the steps above changed.
            self.gate(head, r).await;
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "render job done"
        );
        match outcome {
            render_job::Outcome::NotLoaded { problems } => {
                // pacer.yaml or an environment file is broken: everything
                // stays at the last good commit.
                let problems: Vec<Problem> = problems.iter().map(Problem::from).collect();
                let first: Vec<String> = problems.iter().take(3).map(ToString::to_string).collect();
                tracing::warn!(
                    commit = short(head),
                    problems = problems.len(),
                    "commit refused: it does not load; keeping the last good one: {}",
                    first.join("; ")
                );
                self.refused = Some((head.to_string(), problems));
                Default::default()
            }
            render_job::Outcome::Rendered(r) => {
                if let Some(app) = &r.timed_out {
                    tracing::error!(
                        commit = short(head),
                        app = %app,
                        abandoned_renders = render_job::abandoned(),
                        "rendering ran past its deadline of {} s; the apps not rendered keep their last good version",
                        self.cfg.render_timeout.as_secs_f64()
                    );
                }
                for (env, apps) in &r.invalid {
                    for (app, problems) in apps {
                        let first = problems.first().map(|d| Problem::from(d).to_string());
                        tracing::warn!(
                            commit = short(head),
                            env = %env,
                            app = %app,
                            problems = problems.len(),
                            "app invalid; its last good version stays: {}",
                            first.unwrap_or_default()
                        );
                    }
                }
                let rerendered: usize = r.rerendered.values().map(BTreeSet::len).sum();
                let invalid: usize = r.invalid.values().map(BTreeMap::len).sum();
                tracing::info!(
                    commit = short(head),
                    rerendered,
                    invalid,
                    "picked up commit {}",
                    short(head)
                );
                self.rendered_at = Some(head.to_string());
                self.refused = None;
                if r.snapshot.is_some() {
                    self.snapshot = r.snapshot;
                }
                self.desired = r.envs.into_iter().map(|(e, d)| (e, Arc::new(d))).collect();
                // The commit and its apps in one snapshot.
                self.status
                    .set_desired(head.to_string(), self.desired.clone());
                self.invalid = r.invalid;
                // Apps kept back for a service not read yet, while they
                // still are invalid: the next moved endpoints retry them.
                let invalid = &self.invalid;
                self.unread_invalid
                    .retain(|(e, a)| invalid.get(e).is_some_and(|m| m.contains_key(a)));
                if self.known_baselines.len() > 100_000 {
                    self.known_baselines.clear();
                }
                self.known_baselines.extend(r.replaced);
                (r.changed, r.rerendered)
            }
        }
    }
}

impl Daemon {
    async fn render_job(
        &self,
        head: &str,
        since: Option<Arc<crate::source::Snapshot>>,
        previous: render_job::PreviousState,
        force: BTreeMap<EnvName, BTreeSet<AppPath>>,
    ) -> render_job::Outcome {
        let job = render_job::Job {
            git_dir: self.mirror.git_dir().to_path_buf(),
            prefix: self.cfg.prefix.clone(),
            head: head.to_string(),
            envs_filter: self.cfg.envs.clone(),
            deadline: self.cfg.render_timeout,
            since,
            endpoints: self.live.clone(),
            force,
            held: self.gate.held(),
            keys: self.cfg.secret_keys.clone(),
        };
        render_job::run(job, previous).await
    }

    /// An app that names a service Marathon could not be asked about (it
    /// did not answer) rendered with no endpoints for it: that version is
    /// never published. The last good one stays, and the app shows why.
    fn keep_unread_at_last_good(&self, r: &mut render_job::Rendered) -> Vec<(EnvName, AppPath)> {
        let mut kept = Vec::new();
        for ((env, app), unread) in self.unread_services(r) {
            kept.push((env.clone(), app.clone()));
            let ids: Vec<&str> = unread.iter().map(|(_, id)| id.as_str()).collect();
            let Some(target) = r.envs.get_mut(&env) else {
                continue;
            };
            match self.desired.get(&env).and_then(|d| d.apps.get(&app)) {
                Some(old) => {
                    target.apps.insert(app.clone(), old.clone());
                }
                None => {
                    target.apps.remove(&app);
                }
            }
            if let Some(set) = r.rerendered.get_mut(&env) {
                set.remove(&app);
            }
            r.invalid.entry(env).or_default().insert(
                app.clone(),
                vec![render::Diagnostic::file(
                    format!("apps/{app}"),
                    format!(
                        "the live endpoints of {} could not be read from Marathon yet; the last good version stays",
                        ids.join(", ")
                    ),
                )],
            );
        }
        kept
    }

    /// Per re-rendered (environment, app): the services it names that the
    /// endpoint follower has not read yet, with the Marathon to read them
    /// from.
    fn unread_services(
        &self,
        r: &render_job::Rendered,
    ) -> BTreeMap<(EnvName, AppPath), Vec<(String, String)>> {
        let mut out = BTreeMap::new();
        let groups = || {
            r.envs
                .iter()
                .map(|(n, e)| (n.as_str(), e.settings.group.as_str()))
        };
        // A service is read from the Marathon that runs it: its own
        // environment's, or (external) the one of the app naming it.
        let url_of = |id: &str, naming: &render::DesiredEnv| {
            let own = crate::observe::endpoints::owner(id, groups())
                .and_then(|env| r.envs.get(env))
                .unwrap_or(naming);
            self.clients.url_for(own.settings.marathon.as_deref())
        };
        for (env, apps) in &r.rerendered {
            let Some(e) = r.envs.get(env) else { continue };
            for app in apps {
                let Some(a) = e.apps.get(app) else { continue };
                let unread: Vec<(String, String)> = a
                    .services
                    .iter()
                    .filter(|id| !self.live.services.contains_key(*id))
                    .filter_map(|id| Some((url_of(id, e)?, id.clone())))
                    .collect();
                if !unread.is_empty() {
                    out.insert((env.clone(), app.clone()), unread);
                }
            }
        }
        out
    }
}
