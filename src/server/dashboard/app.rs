//! One app's page: its status, the diff between Marathon and Git, its
//! deployment, its config bundle and the tasks that hold it. Pure, from
//! one published snapshot (and the config server's task reports).

use super::view::{
    MAX_DEFINITION, MAX_DIFF_LINES, ProblemView, TASKS_PER_PAGE, label, needs_human,
};
use crate::delivery::TaskHolds;
use crate::model::SyncStatus;
use crate::status::Rollout;
use crate::status::published::Published;
use serde::Serialize;

/// A line of the diff, with its kind for colour (`add`, `del`, `hunk`,
/// `ctx`).
#[derive(Clone, Debug, Serialize)]
pub struct DiffLine {
    pub kind: &'static str,
    pub text: String,
}

/// A file of the config bundle.
#[derive(Clone, Debug, Serialize)]
pub struct FileView {
    pub name: String,
    pub path: String,
    pub reload: &'static str,
    /// Handed to the app as environment variables, not written.
    pub env: bool,
    pub check: Option<String>,
    pub on_reload: Option<String>,
    /// Its digest, unless it reads a secret (a digest of a short secret
    /// in a known template can be guessed back).
    pub digest: Option<String>,
    pub bytes: usize,
}

/// The last action, as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LastView {
    pub outcome: &'static str,
    pub commit: String,
    pub at: String,
    pub deployment: Option<String>,
    pub message: Option<String>,
}

/// A task and the bundle it holds.
#[derive(Clone, Debug, Serialize)]
pub struct TaskView {
    pub task: String,
    pub index: u64,
    pub current: bool,
    pub failed_files: usize,
}

/// The app page.
#[derive(Clone, Debug, Serialize)]
pub struct AppView {
    pub env: String,
    pub app: String,
    pub id: String,
    pub status: &'static str,
    pub label: &'static str,
    pub needs_human: bool,
    /// The environment's commit (what Git wants) and the live app's.
    pub commit: Option<String>,
    pub live_commit: Option<String>,
    pub last: Option<LastView>,
    pub error_count: usize,
    pub errors: Vec<ProblemView>,
    pub rollout: Option<Rollout>,
    /// Live → desired; `None` without a session or when in sync.
    pub diff: Option<Vec<DiffLine>>,
    /// Diff lines past [`MAX_DIFF_LINES`].
    pub diff_more: usize,
    /// Git's definition as JSON (secrets as placeholders); a session only.
    pub definition: Option<String>,
    pub files: Vec<FileView>,
    /// The config server's view of its delivery (JSON, as the status).
    pub delivery: Option<serde_json::Value>,
    pub tasks: Vec<TaskView>,
    pub tasks_total: usize,
    pub tasks_page: usize,
    pub tasks_pages: usize,
    /// Whether a session may see what quotes the config.
    pub full: bool,
    pub failed: bool,
}

/// The page of `app` in `env`, or `None` when the snapshot has no such
/// app. `tasks`: the config server's reports (empty without one);
/// `tasks_page` counts from 1.
pub fn app_view(
    snap: &Published,
    env: &str,
    app: &str,
    full: bool,
    delivery: Option<serde_json::Value>,
    mut tasks: Vec<TaskHolds>,
    tasks_page: usize,
) -> Option<AppView> {
    let env_status = snap.status.environments.get(env)?;
    let s = env_status.apps.get(app)?;
    let desired = snap.desired.get(env).and_then(|d| d.apps.get(app));
    let (diff, diff_more) = match (&s.diff, full) {
        (Some(d), true) => {
            let (lines, more) = diff_lines(d);
            (Some(lines), more)
        }
        _ => (None, 0),
    };
    let definition = desired.filter(|_| full).map(|d| {
        let mut text =
            serde_json::to_string_pretty(d.shown_marathon()).unwrap_or_else(|e| e.to_string());
        if text.len() > MAX_DEFINITION {
            let mut cut = MAX_DEFINITION;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n… (cut: the definition is larger than the page shows)");
        }
        text
    });
    // Names, paths and commands of the bundle quote the config; task ids
    // are Marathon's: a session only (the public status has neither).
    let files = desired
        .filter(|_| full)
        .map(|d| {
            d.files
                .iter()
                .map(|(name, f)| FileView {
                    name: name.clone(),
                    path: f.path.clone(),
                    reload: match f.reload {
                        crate::render::Reload::Hot => "hot",
                        crate::render::Reload::Restart => "restart",
                    },
                    env: f.actions.env,
                    check: f.actions.check.as_ref().map(|c| c.join(" ")),
                    on_reload: f
                        .actions
                        .on_reload
                        .as_ref()
                        .and_then(|o| serde_json::to_string(o).ok()),
                    digest: d
                        .secret_digest(name)
                        .is_none()
                        .then(|| f.digest.to_string()),
                    bytes: f.content.len(),
                })
                .collect()
        })
        .unwrap_or_default();
    let current = delivery
        .as_ref()
        .and_then(|d| d.get("index"))
        .and_then(|i| i.as_u64());
    if !full {
        tasks.clear();
    }
    // Behind the newest first: those are the ones to look at.
    tasks.sort_by(|a, b| (a.index, &a.task).cmp(&(b.index, &b.task)));
    let tasks_total = tasks.len();
    let tasks_pages = tasks_total.div_ceil(TASKS_PER_PAGE).max(1);
    let tasks_page = tasks_page.clamp(1, tasks_pages);
    let tasks = tasks
        .into_iter()
        .skip((tasks_page - 1) * TASKS_PER_PAGE)
        .take(TASKS_PER_PAGE)
        .map(|t| TaskView {
            current: Some(t.index) == current,
            task: t.task,
            index: t.index,
            failed_files: t.failed_files,
        })
        .collect();
    Some(AppView {
        env: env.to_string(),
        app: app.to_string(),
        id: s.id.clone(),
        status: s.sync.as_str(),
        label: label(s.sync),
        needs_human: needs_human(s.sync),
        commit: env_status.commit.clone(),
        live_commit: s.live_commit.clone(),
        last: s.last.as_ref().map(|l| LastView {
            outcome: l.outcome.as_str(),
            commit: l.commit.clone(),
            at: l.at.clone(),
            deployment: l.deployment_id.clone(),
            message: l.message.clone().filter(|_| full),
        }),
        error_count: s.errors.len(),
        errors: match full {
            true => s.errors.iter().map(ProblemView::from).collect(),
            false => Vec::new(),
        },
        rollout: s.rollout.clone(),
        diff,
        diff_more,
        definition,
        files,
        delivery: delivery.map(|d| match full {
            true => d,
            false => crate::server::status_view::public_delivery(&d),
        }),
        tasks,
        tasks_total,
        tasks_page,
        tasks_pages,
        full,
        failed: s.sync == SyncStatus::Failed,
    })
}

/// The diff's lines with their kinds, at most [`MAX_DIFF_LINES`], and how
/// many more there are.
fn diff_lines(diff: &str) -> (Vec<DiffLine>, usize) {
    let mut out = Vec::new();
    let mut more = 0;
    for line in diff.lines() {
        if out.len() >= MAX_DIFF_LINES {
            more += 1;
            continue;
        }
        let kind = if line.starts_with("+++") || line.starts_with("---") {
            "file"
        } else if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else if line.starts_with("@@") {
            "hunk"
        } else {
            "ctx"
        };
        out.push(DiffLine {
            kind,
            text: line.to_string(),
        });
    }
    (out, more)
}
