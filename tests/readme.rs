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
fn the_demo_shows_every_change_class() {
    let run = pacer(&[
        "demo",
        "--repo",
        project_dir().join("examples").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    for class in ["  hot", "  scale", "  restart", "  redeploy"] {
        assert!(
            run.stdout.contains(class),
            "no {class:?} change in the demo:\n{run:?}"
        );
    }
    assert!(
        !run.stdout
            .contains("prod-placeholder-use-encrypted-secrets"),
        "{run:?}"
    );
}
