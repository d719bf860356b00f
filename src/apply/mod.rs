//! Executes a [`Plan`]: the only writer to Marathon. Each step's deployment
//! is followed to its end; one that fails or outlives its timeout is rolled
//! back. Steps run concurrently, bounded, so one slow app never holds up the
//! others.

mod body;
pub mod rollout;

use body::already_there;
pub use body::{put_body, writes_nothing};

use crate::diff::Class;
use crate::marathon::client::{DeploymentRef, Error as ClientError, MarathonClient};
use crate::model::Outcome;
use crate::plan::{Action, Observed, Plan, Step};
use crate::render::{DesiredEnv, RenderedApp};
use rollout::{Rollout, RolloutEvent, Verdict};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub struct Options {
    /// Steps in flight at once.
    pub concurrency: usize,
    /// A deployment still running after this is rolled back.
    pub deploy_timeout: Duration,
    /// How often a running deployment is polled.
    pub poll: Duration,
    /// Attempts at a write that failed with a transient error (5xx, timeout),
    /// re-reading Marathon before each so that no second deployment starts.
    pub write_attempts: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 8,
            deploy_timeout: Duration::from_secs(600),
            poll: Duration::from_millis(250),
            write_attempts: 5,
        }
    }
}

/// How one step ended.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// The app version the deployment rolled out: the key that joins this
    /// result to Marathon's version list in `pacer history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The deployment Marathon started to revert a failed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Reports progress, for a terminal's progress bars or plain log lines.
pub trait Progress: Send + Sync {
    fn started(&self, step: &Step, what: &str);
    fn progressed(&self, id: &str, detail: &str);
    fn finished(&self, result: &StepResult);
}

/// Plain log lines through tracing.
pub struct LogProgress;

impl Progress for LogProgress {
    fn started(&self, step: &Step, what: &str) {
        tracing::info!(app = %step.id, "{what}");
    }
    fn progressed(&self, id: &str, detail: &str) {
        // Only when something moved: a hung deployment explains itself.
        tracing::info!(app = %id, "{detail}");
    }
    fn finished(&self, r: &StepResult) {
        match r.outcome {
            Outcome::Succeeded | Outcome::Hot => {
                tracing::info!(app = %r.id, outcome = r.outcome.as_str(), deployment = r.deployment_id.as_deref().unwrap_or("-"), "done")
            }
            _ => {
                tracing::warn!(app = %r.id, outcome = r.outcome.as_str(), message = r.message.as_deref().unwrap_or(""), "failed")
            }
        }
    }
}

/// Runs every acting step of `plan` and returns how each ended. Steps that
/// don't act (in sync, unmanaged, drift without self-heal, failed) are left
/// out.
pub async fn apply(
    client: &MarathonClient,
    plan: &Plan,
    desired: &DesiredEnv,
    observed: &Observed,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Vec<StepResult> {
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let by_id: BTreeMap<&str, &RenderedApp> = desired
        .apps
        .values()
        .map(|a| (a.id.as_str(), &**a))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for step in &plan.steps {
        let adopt = matches!(step.action, Action::Wait { ours: true, .. });
        if !step.action.acts() && !adopt {
            continue;
        }
        let step = step.clone();
        let app = by_id.get(step.id.as_str()).map(|a| (*a).clone());
        let live = observed.apps.get(&step.id).map(|l| l.spec.clone());
        let client = client.clone();
        let opts = opts.clone();
        let limit = limit.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            if let Some(app) = &app
                && already_there(&client, &step, app, live.as_ref()).await
            {
                // Nothing to send, so nothing to follow or record.
                progress.progressed(&step.id, "already as Git wants it: nothing sent");
                return None;
            }
            let result = run_step(
                &client,
                &step,
                app.as_ref(),
                live.as_ref(),
                &opts,
                progress.as_ref(),
            )
            .await;
            progress.finished(&result);
            Some(result)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Some(r)) => results.push(r),
            Ok(None) => {}
            Err(e) => tracing::error!("an apply task ended abnormally: {e}"),
        }
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    results
}

