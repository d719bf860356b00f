//! A client this project did not write: the Python `marathon` package (PyPI 0.13.0).

use std::process::Command;

use super::Sim;

#[test]
fn python_marathon_client_end_to_end() {
    let importable = Command::new("python3")
        .args(["-c", "import collections, collections.abc; collections.Iterable = collections.abc.Iterable; import marathon"])
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the Python client test: pip install -r tests/clients/requirements.txt"
        );
        eprintln!(
            "SKIPPED python_marathon_client_end_to_end: `import marathon` failed (pip install -r tests/clients/requirements.txt)"
        );
        return;
    }
    let sim = Sim::start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_marathon_e2e.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(&sim.url)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
}
