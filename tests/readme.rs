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
        "prod     api (inSync), payments/ledger (inSync), web (inSync), worker (inSync)",
        "staging  api (inSync), payments/ledger (inSync), web (inSync), worker (inSync)",
    ] {
        assert!(run.stdout.contains(line), "missing {line:?}:\n{run:?}");
    }
    assert!(run.stdout.contains("/api/v1/status"), "{run:?}");
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
}
