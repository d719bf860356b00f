//! What the dashboard's pages show, computed from one published snapshot.
//! Pure: no I/O, no clock; the handlers render these with the templates.
//!
//! What a caller sees follows `/api/v1/status`'s rule (see
//! `server::status_view`): without a session, states, counts, commits and
//! outcomes; with a read or admin session, also what quotes the config or
//! Marathon (problems, the diff, the definition, signers, messages).

use crate::model::SyncStatus;
use crate::status::published::Published;
use crate::status::{AppStatus, EnvStatus, Problem};
use serde::Serialize;
use std::collections::HashMap;

/// Rows per page unless asked otherwise, and the most a page holds.
pub const PER_PAGE: usize = 50;
pub const MAX_PER_PAGE: usize = 200;
/// The longest text filter read.
pub const MAX_QUERY: usize = 128;
/// The most lines of a diff shown; the rest is counted.
pub const MAX_DIFF_LINES: usize = 2_000;
/// The most bytes of a definition shown.
pub const MAX_DEFINITION: usize = 256 * 1024;
/// Tasks per page on an app's page.
pub const TASKS_PER_PAGE: usize = 100;
/// Apps the overview lists under "needs a human".
pub const ATTENTION_ROWS: usize = 10;

/// How far an app's status is from "nothing to do", most urgent first:
/// the default order of the list and of the overview's attention list.
pub fn rank(s: SyncStatus) -> u8 {
    match s {
        SyncStatus::Failed => 0,
        SyncStatus::Invalid => 1,
        SyncStatus::Drifted => 2,
        SyncStatus::Held => 3,
        SyncStatus::Unknown => 4,
        SyncStatus::Progressing => 5,
        SyncStatus::OutOfSync => 6,
        SyncStatus::Missing => 7,
        SyncStatus::Unmanaged => 8,
        SyncStatus::InSync => 9,
    }
}

/// Words for a status.
pub fn label(s: SyncStatus) -> &'static str {
    match s {
        SyncStatus::InSync => "in sync",
        SyncStatus::Missing => "missing",
        SyncStatus::OutOfSync => "out of sync",
        SyncStatus::Drifted => "drifted",
        SyncStatus::Unmanaged => "unmanaged",
        SyncStatus::Progressing => "deploying",
        SyncStatus::Held => "held",
        SyncStatus::Failed => "failed",
        SyncStatus::Invalid => "invalid",
        SyncStatus::Unknown => "unknown",
    }
}

/// Statuses a human must act on.
pub fn needs_human(s: SyncStatus) -> bool {
    matches!(
        s,
        SyncStatus::Failed | SyncStatus::Invalid | SyncStatus::Drifted | SyncStatus::Held
    )
}

fn short(c: &str) -> String {
    c.chars().take(12).collect()
}

/// A problem as a page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProblemView {
    /// `file:line:column`, when known.
    pub at: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl From<&Problem> for ProblemView {
    fn from(p: &Problem) -> Self {
        let at = p.file.as_ref().map(|f| match (p.line, p.column) {
            (Some(l), Some(c)) => format!("{f}:{l}:{c}"),
            (Some(l), None) => format!("{f}:{l}"),
            _ => f.clone(),
        });
        ProblemView {
            at,
            message: p.message.clone(),
            hint: p.hint.clone(),
        }
    }
}

/// One status and how many apps have it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Count {
    pub status: &'static str,
    pub label: &'static str,
    pub n: usize,
}

fn counts<'a>(apps: impl Iterator<Item = &'a AppStatus>) -> Vec<Count> {
    let mut by: HashMap<SyncStatus, usize> = HashMap::new();
    for a in apps {
        *by.entry(a.sync).or_default() += 1;
    }
    let mut out: Vec<(u8, Count)> = by
        .into_iter()
        .map(|(s, n)| {
            let c = Count {
                status: s.as_str(),
                label: label(s),
                n,
            };
            (rank(s), c)
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    out.into_iter().map(|(_, c)| c).collect()
}

/// One environment on the overview.
#[derive(Clone, Debug, Serialize)]
pub struct EnvCard {
    pub name: String,
    pub group: String,
    pub commit: Option<String>,
    pub short: Option<String>,
    /// Who signed the commit it deploys (`verify:`); a session only.
    pub signer: Option<String>,
    pub verify: bool,
    /// Why a newer commit was refused (`verify:`): its kind, and with a
    /// session the words.
    pub refused: Option<String>,
    pub auto_apply: bool,
    pub prune: bool,
    pub self_heal: bool,
    pub apps: usize,
    pub counts: Vec<Count>,
    /// Changes a plan would make that wait for a human (`autoApply: false`).
    pub awaiting: usize,
    /// What the plan does and its digest (what an apply names).
    pub plan: Option<crate::model::PlanSummary>,
    pub ask: Option<AskView>,
    pub error_count: usize,
    pub errors: Vec<ProblemView>,
    pub last_sync: Option<String>,
}

/// The overview page.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    pub head: Option<String>,
    pub last_good: Option<String>,
    pub repo_error_count: usize,
    pub repo_errors: Vec<ProblemView>,
    pub writes: &'static str,
    pub role: Option<&'static str>,
    pub apps: usize,
    pub counts: Vec<Count>,
    /// Environments with a plan waiting for a human, first.
    pub awaiting: Vec<EnvCard>,
    pub envs: Vec<EnvCard>,
    /// The most urgent apps, and how many need a human in all.
    pub attention: Vec<Row>,
    pub attention_total: usize,
}

/// The changes an apply would make in an environment that doesn't apply
/// on its own: its plan's acting steps.
fn awaiting(env: &EnvStatus, auto_apply: bool) -> usize {
    match (&env.plan, auto_apply) {
        (Some(p), false) => p.changes(),
        _ => 0,
    }
}

/// The last apply an operator asked for, as the overview shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AskView {
    pub state: &'static str,
    pub reason: Option<String>,
    pub at: String,
}

