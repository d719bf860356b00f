//! Prints a [`Report`] for a terminal, a pull-request comment or a machine.

use super::{AppChange, Class, Report, Status};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a terminal: a unified diff per app.
    Text,
    /// Markdown, ready to paste as a pull-request comment.
    Markdown,
    /// Stable, documented JSON (docs/diff-json.md).
    Json,
}

pub fn render(report: &Report, format: Format, color: bool) -> String {
    match format {
        Format::Text => text(report, color),
        Format::Markdown => markdown(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).expect("a report is plain data");
            s.push('\n');
            s
        }
    }
}

fn rev(r: &super::RevisionInfo) -> String {
    match &r.commit {
        Some(c) => format!(
            "{} ({}{})",
            r.name,
            &c[..c.len().min(12)],
            if r.dirty { "-dirty" } else { "" }
        ),
        None => r.name.clone(),
    }
}

fn verb(a: &AppChange) -> String {
    match a.status {
        Status::Added => "create".into(),
        Status::Removed => "delete".into(),
        Status::Changed => {
            let class = a.class.map_or("change", Class::as_str);
            if a.aspects.len() > 1 {
                let all: Vec<&str> = a.aspects.iter().map(|c| c.as_str()).collect();
                format!("{class} ({})", all.join(" + "))
            } else {
                class.to_string()
            }
        }
    }
}

fn sigil(s: Status) -> char {
    match s {
        Status::Added => '+',
        Status::Removed => '-',
        Status::Changed => '~',
    }
}

pub fn summary_line(report: &Report) -> String {
    let s = &report.summary;
    if !report.has_changes() {
        return "No changes: the head renders the same apps as the base.".into();
    }
    let mut kinds = Vec::new();
    for (n, k) in [
        (s.redeploy, "redeploy"),
        (s.restart, "restart"),
        (s.scale, "scale"),
        (s.hot, "hot"),
    ] {
        if n > 0 {
            kinds.push(format!("{n} {k}"));
        }
    }
    let detail = if kinds.is_empty() {
        String::new()
    } else {
        format!(" ({})", kinds.join(", "))
    };
    format!(
        "{} to create, {} to change{detail}, {} to delete.",
        s.added, s.changed, s.removed
    )
}

fn paint(line: &str, color: bool) -> String {
    if !color {
        return line.to_string();
    }
    let code = if line.starts_with("+++") || line.starts_with("---") {
        "1"
    } else if line.starts_with('+') {
        "32"
    } else if line.starts_with('-') {
        "31"
    } else if line.starts_with("@@") {
        "36"
    } else {
        return line.to_string();
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

fn indent_diff(out: &mut String, diff: &str, color: bool) {
    for line in diff.lines() {
        let _ = writeln!(out, "    {}", paint(line, color));
    }
}

fn text(report: &Report, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pacer diff {} → {}",
        rev(&report.base),
        rev(&report.head)
    );
    for env in &report.environments {
        let status = match env.status {
            Some(Status::Added) => " (new environment)",
            Some(Status::Removed) => " (environment removed)",
            _ => "",
        };
        let _ = writeln!(out, "\nenvironment {} ({}){status}", env.env, env.group);
        for s in &env.settings {
            let _ = writeln!(out, "  setting {s}");
        }
        for a in &env.apps {
            let _ = writeln!(
                out,
                "  {} {}  {}  {}",
                sigil(a.status),
                a.app,
                a.id,
                verb(a)
            );
            if a.secret_changed {
                let _ = writeln!(out, "    (secret changed)");
            }
            if let Some(d) = &a.spec_diff {
                indent_diff(&mut out, d, color);
            }
            for f in &a.files {
                let reload = match f.reload {
                    crate::render::Reload::Hot => "hot",
                    crate::render::Reload::Restart => "restart",
                };
                let _ = writeln!(
                    out,
                    "    {} file {} → {} ({reload})",
                    sigil(f.status),
                    f.name,
                    f.path
                );
                if f.secret_changed {
                    let _ = writeln!(out, "    (secret changed)");
                }
                if let Some(d) = &f.diff {
                    indent_diff(&mut out, d, color);
                }
            }
        }
    }
    let _ = writeln!(out, "\n{}", summary_line(report));
    out
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### pacer diff\n");
    let _ = writeln!(out, "`{}` → `{}`\n", rev(&report.base), rev(&report.head));
    let _ = writeln!(out, "**{}**\n", summary_line(report));
    if !report.has_changes() {
        return out;
    }
    let _ = writeln!(out, "| env | app | Marathon id | change |");
    let _ = writeln!(out, "|---|---|---|---|");
    for env in &report.environments {
        for a in &env.apps {
            let _ = writeln!(
                out,
                "| {} | `{}` | `{}` | {} {} |",
                env.env,
                a.app,
                a.id,
                sigil(a.status),
                verb(a)
            );
        }
        for s in &env.settings {
            let _ = writeln!(
                out,
                "| {} | | | setting {} |",
                env.env,
                s.replace('|', "\\|")
            );
        }
    }
    out.push('\n');
    for env in &report.environments {
        for a in &env.apps {
            let _ = writeln!(
                out,
                "<details><summary><code>{}</code> {}: {}</summary>\n",
                a.id,
                env.env,
                verb(a)
            );
            if a.secret_changed {
                let _ = writeln!(out, "_(secret changed)_\n");
            }
            if let Some(d) = &a.spec_diff {
                fence(&mut out, d);
            }
            for f in &a.files {
                let _ = writeln!(
                    out,
                    "`{}` → `{}`{}\n",
                    f.name,
                    f.path,
                    if f.secret_changed {
                        " _(secret changed)_"
                    } else {
                        ""
                    }
                );
                if let Some(d) = &f.diff {
                    fence(&mut out, d);
                }
            }
            let _ = writeln!(out, "</details>\n");
        }
    }
    out
}

/// A fenced diff block whose fence can't be closed early by the content.
fn fence(out: &mut String, body: &str) {
    let mut ticks = 3;
    while body.contains(&"`".repeat(ticks)) {
        ticks += 1;
    }
    let f = "`".repeat(ticks);
    let _ = writeln!(
        out,
        "{f}diff\n{}{f}\n",
        if body.ends_with('\n') {
            body.to_string()
        } else {
            format!("{body}\n")
        }
    );
}
