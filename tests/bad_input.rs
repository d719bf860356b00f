use crate::util::{TestRepo, pacer, project_dir};
use std::path::Path;

/// Runs `validate` on one corpus case and checks every expected line.
fn check_case(dir: &Path) -> Result<(), String> {
    let expect = std::fs::read_to_string(dir.join("expect.txt"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let wanted: Vec<&str> = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if wanted.is_empty() {
        return Err(format!(
            "{}: expect.txt names nothing to check",
            dir.display()
        ));
    }
    let run = pacer(&["validate", "--repo", dir.to_str().unwrap()]);
    if run.code != 1 {
        return Err(format!("{}: expected exit 1\n{run:?}", dir.display()));
    }
    if run.stderr.contains("panicked") {
        return Err(format!("{}: panicked\n{run:?}", dir.display()));
    }
    for w in wanted {
        if !run.stderr.contains(w) {
            return Err(format!("{}: stderr lacks {w:?}\n{run:?}", dir.display()));
        }
    }
    Ok(())
}

#[test]
fn every_corpus_case_fails_with_its_location() {
    let root = project_dir().join("tests/fixtures/bad");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/fixtures/bad exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("expect.txt").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "the corpus has {} cases", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_50_mb_file_is_refused_without_reading_it_all() {
    let repo = TestRepo::examples();
    let big = "# filler\n".repeat(50 * 1024 * 1024 / 9);
    repo.write("apps/web/files/nginx.conf", &big);
    let run = pacer(&["validate", "--repo", repo.path_str()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("apps/web/files/nginx.conf: file is 50.0 MiB, over the 4 MiB limit"),
        "{run:?}"
    );
    // From Git too: the blob header gives the size before the content is read.
    let rev = repo.commit("a big file");
    let run = pacer(&["validate", "--repo", repo.path_str(), "--rev", &rev]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("over the 4 MiB limit"), "{run:?}");
}

#[test]
fn a_symlink_out_of_the_repo_is_refused_in_git_too() {
    let repo = TestRepo::examples();
    repo.remove("apps/web/files/nginx.conf");
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("apps/web/files/nginx.conf"))
        .unwrap();
    let rev = repo.commit("link out");
    for args in [
        vec!["validate", "--repo", repo.path_str()],
        vec!["validate", "--repo", repo.path_str(), "--rev", &rev],
    ] {
        let run = pacer(&args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr.contains(
                "apps/web/files/nginx.conf: a symlink (to `/etc/passwd`): the config repo may not contain symlinks"
            ),
            "{run:?}"
        );
        assert!(!run.stderr.contains("root:x:0"), "{run:?}");
    }
}

#[test]
fn a_repo_without_pacer_yaml_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let run = pacer(&["validate", "--repo", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("pacer.yaml: missing: this is not a pacer config repo"),
        "{run:?}"
    );
}

/// A finished run of the real binary with its wall time and peak memory.
struct Measured {
    run: crate::util::Run,
    elapsed: std::time::Duration,
    /// Peak resident memory of the child, in bytes (getrusage via wait4).
    max_rss: u64,
}

/// Runs pacer, killing it after `limit` (a hung child fails the test rather
/// than the suite), and measures it.
fn measured(args: &[&str], limit: std::time::Duration) -> Measured {
    use std::process::{Command, Stdio};
    let out = tempfile::tempdir().unwrap();
    let (o, e) = (out.path().join("out"), out.path().join("err"));
    let start = std::time::Instant::now();
    // Reaped by wait4 below, which also gives the child's peak memory.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(crate::util::PACER)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .expect("running pacer");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child; status and usage outlive the call.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4 failed");
        if start.elapsed() > limit {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("pacer {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let elapsed = start.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Measured {
        run: crate::util::Run {
            code,
            stdout: std::fs::read_to_string(&o).unwrap_or_default(),
            stderr: std::fs::read_to_string(&e).unwrap_or_default(),
        },
        elapsed,
        max_rss: usage.ru_maxrss as u64 * 1024,
    }
}

const SECS_5: std::time::Duration = std::time::Duration::from_secs(5);
/// Long enough for a slow CI machine to finish a bounded run; far shorter
/// than an unbounded one.
const SECS_60: std::time::Duration = std::time::Duration::from_secs(60);

#[test]
fn a_template_without_limits_is_invalid_in_seconds_and_bounded_memory() {
    let repo = TestRepo::examples();
    // Three nested loops of 100,000: 10^15 steps without a budget.
    repo.write(
        "apps/web/files/nginx.conf",
        "user nginx;\n{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}\n",
    );
    // Printing in two loops: hundreds of MB in seconds without an output cap.
    repo.edit(
        "apps/worker/app.yaml",
        "marathon:\n",
        "marathon:\n  args: [\"{% for a in range(100000) %}{% for b in range(100000) %}0123456789abcdef{% endfor %}{% endfor %}\"]\n",
    );
    let m = measured(&["validate", "--repo", repo.path_str()], SECS_60);
    let (run, elapsed) = (&m.run, m.elapsed);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(elapsed < SECS_5, "validate took {elapsed:?}\n{run:?}");
    assert!(
        m.max_rss < 300 << 20,
        "validate peaked at {} MB",
        m.max_rss >> 20
    );
    assert!(
        run.stderr.contains("apps/web/files/nginx.conf:2:") && run.stderr.contains("steps"),
        "{run:?}"
    );
    assert!(run.stderr.contains("simplify its loops"), "{run:?}");
    assert!(run.stderr.contains("apps/worker/app.yaml:"), "{run:?}");
    // The other apps render: only these two are named.
    for line in run.stderr.lines().filter(|l| l.starts_with("apps/")) {
        assert!(
            line.starts_with("apps/web/") || line.starts_with("apps/worker/"),
            "{run:?}"
        );
    }
    // `diff` and `render` are bounded the same way.
    let rev = repo.commit("wedge");
    let m = measured(
        &[
            "diff",
            "--repo",
            repo.path_str(),
            "--base",
            "HEAD~1",
            "--head",
            &rev,
        ],
        SECS_60,
    );
    assert_eq!(m.run.code, 1, "{:?}", m.run);
    assert!(m.elapsed < SECS_5, "diff took {:?}", m.elapsed);
    let m = measured(
        &[
            "render",
            "--repo",
            repo.path_str(),
            "--env",
            "prod",
            "--app",
            "web",
        ],
        SECS_60,
    );
    assert_eq!(m.run.code, 1, "{:?}", m.run);
    assert!(m.elapsed < SECS_5, "render took {:?}", m.elapsed);
}

/// `a: &a "<1 MB>"`, then `levels` levels of nine aliases to the one below.
fn alias_bomb(levels: usize) -> String {
    let mut doc = format!("values:\n  l0: &l0 \"{}\"\n", "x".repeat(1 << 20));
    for l in 1..=levels {
        let refs = vec![format!("*l{}", l - 1); 9].join(", ");
        doc.push_str(&format!("  l{l}: &l{l} [{refs}]\n"));
    }
    doc
}

#[test]
fn yaml_aliases_cannot_amplify_a_file_into_gigabytes() {
    let repo = TestRepo::examples();
    for levels in [3, 4] {
        repo.write("apps/web/env/prod.yaml", &alias_bomb(levels));
        let m = measured(&["validate", "--repo", repo.path_str()], SECS_60);
        let run = &m.run;
        assert_eq!(run.code, 1, "{run:?}");
        // The first alias that passes the budget: level 2's (9 MB, then 81 MB).
        assert!(
            run.stderr.contains(
                "apps/web/env/prod.yaml:4:12: YAML aliases expand this document to more than 16 MiB"
            ),
            "{run:?}"
        );
        assert!(
            m.max_rss < 300 << 20,
            "validate peaked at {} MB",
            m.max_rss >> 20
        );
    }
}

#[test]
fn an_app_directory_replaced_by_a_symlink_is_invalid_not_deleted() {
    let repo = TestRepo::examples();
    let (_elsewhere, rev) = symlink_away(&repo, "apps/web");
    for args in [
        vec!["validate", "--repo", repo.path_str()],
        vec!["validate", "--repo", repo.path_str(), "--rev", &rev],
    ] {
        let run = pacer(&args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr.contains("apps/web: a symlink (to `")
                && run
                    .stderr
                    .contains("the config repo may not contain symlinks"),
            "{run:?}"
        );
    }
    // `diff` refuses the head instead of showing web as removed.
    let run = pacer(&[
        "diff",
        "--repo",
        repo.path_str(),
        "--base",
        "HEAD~1",
        "--head",
        &rev,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("apps/web: a symlink"), "{run:?}");
    assert!(!run.stdout.contains("removed"), "{run:?}");
}

/// What the daemon sees: it renders app by app from the commit, and an app
/// with problems is invalid (kept at its last good version), while an app
/// missing from the list is gone (deleted when pruning).
#[test]
fn the_daemon_sees_a_symlinked_app_directory_as_invalid_not_gone() {
    use pacer::render::{Diagnostics, Repo, render_pairs};
    let repo = TestRepo::examples();
    let (_elsewhere, rev) = symlink_away(&repo, "apps/web");
    let loc = pacer::source::RepoLocation::discover(repo.path()).unwrap();
    let snap = std::sync::Arc::new(loc.at_rev(&rev).unwrap());
    let mut load = Diagnostics::default();
    let keys = crate::util::demo_keys();
    let r =
        Repo::load_keyed(snap, &Default::default(), &keys, &mut load).expect("pacer.yaml loads");
    assert!(load.is_empty(), "{load}");
    assert!(
        r.apps.contains_key("web"),
        "web must not vanish from the app list"
    );
    for app in ["web", "api"] {
        let mut diags = Diagnostics::default();
        let d = render_pairs(&r, &[("prod".into(), vec![app.into()])], &mut diags);
        if app == "web" {
            assert!(diags.to_string().contains("apps/web: a symlink"), "{diags}");
            assert!(d.envs["prod"].apps.is_empty());
        } else {
            assert!(diags.is_empty(), "{diags}");
            assert!(d.envs["prod"].apps.contains_key("api"));
        }
    }
}

#[test]
fn apps_and_environments_as_symlinks_are_errors_in_git_too() {
    let repo = TestRepo::examples();
    let (_elsewhere, rev) = symlink_away(&repo, "apps");
    for args in [
        vec!["validate", "--repo", repo.path_str()],
        vec!["validate", "--repo", repo.path_str(), "--rev", &rev],
    ] {
        let run = pacer(&args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("apps: a symlink (to `"), "{run:?}");
    }
}

#[test]
fn control_characters_in_names_are_quoted_as_git_does() {
    let repo = TestRepo::examples();
    // A directory name that would repaint the terminal and forge an `ok:` line.
    let evil = "apps/we\u{1b}[2Jb\nok: 3 environments, 4 apps";
    crate::util::copy_tree(&repo.path().join("apps/worker"), &repo.path().join(evil));
    repo.write(
        "apps/api/env/staging.yaml",
        &format!(
            "{}files:\n  \"x\\e[31m\":\n    path: /etc/x\n",
            repo.read("apps/api/env/staging.yaml")
        ),
    );
    let rev = repo.commit("evil names");
    for args in [
        vec!["validate", "--repo", repo.path_str()],
        vec!["validate", "--repo", repo.path_str(), "--rev", &rev],
    ] {
        let run = pacer(&args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(!run.stderr.contains('\u{1b}'), "{run:?}");
        assert!(!run.stderr.lines().any(|l| l.starts_with("ok:")), "{run:?}");
        assert!(
            run.stderr.contains(
                "\"apps/we\\033[2Jb\\nok: 3 environments, 4 apps/app.yaml\": invalid Marathon id"
            ),
            "{run:?}"
        );
        assert!(run.stderr.contains("file \"x\\033[31m\""), "{run:?}");
        // One good error for the directory, not Marathon's regular expression too.
        assert!(!run.stderr.contains("regular expression"), "{run:?}");
    }
}

#[test]
fn an_uppercase_app_directory_gets_one_error() {
    let repo = TestRepo::examples();
    std::fs::rename(repo.path().join("apps/web"), repo.path().join("apps/Web")).unwrap();
    let run = pacer(&["validate", "--repo", repo.path_str()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("apps/Web/app.yaml: invalid Marathon id: the app directory `apps/Web`"),
        "{run:?}"
    );
    assert!(run.stderr.contains("error: 1 problem found"), "{run:?}");
}

/// Moves `dir` of `repo` to a directory outside it, leaves a symlink in its
/// place and commits that; the outside copy lives as long as the guard.
fn symlink_away(repo: &TestRepo, dir: &str) -> (tempfile::TempDir, String) {
    let elsewhere = tempfile::tempdir().unwrap();
    crate::util::copy_tree(&repo.path().join(dir), elsewhere.path());
    repo.remove(dir);
    std::os::unix::fs::symlink(elsewhere.path(), repo.path().join(dir)).unwrap();
    let rev = repo.commit(&format!("{dir} lives elsewhere"));
    (elsewhere, rev)
}
