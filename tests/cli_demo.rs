//! `pacer demo` as a user gets it: a binary without the source tree, prod
//! left to a human, and commits reported as they land.

use crate::util::PACER;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The kept config repo the demo names on its last line.
fn kept_repo(stdout: &str) -> Option<std::path::PathBuf> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("The demo's config repo stays at "))?;
    let rest = line.strip_prefix("The demo's config repo stays at ")?;
    Some(rest.split(" (").next()?.into())
}

#[test]
fn a_copied_binary_runs_the_demo_and_leaves_prod_to_a_human() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("pacer");
    std::fs::copy(PACER, &bin).unwrap();
    // A test thread that forks while the copy is open for writing holds
    // that descriptor until its child execs: exec answers ETXTBSY until then.
    let mut tries = 0;
    let out = loop {
        match Command::new(&bin)
            .args(["demo", "--listen", "127.0.0.1:0", "--exit-when-synced"])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
        {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => break r.expect("running the copied pacer"),
        }
    };
    let run: crate::util::Run = out.into();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!dir.path().join("examples").exists());
    for line in [
        "dev      api (inSync), web (inSync), worker (inSync)",
        "staging  api (inSync), payments/ledger (inSync), web (inSync), worker (inSync)",
        "prod     api (missing), payments/ledger (missing), web (missing), worker (missing)",
        "prod has autoApply: false, so nothing was deployed there",
        "pacer plan prod (/prod)",
        "--env prod",
    ] {
        assert!(run.stdout.contains(line), "missing {line:?}:\n{run:?}");
    }
    let repo = kept_repo(&run.stdout).unwrap_or_else(|| panic!("names its repo: {run:?}"));
    assert!(repo.join("pacer.yaml").is_file(), "{}", repo.display());
    assert!(repo.join("../schemas/app.schema.json").is_file());
    let apply = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("pacer apply --repo"))
        .expect("the command that applies prod");
    assert!(apply.contains(&repo.display().to_string()), "{apply}");
    let _ = std::fs::remove_dir_all(repo.parent().unwrap());
}

#[test]
fn the_demo_reports_each_commit_it_picks_up() {
    let mut child = Command::new(PACER)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the demo");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |want: &dyn Fn(&str) -> bool, what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within 120 s; stdout so far:\n{seen}"),
            }
        }
    };
    let repo_line = wait_for(&|l| l.starts_with("  config repo:"), "config repo line");
    let repo = std::path::PathBuf::from(repo_line.trim_start_matches("  config repo:").trim());
    let apply = wait_for(
        &|l| l.trim_start().starts_with("pacer apply --repo"),
        "the command that applies prod",
    );
    let export = wait_for(
        &|l| l.contains("export PACER_TOKEN="),
        "the demo's read token",
    );
    let token = export
        .split("PACER_TOKEN=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(export.contains("demo"), "said to be a demo token: {export}");
    let status_line = wait_for(
        &|l| l.contains("pacer status --daemon"),
        "the status command",
    );
    let daemon = status_line.split_whitespace().last().unwrap().to_string();
    wait_for(&|l| l.contains("Ctrl-C stops the demo"), "ready line");

    // The printed status command, with the printed token, sees it all;
    // without the token, the public view.
    let status = |token: Option<&str>| {
        let mut cmd = Command::new(PACER);
        cmd.args(["status", "--daemon", &daemon, "--format", "json"]);
        cmd.env_remove("PACER_TOKEN");
        if let Some(t) = token {
            cmd.env("PACER_TOKEN", t);
        }
        let out = cmd.output().expect("pacer status");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let full = status(Some(&token));
    assert!(full.get("redacted").is_none(), "{full}");
    assert_eq!(full["environments"]["dev"]["apps"]["web"]["sync"], "inSync");
    assert_eq!(status(None)["redacted"], true);

    // The printed command does what it says (with --yes: no terminal here).
    let args: Vec<&str> = apply.split_whitespace().skip(1).collect();
    let run = crate::util::pacer(&[&args[..], &["--yes"][..]].concat());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("/prod/web"), "{run:?}");

    let file = repo.join("apps/worker/env/dev.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("instances: 1", "instances: 3")).unwrap();
    crate::util::run_git(&repo, &["commit", "-qam", "dev worker: three instances"]);
    let head = crate::util::run_git(&repo, &["rev-parse", "HEAD"]);
    let picked = wait_for(&|l| l.starts_with("Picked up "), "pick-up line");
    assert!(picked.contains(&head[..12]), "{picked}");
    assert!(picked.contains("dev worker: three instances"), "{picked}");
    let worker = wait_for(&|l| l.contains("dev/worker"), "the worker's line");
    assert!(worker.contains("inSync"), "{worker}\n{seen}");

    // Stopped as Ctrl-C or Marathon would: it keeps the repo and says where.
    // SAFETY: a plain kill(2) on the child's pid, which is not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let kept = wait_for(
        &|l| l.starts_with("The demo's config repo stays at "),
        "the last line",
    );
    assert!(kept.contains(&repo.display().to_string()), "{kept}");
    let status = child.wait().expect("the demo exits");
    assert!(status.success(), "{status:?}\n{seen}");
    assert!(repo.join("pacer.yaml").is_file());
    let root = repo.parent().unwrap();
    assert!(
        !root.with_extension("mirror").exists(),
        "the daemon's mirror is cleaned up"
    );
    let _ = std::fs::remove_dir_all(root);
}
