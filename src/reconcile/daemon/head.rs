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
        self.health
            .doing(format!("rendering commit {}", short(head)));
        let job = render_job::Job {
            git_dir: self.mirror.git_dir().to_path_buf(),
            prefix: self.cfg.prefix.clone(),
            head: head.to_string(),
            envs_filter: self.cfg.envs.clone(),
            deadline: self.cfg.render_timeout,
            since: self.snapshot.clone(),
        };
        // Shared, not copied: each app is an `Arc`, and the unchanged ones
        // go into the new state as they are.
        let started = Instant::now();
        let outcome = render_job::run(job, self.desired.clone()).await;
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
                if self.known_baselines.len() > 100_000 {
                    self.known_baselines.clear();
                }
                self.known_baselines.extend(r.replaced);
                (r.changed, r.rerendered)
            }
        }
    }
}
