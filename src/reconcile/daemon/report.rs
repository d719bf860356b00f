//! What the loop reports: the status per environment and app (by the rules
//! in `status::project`), readiness, and the deployment records written to
//! the config repo. `/metrics` is built from the published status.

use super::*;

impl Daemon {
    /// Writes the deployment records gathered so far into the notes of
    /// the commits they deployed and pushes them. A failure keeps them for
    /// the next run; a repo that won't take them for long loses the oldest
    /// rather than growing without bound.
    /// With `head` (during a pass), a push or retry that arrives while the
    /// records are written is taken at once, not after the write (a push to
    /// the config repo takes a while); another pass then follows.
    pub(super) async fn publish_records(&mut self, mut head: Option<&mut String>) {
        // Only the writer pushes records, under a lease that holds: a
        // follower (`--zk`) keeps what it has until it leads.
        if self.writer.is_paused() || self.fence.check().is_err() {
            return;
        }
        // A remote that refuses (a read-only key, a server without push)
        // is asked again with backoff, not on every poll.
        let Some(pending) = self.records.due(Instant::now()) else {
            self.set_pending_records(None);
            return;
        };
        let (mirror, spec, how) = (
            self.mirror.clone(),
            self.cfg.remote.clone(),
            self.records.how(),
        );
        let count = pending.len();
        let write =
            tokio::task::spawn_blocking(move || notes::publish(&mirror, &spec, &pending, how));
        tokio::pin!(write);
        let outcome = loop {
            let Some(head) = head.as_deref_mut() else {
                break (&mut write).await;
            };
            tokio::select! {
                r = &mut write => break r,
                Some(t) = self.triggers.recv() => {
                    if !matches!(t, Trigger::Poll) {
                        self.pass_again = true;
                    }
                    self.take_trigger(t, head).await;
                }
            }
        };
        let error = match outcome {
            Ok(Ok(added)) => {
                self.metrics.records_written(added as u64);
                tracing::info!(records = count, how = ?how, "deployment records written to {}", notes::REF);
                self.records.written(count);
                None
            }
            Ok(Err(e)) => Some(crate::redact::text(&format!("{:#}", anyhow::Error::new(e)))),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = &error {
            self.metrics.record_error();
            let failed = self.records.failed(Instant::now());
            tracing::warn!(
                retry_in_s = failed.pause.as_secs(),
                "deployment records not written yet: {e}"
            );
            if failed.dropped > 0 {
                tracing::warn!(
                    dropped = failed.dropped,
                    "too many deployment records waiting; dropped the oldest"
                );
            }
        }
        self.set_pending_records(Some(error));
    }

    /// Shows the records waiting (and, when given, how the last write
    /// went); publishes only a change.
    fn set_pending_records(&self, error: Option<Option<String>>) {
        let pending = self.records.len();
        let s = self.status.read();
        let same = s.repo.pending_records == pending
            && error
                .as_ref()
                .is_none_or(|e| *e == s.repo.last_record_error);
        drop(s);
        if !same {
            let mut s = self.status.write();
            s.repo.pending_records = pending;
            if let Some(e) = error {
                s.repo.last_record_error = e;
            }
        }
    }

    pub(super) fn env_error(&self, env: &str, message: &str) {
        let mut s = self.status.write();
        let e = Arc::make_mut(s.environments.entry(env.to_string()).or_default());
        e.errors = self.env_problems(env);
        e.errors.push(Problem::message(message));
    }

    /// `env`'s Marathon didn't answer: its apps show as `unknown`.
    pub(super) fn env_unreachable(&self, env: &str, url: &str, why: &str) {
        let mut message = format!("Marathon at {} is not answering", crate::redact::url(url));
        if !why.is_empty() {
            message = format!("{message}: {why}");
        }
        let mut errors = self.env_problems(env);
        errors.push(Problem::message(message));
        let mut s = self.status.write();
        let e = Arc::make_mut(s.environments.entry(env.to_string()).or_default());
        project::unreachable(e, self.desired.get(env).map(|d| &**d), errors);
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
    /// Records every background apply that has ended.
    pub(super) fn record_finished(&mut self) {
        while let Ok(f) = self.done_rx.try_recv() {
            self.record(f);
        }
    }

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
            // Stopped by the fence (this replica lost the lead): not
            // attempted, so nothing to count, show or record.
            if r.message
                .as_deref()
                .is_some_and(crate::model::fence::stopped)
            {
                tracing::info!(env = %f.env, app = %r.id, "not sent: this replica no longer leads");
                continue;
            }
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
                Outcome::Succeeded | Outcome::Hot | Outcome::Delivered => tracing::info!(
                    env = %f.env,
                    commit = short(&f.head),
                    deployment = r.deployment_id.as_deref().unwrap_or("-"),
                    "deployed {line}"
                ),
                Outcome::Failed | Outcome::RolledBack | Outcome::DeliveryFailed => tracing::warn!(
                    env = %f.env,
                    commit = short(&f.head),
                    deployment = r.deployment_id.as_deref().unwrap_or("-"),
                    "deployment did not succeed: {line}"
                ),
            }
            self.retry.remove(&r.id);
            let step = f.steps.iter().find(|s| s.id == r.id);
            let app = f.desired.apps.values().find(|a| a.id == r.id);
            if r.outcome == Outcome::Hot
                && let Some(a) = app
            {
                self.served_hot.insert(a.id.clone(), plan::served_digest(a));
                // Recorded when its delivery ends, not now: the history
                // must not claim files that never reached a task.
                if let Some(d) = &self.delivery {
                    d.deliver_hot(crate::delivery::track::Hot {
                        env: f.env.clone(),
                        app: a.app.clone(),
                        id: a.id.clone(),
                        commit: f.head.clone(),
                    });
                }
            } else if let Ok(commit) = git2::Oid::from_str(&f.head) {
                let mut rec = notes::Record::of(&f.env, r, now);
                rec.signer = self.gate.signer_of(&f.env, &f.head).cloned();
                self.records.push(commit, rec);
            }
            project::record_result(
                e,
                project::Finished {
                    key: r.app.clone().unwrap_or_else(|| r.id.clone()),
                    id: r.id.clone(),
                    outcome: r.outcome,
                    full_put: step.is_some_and(|s| full_put(&s.action)),
                    desired_commit: app.and_then(|a| {
                        a.marathon
                            .get("labels")?
                            .get(render::labels::COMMIT)?
                            .as_str()
                            .map(String::from)
                    }),
                    head: f.head.clone(),
                    at: now.to_rfc3339(),
                    deployment_id: r.deployment_id.clone(),
                    message: r.message.clone(),
                },
            );
        }
    }
}

