//! Decides what to do for each app of one environment, from its desired
//! state, what Marathon runs and the environment's policy. Pure: no I/O, no
//! clock. The caller fetches the inputs and executes the [`Plan`].

use crate::diff::Class;
use crate::model::{AppPath, Digest, SyncStatus};
use crate::observe;
use crate::render::{DesiredEnv, Policy, Reload, RenderedApp, labels};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub use crate::observe::{LiveApp, Observed};

/// What to do for one app.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Live matches Git.
    InSync,
    /// Git has it, Marathon doesn't.
    Create,
    /// Git changed it. `class` says how: `hot` needs no deployment, `scale`
    /// only sets instances, `restart`/`redeploy` roll the tasks. `reverts`:
    /// fields changed by hand in Marathon since pacer deployed the app,
    /// which this deployment puts back to Git's values.
    Update {
        class: Class,
        changed: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reverts: Vec<String>,
    },
    /// Marathon has it, Git no longer does, and the environment prunes.
    /// `held`: why the delete waits for a human (too large a share of the
    /// environment would go at once; see `maxDeleteShare`).
    Delete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<String>,
    },
    /// Under the group but not pacer's to delete (no prune, or never
    /// deployed by pacer).
    Unmanaged,
    /// In Git but doesn't render at this commit, with no good version to
    /// deploy instead: it keeps running as it is, never pruned for a typo.
    Unrendered,
    /// Live was changed outside Git. With self-heal, `heal` is true and the
    /// step puts Git's version back.
    Drifted { heal: bool, changed: Vec<String> },
    /// A deployment is running; wait for it (and adopt it if it is ours).
    Wait {
        deployments: Vec<String>,
        ours: bool,
    },
    /// This exact definition failed and was rolled back; it is not retried
    /// until it changes or an operator asks.
    Failed,
}

impl Action {
    /// Whether executing the step touches Marathon or the config server.
    pub fn acts(&self) -> bool {
        matches!(
            self,
            Action::Create
                | Action::Update { .. }
                | Action::Delete { held: None }
                | Action::Drifted { heal: true, .. }
        )
    }

