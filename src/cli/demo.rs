//! `pacer demo`: the bundled example repo, end to end, on embedded defaults.
//!
//! Copies `examples/` into a scratch Git repo, validates it, then makes one
//! change of each class (hot, scale, restart, redeploy) and shows the diff a
//! pull request would get.

use super::exit;
use crate::diff::{self, format};
use crate::render::{self, Scope};
use crate::source::RepoLocation;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The example repo: next to the binary's sources when run with cargo, or
/// given with `--repo`.
pub fn examples_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let candidates = [
        PathBuf::from("examples"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("pacer.yaml").is_file())
        .context(
            "the example repo was not found: run from the pacer source tree, or pass --repo DIR",
        )
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "pacer demo")
        .env("GIT_AUTHOR_EMAIL", "demo@pacer.invalid")
        .env("GIT_COMMITTER_NAME", "pacer demo")
        .env("GIT_COMMITTER_EMAIL", "demo@pacer.invalid")
        .output()
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn edit(root: &Path, rel: &str, from: &str, to: &str) -> anyhow::Result<()> {
    let path = root.join(rel);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {rel}"))?;
    if !text.contains(from) {
        bail!("{rel} no longer contains `{from}`: the demo's sample change needs updating");
    }
    std::fs::write(&path, text.replacen(from, to, 1))?;
    Ok(())
}

pub fn run(repo: Option<&Path>) -> anyhow::Result<u8> {
    let source = examples_dir(repo)?;
    let scratch = tempfile::Builder::new().prefix("pacer-demo-").tempdir()?;
    let root = scratch.path();
    copy_tree(&source, root)?;
    git(root, &["init", "-q", "-b", "main"])?;
    git(root, &["add", "-A"])?;
    git(root, &["commit", "-q", "-m", "the example config repo"])?;
    println!(
        "pacer demo: the example repo from {}, as a Git repo in {}\n",
        source.display(),
        root.display()
    );

    let loc = RepoLocation::discover(root)?;
    let head = Arc::new(loc.at_rev("HEAD")?);
    match render::render(head.clone(), &Scope::default()) {
        Ok(d) => {
            println!("$ pacer validate");
            for (env, e) in &d.envs {
                let ids: Vec<&str> = e.apps.values().map(|a| a.id.as_str()).collect();
                println!("  {env:<8} {} apps: {}", ids.len(), ids.join(", "));
            }
        }
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            return Ok(exit::ERROR);
        }
    }

    // One change of each class, as a pull request would bring them.
    edit(
        root,
        "apps/web/env/prod.yaml",
        "workerConnections: 4096",
        "workerConnections: 8192",
    )?;
    edit(
        root,
        "apps/worker/env/dev.yaml",
        "instances: 1",
        "instances: 3",
    )?;
    edit(
        root,
        "apps/api/files/application.yaml",
        "    maxSize: {{ values.dbPool }}",
        "    maxSize: {{ values.dbPool }}\n    minIdle: 2",
    )?;
    edit(
        root,
        "apps/payments/ledger/env/prod.yaml",
        "mem: 4096",
        "mem: 6144",
    )?;
    git(
        root,
        &[
            "commit",
            "-q",
            "-am",
            "tune nginx, scale the dev worker, resize the ledger",
        ],
    )?;

    let base = Arc::new(loc.at_rev("HEAD~1")?);
    let head = Arc::new(loc.at_rev("HEAD")?);
    let report = diff::between(base, head, None)?;
    println!("\n$ pacer diff --base HEAD~1 --head HEAD\n");
    print!("{}", format::render(&report, format::Format::Text, false));
    println!(
        "\nNext: `pacer diff --repo examples --base HEAD --format markdown` for a pull-request comment,"
    );
    println!("and `pacer sim` for a Marathon to point at.");
    Ok(exit::OK)
}
