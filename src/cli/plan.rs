//! `pacer plan`, and the planning that `apply`, `retry`, `status` and the
//! demo share: render the environments, observe Marathon, plan each.

use super::args::{Format, MarathonArgs, PlanArgs};
use super::exit;
use super::output::Problems;
use crate::marathon::client::{Auth, ClientConfig, MarathonClient};
use crate::model::Secret;
use crate::observe::gather::{self, Caches};
use crate::plan::{self, Action, Observed, Plan};
use crate::render::{self, DesiredEnv, Scope};
use crate::source::{RepoLocation, Snapshot};
use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn client_for(args: &MarathonArgs, env_url: Option<&str>) -> anyhow::Result<MarathonClient> {
    let url = match (&args.marathon, env_url) {
        (Some(url), _) => url.clone(),
        // Already checked and given its scheme when pacer.yaml loaded.
        (None, Some(url)) => url.to_string(),
        (None, None) => bail!(
            "no Marathon URL: pass --marathon (PACER_MARATHON_URL) or set `marathon:` for the environment in pacer.yaml"
        ),
    };
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

/// The config repo at the working tree or a revision, rendered for the
/// given environments (all when empty) and app.
pub struct Rendered {
    pub loc: RepoLocation,
    pub snap: Arc<Snapshot>,
    pub envs: BTreeMap<String, DesiredEnv>,
}

pub fn render_envs(
    repo: &Path,
    rev: Option<&str>,
    envs: &[String],
    app: Option<&str>,
) -> anyhow::Result<Rendered> {
    render_envs_with(repo, rev, envs, app, None)
}

/// [`render_envs`] with `--endpoints FILE` (`None`: placeholders).
pub fn render_envs_with(
    repo: &Path,
    rev: Option<&str>,
    envs: &[String],
    app: Option<&str>,
    endpoints: Option<&Path>,
) -> anyhow::Result<Rendered> {
    let endpoints = super::commands::endpoints(endpoints)?;
    let loc = RepoLocation::discover(repo)
        .with_context(|| format!("opening the config repo `{}`", repo.display()))?;
    let snap = Arc::new(match rev {
        Some(r) => loc.at_rev(r)?,
        None => loc.working_tree()?,
    });
    let scope = Scope {
        envs: (!envs.is_empty()).then(|| envs.iter().cloned().collect()),
        apps: app.map(|a| [a.to_string()].into()),
    };
    match render::render_with_endpoints(
        snap.clone(),
        &scope,
        &render::Budgets::default(),
        endpoints,
    ) {
        Ok(d) => Ok(Rendered {
            loc,
            snap,
            envs: d.envs,
        }),
        Err(diags) => Err(Problems::new(diags, "nothing was planned").into()),
    }
}

/// One environment, planned against its Marathon.
pub struct EnvPlan {
    pub desired: DesiredEnv,
    pub client: MarathonClient,
    pub observed: Observed,
    pub plan: Plan,
}

/// Reads the environment's Marathon and plans it (only `app`, if given).
pub async fn plan_env(
    loc: &RepoLocation,
    desired: DesiredEnv,
    app: Option<&str>,
    marathon: &MarathonArgs,
    overrides: plan::Overrides,
) -> anyhow::Result<EnvPlan> {
    plan_env_in(loc, desired, app, marathon, overrides, &mut None).await
}

/// Marathon's apps and deployments as read before the repo rendered,
/// shared by every environment planned against that Marathon (their
/// groups don't overlap: each takes its own apps out).
type Live = Result<gather::Snapshot, crate::marathon::client::Error>;

/// [`plan_env`] from the read in `live` when there is one, else from a
/// read of Marathon now.
async fn plan_env_in(
    loc: &RepoLocation,
    desired: DesiredEnv,
    app: Option<&str>,
    marathon: &MarathonArgs,
    overrides: plan::Overrides,
    live: &mut Option<Live>,
) -> anyhow::Result<EnvPlan> {
    let client = client_for(marathon, desired.settings.marathon.as_deref())?;
    let mut caches = Caches::default();
    let observed = match live.take() {
        None => gather::observe(&client, Some(loc), &desired, &mut caches).await,
        Some(Err(e)) => Err(e),
        Some(Ok(mut snap)) => {
            let none = BTreeMap::new();
            let r = gather::observe_in(&client, &mut snap, Some(loc), &desired, &none, &mut caches)
                .await;
            *live = Some(Ok(snap));
            r
        }
    };
    let mut observed = observed.with_context(|| {
        format!(
            "reading Marathon at {} for `{}`",
            client.url(),
            desired.settings.name
        )
    })?;
    if let Some(app) = app {
        // Planning one app: apps it doesn't name are none of this run's business.
        let id = desired.settings.app_id(app);
        observed.apps.retain(|k, _| *k == id);
    }
    // A repo where an app doesn't render is not planned at all (see
    // `render_envs`), so no app here is in Git without rendering.
    let plan = plan::plan_with(&desired, &observed, &BTreeSet::new(), overrides);
    Ok(EnvPlan {
        desired,
        client,
        observed,
        plan,
    })
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

pub fn render_plan(plan: &Plan, rev: &str, marathon: &str, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&plan_json(plan, rev, marathon))
                .expect("a plan is plain data");
            s.push('\n');
            s
        }
        Format::Text => {
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
        Format::Markdown => {
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

/// A plan as JSON, with the revision and the Marathon it was made against.
pub fn plan_json(plan: &Plan, rev: &str, marathon: &str) -> Value {
    let mut v = serde_json::to_value(plan).expect("a plan is plain data");
    if let Value::Object(m) = &mut v {
        m.insert("revision".into(), Value::from(rev));
        m.insert("marathon".into(), Value::from(crate::redact::url(marathon)));
    }
    v
}

/// Prints every environment's plan. JSON is an array of plans, one per
/// environment, whatever their number.
pub fn render_plans(plans: &[EnvPlan], rev: &str, format: Format) -> String {
    if format == Format::Json {
        let all: Vec<Value> = plans
            .iter()
            .map(|p| plan_json(&p.plan, rev, p.client.url()))
            .collect();
        let mut s = serde_json::to_string_pretty(&all).expect("plans are plain data");
        s.push('\n');
        return s;
    }
    let parts: Vec<String> = plans
        .iter()
        .map(|p| render_plan(&p.plan, rev, p.client.url(), format))
        .collect();
    parts.join("\n")
}

pub fn plan_cmd(a: PlanArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new()?;
    // With --marathon, every environment is planned against that one
    // Marathon, known before the repo is read: its apps are read on the
    // runtime's threads while this one renders. A repo that doesn't render
    // is reported as before (the read is dropped); a client that can't be
    // built is left to `plan_env_in`, to fail after the render as before.
    let prefetch = match &a.marathon.marathon {
        Some(_) => client_for(&a.marathon, None)
            .ok()
            .map(|client| rt.spawn(async move { gather::snapshot(&client).await })),
        None => None,
    };
    let rendered = render_envs_with(
        &a.repo.repo,
        a.rev.as_deref(),
        &a.envs,
        a.app.as_deref(),
        a.endpoints.as_deref(),
    )?;
    let plans = rt.block_on(async {
        let mut live = match prefetch {
            Some(read) => Some(read.await?),
            None => None,
        };
        let mut plans = Vec::new();
        for desired in rendered.envs.into_values() {
            plans.push(
                plan_env_in(
                    &rendered.loc,
                    desired,
                    a.app.as_deref(),
                    &a.marathon,
                    plan::Overrides::default(),
                    &mut live,
                )
                .await?,
            );
        }
        anyhow::Ok(plans)
    })?;
    out!(
        "{}",
        render_plans(&plans, &rendered.snap.revision.to_string(), a.format.format)
    )?;
    // One exit code for all: changes anywhere are changes.
    Ok(if plans.iter().any(|p| p.plan.has_changes()) {
        exit::CHANGES
    } else {
        exit::OK
    })
}