fn result(
    step: &Step,
    outcome: Outcome,
    deployment: Option<&DeploymentRef>,
    message: Option<String>,
) -> StepResult {
    StepResult {
        id: step.id.clone(),
        app: step.app.clone(),
        outcome,
        deployment_id: deployment
            .map(|d| d.deployment_id.clone())
            .filter(|id| !id.is_empty()),
        version: deployment
            .map(|d| d.version.clone())
            .filter(|v| !v.is_empty()),
        rollback_id: None,
        message,
    }
}

async fn run_step(
    client: &MarathonClient,
    step: &Step,
    app: Option<&RenderedApp>,
    live: Option<&Value>,
    opts: &Options,
    progress: &dyn Progress,
) -> StepResult {
    // An app may allow itself more (or less) time than the default.
    let opts = &Options {
        deploy_timeout: app
            .and_then(|a| a.deploy_timeout_seconds)
            .map_or(opts.deploy_timeout, Duration::from_secs),
        ..opts.clone()
    };
    match (&step.action, app) {
        (
            Action::Update {
                class: Class::Hot, ..
            },
            Some(_),
        ) => {
            // The config server picks up the new bundle from the desired
            // state; nothing runs in Marathon.
            progress.started(step, "hot update: config files only, no relaunch");
            result(step, Outcome::Hot, None, None)
        }
        (
            Action::Wait {
                deployments,
                ours: true,
            },
            _,
        ) => {
            progress.started(step, "adopting the running deployment");
            let Some(dep) = deployments.first() else {
                return result(step, Outcome::Succeeded, None, None);
            };
            // A running deployment rolls out the app's current version.
            let dep = DeploymentRef {
                deployment_id: dep.clone(),
                version: live
                    .and_then(|l| l.get("version"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            };
            // What runs now is what the deployment rolls out: the version
            // to go back to is the one before it (found by the e2e test
            // `an_adopted_deployment_that_fails_is_rolled_back_to_the_version_before_it`:
            // a "rollback" put the failing definition back). One version
            // only: the deployment created the app. Unreadable: fall back
            // to what runs, which reverts nothing but never deletes.
            let previous = match client.newest_versions(&step.id, 2).await {
                Ok(v) if v.len() == 2 => Some(v[0].1.clone()),
                Ok(v) if v.len() == 1 => None,
                _ => live.cloned(),
            };
            follow(client, step, dep, previous, opts, progress).await
        }
        (Action::Delete { held: None }, _) => {
            progress.started(step, "deleting (pruned from Git)");
            let written = write(client, step, opts, Option::is_none, || {
                client.delete_app(&step.id)
            })
            .await;
            finish(client, step, written, None, opts, progress).await
        }
        (
            Action::Update {
                class: Class::Scale,
                ..
            },
            Some(app),
        ) => {
            let Some(n) = put_body(app, live).get("instances").and_then(Value::as_u64) else {
                return result(
                    step,
                    Outcome::Failed,
                    None,
                    Some("no instance count to scale to".into()),
                );
            };
            progress.started(step, &format!("scaling to {n} instances"));
            let scaled = |l: &Option<Value>| {
                l.as_ref()
                    .and_then(|l| l.get("instances"))
                    .and_then(Value::as_u64)
                    == Some(n)
            };
            let written = write(client, step, opts, scaled, || client.scale_app(&step.id, n)).await;
            finish(client, step, written, live.cloned(), opts, progress).await
        }
        (
            Action::Create | Action::Update { .. } | Action::Drifted { heal: true, .. },
            Some(app),
        ) => {
            let what = match &step.action {
                Action::Create => "creating".to_string(),
                Action::Drifted { .. } => "healing drift: putting Git's version back".to_string(),
                Action::Update { class, reverts, .. } if !reverts.is_empty() => format!(
                    "rolling out ({}), also putting back what was changed by hand: {}",
                    class.as_str(),
                    reverts.join(", ")
                ),
                Action::Update { class, .. } => format!("rolling out ({})", class.as_str()),
                _ => "deploying".to_string(),
            };
            progress.started(step, &what);
            let body = put_body(app, live);
            let matches = |l: &Option<Value>| {
                l.as_ref().is_some_and(|l| {
                    crate::observe::app_diff(&app.marathon, l, &app.ignore).is_none()
                })
            };
            let written = write(client, step, opts, matches, || {
                client.put_app(&step.id, &body, false)
            })
            .await;
            finish(client, step, written, live.cloned(), opts, progress).await
        }
        _ => result(
            step,
            Outcome::Failed,
            None,
            Some("nothing to do for this step".into()),
        ),
    }
}

/// What a write came to.
enum Written {
    /// Marathon started this deployment.
    Started(DeploymentRef),
    /// An attempt whose answer was lost went through, and its deployment has
    /// already ended: Marathon runs what was asked, at `version`, or the
    /// app is `gone`, as a delete asked.
    Landed { version: Option<String>, gone: bool },
}

impl Written {
    /// The deployment's id, when Marathon's answer (or its list) gave it.
    fn deployment_id(self) -> Option<String> {
        match self {
            Written::Started(d) => Some(d.deployment_id),
            Written::Landed { .. } => None,
        }
    }
}

/// A write with transient failures retried. A failed answer doesn't mean
/// the write failed (a proxy may time out while Marathon carries it out),
/// so before each retry Marathon is read again: a deployment running for
/// the app is adopted, and an app already as `landed` wants it needs no
/// second write. Nothing is sent again until a read has shown that the
/// first attempt didn't get through.
async fn write<F, Fut>(
    client: &MarathonClient,
    step: &Step,
    opts: &Options,
    landed: impl Fn(&Option<Value>) -> bool,
    mut attempt: F,
) -> Result<Written, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<DeploymentRef, ClientError>>,
{
    let mut delay = opts.poll;
    let mut tries = 0;
    loop {
        tries += 1;
        let err = match attempt().await {
            Ok(d) => return Ok(Written::Started(d)),
            Err(e) if e.is_transient() && tries < opts.write_attempts => e,
            Err(e) => return Err(e),
        };
        tracing::warn!(app = %step.id, attempt = tries, "write failed, re-reading Marathon before trying again: {err}");
        let mut reads = 0;
        let seen = loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
            reads += 1;
            match already_done(client, &step.id, &landed).await {
                Ok(seen) => break seen,
                // Whether it got through is unknown: sending it again could
                // start a second deployment.
                Err(_) if reads < opts.write_attempts.max(1) => {}
                Err(_) => return Err(err),
            }
        };
        if let Some(w) = seen {
            return Ok(w);
        }
    }
}

/// Whether an earlier write to `id` got through: its deployment running,
/// or the app already as `landed` wants it.
async fn already_done(
    client: &MarathonClient,
    id: &str,
    landed: &impl Fn(&Option<Value>) -> bool,
) -> Result<Option<Written>, ClientError> {
    let deps = client.deployments().await?;
    if let Some(d) = deps
        .iter()
        .find(|d| d.affected_apps.iter().any(|a| a == id))
    {
        return Ok(Some(Written::Started(DeploymentRef {
            deployment_id: d.id.clone(),
            version: d.version.clone(),
        })));
    }
    let live = client.get_app(id).await?;
    let version = live
        .as_ref()
        .and_then(|l| l.get("version"))
        .and_then(Value::as_str)
        .map(str::to_string);
    // A deployment that started after the list was read shows on the app.
    let running = live.as_ref().and_then(|l| {
        l.get("deployments")?
            .as_array()?
            .first()?
            .get("id")?
            .as_str()
    });
    if let Some(d) = running {
        return Ok(Some(Written::Started(DeploymentRef {
            deployment_id: d.to_string(),
            version: version.unwrap_or_default(),
        })));
    }
    if landed(&live) {
        tracing::info!(app = %id, "the earlier write went through; its answer was lost");
        return Ok(Some(Written::Landed {
            version,
            gone: live.is_none(),
        }));
    }
    Ok(None)
}

/// Follows what a write started to its end. A write found done is still
/// watched until its tasks are up: its deployment ended, but not
/// necessarily well.
async fn finish(
    client: &MarathonClient,
    step: &Step,
    written: Result<Written, ClientError>,
    previous: Option<Value>,
    opts: &Options,
    progress: &dyn Progress,
) -> StepResult {
    match written {
        Ok(Written::Started(d)) => follow(client, step, d, previous, opts, progress).await,
        Ok(Written::Landed { gone: true, .. }) => result(step, Outcome::Succeeded, None, None),
        Ok(Written::Landed { version, .. }) => {
            // No deployment id: Marathon's answer had it, and was lost.
            let unknown = DeploymentRef {
                deployment_id: String::new(),
                version: version.unwrap_or_default(),
            };
            follow(client, step, unknown, previous, opts, progress).await
        }
        Err(e) => result(step, Outcome::Failed, None, Some(e.to_string())),
    }
}

/// How often a rollout is polled while Marathon's events are flowing.
const EVENT_SAFETY_POLL: Duration = Duration::from_secs(2);

/// Follows a deployment to its end, rolling it back on timeout or failure.
async fn follow(
    client: &MarathonClient,
    step: &Step,
    mut deployment: DeploymentRef,
    previous: Option<Value>,
    opts: &Options,
    progress: &dyn Progress,
) -> StepResult {
    let started = tokio::time::Instant::now();
    let mut rollout = Rollout::new(deployment.deployment_id.clone(), opts.deploy_timeout);
    let watch = client.deployment_watch();
    let mut events = watch.subscribe();
    loop {
        let event = match client.deployments().await {
            Ok(deps) => {
                // A write found done has no id: a deployment of its app
                // that shows up is the one to follow.
                if deployment.deployment_id.is_empty()
                    && let Some(d) = deps.iter().find(|d| d.affected_apps.contains(&step.id))
                {
                    deployment.deployment_id = d.id.clone();
                    rollout.deployment = d.id.clone();
                }
                match deps.iter().find(|d| d.id == rollout.deployment) {
                    // The tasks say why a rollout takes long (staged and
                    // never running, running and never healthy) before
                    // it times out.
                    Some(d) => RolloutEvent::Running {
                        step: d.current_step,
                        of: d.total_steps,
                        tasks: match client.get_app(&step.id).await {
                            Ok(Some(app)) => Some(rollout::Tasks::of(&app)),
                            _ => None,
                        },
                    },
                    None => match app_health(client, &step.id).await {
                        Some(healthy) => RolloutEvent::Gone { healthy },
                        None => RolloutEvent::Unreachable,
                    },
                }
            }
            Err(_) => RolloutEvent::Unreachable,
        };
        let (next, verdict) = rollout.step(event, started.elapsed());
        rollout = next;
        match verdict {
            Verdict::Continue(detail) => {
                if let Some(d) = detail {
                    progress.progressed(&step.id, &d);
                }
                // With events flowing, polling is only a safety net and the
                // clock for timeouts. Should Marathon list a deployment for
                // a moment after announcing its end (its code doesn't say
                // which comes first), the safety poll sees it gone.
                let pause = if watch.connected() {
                    opts.poll.max(EVENT_SAFETY_POLL)
                } else {
                    opts.poll
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = events.named(&deployment.deployment_id) => {}
                }
            }
            Verdict::Succeeded => {
                return result(step, Outcome::Succeeded, Some(&deployment), None);
            }
            Verdict::RollBack(reason) => {
                progress.progressed(&step.id, &format!("rolling back: {reason}"));
                let rolled =
                    roll_back(client, step, &rollout.deployment, previous.as_ref(), opts).await;
                // A rollback Marathon never took leaves the new version in
                // place: that is a failure, not a rollback (found by the e2e
                // test `a_rollback_marathon_did_not_take_is_not_reported_as_rolled_back`).
                // The next run adopts the deployment and tries again.
                let (outcome, rollback_id, message) = match rolled {
                    Ok(id) => (Outcome::RolledBack, id, format!("{reason}; rolled back")),
                    Err(e) => (
                        Outcome::Failed,
                        None,
                        format!("{reason}; the rollback failed too: {e}"),
                    ),
                };
                return StepResult {
                    rollback_id,
                    ..result(step, outcome, Some(&deployment), Some(message))
                };
            }
        }
    }
}

/// Whether the app's tasks are all up (healthy, where it has health
/// checks) at its current configuration. `None` when Marathon can't be read.
async fn app_health(client: &MarathonClient, id: &str) -> Option<bool> {
    match client.get_app(id).await {
        Ok(Some(app)) => {
            let want = app.get("instances").and_then(Value::as_u64).unwrap_or(0);
            Some(tasks_up(&app) >= want)
        }
        // Deleted: the deployment that deleted it is done.
        Ok(None) => Some(true),
        Err(_) => None,
    }
}

/// The app's tasks that are running (and healthy, where it has health
/// checks) at its current configuration. Tasks of an older configuration
/// don't count: a failed rolling restart leaves the old ones up and healthy,
/// and counting them called the failure a success (found by the e2e test
/// `an_adopted_deployment_that_fails_is_rolled_back_to_the_version_before_it`).
/// Without embedded tasks, Marathon's counts.
fn tasks_up(app: &Value) -> u64 {
    let has_checks = app
        .get("healthChecks")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let ts = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let since = ts(app.pointer("/versionInfo/lastConfigChangeAt"));
    match (app.get("tasks").and_then(Value::as_array), since) {
        (Some(tasks), Some(since)) => tasks
            .iter()
            .filter(|t| {
                let current = ts(t.get("version")).is_some_and(|v| v >= since);
                let running = t.get("state").and_then(Value::as_str) == Some("TASK_RUNNING");
                let healthy = !has_checks
                    || t.get("healthCheckResults")
                        .and_then(Value::as_array)
                        .is_some_and(|r| {
                            !r.is_empty()
                                && r.iter().all(|h| h.get("alive") == Some(&Value::Bool(true)))
                        });
                current && running && healthy
            })
            .count() as u64,
        _ => {
            let field = if has_checks {
                "tasksHealthy"
            } else {
                "tasksRunning"
            };
            app.get(field).and_then(Value::as_u64).unwrap_or(0)
        }
    }
}

/// Reverts a deployment: Marathon's own rollback while it still runs, or
/// the previous definition put back once it has ended. Returns the id of
/// the deployment that reverts it, when Marathon said.
async fn roll_back(
    client: &MarathonClient,
    step: &Step,
    deployment: &str,
    previous: Option<&Value>,
    opts: &Options,
) -> Result<Option<String>, ClientError> {
    // Reverted: what ran before is back (or, for a create, the app gone).
    let reverted = |l: &Option<Value>| match previous {
        Some(prev) => l
            .as_ref()
            .is_some_and(|l| crate::observe::app_diff(prev, l, &[]).is_none()),
        None => l.is_none(),
    };
    // Not retried blindly: a DELETE whose answer was lost has started the
    // revert already, and a second one would find nothing to delete and
    // revert by hand, twice.
    let mut tries = 0;
    let mut answer_lost = false;
    while !deployment.is_empty() {
        tries += 1;
        match client.rollback_deployment(deployment).await {
            Ok(Some(d)) => return Ok(Some(d.deployment_id)),
            Ok(None) => break,
            Err(e) if e.is_transient() && tries < opts.write_attempts => {
                answer_lost = true;
                tokio::time::sleep(opts.poll).await;
                let deps = client.deployments().await?;
                // Marathon may list the cancelled deployment beside its
                // revert for a moment: the revert is the answer.
                if let Some(d) = deps
                    .iter()
                    .find(|d| d.id != deployment && d.affected_apps.contains(&step.id))
                {
                    return Ok(Some(d.id.clone()));
                }
                if !deps.iter().any(|d| d.id == deployment) {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    // After a lost answer the DELETE may have landed (late, or finished
    // already): its revert must not be overridden by a forced PUT.
    if answer_lost && let Some(w) = already_done(client, &step.id, &reverted).await? {
        return Ok(w.deployment_id());
    }
    let written = match previous {
        Some(prev) => {
            write(client, step, opts, reverted, || {
                client.put_app(&step.id, prev, true)
            })
            .await?
        }
        None => write(client, step, opts, reverted, || client.delete_app(&step.id)).await?,
    };
    Ok(written.deployment_id())
}

#[cfg(test)]
mod tests;
