//! plan, apply, retry and history: the commands that talk to Marathon.

use super::args::{ApplyArgs, HistoryArgs, MarathonArgs, PlanArgs, PlanFormat};
use super::exit;
use crate::apply::{self, LogProgress, Progress, StepResult};
use crate::marathon::client::{Auth, ClientConfig, MarathonClient};
use crate::model::Outcome;
use crate::model::Secret;
use crate::plan::{self, Action, Plan, Step};
use crate::reconcile::gather::{self, Caches};
use crate::record;
use crate::render::{self, DesiredEnv, Scope};
use crate::source::{RepoLocation, Snapshot};
use anyhow::{Context, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

pub fn client_for(args: &MarathonArgs, env_url: Option<&str>) -> anyhow::Result<MarathonClient> {
    let url = args
        .marathon
        .clone()
        .or_else(|| env_url.map(String::from))
        .context("no Marathon URL: pass --marathon (PACER_MARATHON_URL) or set `marathon:` for the environment in pacer.yaml")?;
    let auth = match (
        &args.marathon_user,
        &args.marathon_password,
        &args.marathon_token,
    ) {
        (_, _, Some(token)) => Auth::Token(Secret::new(token.clone())),
        (Some(user), password, None) => Auth::Basic {
            user: user.clone(),
            password: Secret::new(password.clone().unwrap_or_default()),
        },
        _ => Auth::None,
    };
    let cfg = ClientConfig {
        url,
        auth,
        timeout: Duration::from_secs(args.marathon_timeout),
        events: args.marathon_events,
        ..ClientConfig::default()
    };
    Ok(MarathonClient::new(cfg)?)
}

/// The desired state of one environment at the working tree or a revision.
fn desired(
    repo: &std::path::Path,
    rev: Option<&str>,
    env: &str,
    app: Option<&str>,
) -> anyhow::Result<(RepoLocation, Arc<Snapshot>, DesiredEnv)> {
    let loc = RepoLocation::discover(repo)
        .with_context(|| format!("opening the config repo `{}`", repo.display()))?;
    let snap = Arc::new(match rev {
        Some(r) => loc.at_rev(r)?,
        None => loc.working_tree()?,
    });
    let scope = Scope {
        envs: Some([env.to_string()].into()),
        apps: app.map(|a| [a.to_string()].into()),
    };
    match render::render(snap.clone(), &scope) {
        Ok(mut d) => {
            let env_desired = d
                .envs
                .remove(env)
                .context("the environment rendered nothing")?;
            Ok((loc, snap, env_desired))
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            bail!(
                "{} problem{} in the config repo: nothing was planned",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            )
        }
    }
}

fn sigil(a: &Action) -> char {
    match a {
        Action::InSync => '=',
        Action::Create => '+',
        Action::Update { .. } => '~',
        Action::Delete { held: None } => '-',
        Action::Delete { held: Some(_) } => 'h',
        Action::Unmanaged => '?',
        Action::Unrendered => 'x',
        Action::Drifted { .. } => '!',
        Action::Wait { .. } => '…',
        Action::Failed => 'x',
    }
}

pub fn describe(a: &Action) -> String {
    match a {
        Action::InSync => "in sync".into(),
        Action::Create => "create".into(),
        Action::Update { class, changed, .. } if changed.is_empty() => {
            format!("update ({})", class.as_str())
        }
        Action::Update {
            class,
            changed,
            reverts,
        } if reverts.is_empty() => {
            format!("update ({}): {}", class.as_str(), changed.join(", "))
        }
        Action::Update {
            class,
            changed,
            reverts,
        } => format!(
            "update ({}): {}; also reverts what was changed by hand in Marathon: {}",
            class.as_str(),
            changed.join(", "),
            reverts.join(", ")
        ),
        Action::Delete { held: None } => "delete (pruned from Git)".into(),
        Action::Delete { held: Some(why) } => format!("delete {why}"),
        Action::Unmanaged => "unmanaged (not in Git; not deleted)".into(),
        Action::Unrendered => "kept as it runs (in Git but doesn't render; not deleted)".into(),
        Action::Drifted {
            heal: true,
            changed,
        } => format!("drifted, will heal: {}", changed.join(", ")),
        Action::Drifted {
            heal: false,
            changed,
        } => format!(
            "drifted (reported; selfHeal is off): {}",
            changed.join(", ")
        ),
        Action::Wait { ours: true, .. } => "deploying (adopted)".into(),
        Action::Wait {
            ours: false,
            deployments,
        } => format!("waiting for deployment {}", deployments.join(", ")),
        Action::Failed => {
            "failed at this definition; not retried (`pacer retry` to try again)".into()
        }
    }
}

fn summary(plan: &Plan) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &plan.steps {
        let k = match s.action {
            Action::InSync => "in sync",
            Action::Create => "to create",
            Action::Update { .. } => "to update",
            Action::Delete { held: None } => "to delete",
            Action::Delete { held: Some(_) } => "held",
            Action::Unmanaged => "unmanaged",
            Action::Unrendered => "invalid",
            Action::Drifted { .. } => "drifted",
            Action::Wait { .. } => "deploying",
            Action::Failed => "failed",
        };
        *n.entry(k).or_default() += 1;
    }
    let parts: Vec<String> = n.iter().map(|(k, v)| format!("{v} {k}")).collect();
    format!("Plan: {}.", parts.join(", "))
}

