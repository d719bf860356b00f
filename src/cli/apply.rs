//! `pacer apply` and `pacer retry`: the only commands that write to Marathon.
//! Both show the plan and act only on a `yes` typed at a terminal or on
//! `--yes`; without a terminal and without `--yes` they refuse.

use super::args::{ApplyArgs, Format, RetryArgs, WriteArgs};
use super::exit;
use super::plan::{EnvPlan, describe, plan_env, plan_json, render_envs, render_plan};
use crate::apply::{self, LogProgress, Progress, StepResult};
use crate::model::Outcome;
use crate::plan::{self, Action, Step};
use crate::record;
use crate::render;
use crate::source::RepoLocation;
use anyhow::{Context, bail};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

pub fn apply_cmd(a: ApplyArgs) -> anyhow::Result<u8> {
    write(&a.write, &a.env, a.app.as_deref(), a.concurrency, false)
}

pub fn retry_cmd(a: RetryArgs) -> anyhow::Result<u8> {
    write(&a.write, &a.env, Some(&a.app), 1, true)
}

/// Whether the plan has anything for `apply` to do (a deployment of ours to
/// follow counts).
fn has_work(p: &plan::Plan) -> bool {
    p.steps
        .iter()
        .any(|s| s.action.acts() || matches!(s.action, Action::Wait { ours: true, .. }))
}

/// For `retry`: the app's step must be a failure; forgets it and re-plans,
/// so the plan deploys that definition again. Pure, so it is unit-tested.
fn retry_plan(ep: &mut EnvPlan, app: &str, overrides: plan::Overrides) -> anyhow::Result<()> {
    let env = ep.desired.settings.name.clone();
    let id = ep.desired.settings.app_id(app);
    match ep.plan.steps.iter().find(|s| s.id == id).map(|s| &s.action) {
        Some(Action::Failed) => {}
        other => bail!(
            "nothing to retry: `{app}` in {env} has no failed deployment at its current definition (it is {}); nothing was changed. `pacer apply --env {env} --app {app}` deploys a pending change",
            other.map_or_else(|| "not in Git".to_string(), describe)
        ),
    }
    ep.observed.retry.insert(id.clone());
    ep.plan = plan::plan_with(&ep.desired, &ep.observed, &Default::default(), overrides);
    // Only that app, whatever else the environment has pending.
    ep.plan.steps.retain(|s| s.id == id);
    Ok(())
}

