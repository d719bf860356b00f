//! What the loop reports: the status per environment and app, readiness,
//! metrics, and the deployment records written to the config repo.

use super::*;

impl Daemon {
    /// Writes the deployment records gathered so far into the notes of
    /// the commits they deployed and pushes them. A failure keeps them for
    /// the next run (see [`RecordQueue`](crate::reconcile::records::RecordQueue)).
    pub(super) async fn publish_records(&mut self) {
        use crate::reconcile::records::Published;
        let how = self.cfg.records;
        let error = match self
            .records
            .publish(&self.mirror, &self.cfg.remote, how)
            .await
        {
            Published::Nothing => return,
            Published::Waiting => {
                self.status.write().repo.pending_records = self.records.len();
                return;
            }
            Published::Written { records, added } => {
                self.metrics.records_written(added as u64);
                tracing::info!(records, how = ?how, "deployment records written to {}", notes::REF);
                None
            }
            Published::Failed {
                error,
                retry_in,
                dropped,
            } => {
                self.metrics.record_error();
                tracing::warn!(
                    retry_in_s = retry_in.as_secs(),
                    "deployment records not written yet: {error}"
                );
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        "too many deployment records waiting; dropped the oldest"
                    );
                }
                Some(error)
            }
        };
        let mut s = self.status.write();
        s.repo.pending_records = self.records.len();
        s.repo.last_record_error = error;
    }

    pub(super) fn env_error(&self, env: &str, message: &str) {
        let mut s = self.status.write();
        let e = Arc::make_mut(s.environments.entry(env.to_string()).or_default());
        e.errors = self.head_problems.clone();
        e.errors.push(Problem::message(message));
    }

    /// `env`'s Marathon didn't answer: what it runs can't be observed, so
    /// its apps show as `unknown` (not as they were last seen).
    pub(super) fn env_unreachable(&self, env: &str, url: &str, why: &str) {
        let mut message = format!("Marathon at {} is not answering", crate::redact::url(url));
        if !why.is_empty() {
            message = format!("{message}: {why}");
        }
        self.env_error(env, &message);
        let mut s = self.status.write();
        let e = Arc::make_mut(s.environments.entry(env.to_string()).or_default());
        for app in e.apps.values_mut() {
            app.sync = SyncStatus::Unknown;
        }
        // Apps never observed yet (Marathon down since the start) too.
        if let Some(desired) = self.desired.get(env) {
            for (path, app) in &desired.apps {
                e.apps.entry(path.clone()).or_insert_with(|| AppStatus {
                    id: app.id.clone(),
                    sync: SyncStatus::Unknown,
                    live_commit: None,
                    last: None,
                    errors: Vec::new(),
                });
            }
        }
        let counts = sync_counts(e);
        drop(s);
        self.metrics.set_apps(env, &counts);
        self.metrics.marathon_up(env, false);
    }

    /// Tells `/readyz` what this cycle saw.
    pub(super) fn update_readiness(&self) {
        let s = self.status.read();
        let seen = health::Seen {
            rendered: self.rendered_at.is_some(),
            head: s.repo.head.as_deref(),
            head_problems: &self.head_problems,
            fetch_error: s.repo.last_fetch_error.as_deref(),
            unreachable: &self.unreachable,
            reached_marathon: self.reached_marathon,
        };
        let ready = health::readiness(&seen);
        drop(s);
        self.status.set_ready(ready);
    }

    /// Takes in the results of a background apply: each app's outcome,
    /// counted in the metrics and shown in the status.
    pub(super) fn record(&mut self, f: Finished) {
        // Released here, at the start of a cycle, not when the task ends: a
        // Marathon snapshot taken before the task ended still shows the old
        // app, and would have it deployed a second time.
        {
            let mut set = self.inflight.lock();
            for step in &f.steps {
                set.remove(&step.id);
            }
        }
        let now = chrono::Utc::now();
        let mut s = self.status.write();
        let e = Arc::make_mut(s.environments.entry(f.env.clone()).or_default());
        for r in &f.results {
            self.metrics.deployment(&f.env, r.outcome);
            let line = format!(
                "{}: {}{}",
                r.id,
                r.outcome.as_str(),
                r.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            );
            match r.outcome {
                Outcome::Succeeded | Outcome::Hot => tracing::info!(
                    env = %f.env,
                    commit = short(&f.head),
                    deployment = r.deployment_id.as_deref().unwrap_or("-"),
                    "deployed {line}"
                ),
                Outcome::Failed | Outcome::RolledBack => tracing::warn!(
                    env = %f.env,
                    commit = short(&f.head),
                    deployment = r.deployment_id.as_deref().unwrap_or("-"),
                    "deployment did not succeed: {line}"
                ),
            }
            self.retry.remove(&r.id);
            let step = f.steps.iter().find(|s| s.id == r.id);
            let app = f.desired.apps.values().find(|a| a.id == r.id);
            let sync = match r.outcome {
                Outcome::Succeeded => SyncStatus::InSync,
                Outcome::Hot => {
                    if let Some(a) = app {
                        self.served_hot.insert(a.id.clone(), plan::served_digest(a));
                    }
                    SyncStatus::InSync
                }
                Outcome::Failed | Outcome::RolledBack => SyncStatus::Failed,
            };
            // After a full PUT that succeeded, Marathon runs the desired
            // app's commit label; a scale or a hot update keeps the old one,
            // as Marathon does.
            let full_put = step.is_some_and(|s| {
                matches!(s.action, Action::Create | Action::Drifted { heal: true, .. })
                    || matches!(&s.action, Action::Update { class, .. } if !matches!(class, crate::diff::Class::Scale | crate::diff::Class::Hot))
            });
            let new_commit = app
                .filter(|_| full_put && r.outcome == Outcome::Succeeded)
                .and_then(|a| {
                    a.marathon
                        .get("labels")?
                        .get(render::labels::COMMIT)?
                        .as_str()
                        .map(String::from)
                });
            let key = r.app.clone().unwrap_or_else(|| r.id.clone());
            let entry = e.apps.entry(key).or_insert_with(|| AppStatus {
                id: r.id.clone(),
                sync,
                live_commit: None,
                last: None,
                errors: Vec::new(),
            });
            if entry.errors.is_empty() {
                entry.sync = sync;
            }
            if let Some(c) = new_commit {
                entry.live_commit = Some(c);
            }
            if let Ok(commit) = git2::Oid::from_str(&f.head) {
                self.records.push(commit, notes::Record::of(&f.env, r, now));
            }
            entry.last = Some(LastAction {
                outcome: r.outcome,
                commit: f.head.clone(),
                at: now.to_rfc3339(),
                deployment_id: r.deployment_id.clone(),
                message: r.message.clone(),
            });
        }
        let counts = sync_counts(e);
        drop(s);
        self.metrics.set_apps(&f.env, &counts);
    }
}

pub(super) fn sync_counts(e: &crate::reconcile::status::EnvStatus) -> BTreeMap<SyncStatus, u64> {
    let mut counts: BTreeMap<SyncStatus, u64> = BTreeMap::new();
    for a in e.apps.values() {
        *counts.entry(a.sync).or_default() += 1;
    }
    counts
}