pub fn render_plan(plan: &Plan, rev: &str, marathon: &str, format: PlanFormat) -> String {
    match format {
        PlanFormat::Json => {
            let mut s = serde_json::to_string_pretty(plan).expect("a plan is plain data");
            s.push('\n');
            s
        }
        PlanFormat::Text => {
            let mut out = format!(
                "pacer plan {} ({}) at {rev} against {marathon}\n",
                plan.env, plan.group
            );
            for s in &plan.steps {
                out.push_str(&format!(
                    "  {} {:<40} {}\n",
                    sigil(&s.action),
                    s.id,
                    describe(&s.action)
                ));
                if let Some(d) = s
                    .diff
                    .as_ref()
                    .filter(|_| !matches!(s.action, Action::Failed | Action::Wait { .. }))
                {
                    for line in d.lines() {
                        out.push_str(&format!("      {line}\n"));
                    }
                }
            }
            out.push_str(&summary(plan));
            out.push('\n');
            out
        }
        PlanFormat::Markdown => {
            let mut out = format!(
                "### pacer plan `{}`\n\n`{rev}` against `{marathon}`\n\n**{}**\n\n| app | action |\n|---|---|\n",
                plan.env,
                summary(plan)
            );
            for s in &plan.steps {
                out.push_str(&format!(
                    "| `{}` | {} {} |\n",
                    s.id,
                    sigil(&s.action),
                    describe(&s.action).replace('|', "\\|")
                ));
            }
            for s in plan.steps.iter().filter(|s| s.diff.is_some()) {
                out.push_str(&format!(
                    "\n<details><summary><code>{}</code></summary>\n\n```diff\n{}```\n</details>\n",
                    s.id,
                    s.diff.as_deref().unwrap_or("")
                ));
            }
            out
        }
    }
}

async fn make_plan(
    a: &PlanArgs,
    retry: &[String],
    overrides: plan::Overrides,
) -> anyhow::Result<(
    RepoLocation,
    Arc<Snapshot>,
    DesiredEnv,
    MarathonClient,
    plan::Observed,
    Plan,
)> {
    let (loc, snap, desired) = desired(&a.repo.repo, a.rev.as_deref(), &a.env, a.app.as_deref())?;
    let client = client_for(&a.marathon, desired.settings.marathon.as_deref())?;
    let mut caches = Caches::default();
    let mut observed = gather::observe(&client, Some(&loc), &desired, &mut caches)
        .await
        .with_context(|| format!("reading Marathon at {}", client.url()))?;
    if let Some(app) = &a.app {
        // Planning one app: apps it doesn't name are none of this run's business.
        let id = desired.settings.app_id(app);
        observed.apps.retain(|k, _| *k == id);
    }
    for app in retry {
        observed.retry.insert(desired.settings.app_id(app));
    }
    // A repo where an app doesn't render is not planned at all (see
    // `desired`), so no app here is in Git without rendering.
    let p = plan::plan_with(&desired, &observed, &BTreeSet::new(), overrides);
    Ok((loc, snap, desired, client, observed, p))
}

