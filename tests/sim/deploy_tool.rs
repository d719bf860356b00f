//! A Marathon deploy tool this project did not write: `marathon-deploy`
//! (PyPI 3.0.2), run as its users do, against `pacer sim`.

use std::process::{Command, Output};

use super::Sim;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/run_marathon_deploy.py"
);

fn importable() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import collections, collections.abc; collections.Iterable = collections.abc.Iterable; import marathon_deploy.deploytool"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the deploy tool test: pip install -r tests/clients/requirements.txt"
        );
        eprintln!(
            "SKIPPED marathon_deploy: `import marathon_deploy` failed (pip install -r tests/clients/requirements.txt)"
        );
    }
    ok
}

/// `marathon-deploy -m SIM ARGS...`, with its output for the assertion messages.
fn deploy(sim: &Sim, args: &[&str]) -> (Output, String) {
    let out = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(SCRIPT)
        .args(["-m", &sim.url])
        .args(args)
        .output()
        .expect("run python3");
    let text = format!(
        "marathon-deploy {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[tokio::test]
async fn marathon_deploy_connects_creates_scales_and_retags() {
    if !importable() {
        return;
    }
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("web.json");
    std::fs::write(
        &def,
        r#"{"id": "/tool/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 2,
            "container": {"type": "DOCKER", "docker": {"image": "nginx:1.25"}}}"#,
    )
    .unwrap();

    // Its connection check (`GET /ping`, Accept: application/json) comes first in every call.
    let (out, text) = deploy(&sim, &["--put", def.to_str().unwrap()]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\"pong\""), "{text}");
    assert!(text.contains("Creating app: /tool/web"), "{text}");
    sim.wait_deployments_done().await;
    let (status, app) = sim.get("/v2/apps/tool/web").await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["app"]["instances"], 2, "{app}");

    let (out, text) = deploy(&sim, &["--appid", "/tool/web", "--instances"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("2"),
        "{text}"
    );

    let (out, text) = deploy(&sim, &["--appid", "tool/web", "--scale", "3"]);
    assert!(out.status.success(), "{text}");
    let (out, text) = deploy(&sim, &["--appid", "/tool/web", "--tag", "1.26"]);
    assert!(out.status.success(), "{text}");
    sim.wait_deployments_done().await;
    let (_, app) = sim.get("/v2/apps/tool/web").await;
    assert_eq!(app["app"]["instances"], 3, "{app}");
    assert_eq!(
        app["app"]["container"]["docker"]["image"], "nginx:1.26",
        "{app}"
    );
}