fn write(
    w: &WriteArgs,
    env: &str,
    app: Option<&str>,
    concurrency: usize,
    retry: bool,
) -> anyhow::Result<u8> {
    let format = w.format.format;
    let rendered = render_envs(&w.repo.repo, w.rev.as_deref(), &[env.to_string()], app)?;
    let (loc, snap) = (rendered.loc, rendered.snap);
    let desired = rendered
        .envs
        .into_values()
        .next()
        .context("the environment rendered nothing")?;
    if snap.revision.dirty && !w.allow_dirty {
        bail!(
            "the working tree has uncommitted changes: commit them (so the deploy is traceable) or pass --allow-dirty"
        );
    }
    let rev = snap.revision.to_string();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // A human asked: drift is put back whatever selfHeal says; a mass
        // delete only when they said so.
        let overrides = plan::Overrides {
            heal_drift: true,
            allow_mass_delete: w.allow_mass_delete,
        };
        let mut ep = plan_env(&loc, desired, app, &w.marathon, overrides).await?;
        if retry {
            retry_plan(&mut ep, app.expect("retry names its app"), overrides)?;
        }
        if !w.allow_rewind {
            check_rewind(&loc, snap.revision.commit.as_deref(), &ep.observed)?;
        }
        if format != Format::Json {
            out!("{}", render_plan(&ep.plan, &rev, ep.client.url(), format))?;
        }
        // Held deletes are refused, not silently skipped: the run says so
        // and fails, after applying the rest.
        let held = ep
            .plan
            .held()
            .map(|why| format!("Refused: the deletes are {why}"));
        if !has_work(&ep.plan) {
            if format == Format::Json {
                let v = json!({"plan": plan_json(&ep.plan, &rev, ep.client.url()), "results": []});
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                outln!("Nothing to apply.")?;
            }
            if let Some(h) = &held {
                eprintln!("{h}");
                return Ok(exit::ERROR);
            }
            return Ok(exit::OK);
        }
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if !w.yes {
            let verb = if retry { "retry" } else { "apply" };
            if !tty {
                bail!(
                    "refusing to change {env} without confirmation: there is no terminal to ask on. Pass --yes to {verb} without asking"
                );
            }
            if format == Format::Json {
                // The JSON comes at the end; the person asked sees the plan now.
                eprint!("{}", render_plan(&ep.plan, &rev, ep.client.url(), Format::Text));
            }
            eprint!("{} these changes to {env}? Only `yes` is accepted: ", if retry { "Retry" } else { "Apply" });
            std::io::stderr().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if answer.trim() != "yes" {
                eprintln!("Cancelled: nothing was changed.");
                return Ok(exit::ERROR);
            }
        }
        let progress: Arc<dyn Progress> = if tty {
            Arc::new(TtyProgress::new())
        } else {
            Arc::new(LogProgress)
        };
        let opts = apply::Options {
            concurrency,
            deploy_timeout: Duration::from_secs(w.deploy_timeout),
            ..apply::Options::default()
        };
        let results =
            apply::apply(&ep.client, &ep.plan, &ep.desired, &ep.observed, &opts, progress).await;
        let failed = results
            .iter()
            .filter(|r| !matches!(r.outcome, Outcome::Succeeded | Outcome::Hot))
            .count();
        // Recorded before printing: a reader that went away must not lose the records.
        let advice = record_results(
            &loc,
            snap.revision.commit.as_deref().filter(|_| !snap.revision.dirty),
            env,
            &results,
        );
        match format {
            Format::Json => {
                let v = json!({
                    "plan": plan_json(&ep.plan, &rev, ep.client.url()),
                    "results": results,
                });
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            }
            Format::Text | Format::Markdown => {
                out!("{}", render_results(&results, failed, format))?;
            }
        }
        if let Some(advice) = advice {
            if format == Format::Text {
                outln!("{advice}")?;
            } else {
                eprintln!("{advice}");
            }
        }
        if let Some(h) = &held {
            eprintln!("{h}");
        }
        Ok(if failed == 0 && held.is_none() {
            exit::OK
        } else {
            exit::ERROR
        })
    })
}

fn render_results(results: &[StepResult], failed: usize, format: Format) -> String {
    let mut out = String::new();
    if format == Format::Markdown {
        out.push_str("\n| app | outcome | deployment | message |\n|---|---|---|---|\n");
    }
    for r in results {
        let ok = matches!(r.outcome, Outcome::Succeeded | Outcome::Hot);
        let outcome = serde_json::to_value(r.outcome)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        if format == Format::Markdown {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                r.id,
                outcome,
                r.deployment_id.as_deref().unwrap_or(""),
                r.message.as_deref().unwrap_or("").replace('|', "\\|")
            ));
            continue;
        }
        out.push_str(&format!(
            "{} {:<40} {}{}{}\n",
            if ok { "ok  " } else { "FAIL" },
            r.id,
            outcome,
            r.deployment_id
                .as_ref()
                .map(|d| format!(" (deployment {d})"))
                .unwrap_or_default(),
            r.message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "{}Applied {} step{}: {} failed.\n",
        if format == Format::Markdown { "\n" } else { "" },
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        failed
    ));
    out
}
/// Refuses a commit that is not a descendant of every commit the live apps
/// were deployed from: applying it would rewind history (a force-push).
fn check_rewind(
    loc: &RepoLocation,
    head: Option<&str>,
    observed: &plan::Observed,
) -> anyhow::Result<()> {
    let Some(head) = head else { return Ok(()) };
    let repo = loc.open_git()?;
    let head = git2::Oid::from_str(head)?;
    let running = observed
        .apps
        .iter()
        .filter_map(|(id, live)| Some((id, live.label(render::labels::COMMIT)?)));
    if let Some(r) = crate::source::rewind::check(head, running, |head, commit| {
        repo.graph_descendant_of(head, commit).unwrap_or(false)
    }) {
        bail!("{r}; pass --allow-rewind to deploy anyway");
    }
    Ok(())
}

