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
                "apps/web/files/nginx.conf: symlink to `/etc/passwd` points outside the config repo"
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
