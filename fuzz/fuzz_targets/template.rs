//! Template rendering through the public entry point, `pacer::render::render`,
//! on a small in-memory config repo.
//!
//! Input: the first line is a string field of the app (a label value); the
//! rest is a templated config file of the same app, a `reload: hot` one, so
//! it may name the live endpoints of `db` (`service("db")`, `addresses(..)`;
//! offline, the documented placeholders). The values and a secret come from
//! the environment file.
//!
//! Checked: no panic (a hang or runaway output is caught by libFuzzer's
//! `-timeout` and `-rss_limit_mb`); rendering is deterministic; the secret
//! never appears in a diagnostic; a diagnostic points inside its file; a
//! rendered file is found under its name and path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pacer::render::{self, Scope};
use pacer::source::Snapshot;

/// Looked for in every diagnostic. An input that spells out any three
/// characters of it may see it echoed back (it could have built it).
const SECRET: &str = "s3cr3t-7c1f0e9a";

const PACER_YAML: &str = "version: 1\nenvironments:\n  dev:\n    group: /dev\n";
const DB_YAML: &str =
    "marathon:\n  cmd: sleep 1000\n  instances: 2\n  portDefinitions:\n    - {port: 0, name: pg}\n";
const ENV_YAML: &str = "\
values:
  domain: example.com
  n: 3
  flag: true
  list: [1, 2, 3]
  nested: {a: {b: c}}
secrets:
  token: s3cr3t-7c1f0e9a
";

fn repo(field: &str, file: &str) -> std::sync::Arc<Snapshot> {
    // JSON strings are YAML strings: the field goes in verbatim.
    let field = serde_json::to_string(field).expect("a string serialises");
    let app = format!(
        "marathon:\n  cmd: sleep 1000\n  cpus: 0.1\n  mem: 32\n  instances: 1\n  labels:\n    fuzz: {field}\nfiles:\n  app.conf:\n    path: /etc/app.conf\n    reload: hot\n"
    );
    Snapshot::from_files([
        ("pacer.yaml".to_string(), PACER_YAML.as_bytes().to_vec()),
        (
            "environments/dev.yaml".to_string(),
            ENV_YAML.as_bytes().to_vec(),
        ),
        ("apps/web/app.yaml".to_string(), app.into_bytes()),
        ("apps/db/app.yaml".to_string(), DB_YAML.as_bytes().to_vec()),
        (
            "apps/web/files/app.conf".to_string(),
            file.as_bytes().to_vec(),
        ),
    ])
}

/// What a run produced, comparable across runs.
fn outcome(field: &str, file: &str) -> Result<Vec<(String, Vec<u8>)>, Vec<render::Diagnostic>> {
    let desired = render::render(repo(field, file), &Scope::default())?;
    let mut out = Vec::new();
    for env in desired.envs.values() {
        for app in env.apps.values() {
            out.push((app.id.clone(), app.marathon.to_string().into_bytes()));
            for (name, f) in &app.files {
                out.push((format!("{name}:{}", f.path), f.content.clone()));
            }
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (field, file) = text.split_once('\n').unwrap_or((text, ""));
    let first = outcome(field, file);
    match &first {
        Ok(out) => {
            assert!(out.iter().any(|(k, _)| k == "/dev/web"), "{out:?}");
            assert!(out.iter().any(|(k, _)| k == "app.conf:/etc/app.conf"));
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            let spelled_out = SECRET
                .as_bytes()
                .windows(3)
                .any(|w| text.as_bytes().windows(3).any(|t| t == w));
            for d in diags {
                let shown = format!("{d}");
                assert!(
                    spelled_out || !shown.contains(SECRET),
                    "a diagnostic shows the secret: {shown}"
                );
                if d.file == "apps/web/files/app.conf" {
                    let lines = file.lines().count() + 1;
                    let line = d.line.unwrap_or(1);
                    assert!(line >= 1 && line <= lines, "line {line} of {lines}: {d:?}");
                }
            }
        }
    }
    assert_eq!(
        first,
        outcome(field, file),
        "rendering is not deterministic"
    );
});
