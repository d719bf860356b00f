//! validate, render and diff: read the repo, run a pipeline stage, print.
//! No Marathon involved.

use super::args::{Color, DiffArgs, Format, RenderArgs, RepoArgs, ValidateArgs};
use super::exit;
use super::output::Problems;
use crate::diff::{self, format};
use crate::render::{self, Diagnostic, Scope};
use crate::source::{RepoLocation, Snapshot};
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

fn locate(repo: &RepoArgs) -> anyhow::Result<RepoLocation> {
    RepoLocation::discover(&repo.repo)
        .with_context(|| format!("opening the config repo `{}`", repo.repo.display()))
}

fn snapshot(loc: &RepoLocation, rev: Option<&str>) -> anyhow::Result<Arc<Snapshot>> {
    let snap = match rev {
        Some(r) => loc.at_rev(r)?,
        None => loc.working_tree()?,
    };
    Ok(Arc::new(snap))
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
    let n = diags.len();
    let _ = writeln!(
        err,
        "error: {n} problem{} found",
        if n == 1 { "" } else { "s" }
    );
}

/// `--endpoints FILE`, read; `None`: placeholders.
pub(super) fn endpoints(
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Arc<crate::model::endpoints::Endpoints>>> {
    file.map(|f| {
        render::read_endpoints(f)
            .map(Arc::new)
            .map_err(anyhow::Error::msg)
    })
    .transpose()
}

fn render_scope(
    snap: &Arc<Snapshot>,
    scope: &Scope,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Result<render::Desired, Vec<Diagnostic>>> {
    let e = endpoints(file)?;
    Ok(render::render_with_endpoints(
        snap.clone(),
        scope,
        &render::Budgets::default(),
        e,
    ))
}

/// Says on stderr which apps read secrets no identity held opens: their
/// values are placeholders, and their MACs went unchecked.
fn note_unreadable<'a>(apps: impl Iterator<Item = &'a render::RenderedApp>) {
    let locked: Vec<String> = apps
        .filter(|a| !a.unreadable_secrets.is_empty())
        .map(|a| format!("{}/{}", a.env, a.app))
        .collect();
    if !locked.is_empty() {
        eprintln!(
            "note: {} app{} read sealed secrets that no age identity held opens ({}): shown as placeholders, not checked; set {}",
            locked.len(),
            if locked.len() == 1 { "" } else { "s" },
            locked.join(", "),
            crate::sops::keys::WHERE
        );
    }
}

fn env_set(envs: &[String]) -> Option<BTreeSet<String>> {
    (!envs.is_empty()).then(|| envs.iter().cloned().collect())
}

pub fn validate(a: ValidateArgs) -> anyhow::Result<u8> {
    let format = if a.json { Format::Json } else { a.format };
    let loc = locate(&a.repo)?;
    let snap = snapshot(&loc, a.rev.as_deref())?;
    let scope = Scope {
        envs: env_set(&a.envs),
        apps: None,
    };
    let result = render_scope(&snap, &scope, a.endpoints.as_deref())?;
    if let Ok(d) = &result {
        note_unreadable(
            d.envs
                .values()
                .flat_map(|e| e.apps.values().map(|a| a.as_ref())),
        );
    }
    let code = if result.is_ok() {
        exit::OK
    } else {
        exit::ERROR
    };
    match (format, &result) {
        (Format::Json, result) => {
            let none = Vec::new();
            let diags = result.as_ref().err().unwrap_or(&none);
            outln!("{}", serde_json::to_string_pretty(diags)?)?;
        }
        (Format::Markdown, Ok(desired)) => {
            outln!("### pacer validate\n\n**ok**: {}", counts(desired, &snap))?;
        }
        (Format::Markdown, Err(diags)) => {
            let mut out = format!(
                "### pacer validate\n\n**{} problem{} found** at {}\n\n| where | problem | hint |\n|---|---|---|\n",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" },
                snap.revision
            );
            let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
            for d in diags {
                let mut at = d.file.clone();
                for n in [d.line, d.column].into_iter().flatten() {
                    at.push_str(&format!(":{n}"));
                }
                out.push_str(&format!(
                    "| `{at}` | {} | {} |\n",
                    cell(&d.message),
                    cell(d.hint.as_deref().unwrap_or(""))
                ));
            }
            out!("{out}")?;
        }
        (Format::Text, Ok(desired)) => outln!("ok: {}", counts(desired, &snap))?,
        (Format::Text, Err(diags)) => print_diagnostics(diags),
    }
    // The command ends here and the process with it: freeing every
    // rendered app one by one (a tenth of a large repo's validate) would
    // only do what the end of the process does at once.
    std::mem::forget(result);
    Ok(code)
}

fn counts(desired: &render::Desired, snap: &Snapshot) -> String {
    let apps: usize = desired.envs.values().map(|e| e.apps.len()).sum();
    let files: usize = desired
        .envs
        .values()
        .flat_map(|e| e.apps.values())
        .map(|a| a.files.len())
        .sum();
    format!(
        "{} environment{}, {apps} apps, {files} config files at {}",
        desired.envs.len(),
        if desired.envs.len() == 1 { "" } else { "s" },
        snap.revision
    )
}

/// What people see of an app's definition: the placeholder rendering, in
/// which secrets never appear whatever the templates did with them, unless
/// asked for the real values.
fn shown_def(app: &render::RenderedApp, show: bool) -> &Value {
    if show {
        &app.marathon
    } else {
        app.shown_marathon()
    }
}

/// A rendered file as people see it (placeholders for secrets unless asked
/// for), as text; a file that is not UTF-8 is returned as bytes.
fn reveal(app: &render::RenderedApp, name: &str, show: bool) -> Result<String, Vec<u8>> {
    let bytes = if show {
        app.files.get(name).map(|f| f.content.as_slice())
    } else {
        app.shown_file(name)
    }
    .unwrap_or_default();
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err(bytes.to_vec()),
    }
}

