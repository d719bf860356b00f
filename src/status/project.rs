//! How what a reconcile saw becomes the status: pure rules, no I/O. The
//! daemon (`reconcile::daemon`) turns plan steps and apply results into the
//! plain inputs here and publishes what comes out.
//!
//! - [`env_status`]: a planned environment → its status, apps included.
//! - [`record_result`]: one finished step → its app's status, with the
//!   live-commit rule.
//! - [`unreachable`]: an environment whose Marathon didn't answer.

use super::{AppStatus, EnvStatus, LastAction, Problem};
use crate::model::{AppPath, Outcome, SyncStatus};
use crate::render::{DesiredEnv, Diagnostic, EnvSettings};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One app of the plan, in the status's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// The app's path under `apps/` (its Marathon id when Git doesn't have it).
    pub key: AppPath,
    /// Its Marathon id.
    pub id: String,
    /// The plan's verdict.
    pub sync: SyncStatus,
    /// A deployment pacer didn't start is running for it.
    pub foreign_deployment: bool,
    /// A step for it runs in the background now.
    pub running: bool,
    /// Its live `pacer.commit` label.
    pub live_commit: Option<String>,
    /// Its deployment's progress, while one runs.
    pub rollout: Option<super::Rollout>,
    /// Live → desired, when they differ.
    pub diff: Option<Arc<str>>,
}

/// A reconciled environment, in the status's terms.
pub struct EnvReport<'a> {
    pub settings: &'a EnvSettings,
    /// The newest commit that rendered (the one reconciled).
    pub commit: String,
    /// The head fetched: a rollback at it is this commit's failure.
    pub head: &'a str,
    /// RFC 3339.
    pub at: String,
    /// The environment's problems (the head's, a refused rewind, held deletes).
    pub errors: Vec<Problem>,
    pub planned: Vec<Planned>,
    /// Apps in Git that don't render at the commit, with their problems.
    pub invalid: &'a BTreeMap<AppPath, Vec<Diagnostic>>,
    /// What applying the plan would do.
    pub plan: crate::model::PlanSummary,
}

/// The status of a reconciled environment. Each app keeps its last action
/// from `previous`; an app whose status is unchanged keeps its `Arc`.
pub fn env_status(previous: Option<&EnvStatus>, r: EnvReport<'_>) -> EnvStatus {
    let old = |key: &str| previous.and_then(|p| p.apps.get(key));
    let mut apps: BTreeMap<AppPath, Arc<AppStatus>> = BTreeMap::new();
    for p in r.planned {
        let last = old(&p.key).and_then(|a| a.last.clone());
        // The deployment still running after a rollback at this commit is
        // the rollback itself: the app failed; nothing is in progress.
        let rolled_back_here = last.as_ref().is_some_and(|l| {
            matches!(l.outcome, Outcome::RolledBack | Outcome::Failed) && l.commit == r.head
        });
        let mut sync = p.sync;
        if p.running {
            sync = SyncStatus::Progressing;
        } else if rolled_back_here && p.foreign_deployment {
            sync = SyncStatus::Failed;
        }
        let errors: Vec<Problem> = r
            .invalid
            .get(&p.key)
            .map(|d| d.iter().map(Problem::from).collect())
            .unwrap_or_default();
        if !errors.is_empty() {
            sync = SyncStatus::Invalid;
        }
        let status = AppStatus {
            id: p.id,
            sync,
            live_commit: p.live_commit,
            last,
            errors,
            rollout: p.rollout,
            diff: p.diff,
        };
        let shared = match old(&p.key) {
            Some(a) if **a == status => a.clone(),
            _ => Arc::new(status),
        };
        apps.insert(p.key, shared);
    }
    // Apps that never rendered have no step: list them with their problems.
    for (app, errors) in r.invalid {
        apps.entry(app.clone()).or_insert_with(|| {
            Arc::new(AppStatus {
                errors: errors.iter().map(Problem::from).collect(),
                ..AppStatus::new(r.settings.app_id(app), SyncStatus::Invalid)
            })
        });
    }
    EnvStatus {
        group: r.settings.group.clone(),
        commit: Some(r.commit),
        last_sync: Some(r.at),
        apps,
        errors: r.errors,
        // The loop's gate keeps it up to date between reconciles.
        verify: previous.and_then(|p| p.verify.clone()),
        plan: Some(r.plan),
        // The loop records what became of an operator's apply.
        apply: previous.and_then(|p| p.apply.clone()),
        marathon_up: Some(true),
    }
}

/// Whether `key` shows drift now that it didn't show before (worth a log line).
pub fn newly_drifted(previous: Option<&EnvStatus>, key: &str) -> bool {
    previous
        .and_then(|p| p.apps.get(key))
        .is_none_or(|a| a.sync != SyncStatus::Drifted)
}

