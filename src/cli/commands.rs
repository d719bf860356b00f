//! validate, render and diff: read the repo, run a pipeline stage, print.

use super::args::{Color, DiffArgs, RenderArgs, RepoArgs, ValidateArgs};
use super::exit;
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

fn env_set(envs: &[String]) -> Option<BTreeSet<String>> {
    (!envs.is_empty()).then(|| envs.iter().cloned().collect())
}

pub fn validate(a: ValidateArgs) -> anyhow::Result<u8> {
    let loc = locate(&a.repo)?;
    let snap = snapshot(&loc, a.rev.as_deref())?;
    let scope = Scope {
        envs: env_set(&a.envs),
        apps: None,
    };
    let result = render::render(snap.clone(), &scope);
    if a.json {
        let diags = result.as_ref().err().cloned().unwrap_or_default();
        println!("{}", serde_json::to_string_pretty(&diags)?);
        return Ok(if diags.is_empty() {
            exit::OK
        } else {
            exit::ERROR
        });
    }
    match result {
        Ok(desired) => {
            let apps: usize = desired.envs.values().map(|e| e.apps.len()).sum();
            let files: usize = desired
                .envs
                .values()
                .flat_map(|e| e.apps.values())
                .map(|a| a.files.len())
                .sum();
            println!(
                "ok: {} environment{}, {apps} apps, {files} config files at {}",
                desired.envs.len(),
                if desired.envs.len() == 1 { "" } else { "s" },
                snap.revision
            );
            Ok(exit::OK)
        }
        Err(diags) => {
            print_diagnostics(&diags);
            Ok(exit::ERROR)
        }
    }
}

pub fn render(a: RenderArgs) -> anyhow::Result<u8> {
    let loc = locate(&a.repo)?;
    let snap = snapshot(&loc, a.rev.as_deref())?;
    let scope = Scope {
        envs: Some([a.env.clone()].into()),
        apps: a.app.clone().map(|x| [x].into()),
    };
    let desired = match render::render(snap.clone(), &scope) {
        Ok(d) => d,
        Err(diags) => {
            print_diagnostics(&diags);
            return Ok(exit::ERROR);
        }
    };
    let env = &desired.envs[&a.env];
    let mut apps = serde_json::Map::new();
    for (path, app) in &env.apps {
        // People see the placeholder rendering: secrets never reach it,
        // whatever the templates did with them.
        let marathon: Value = if a.show_secrets {
            app.marathon.clone()
        } else {
            app.shown_marathon().clone()
        };
        let mut files = serde_json::Map::new();
        for (name, f) in &app.files {
            let bytes = if a.show_secrets {
                f.content.as_slice()
            } else {
                app.shown_file(name).unwrap_or_default()
            };
            let content = match std::str::from_utf8(bytes) {
                Ok(s) => json!({"content": s}),
                Err(_) => {
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
    println!("{}", diff::canonical_json(&out).trim_end());
    Ok(exit::OK)
}

pub fn diff(a: DiffArgs) -> anyhow::Result<u8> {
    let loc = locate(&a.repo)?;
    let base = snapshot(&loc, Some(&a.base)).context("reading the base revision")?;
    let head = snapshot(&loc, a.head.as_deref()).context("reading the head revision")?;
    let report = match diff::between(base, head, env_set(&a.envs)) {
        Ok(r) => r,
        Err(diff::Error::Render { side, diagnostics }) => {
            eprintln!("error: the {side} revision does not render");
            print_diagnostics(&diagnostics);
            return Ok(exit::ERROR);
        }
        Err(e) => return Err(e.into()),
    };
    let color = match a.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    print!("{}", format::render(&report, a.format, color));
    Ok(if report.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    })
}
