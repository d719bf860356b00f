//! `pacer history`: every change that reached an app, newest first.

use super::args::{Format, HistoryArgs};
use super::exit;
use super::output::Problems;
use super::plan::client_for;
use crate::record;
use crate::render;
use crate::source::RepoLocation;
use anyhow::Context;
use std::sync::Arc;

pub fn history_cmd(a: HistoryArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let loc = RepoLocation::discover(&a.repo.repo)?;
        let snap = Arc::new(loc.working_tree()?);
        let mut diags = render::Diagnostics::default();
        let repo = render::Repo::load(snap, &mut diags)
            .ok_or_else(|| Problems::new(diags.0.clone(), "pacer.yaml does not load"))?;
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
        match a.format {
            Format::Json => {
                outln!("{}", serde_json::to_string_pretty(&entries)?)?;
                return Ok(exit::OK);
            }
            Format::Markdown => {
                out!("{}", markdown(&id, &entries)?)?;
                return Ok(exit::OK);
            }
            Format::Text => {}
        }
        outln!("history of {id} (newest first)")?;
        for e in &entries {
            let short = &e.commit[..e.commit.len().min(12)];
            outln!(
                "{:<12} {:<14} {:<25} {} {}{}{}",
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
                    .unwrap_or_default(),
                e.signer
                    .as_ref()
                    .map(|s| format!(" [signed by {} {}]", s.principal, s.fingerprint))
                    .unwrap_or_default()
            )?;
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

fn markdown(id: &str, entries: &[record::Entry]) -> anyhow::Result<String> {
    let mut out = format!(
        "### history of `{id}`\n\n| commit | outcome | applied | author | message | deployment | signed by |\n|---|---|---|---|---|---|---|\n"
    );
    let cell = |s: Option<&str>| s.unwrap_or("").replace('|', "\\|").replace('\n', " ");
    for e in entries {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            &e.commit[..e.commit.len().min(12)],
            serde_json::to_value(e.outcome)?.as_str().unwrap_or(""),
            cell(e.applied_at.as_deref().or(e.committed_at.as_deref())),
            cell(e.author.as_deref()),
            cell(e.message.as_deref()),
            cell(e.deployment.as_deref()),
            cell(
                e.signer
                    .as_ref()
                    .map(|s| format!("{} `{}`", s.principal, s.fingerprint))
                    .as_deref()
            ),
        ));
    }
    Ok(out)
}