/// A step that ended, in the status's terms.
#[derive(Clone, Debug)]
pub struct Finished {
    pub key: AppPath,
    pub id: String,
    pub outcome: Outcome,
    /// The step was a full PUT (a create, an update that isn't a scale or
    /// a hot update, a healed drift).
    pub full_put: bool,
    /// The desired app's `pacer.commit` label.
    pub desired_commit: Option<String>,
    /// The commit the step was planned at.
    pub head: String,
    /// RFC 3339.
    pub at: String,
    pub deployment_id: Option<String>,
    pub message: Option<String>,
}

/// The sync status an outcome leaves behind. A delivery's end leaves
/// Marathon as it was (in sync): the app's `delivery` tells how it went.
pub fn outcome_sync(outcome: Outcome) -> SyncStatus {
    match outcome {
        Outcome::Succeeded | Outcome::Hot | Outcome::Delivered | Outcome::DeliveryFailed => {
            SyncStatus::InSync
        }
        Outcome::Failed | Outcome::RolledBack => SyncStatus::Failed,
    }
}

/// Records a finished step on its app. After a full PUT that succeeded,
/// Marathon runs the desired app's commit label; a scale or a hot update
/// keeps the old one, as Marathon does. An app with render problems stays
/// `invalid`. Only this app's status is copied.
pub fn record_result(env: &mut EnvStatus, f: Finished) {
    let sync = outcome_sync(f.outcome);
    let new_commit = f
        .desired_commit
        .filter(|_| f.full_put && f.outcome == Outcome::Succeeded);
    let entry = env
        .apps
        .entry(f.key)
        .or_insert_with(|| Arc::new(AppStatus::new(f.id.clone(), sync)));
    let a = Arc::make_mut(entry);
    if a.errors.is_empty() {
        a.sync = sync;
    }
    if let Some(c) = new_commit {
        a.live_commit = Some(c);
    }
    a.last = Some(LastAction {
        outcome: f.outcome,
        commit: f.head,
        at: f.at,
        deployment_id: f.deployment_id,
        message: f.message,
    });
}