/// Progress bars on a terminal.
struct TtyProgress {
    bars: indicatif::MultiProgress,
    by_id: parking_lot::Mutex<BTreeMap<String, indicatif::ProgressBar>>,
}

impl TtyProgress {
    fn new() -> Self {
        TtyProgress {
            bars: indicatif::MultiProgress::new(),
            by_id: Default::default(),
        }
    }
}

impl Progress for TtyProgress {
    fn started(&self, step: &Step, what: &str) {
        let bar = self.bars.add(indicatif::ProgressBar::new_spinner());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix:40} {msg}")
                .expect("a valid template"),
        );
        bar.set_prefix(step.id.clone());
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.by_id.lock().insert(step.id.clone(), bar);
    }
    fn progressed(&self, id: &str, detail: &str) {
        if let Some(b) = self.by_id.lock().get(id) {
            b.set_message(detail.to_string());
        }
    }
    fn finished(&self, r: &StepResult) {
        if let Some(b) = self.by_id.lock().get(&r.id) {
            let mark = match r.outcome {
                Outcome::Succeeded | Outcome::Hot | Outcome::Delivered => "done",
                Outcome::Failed | Outcome::DeliveryFailed => "FAILED",
                Outcome::RolledBack => "ROLLED BACK",
            };
            b.finish_with_message(format!("{mark} {}", r.message.clone().unwrap_or_default()));
        }
    }
}

/// Adds the results to the deployment records of the repo applied from
/// (`refs/notes/pacer` on the commit), for `pacer history` and for pushing
/// with the change. A dirty tree has no commit to annotate. Returns what to
/// tell the user about sharing them.
fn record_results(
    loc: &RepoLocation,
    commit: Option<&str>,
    env: &str,
    results: &[apply::StepResult],
) -> Option<String> {
    let commit = commit.and_then(|c| git2::Oid::from_str(c).ok())?;
    let now = chrono::Utc::now();
    let records: Vec<record::notes::Record> = results
        .iter()
        .map(|r| record::notes::Record::of(env, r, now))
        .collect();
    let written = loc
        .open_git()
        .map_err(anyhow::Error::from)
        .and_then(|repo| {
            let n = record::notes::append(&repo, commit, &records)?;
            let remotes: Vec<String> = repo
                .remotes()
                .map(|r| r.iter().flatten().flatten().map(String::from).collect())
                .unwrap_or_default();
            Ok((n, remotes))
        });
    match written {
        Ok((n, remotes)) if n > 0 => Some(share_advice(&commit.to_string(), &remotes)),
        Ok(_) => None,
        Err(e) => {
            eprintln!(
                "warning: the deployment records were not written to {}: {e:#}",
                record::notes::REF
            );
            None
        }
    }
}

/// How to share the records, for the remotes this repo has: `origin` if
/// there is one, else the only or first one, else none to name.
fn share_advice(commit: &str, remotes: &[String]) -> String {
    let notes = record::notes::REF;
    let remote = remotes
        .iter()
        .find(|r| *r == "origin")
        .or_else(|| remotes.first());
    match remote {
        Some(r) => format!(
            "Recorded in {notes} on {commit}; to share, merge `{r}`'s records and push (docs/history.md):\n  git fetch {r} {notes}:{notes}-{r}\n  git notes --ref=pacer merge -s cat_sort_uniq pacer-{r}\n  git push {r} {notes}"
        ),
        None => format!(
            "Recorded in {notes} on {commit}. This repo has no remote, so the records stay here; once it has one, push them with `git push REMOTE {notes}` (docs/history.md)."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_remote_the_repo_has() {
        let c = "0123abcd";
        let origin = share_advice(c, &["backup".into(), "origin".into()]);
        assert!(
            origin.contains("git push origin refs/notes/pacer"),
            "{origin}"
        );
        let other = share_advice(c, &["upstream".into()]);
        assert!(other.contains("git fetch upstream"), "{other}");
        assert!(!other.contains("origin"), "{other}");
        let none = share_advice(c, &[]);
        assert!(!none.contains("git fetch"), "{none}");
        assert!(none.contains("no remote"), "{none}");
    }
}