pub fn render(a: RenderArgs) -> anyhow::Result<u8> {
    let loc = locate(&a.repo)?;
    let snap = snapshot(&loc, a.rev.as_deref())?;
    let scope = Scope {
        envs: Some([a.env.clone()].into()),
        apps: a.app.clone().map(|x| [x].into()),
    };
    let desired = render_scope(&snap, &scope, a.endpoints.as_deref())?
        .map_err(|diags| Problems::new(diags, "nothing was rendered"))?;
    let env = &desired.envs[&a.env];
    note_unreadable(env.apps.values().map(|a| a.as_ref()));
    if a.show_secrets
        && let Some(why) = env.apps.values().find_map(|a| a.unreadable())
    {
        anyhow::bail!("--show-secrets: {why}");
    }
    if let (Some(name), Some(app)) = (&a.file, &a.app) {
        let app = env
            .apps
            .get(app)
            .with_context(|| format!("`{app}` is not deployed to {}", a.env))?;
        let (file_name, _) = app
            .files
            .get_key_value(name)
            .or_else(|| app.files.iter().find(|(_, f)| f.path == *name))
            .with_context(|| {
                let names: Vec<&str> = app.files.keys().map(String::as_str).collect();
                format!(
                    "`{}` has no file `{name}` in {}; its files: {}",
                    app.app,
                    a.env,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            })?;
        match reveal(app, file_name, a.show_secrets) {
            Ok(text) => out!("{text}")?,
            Err(bytes) => super::output::out_bytes(&bytes)?,
        }
        return Ok(exit::OK);
    }
    if a.format != Format::Json {
        out!("{}", readable(env, a.format, a.show_secrets)?)?;
        return Ok(exit::OK);
    }
    let mut apps = serde_json::Map::new();
    for (path, app) in &env.apps {
        let marathon = shown_def(app, a.show_secrets);
        let mut files = serde_json::Map::new();
        for (name, f) in &app.files {
            let content = match reveal(app, name, a.show_secrets) {
                Ok(s) => json!({"content": s}),
                Err(bytes) => {
                    use base64::Engine;
                    json!({"contentBase64": base64::engine::general_purpose::STANDARD.encode(bytes)})
                }
            };
            let mut entry = json!({"path": f.path, "reload": f.reload, "digest": f.digest});
            if let (Value::Object(e), Value::Object(c)) = (&mut entry, content) {
                e.extend(c);
            }
            files.insert(name.clone(), entry);
        }
        apps.insert(
            path.clone(),
            json!({"id": app.id, "marathon": marathon, "files": files, "ignore": app.ignore}),
        );
    }
    let out = json!({
        "revision": diff::RevisionInfo::from(&desired.revision),
        "environment": env.settings,
        "apps": apps,
    });
    outln!("{}", diff::canonical_json(&out).trim_end())?;
    Ok(exit::OK)
}

fn reload(r: render::Reload) -> &'static str {
    match r {
        render::Reload::Hot => "hot",
        render::Reload::Restart => "restart",
    }
}

/// Each app's definition and files, for reading (text or markdown).
fn readable(env: &render::DesiredEnv, format: Format, show: bool) -> anyhow::Result<String> {
    let md = format == Format::Markdown;
    let mut out = String::new();
    for app in env.apps.values() {
        let def = serde_json::to_string_pretty(shown_def(app, show))?;
        if md {
            out.push_str(&format!(
                "### `{}` ({})\n\n```json\n{def}\n```\n",
                app.id, app.app
            ));
        } else {
            out.push_str(&format!("== {} ({})\n{def}\n", app.id, app.app));
        }
        for (name, f) in &app.files {
            let text = match reveal(app, name, show) {
                Ok(t) => t,
                Err(bytes) => format!("({} bytes, not text)\n", bytes.len()),
            };
            let nl = if text.ends_with('\n') { "" } else { "\n" };
            if md {
                out.push_str(&format!(
                    "\n#### `{name}` → `{}` ({})\n\n```\n{text}{nl}```\n",
                    f.path,
                    reload(f.reload)
                ));
            } else {
                out.push_str(&format!(
                    "-- {name} → {} ({})\n{text}{nl}",
                    f.path,
                    reload(f.reload)
                ));
            }
        }
        out.push('\n');
    }
    Ok(out)
}

pub fn diff(a: DiffArgs) -> anyhow::Result<u8> {
    let loc = locate(&a.repo)?;
    let base = snapshot(&loc, Some(&a.base)).context("reading the base revision")?;
    let head = snapshot(&loc, a.head.as_deref()).context("reading the head revision")?;
    let e = endpoints(a.endpoints.as_deref())?;
    let report = match diff::between_with(base, head, env_set(&a.envs), e) {
        Ok(r) => r,
        Err(diff::Error::Render { side, diagnostics }) => {
            let what = format!("the {side} revision does not render");
            return Err(Problems::new(diagnostics, &what).into());
        }
        Err(e) => return Err(e.into()),
    };
    let color = match a.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    out!("{}", format::render(&report, a.format.format.into(), color))?;
    Ok(if report.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    })
}