pub fn plan_cmd(a: PlanArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (_, snap, _, client, _, p) = make_plan(&a, &[], plan::Overrides::default()).await?;
        print!(
            "{}",
            render_plan(&p, &snap.revision.to_string(), client.url(), a.format)
        );
        Ok(if p.has_changes() {
            exit::CHANGES
        } else {
            exit::OK
        })
    })
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
    for (id, live) in &observed.apps {
        let Some(c) = live.label(render::labels::COMMIT) else {
            continue;
        };
        let Ok(live_commit) = git2::Oid::from_str(c.trim_end_matches("-dirty")) else {
            continue;
        };
        if live_commit == head {
            continue;
        }
        let ok = repo.graph_descendant_of(head, live_commit).unwrap_or(false);
        if !ok {
            bail!(
                "refusing to rewind: `{id}` runs commit {c}, which is not an ancestor of {head} (was the branch force-pushed?); pass --allow-rewind to deploy anyway"
            );
        }
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
                Outcome::Succeeded | Outcome::Hot => "done",
                Outcome::Failed => "FAILED",
                Outcome::RolledBack => "ROLLED BACK",
            };
            b.finish_with_message(format!("{mark} {}", r.message.clone().unwrap_or_default()));
        }
    }
}

pub fn apply_cmd(a: ApplyArgs, retry: bool) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let retry_apps: Vec<String> = if retry { a.plan.app.iter().cloned().collect() } else { Vec::new() };
        if retry && retry_apps.is_empty() {
            bail!("`pacer retry` needs --app APP: the app whose failed definition to try again");
        }
        // A human asked: drift is put back whatever selfHeal says; a mass
        // delete only when they said so.
        let overrides = plan::Overrides { heal_drift: true, allow_mass_delete: a.allow_mass_delete };
        let (loc, snap, desired, client, observed, p) = make_plan(&a.plan, &retry_apps, overrides).await?;
        if snap.revision.dirty && !a.allow_dirty {
            bail!("the working tree has uncommitted changes: commit them (so the deploy is traceable) or pass --allow-dirty");
        }
        if !a.allow_rewind {
            check_rewind(&loc, snap.revision.commit.as_deref(), &observed)?;
        }
        print!("{}", render_plan(&p, &snap.revision.to_string(), client.url(), PlanFormat::Text));
        // Held deletes are refused, not silently skipped: the run says so
        // and fails, after applying the rest.
        let held = p.held().map(|why| format!("Refused: the deletes are {why}"));
        if !p.steps.iter().any(|s| s.action.acts() || matches!(s.action, Action::Wait { ours: true, .. })) {
            println!("Nothing to apply.");
            if let Some(h) = &held {
                eprintln!("{h}");
                return Ok(exit::ERROR);
            }
            return Ok(exit::OK);
        }
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if tty && !a.yes {
            print!("Apply these changes to {}? Only `yes` is accepted: ", a.plan.env);
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if answer.trim() != "yes" {
                println!("Cancelled: nothing was changed.");
                return Ok(exit::ERROR);
            }
        }
        let progress: Arc<dyn Progress> = if tty { Arc::new(TtyProgress::new()) } else { Arc::new(LogProgress) };
        let opts = apply::Options {
            concurrency: a.concurrency,
            deploy_timeout: Duration::from_secs(a.deploy_timeout),
            ..apply::Options::default()
        };
        let results = apply::apply(&client, &p, &desired, &observed, &opts, progress).await;
        let mut failed = 0;
        for r in &results {
            let ok = matches!(r.outcome, Outcome::Succeeded | Outcome::Hot);
            if !ok {
                failed += 1;
            }
            println!(
                "{} {:<40} {}{}{}",
                if ok { "ok  " } else { "FAIL" },
                r.id,
                r.outcome.as_str(),
                r.deployment_id.as_ref().map(|d| format!(" (deployment {d})")).unwrap_or_default(),
                r.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
            );
        }
        println!("Applied {} step{}: {} failed.", results.len(), if results.len() == 1 { "" } else { "s" }, failed);
        record_results(&loc, snap.revision.commit.as_deref().filter(|_| !snap.revision.dirty), &a.plan.env, &results);
        if let Some(h) = &held {
            eprintln!("{h}");
        }
        Ok(if failed == 0 && held.is_none() { exit::OK } else { exit::ERROR })
    })
}