fn env_card(name: &str, env: &EnvStatus, snap: &Published, full: bool) -> EnvCard {
    let policy = snap
        .desired
        .get(name)
        .map(|d| d.settings.policy)
        .unwrap_or_default();
    let verify = env.verify.as_deref();
    EnvCard {
        name: name.to_string(),
        group: env.group.clone(),
        commit: env.commit.clone(),
        short: env.commit.as_deref().map(short),
        signer: verify
            .and_then(|v| v.verified.as_ref())
            .filter(|_| full)
            .map(|v| v.signer.principal.clone()),
        verify: verify.is_some(),
        refused: verify.and_then(|v| v.refused.as_ref()).map(|r| match full {
            true => format!("{} ({}): {}", short(&r.commit), r.reason, r.message),
            false => format!("{} ({})", short(&r.commit), r.reason),
        }),
        auto_apply: policy.auto_apply,
        prune: policy.prune,
        self_heal: policy.self_heal,
        apps: env.apps.len(),
        counts: counts(env.apps.values().map(|a| &**a)),
        awaiting: awaiting(env, policy.auto_apply),
        plan: env.plan.clone(),
        ask: env.apply.as_ref().map(|a| AskView {
            state: match a.state {
                crate::status::AskState::Queued => "queued",
                crate::status::AskState::Applied => "applied",
                crate::status::AskState::Dropped => "dropped",
            },
            reason: a.reason.clone().filter(|_| full),
            at: a.at.clone(),
        }),
        error_count: env.errors.len(),
        errors: match full {
            true => env.errors.iter().map(ProblemView::from).collect(),
            false => Vec::new(),
        },
        last_sync: env.last_sync.clone(),
    }
}

/// The overview: every environment, what needs a human first.
pub fn overview(snap: &Published, full: bool) -> Overview {
    let status = &snap.status;
    let envs: Vec<EnvCard> = status
        .environments
        .iter()
        .map(|(name, env)| env_card(name, env, snap, full))
        .collect();
    let all = || {
        status
            .environments
            .iter()
            .flat_map(|(e, s)| s.apps.iter().map(move |(a, st)| (e, a, st)))
    };
    let mut urgent: Vec<_> = all().filter(|(_, _, a)| needs_human(a.sync)).collect();
    let attention_total = urgent.len();
    urgent.sort_by_key(|(e, a, s)| (rank(s.sync), *e, *a));
    Overview {
        head: status.repo.head.clone(),
        last_good: status.repo.last_good.clone(),
        repo_error_count: status.repo.errors.len(),
        repo_errors: match full {
            true => status.repo.errors.iter().map(ProblemView::from).collect(),
            false => Vec::new(),
        },
        writes: match status.writes {
            crate::status::Writes::Active => "active",
            crate::status::Writes::Paused => "paused",
        },
        role: status.ha.as_ref().map(|h| match h.role {
            crate::status::Role::Leader => "leader",
            crate::status::Role::Follower => "follower",
            crate::status::Role::None => "none",
        }),
        apps: envs.iter().map(|e| e.apps).sum(),
        counts: counts(all().map(|(_, _, a)| &**a)),
        awaiting: envs.iter().filter(|e| e.awaiting > 0).cloned().collect(),
        envs,
        attention: urgent
            .into_iter()
            .take(ATTENTION_ROWS)
            .map(|(e, a, s)| row(e, a, s))
            .collect(),
        attention_total,
    }
}

/// One app in a list.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub env: String,
    pub app: String,
    pub id: String,
    pub status: &'static str,
    pub label: &'static str,
    pub live_commit: Option<String>,
    pub outcome: Option<&'static str>,
    pub at: Option<String>,
    pub error_count: usize,
}

fn row(env: &str, app: &str, s: &AppStatus) -> Row {
    Row {
        env: env.to_string(),
        app: app.to_string(),
        id: s.id.clone(),
        status: s.sync.as_str(),
        label: label(s.sync),
        live_commit: s.live_commit.as_deref().map(short),
        outcome: s.last.as_ref().map(|l| l.outcome.as_str()),
        at: s.last.as_ref().map(|l| l.at.clone()),
        error_count: s.errors.len(),
    }
}