/// `env`'s Marathon didn't answer: what it runs can't be observed, so its
/// apps show as `unknown` (not as they were last seen), those never
/// observed yet too.
pub fn unreachable(env: &mut EnvStatus, desired: Option<&DesiredEnv>, errors: Vec<Problem>) {
    env.errors = errors;
    env.marathon_up = Some(false);
    for app in env.apps.values_mut() {
        if app.sync != SyncStatus::Unknown {
            Arc::make_mut(app).sync = SyncStatus::Unknown;
        }
    }
    for (path, app) in desired.map(|d| &d.apps).into_iter().flatten() {
        env.apps
            .entry(path.clone())
            .or_insert_with(|| Arc::new(AppStatus::new(app.id.clone(), SyncStatus::Unknown)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Policy;

    fn settings() -> EnvSettings {
        EnvSettings {
            name: "prod".into(),
            group: "/prod".into(),
            marathon: None,
            policy: Policy::default(),
        }
    }

    fn planned(key: &str, sync: SyncStatus) -> Planned {
        Planned {
            key: key.into(),
            id: format!("/prod/{key}"),
            sync,
            foreign_deployment: false,
            running: false,
            live_commit: Some("c1".into()),
            rollout: None,
            diff: None,
        }
    }

    fn report<'a>(
        s: &'a EnvSettings,
        invalid: &'a BTreeMap<AppPath, Vec<Diagnostic>>,
        planned: Vec<Planned>,
    ) -> EnvReport<'a> {
        EnvReport {
            settings: s,
            commit: "c2".into(),
            head: "c2",
            at: "2026-12-03T10:00:00+00:00".into(),
            errors: Vec::new(),
            planned,
            invalid,
            plan: Default::default(),
        }
    }

    fn finished(key: &str, outcome: Outcome, full_put: bool) -> Finished {
        Finished {
            key: key.into(),
            id: format!("/prod/{key}"),
            outcome,
            full_put,
            desired_commit: Some("c2".into()),
            head: "c2".into(),
            at: "2026-12-03T10:00:00+00:00".into(),
            deployment_id: Some("d1".into()),
            message: None,
        }
    }

    #[test]
    fn the_plan_verdict_becomes_the_sync_status_and_running_steps_progress() {
        let (s, invalid) = (settings(), BTreeMap::new());
        let mut web = planned("web", SyncStatus::OutOfSync);
        web.running = true;
        let e = env_status(
            None,
            report(&s, &invalid, vec![planned("api", SyncStatus::InSync), web]),
        );
        assert_eq!(e.apps["api"].sync, SyncStatus::InSync);
        assert_eq!(e.apps["web"].sync, SyncStatus::Progressing);
        assert_eq!(e.group, "/prod");
        assert_eq!(e.commit.as_deref(), Some("c2"));
        assert_eq!(e.marathon_up, Some(true));
        assert_eq!(
            e.sync_counts(),
            BTreeMap::from([(SyncStatus::InSync, 1), (SyncStatus::Progressing, 1)])
        );
    }

    #[test]
    fn a_rollback_at_this_commit_shows_failed_not_progressing() {
        let (s, invalid) = (settings(), BTreeMap::new());
        let mut before = EnvStatus::default();
        record_result(&mut before, finished("web", Outcome::RolledBack, true));
        let mut web = planned("web", SyncStatus::Progressing);
        web.foreign_deployment = true;
        let e = env_status(Some(&before), report(&s, &invalid, vec![web.clone()]));
        assert_eq!(e.apps["web"].sync, SyncStatus::Failed);
        assert_eq!(
            e.apps["web"].last.as_ref().map(|l| l.outcome),
            Some(Outcome::RolledBack),
            "the last action is kept"
        );
        // At a newer commit the deployment is someone else's.
        let mut r = report(&s, &invalid, vec![web]);
        r.head = "c3";
        assert_eq!(
            env_status(Some(&before), r).apps["web"].sync,
            SyncStatus::Progressing
        );
    }

    #[test]
    fn render_problems_make_an_app_invalid_even_without_a_step() {
        let s = settings();
        let invalid = BTreeMap::from([
            (
                "web".to_string(),
                vec![Diagnostic::file("apps/web/app.yaml", "bad")],
            ),
            (
                "new".to_string(),
                vec![Diagnostic::file("apps/new/app.yaml", "bad")],
            ),
        ]);
        let e = env_status(
            None,
            report(&s, &invalid, vec![planned("web", SyncStatus::InSync)]),
        );
        assert_eq!(e.apps["web"].sync, SyncStatus::Invalid);
        assert_eq!(e.apps["new"].sync, SyncStatus::Invalid);
        assert_eq!(e.apps["new"].id, "/prod/new");
        assert_eq!(
            e.apps["new"].errors[0].file.as_deref(),
            Some("apps/new/app.yaml")
        );
    }

    #[test]
    fn an_unchanged_app_keeps_its_arc() {
        let (s, invalid) = (settings(), BTreeMap::new());
        let first = env_status(
            None,
            report(&s, &invalid, vec![planned("api", SyncStatus::InSync)]),
        );
        let second = env_status(
            Some(&first),
            report(&s, &invalid, vec![planned("api", SyncStatus::InSync)]),
        );
        assert!(Arc::ptr_eq(&first.apps["api"], &second.apps["api"]));
    }

    #[test]
    fn only_a_successful_full_put_moves_the_live_commit() {
        let mut e = EnvStatus::default();
        record_result(&mut e, finished("web", Outcome::Succeeded, true));
        assert_eq!(e.apps["web"].live_commit.as_deref(), Some("c2"));
        assert_eq!(e.apps["web"].sync, SyncStatus::InSync);

        let mut scaled = finished("web", Outcome::Succeeded, false);
        scaled.desired_commit = Some("c3".into());
        record_result(&mut e, scaled);
        assert_eq!(e.apps["web"].live_commit.as_deref(), Some("c2"));

        let mut failed = finished("web", Outcome::RolledBack, true);
        failed.desired_commit = Some("c4".into());
        record_result(&mut e, failed);
        assert_eq!(e.apps["web"].live_commit.as_deref(), Some("c2"));
        assert_eq!(e.apps["web"].sync, SyncStatus::Failed);
        let last = e.apps["web"].last.clone().unwrap();
        assert_eq!(
            (last.outcome, last.commit.as_str()),
            (Outcome::RolledBack, "c2")
        );
    }

    #[test]
    fn a_result_copies_only_its_own_app() {
        let mut e = EnvStatus::default();
        record_result(&mut e, finished("api", Outcome::Succeeded, true));
        record_result(&mut e, finished("web", Outcome::Succeeded, true));
        let published = e.clone();
        record_result(&mut e, finished("web", Outcome::Hot, false));
        assert!(Arc::ptr_eq(&e.apps["api"], &published.apps["api"]));
        assert!(!Arc::ptr_eq(&e.apps["web"], &published.apps["web"]));
        assert_eq!(
            published.apps["web"].last.as_ref().unwrap().outcome,
            Outcome::Succeeded
        );
    }

    #[test]
    fn an_invalid_app_stays_invalid_after_a_result() {
        let s = settings();
        let invalid = BTreeMap::from([(
            "web".to_string(),
            vec![Diagnostic::file("apps/web/app.yaml", "bad")],
        )]);
        let mut e = env_status(None, report(&s, &invalid, vec![]));
        record_result(&mut e, finished("web", Outcome::Succeeded, true));
        assert_eq!(e.apps["web"].sync, SyncStatus::Invalid);
    }

    #[test]
    fn an_unreachable_marathon_makes_every_app_unknown() {
        let (s, invalid) = (settings(), BTreeMap::new());
        let mut e = env_status(
            None,
            report(&s, &invalid, vec![planned("api", SyncStatus::InSync)]),
        );
        let desired = DesiredEnv {
            settings: s.clone(),
            apps: BTreeMap::new(),
        };
        unreachable(&mut e, Some(&desired), vec![Problem::message("down")]);
        assert_eq!(e.apps["api"].sync, SyncStatus::Unknown);
        assert_eq!(e.marathon_up, Some(false));
        assert_eq!(e.errors[0].message, "down");
        assert!(newly_drifted(Some(&e), "api"));
    }
}