/// Adds the results to the deployment records of the repo applied from
/// (`refs/notes/pacer` on the commit), for `pacer history` and for pushing
/// with the change. A dirty tree has no commit to annotate.
fn record_results(
    loc: &RepoLocation,
    commit: Option<&str>,
    env: &str,
    results: &[apply::StepResult],
) {
    let Some(commit) = commit.and_then(|c| git2::Oid::from_str(c).ok()) else {
        return;
    };
    let now = chrono::Utc::now();
    let records: Vec<record::notes::Record> = results
        .iter()
        .map(|r| record::notes::Record::of(env, r, now))
        .collect();
    let written = loc
        .open_git()
        .map_err(anyhow::Error::from)
        .and_then(|repo| Ok(record::notes::append(&repo, commit, &records)?));
    match written {
        Ok(n) if n > 0 => println!(
            "Recorded in {} on {commit}; to share, merge the remote's records and push (docs/history.md):\n  git fetch origin refs/notes/pacer:refs/notes/pacer-origin\n  git notes --ref=pacer merge -s cat_sort_uniq pacer-origin\n  git push origin refs/notes/pacer",
            record::notes::REF
        ),
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: the deployment records were not written to {}: {e:#}",
            record::notes::REF
        ),
    }
}

pub fn history_cmd(a: HistoryArgs) -> anyhow::Result<u8> {
    let json = a.format == super::args::HistoryFormat::Json;
    let result = history(a);
    if let (true, Err(e)) = (json, &result) {
        // A reader of the JSON gets the error as JSON too: an object, as
        // every pacer error in JSON (file, line and column don't apply).
        println!(
            "{}",
            serde_json::json!({"errors": [{"message": format!("{e:#}")}]})
        );
    }
    result
}

fn history(a: HistoryArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let loc = RepoLocation::discover(&a.repo.repo)?;
        let snap = Arc::new(loc.working_tree()?);
        let mut diags = render::Diagnostics::default();
        let repo = render::Repo::load(snap, &mut diags).context("pacer.yaml does not load")?;
        let settings = repo
            .envs
            .get(&a.env)
            .with_context(|| format!("unknown environment `{}`", a.env))?
            .clone();
        let client = client_for(&a.marathon, settings.marathon.as_deref())?;
        let id = settings.app_id(&a.app);
        let entries = record::history(&client, &loc, &id, &a.env, &a.app, a.limit)
            .await
            .with_context(|| format!("reading {id}'s versions from {}", client.url()))?;
        if a.format == super::args::HistoryFormat::Json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
            return Ok(exit::OK);
        }
        println!("history of {id} (newest first)");
        for e in &entries {
            let short = &e.commit[..e.commit.len().min(12)];
            println!(
                "{:<12} {:<11} {:<25} {} {}{}",
                short,
                serde_json::to_value(e.outcome)?.as_str().unwrap_or(""),
                e.applied_at
                    .as_deref()
                    .or(e.committed_at.as_deref())
                    .unwrap_or("-"),
                e.author.as_deref().unwrap_or("-"),
                e.message
                    .as_deref()
                    .map(|m| format!("— {m}"))
                    .unwrap_or_default(),
                e.deployment
                    .as_deref()
                    .map(|d| format!(" [deployment {d}]"))
                    .unwrap_or_default()
            );
        }
        let has_records = loc
            .open_git()
            .is_ok_and(|r| r.find_reference(record::notes::REF).is_ok());
        if !has_records {
            eprintln!(
                "note: no deployment records here ({}), so no deployment ids; fetch them with `git fetch origin {0}:{0}`",
                record::notes::REF
            );
        }
        Ok(exit::OK)
    })
}