/// The list's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Most urgent first, then by environment and name.
    Attention,
    /// By environment and name.
    Name,
    /// The newest action first.
    Recent,
}

/// What the app list is asked for.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub env: Option<String>,
    /// A status's JSON spelling; `human`: every status that needs one;
    /// `pending`: what an apply would change (out of sync or missing).
    pub status: Option<String>,
    /// Matched against the app's path and Marathon id, ignoring case.
    pub q: Option<String>,
    pub sort: Sort,
    pub page: usize,
    pub per: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            env: None,
            status: None,
            q: None,
            sort: Sort::Attention,
            page: 1,
            per: PER_PAGE,
        }
    }
}

/// Reads the list's parameters; an error names the bad one. Empty
/// values mean "any".
pub fn parse_query(params: &HashMap<String, String>) -> Result<Query, String> {
    let mut q = Query::default();
    for (k, v) in params {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "env" => q.env = Some(bounded("env", v)?),
            "status" => {
                if !["human", "pending"].contains(&v)
                    && !SyncStatus::ALL.iter().any(|s| s.as_str() == v)
                {
                    return Err(format!(
                        "status `{}` is not one of human, pending, {}",
                        bounded("status", v)?,
                        SyncStatus::ALL.map(|s| s.as_str()).join(", ")
                    ));
                }
                q.status = Some(v.to_string());
            }
            "q" => q.q = Some(bounded("q", v)?.to_lowercase()),
            "sort" => {
                q.sort = match v {
                    "attention" => Sort::Attention,
                    "name" => Sort::Name,
                    "recent" => Sort::Recent,
                    _ => return Err("sort is one of attention, name, recent".into()),
                }
            }
            "page" => q.page = number("page", v, 1, 1_000_000)?,
            "per" => q.per = number("per", v, 1, MAX_PER_PAGE)?,
            // Other parameters (the app page's, a cache buster) are not
            // the list's business.
            _ => {}
        }
    }
    Ok(q)
}

fn bounded(name: &str, v: &str) -> Result<String, String> {
    if v.chars().count() > MAX_QUERY || v.chars().any(char::is_control) {
        return Err(format!(
            "{name} is longer than {MAX_QUERY} characters or holds control characters"
        ));
    }
    Ok(v.to_string())
}

fn number(name: &str, v: &str, min: usize, max: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{name} is a whole number from {min} to {max}")),
    }
}

/// A page of the app list.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub rows: Vec<Row>,
    /// Apps that pass the filter.
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub per: usize,
    pub query: Query,
    /// The environments, for the filter.
    pub envs: Vec<String>,
    /// Counts by status of the apps that pass the environment and text
    /// filters (not the status filter): the status filter's choices.
    pub counts: Vec<Count>,
}

/// One page of the apps that pass `q`. Only the page's rows are built;
/// the rest is filtered and sorted by reference.
pub fn list(snap: &Published, q: &Query) -> Page {
    let status = &snap.status;
    let matches_text = |env: &str, app: &str, s: &AppStatus| {
        q.q.as_deref().is_none_or(|t| {
            contains_lower(app, t) || contains_lower(&s.id, t) || contains_lower(env, t)
        })
    };
    let base: Vec<(&String, &String, &AppStatus)> = status
        .environments
        .iter()
        .filter(|(e, _)| q.env.as_deref().is_none_or(|w| w == e.as_str()))
        .flat_map(|(e, s)| s.apps.iter().map(move |(a, st)| (e, a, &**st)))
        .filter(|(e, a, s)| matches_text(e, a, s))
        .collect();
    let counts = counts(base.iter().map(|(_, _, s)| *s));
    let mut hits: Vec<_> = base
        .into_iter()
        .filter(|(_, _, s)| match q.status.as_deref() {
            None => true,
            Some("human") => needs_human(s.sync),
            Some("pending") => matches!(s.sync, SyncStatus::OutOfSync | SyncStatus::Missing),
            Some(want) => s.sync.as_str() == want,
        })
        .collect();
    match q.sort {
        // Already by environment and name (the maps are ordered).
        Sort::Name => {}
        Sort::Attention => hits.sort_by_key(|(_, _, s)| rank(s.sync)),
        Sort::Recent => hits.sort_by(|x, y| last_at(y.2).cmp(&last_at(x.2))),
    }
    let total = hits.len();
    let pages = total.div_ceil(q.per).max(1);
    let page = q.page.min(pages);
    let rows = hits
        .into_iter()
        .skip((page - 1) * q.per)
        .take(q.per)
        .map(|(e, a, s)| row(e, a, s))
        .collect();
    Page {
        rows,
        total,
        page,
        pages,
        per: q.per,
        query: Query { page, ..q.clone() },
        envs: status.environments.keys().cloned().collect(),
        counts,
    }
}

fn last_at(s: &AppStatus) -> Option<&str> {
    s.last.as_ref().map(|l| l.at.as_str())
}

/// Whether `hay` holds `needle` (already lower case), ignoring ASCII case
/// without allocating.
fn contains_lower(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if !hay.is_ascii() || !needle.is_ascii() {
        return hay.to_lowercase().contains(needle);
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
