//! The dashboard end to end in a real headless Chromium (Debian's
//! `chromium`, driven by `playwright-core` from npm): the overview and the
//! list show the environments and apps, a commit appears without a reload,
//! a failed app shows its failure, a retry works with the admin session
//! and is refused without one, and prod's plan is applied after a
//! confirmation. The browser side is `tests/browser/dashboard.mjs`; this
//! side runs the daemon and the simulator and makes the changes it asks
//! for. Screenshots land in `target/dashboard-screenshots/`.

use crate::util::harness::{ADMIN_TOKEN, World};
use crate::util::project_dir;
use crate::util::scenario::push_worker;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The whole browser run may take this long.
const LIMIT: Duration = Duration::from_secs(240);

/// Where the screenshots go: the target dir the tests were built in.
fn shots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_dir().join("target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_follows_deploys_retries_and_applies_in_a_real_browser() {
    let browser_dir = project_dir().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (.ci/run does)"
    );
    let chromium = std::env::var("PACER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's `chromium` (.ci/run does) or set PACER_CHROMIUM"
    );

    let w = World::new().await;
    // A rollout that never gets healthy fails after 2 s.
    let d = crate::dashboard::dev_and_prod(&w, 2).await;

    let shots = shots_dir();
    let mut node = tokio::process::Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(&browser_dir)
        .env("PACER_URL", &d.url)
        .env("PACER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("PACER_SHOTS", &shots)
        .env("PACER_CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Node.js) runs the browser test");
    let mut stdin = node.stdin.take().unwrap();
    let mut out = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut err = node.stderr.take().unwrap();
    let mut said = Vec::new();
    let run = async {
        while let Some(line) = out.next_line().await.expect("reading the browser test") {
            said.push(line.clone());
            let answer = match line.strip_prefix("STEP ") {
                Some("commit") => push_worker(&w, "seen-live", "dev worker: a change seen live"),
                Some("fail") => {
                    w.sim.never_healthy("/dev/worker").await;
                    push_worker(&w, "never-healthy", "dev worker: a version that fails")
                }
                Some("heal") => {
                    w.sim.delete("/_sim/apps/dev/worker/never-healthy").await;
                    "ok".into()
                }
                Some(other) => panic!("the browser test asked for an unknown step {other}"),
                None => continue,
            };
            stdin
                .write_all(format!("{answer}\n").as_bytes())
                .await
                .unwrap();
        }
    };
    tokio::time::timeout(LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser test ran past {LIMIT:?}; it said {said:?}"));
    let status = node.wait().await.unwrap();
    let mut stderr = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(&mut err, &mut stderr).await;
    assert!(
        status.success() && said.last().map(String::as_str) == Some("DONE"),
        "the browser test failed ({status}); screenshots in {}\n{stderr}\nit said: {said:?}\n--- daemon log\n{}",
        shots.display(),
        d.proc.log_tail()
    );
    for name in [
        "1-overview",
        "3-live-commit",
        "4-failed-public",
        "6-retried",
        "7-prod-applied",
    ] {
        let png = shots.join(format!("{name}.png"));
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "{} is missing or blank ({size} bytes)",
            png.display()
        );
    }
}
