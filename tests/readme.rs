use crate::util::{pacer, project_dir};

#[test]
fn the_readme_names_its_two_commands() {
    let readme = std::fs::read_to_string(project_dir().join("README.md")).unwrap();
    assert!(
        readme.contains("cargo run --release -- demo"),
        "the run command"
    );
    assert!(readme.contains("$ cargo test "), "the test command");
    let ci = std::fs::read_to_string(project_dir().join(".ci/run")).unwrap();
    assert!(
        ci.contains("\ncargo test --locked\n"),
        ".ci/run runs the README's test command"
    );
}

#[test]
fn the_demo_deploys_every_app_of_the_example() {
    let run = pacer(&[
        "demo",
        "--repo",
        project_dir().join("examples").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--exit-when-synced",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    for line in [
        "dev      api (inSync), web (inSync), worker (inSync)",
        // prod says `autoApply: false`: the demo leaves it to a human.
        "prod     api (missing), payments/ledger (missing), web (missing), worker (missing)",
        "staging  api (inSync), payments/ledger (inSync), web (inSync), worker (inSync)",
    ] {
        assert!(run.stdout.contains(line), "missing {line:?}:\n{run:?}");
    }
    assert!(run.stdout.contains("pacer status --daemon"), "{run:?}");
    assert!(
        !run.stdout
            .contains("prod-placeholder-use-encrypted-secrets"),
        "{run:?}"
    );
    assert!(
        !run.stderr
            .contains("prod-placeholder-use-encrypted-secrets"),
        "{run:?}"
    );
    // The demo keeps its repo and says where; a test cleans up after itself.
    let kept = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("The demo's config repo stays at "))
        .and_then(|rest| rest.split(" (").next())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("names its repo: {run:?}"));
    assert!(kept.join("pacer.yaml").is_file(), "{}", kept.display());
    let _ = std::fs::remove_dir_all(kept.parent().unwrap());
}

/// A merge left half-done shows in the docs as conflict markers; nothing
/// else would catch it, since Markdown renders them as text.
#[test]
fn no_document_holds_merge_conflict_markers() {
    let dir = project_dir();
    let mut docs = vec![dir.join("README.md")];
    for d in ["docs", "deploy", "fuzz"] {
        let Ok(entries) = std::fs::read_dir(dir.join(d)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "md") {
                docs.push(p);
            }
        }
    }
    assert!(docs.len() > 3, "the docs were not found: {docs:?}");
    for p in docs {
        let text = std::fs::read_to_string(&p).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !["<<<<<<< ", "=======", ">>>>>>> "]
                    .iter()
                    .any(|m| line.starts_with(m) && (m.ends_with(' ') || line == *m)),
                "{}:{}: a merge conflict marker: {line}",
                p.display(),
                n + 1
            );
        }
    }
}