    pub fn sync_status(&self) -> SyncStatus {
        match self {
            Action::InSync => SyncStatus::InSync,
            Action::Create => SyncStatus::Missing,
            Action::Update { .. } => SyncStatus::OutOfSync,
            Action::Delete { held: Some(_) } => SyncStatus::Held,
            Action::Delete { held: None } | Action::Unmanaged => SyncStatus::Unmanaged,
            Action::Unrendered => SyncStatus::Invalid,
            Action::Drifted { .. } => SyncStatus::Drifted,
            Action::Wait { .. } => SyncStatus::Progressing,
            Action::Failed => SyncStatus::Failed,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub id: String,
    /// The app's path under `apps/`; absent for apps Git doesn't have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<AppPath>,
    #[serde(flatten)]
    pub action: Action,
    /// Live → desired (what applying changes), for humans; absent when in
    /// sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub env: String,
    pub group: String,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.steps
            .iter()
            .any(|s| !matches!(s.action, Action::InSync))
    }

    /// What applying this plan does, and its digest: the acting steps'
    /// ids, actions and diffs, in order. Equal digests, equal applies.
    pub fn summary(&self) -> crate::model::PlanSummary {
        let mut s = crate::model::PlanSummary::default();
        let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
        for step in self.steps.iter().filter(|s| s.action.acts()) {
            match &step.action {
                Action::Create => s.creates += 1,
                Action::Update { .. } => s.updates += 1,
                Action::Delete { .. } => s.deletes += 1,
                Action::Drifted { .. } => s.heals += 1,
                _ => {}
            }
            let action = serde_json::to_vec(&step.action).unwrap_or_default();
            let diff = step.diff.as_deref().unwrap_or("").as_bytes();
            parts.push((step.id.clone(), [action.as_slice(), b"\0", diff].concat()));
        }
        s.digest = Digest::of_parts(parts.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).0;
        s
    }

    /// Why deletes wait for a human, when they do.
    pub fn held(&self) -> Option<&str> {
        self.steps.iter().find_map(|s| match &s.action {
            Action::Delete { held: Some(why) } => Some(why.as_str()),
            _ => None,
        })
    }
}

/// The digest of an app's hot-reload files, as the config server serves them.
pub fn served_digest(app: &RenderedApp) -> Digest {
    let parts: Vec<(String, Vec<u8>)> = app
        .files
        .iter()
        .filter(|(_, f)| f.reload == Reload::Hot)
        .map(|(n, f)| (format!("{n}\0{}", f.path), f.digest.0.clone().into_bytes()))
        .collect();
    Digest::of_parts(parts.iter().map(|(n, c)| (n.as_str(), c.as_slice())))
}

/// How a difference in the Marathon spec is classed: instances alone is a
/// scale; the config-hash label (with or without instances) is a restart
/// for config files; anything else is a redeploy.
fn class_of(changed: &[String], desired: &Value, live: &Value) -> Class {
    let only = |allowed: &[&str]| changed.iter().all(|p| allowed.contains(&p.as_str()));
    if only(&["/instances"]) {
        return Class::Scale;
    }
    let labels_without_hash = |v: &Value| {
        let mut l = v.get("labels").cloned().unwrap_or(Value::Null);
        if let Value::Object(m) = &mut l {
            m.remove(labels::CONFIG_HASH);
            m.remove(labels::COMMIT);
            m.remove(labels::DIGEST);
        }
        l
    };
    let only_hash = labels_without_hash(desired) == labels_without_hash(live);
    if only_hash && only(&["/instances", "/labels", "/labels/pacer.config-hash"]) {
        Class::Restart
    } else {
        Class::Redeploy
    }
}

fn step_for(
    app: &RenderedApp,
    live: Option<&LiveApp>,
    observed: &Observed,
    policy: &Policy,
) -> Step {
    let mk = |action, diff| Step {
        id: app.id.clone(),
        app: Some(app.app.clone()),
        action,
        diff,
    };
    let Some(live) = live else {
        return mk(Action::Create, None);
    };
    // The diff is for humans (`pacer plan`, its JSON): its context lines
    // carry the env, secrets included, which must never be printed.
    let diff = if observed.in_sync.contains(&app.id) {
        None
    } else {
        // Secrets: Git's side is the placeholder rendering, Marathon's is
        // masked to match, so the diff differs exactly where the real one does.
        observe::app_diff(
            app.shown_marathon(),
            &app.shown_live(&live.spec),
            &app.ignore,
        )
    };
    let hot_changed = observed
        .served_hot
        .get(&app.id)
        .is_some_and(|d| *d != served_digest(app));
    if !live.deployments.is_empty() {
        // Ours if it is rolling out exactly what Git wants now: adopt it
        // rather than start a second one.
        let ours = diff.is_none();
        return mk(
            Action::Wait {
                deployments: live.deployments.clone(),
                ours,
            },
            diff,
        );
    }
    let Some(diff_text) = diff else {
        if hot_changed {
            return mk(
                Action::Update {
                    class: Class::Hot,
                    changed: Vec::new(),
                    reverts: Vec::new(),
                },
                None,
            );
        }
        return mk(Action::InSync, None);
    };
    if !observed.retry.contains(&app.id)
        && let Some(failed) = observed.failed.get(&app.id)
        && observe::app_diff(&app.marathon, failed, &app.ignore).is_none()
    {
        return mk(Action::Failed, Some(diff_text));
    }
    let changed = observe::changed_paths(&app.marathon, &live.spec, &app.ignore);
    let origin = origin_of(app, live, observed.baselines.get(&app.id));
    if origin.git_changed {
        // A commit that changes the app deploys it whatever was done by
        // hand meanwhile, as in Argo CD and Flux: `selfHeal` only decides
        // whether drift alone triggers a write. The step says which hand
        // edits the deployment puts back (not those Git has since adopted).
        let reverts: Vec<String> = origin
            .hand_edited
            .into_iter()
            .filter(|p| changed.contains(p))
            .collect();
        mk(
            Action::Update {
                class: class_of(&changed, &app.marathon, &live.spec),
                changed,
                reverts,
            },
            Some(diff_text),
        )
    } else {
        mk(
            Action::Drifted {
                heal: policy.self_heal,
                changed,
            },
            Some(diff_text),
        )
    }
}

/// Where a difference between Git and Marathon comes from.
struct Origin {
    /// Git changed the app since pacer deployed what runs.
    git_changed: bool,
    /// Fields changed in Marathon by hand since then.
    hand_edited: Vec<String>,
}

/// Compares both sides with the baseline, what Git said at the commit the
/// live app was deployed from (what pacer last deployed): desired ≠
/// baseline is a change in Git, live ≠ baseline a change by hand; both can
/// be true at once.
fn origin_of(app: &RenderedApp, live: &LiveApp, baseline: Option<&Value>) -> Origin {
    let Some(baseline) = baseline else {
        // No baseline (never deployed by pacer, or its commit is gone):
        // the difference is Git's.
        return Origin {
            git_changed: true,
            hand_edited: Vec::new(),
        };
    };
    let hand_edited = observe::changed_paths(baseline, &live.spec, &app.ignore);
    let git_changed =
        hand_edited.is_empty() || observe::app_diff(&app.marathon, baseline, &app.ignore).is_some();
    Origin {
        git_changed,
        hand_edited,
    }
}

/// What a human asked for beyond the environment's policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// Put Git's version back over drift even without `selfHeal`: `pacer
    /// apply` is an explicit request to bring apps back to Git.
    pub heal_drift: bool,
    /// Delete what the plan prunes however large a share of the
    /// environment it is (`maxDeleteShare` not applied).
    pub allow_mass_delete: bool,
}