impl Daemon {
    /// Records how the hot deliveries that ended went, on their commits.
    pub(super) fn record_deliveries(&mut self) {
        let Some(d) = &self.delivery else { return };
        for r in d.take_delivered() {
            let Ok(commit) = git2::Oid::from_str(&r.hot.commit) else {
                continue;
            };
            let at =
                chrono::DateTime::from_timestamp_millis(r.at_ms).unwrap_or_else(chrono::Utc::now);
            let outcome = match r.failed {
                None => Outcome::Delivered,
                Some(_) => Outcome::DeliveryFailed,
            };
            let signer = self.gate.signer_of(&r.hot.env, &r.hot.commit).cloned();
            self.records.push(
                commit,
                notes::Record {
                    env: r.hot.env,
                    app: r.hot.app,
                    id: r.hot.id,
                    outcome,
                    deployment: None,
                    version: None,
                    rollback: None,
                    at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    signer,
                },
            );
        }
    }
}

/// Whether `action` PUTs the whole app (so Marathon then runs the desired
/// app's commit label): a create, a healed drift, an update that is not a
/// scale or a hot update.
fn full_put(action: &Action) -> bool {
    match action {
        Action::Create | Action::Drifted { heal: true, .. } => true,
        Action::Update { class, .. } => {
            !matches!(class, crate::diff::Class::Scale | crate::diff::Class::Hot)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Class;

    #[test]
    fn only_whole_app_puts_move_the_live_commit() {
        let update = |class| Action::Update {
            class,
            changed: Vec::new(),
            reverts: Vec::new(),
        };
        assert!(full_put(&Action::Create));
        assert!(full_put(&update(Class::Redeploy)));
        assert!(full_put(&update(Class::Restart)));
        assert!(!full_put(&update(Class::Scale)));
        assert!(!full_put(&update(Class::Hot)));
        let drift = |heal| Action::Drifted {
            heal,
            changed: Vec::new(),
        };
        assert!(full_put(&drift(true)));
        assert!(!full_put(&drift(false)));
        assert!(!full_put(&Action::InSync));
    }
}