/// Plans one environment by its policy (the daemon). `unrendered`: the
/// apps Git has at this commit that don't render; they are never deleted
/// and never count towards `maxDeleteShare`.
pub fn plan(desired: &DesiredEnv, observed: &Observed, unrendered: &BTreeSet<AppPath>) -> Plan {
    plan_with(desired, observed, unrendered, Overrides::default())
}

/// Deletes allowed at once among `managed` live apps: the share, and
/// never fewer than one (removing one app is not a mass deletion).
fn deletes_allowed(share: f64, managed: usize) -> usize {
    ((share * managed as f64).floor() as usize).max(1)
}

/// Plans one environment, with what a human asked for on top of its policy.
pub fn plan_with(
    desired: &DesiredEnv,
    observed: &Observed,
    unrendered: &BTreeSet<AppPath>,
    overrides: Overrides,
) -> Plan {
    let mut policy = desired.settings.policy;
    policy.self_heal |= overrides.heal_drift;
    let policy = &policy;
    let mut steps: Vec<Step> = desired
        .apps
        .values()
        .map(|app| step_for(app, observed.apps.get(&app.id), observed, policy))
        .collect();
    let wanted: BTreeSet<&str> = desired.apps.values().map(|a| a.id.as_str()).collect();
    let unrendered: BTreeMap<String, &AppPath> = unrendered
        .iter()
        .map(|a| (desired.settings.app_id(a), a))
        .collect();
    for (id, live) in &observed.apps {
        if wanted.contains(id.as_str()) {
            continue;
        }
        // Only what pacer deployed to this environment is pacer's to delete,
        // and only what Git no longer has: an app that doesn't render (a
        // typo, a template error) is still in Git.
        let ours = live.label(labels::ENV) == Some(desired.settings.name.as_str());
        let in_git = unrendered.get(id).map(|a| (*a).clone());
        let action = if in_git.is_some() {
            Action::Unrendered
        } else if ours && policy.prune {
            Action::Delete { held: None }
        } else {
            Action::Unmanaged
        };
        steps.push(Step {
            id: id.clone(),
            app: in_git,
            action,
            diff: None,
        });
    }
    // A commit that would delete a large share of what pacer runs here
    // (a bad merge, a moved directory) waits for a human.
    let managed = observed
        .apps
        .values()
        .filter(|l| l.label(labels::ENV) == Some(desired.settings.name.as_str()))
        .count();
    let deletes = steps
        .iter()
        .filter(|s| matches!(s.action, Action::Delete { .. }))
        .count();
    let share = policy.max_delete_share.get();
    let allowed = deletes_allowed(share, managed);
    if deletes > allowed && !overrides.allow_mass_delete {
        let why = format!(
            "held: {deletes} of the {managed} apps pacer runs in {} would be deleted, more than maxDeleteShare {share} allows ({allowed}); check the commit, then run `pacer apply --env {} --allow-mass-delete` (or raise maxDeleteShare in pacer.yaml)",
            desired.settings.name, desired.settings.name
        );
        for s in &mut steps {
            if let Action::Delete { held } = &mut s.action {
                *held = Some(why.clone());
            }
        }
    }
    steps.sort_by(|a, b| a.id.cmp(&b.id));
    Plan {
        env: desired.settings.name.clone(),
        group: desired.settings.group.clone(),
        steps,
    }
}

#[cfg(test)]
mod tests;
