use crate::util::{TestRepo, pacer, project_dir};
use serde_json::Value;

#[test]
fn the_example_repo_validates() {
    let ex = project_dir().join("examples");
    let run = pacer(&["validate", "--repo", ex.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("ok: 3 environments"), "{run:?}");
}

#[test]
fn render_prints_the_put_body_with_provenance() {
    let repo = TestRepo::examples();
    let run = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "prod",
        "--app",
        "api",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let out: Value = serde_json::from_str(&run.stdout).expect("render prints JSON");
    let api = &out["apps"]["api"];
    assert_eq!(api["id"], "/prod/api");
    let labels = &api["marathon"]["labels"];
    assert_eq!(labels["pacer.env"], "prod");
    assert_eq!(labels["pacer.source"], "apps/api");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert_eq!(
        labels["pacer.commit"],
        String::from_utf8_lossy(&head.stdout).trim()
    );
    assert!(
        labels["pacer.config-hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(api["marathon"]["instances"], 6, "the prod overlay wins");
    assert!(
        api["files"]["application.yaml"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn render_hides_secrets_unless_asked() {
    let repo = TestRepo::examples();
    // Staging puts its (plaintext) DSN in Marathon's env; prod's secrets
    // are sealed, and read here with the demo key the tests hold.
    let hidden = pacer(&["render", "--repo", repo.path_str(), "--env", "staging"]);
    assert_eq!(hidden.code, 0, "{hidden:?}");
    assert!(!hidden.stdout.contains("1a2b3c4d5e6f"));
    assert!(hidden.stdout.contains("<secret:sentryDsn>"));
    let prod = pacer(&["render", "--repo", repo.path_str(), "--env", "prod"]);
    assert_eq!(prod.code, 0, "{prod:?}");
    assert!(
        !prod
            .stdout
            .contains("prod-placeholder-use-encrypted-secrets")
    );
    let shown = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "staging",
        "--show-secrets",
    ]);
    assert!(shown.stdout.contains("1a2b3c4d5e6f"));
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    let repo = TestRepo::examples();
    let a = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "staging",
        "--rev",
        "HEAD",
    ]);
    let b = pacer(&["render", "--repo", repo.path_str(), "--env", "staging"]);
    assert_eq!(a.code, 0, "{a:?}");
    let apps = |out: &str| serde_json::from_str::<Value>(out).unwrap()["apps"].to_string();
    assert_eq!(
        apps(&a.stdout),
        apps(&b.stdout),
        "the Git revision and the clean working tree render alike"
    );
    let again = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "staging",
        "--rev",
        "HEAD",
    ]);
    assert_eq!(a.stdout, again.stdout);
}

#[test]
fn unknown_environment_and_app_get_a_hint() {
    let repo = TestRepo::examples();
    let run = pacer(&["render", "--repo", repo.path_str(), "--env", "prdo"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("unknown environment `prdo` (did you mean `prod`?)"),
        "{run:?}"
    );
    let run = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "prod",
        "--app",
        "wbe",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("did you mean `web`?"), "{run:?}");
}

#[test]
fn a_config_repo_may_live_in_a_subdirectory() {
    let tmp = tempfile::tempdir().unwrap();
    crate::util::copy_tree(
        &project_dir().join("examples"),
        &tmp.path().join("deploy/config"),
    );
    let repo = TestRepo::from(tmp.path());
    let sub = repo.path().join("deploy/config");
    let run = pacer(&[
        "render",
        "--repo",
        sub.to_str().unwrap(),
        "--env",
        "dev",
        "--rev",
        "HEAD",
        "--app",
        "web",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"/dev/web\""), "{run:?}");
}

/// Secrets that text matching can't hide: quotes and backslashes (escaped
/// in JSON), a newline and a tab (escaped too), and a one-letter secret
/// (it matches unrelated text).
const NASTY: &str = r#"secrets:
  quoted: 'qsecret"with\back'
  lines: "nlsecret-one\nnlsecret-two"
  tabbed: "tabsecret-a\ttabsecret-b"
  dsn: https://4c3b2a1f0e9d@sentry.example.com/7
  short: e
"#;

/// Every way a template can pass a secret on: as is, and through filters.
const VAULT: &str = r#"environments: [dev]
marathon:
  cmd: ./vault --dsn '{{ secrets.dsn }}'
  cpus: 0.1
  mem: 64
  instances: 1
  env:
    QUOTED: "{{ secrets.quoted }}"
    LINES: "{{ secrets.lines }}"
    TABBED: "{{ secrets.tabbed }}"
    UPPER: "{{ secrets.dsn | upper }}"
    REVERSED: "{{ secrets.dsn | reverse }}"
    SLICED: "{{ secrets.dsn[8:] }}"
    JOINED: "{{ [secrets.dsn, secrets.quoted] | join('/') }}"
    SHORT: "{{ secrets.short }}"
    DEBUG: "{{ debug() }}"
files:
  vault.conf:
    path: /etc/vault.conf
"#;

const VAULT_CONF: &str =
    "dsn = {{ secrets.dsn | upper }}\nall = {{ secrets | tojson }}\nshort = {{ secrets.short }}\n";

/// Substrings of the secrets above, and of what the filters make of them,
/// that no output may hold.
const PLAINTEXT: [&str; 9] = [
    "qsecret",
    "nlsecret",
    "tabsecret",
    "4c3b2a1f0e9d",
    "4C3B2A1F0E9D",
    "d9e0f1a2b3c4",
    "rotated-one",
    "ROTATED-ONE",
    "eno-detator",
];

fn assert_no_plaintext(what: &str, text: &str) {
    for p in PLAINTEXT {
        assert!(!text.contains(p), "{what} shows {p:?}:\n{text}");
    }
}

fn vault_repo() -> TestRepo {
    let repo = TestRepo::examples();
    repo.write("apps/vault/app.yaml", VAULT);
    repo.write("apps/vault/env/dev.yaml", NASTY);
    repo.write("apps/vault/files/vault.conf", VAULT_CONF);
    repo
}

#[test]
fn secrets_never_reach_render_whatever_the_template_does() {
    let repo = vault_repo();
    let run = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "dev",
        "--app",
        "vault",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_plaintext("render", &run.stdout);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    let env = &out["apps"]["vault"]["marathon"]["env"];
    assert_eq!(env["QUOTED"], "<secret:quoted>");
    assert_eq!(env["UPPER"], "<SECRET:DSN>");
    assert_eq!(env["SLICED"], "dsn>");
    assert_eq!(env["JOINED"], "<secret:dsn>/<secret:quoted>");
    // A one-letter secret replaces itself only, not every `e` around it.
    assert_eq!(env["SHORT"], "<secret:short>");
    assert_eq!(env["APP_ENV"], "dev");
    assert_eq!(
        out["apps"]["vault"]["marathon"]["labels"]["pacer.env"],
        "dev"
    );
    let conf = out["apps"]["vault"]["files"]["vault.conf"]["content"]
        .as_str()
        .unwrap();
    assert!(conf.starts_with("dsn = <SECRET:DSN>\n"), "{conf}");
    assert!(conf.contains("short = <secret:short>\n"), "{conf}");
    // What Marathon gets is the real thing.
    let shown = pacer(&[
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "dev",
        "--app",
        "vault",
        "--show-secrets",
    ]);
    let out: Value = serde_json::from_str(&shown.stdout).unwrap();
    let env = &out["apps"]["vault"]["marathon"]["env"];
    assert_eq!(env["QUOTED"], "qsecret\"with\\back");
    assert_eq!(env["UPPER"], "HTTPS://4C3B2A1F0E9D@SENTRY.EXAMPLE.COM/7");
    assert_eq!(env["SHORT"], "e");
}

#[test]
fn secrets_never_reach_diff_in_any_format() {
    let repo = vault_repo();
    let base = repo.commit("vault");
    // Rotate every secret and change visible text beside them.
    repo.write(
        "apps/vault/env/dev.yaml",
        &NASTY
            .replace("qsecret\"with\\back", "qsecret\"rotated-one")
            .replace("nlsecret-two", "nlsecret-rotated-one")
            .replace("tabsecret-b", "tabsecret-rotated-one")
            .replace("4c3b2a1f0e9d", "4c3b2a1f0e9d-rotated-one")
            .replace("short: e", "short: f"),
    );
    repo.write(
        "apps/vault/files/vault.conf",
        &format!("# v2\n{VAULT_CONF}"),
    );
    repo.edit("apps/vault/app.yaml", "mem: 64", "mem: 96");
    for format in ["text", "markdown", "json"] {
        let run = pacer(&[
            "diff",
            "--repo",
            repo.path_str(),
            "--base",
            &base,
            "--format",
            format,
        ]);
        assert_eq!(run.code, 2, "{run:?}");
        assert_no_plaintext(&format!("diff --format {format}"), &run.stdout);
        assert_no_plaintext(&format!("diff --format {format} (stderr)"), &run.stderr);
        assert!(run.stdout.contains("mem"), "{format}: {run:?}");
    }
    let json: Value = serde_json::from_str(
        &pacer(&[
            "diff",
            "--repo",
            repo.path_str(),
            "--base",
            &base,
            "--format",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    let vault = json["environments"][0]["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "vault")
        .expect("vault changed")
        .clone();
    assert_eq!(vault["secretChanged"], true, "{vault}");
    assert_eq!(vault["files"][0]["secretChanged"], true, "{vault}");
    // Only a secret changed: no diff to show, "secret changed" says it.
    let only = repo.commit("rotated");
    repo.write(
        "apps/vault/env/dev.yaml",
        &NASTY.replace("4c3b2a1f0e9d", "4c3b2a1f0e9d-rotated-one-again"),
    );
    repo.write(
        "apps/vault/files/vault.conf",
        &format!("# v2\n{VAULT_CONF}"),
    );
    repo.edit("apps/vault/app.yaml", "mem: 96", "mem: 96");
    let run = pacer(&["diff", "--repo", repo.path_str(), "--base", &only]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.contains("(secret changed)"), "{run:?}");
    assert_no_plaintext("diff", &run.stdout);
}

#[test]
fn errors_from_values_that_came_from_secrets_never_quote_them() {
    let repo = vault_repo();
    repo.edit(
        "apps/vault/app.yaml",
        "cpus: 0.1",
        "cpus: \"{{ secrets.dsn }}\"",
    );
    repo.edit(
        "apps/vault/app.yaml",
        "instances: 1",
        "instances: \"{{ secrets.quoted | int }}\"\n  user: \"{{ secrets.dsn + 1 }}\"",
    );
    let run = pacer(&["validate", "--repo", repo.path_str()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_no_plaintext("validate", &run.stderr);
    assert!(
        run.stderr.contains(
            "apps/vault/app.yaml:4:9: `cpus`: expected a number, got the string `<secret:dsn>`"
        ),
        "{run:?}"
    );
    // A template error points at the expression, not at the string's start.
    assert!(
        run.stderr
            .contains("apps/vault/app.yaml:7:13: template error"),
        "{run:?}"
    );
    let json = pacer(&["validate", "--repo", repo.path_str(), "--json"]);
    assert_no_plaintext("validate --json", &json.stdout);
    assert_no_plaintext("validate --json", &json.stderr);
}

#[test]
fn secrets_never_reach_plan_in_any_format() {
    use std::io::BufRead;
    let repo = vault_repo();
    repo.commit("vault");
    let mut sim = std::process::Command::new(crate::util::PACER)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _sim = Kill(sim);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let apply = pacer(&[
        "apply",
        "--repo",
        repo.path_str(),
        "--marathon",
        &url,
        "--env",
        "dev",
        "--app",
        "vault",
        "--yes",
    ]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_no_plaintext("apply", &apply.stdout);
    assert_no_plaintext("apply", &apply.stderr);
    // In sync: the plan shows nothing to do.
    let plan = pacer(&[
        "plan",
        "--repo",
        repo.path_str(),
        "--marathon",
        &url,
        "--env",
        "dev",
        "--app",
        "vault",
    ]);
    assert_eq!(plan.code, 0, "{plan:?}");
    // A rotated secret and a visible change beside it.
    repo.write(
        "apps/vault/env/dev.yaml",
        &NASTY.replace("4c3b2a1f0e9d", "4c3b2a1f0e9d-rotated-one"),
    );
    repo.edit("apps/vault/app.yaml", "mem: 64", "mem: 96");
    repo.commit("rotate");
    for format in ["text", "json", "markdown"] {
        let plan = pacer(&[
            "plan",
            "--repo",
            repo.path_str(),
            "--marathon",
            &url,
            "--env",
            "dev",
            "--app",
            "vault",
            "--format",
            format,
        ]);
        assert_eq!(plan.code, 2, "{plan:?}");
        assert_no_plaintext(&format!("plan --format {format}"), &plan.stdout);
        assert_no_plaintext(&format!("plan --format {format}"), &plan.stderr);
        assert!(plan.stdout.contains("96"), "{format}: {plan:?}");
    }
}

#[test]
fn render_fills_service_endpoints_from_placeholders_or_an_endpoints_file() {
    let repo = TestRepo::examples();
    repo.write(
        "apps/lb/app.yaml",
        "marathon:\n  cmd: ./lb\nfiles:\n  upstreams.conf:\n    path: /etc/lb/upstreams.conf\n    reload: hot\n",
    );
    repo.write(
        "apps/lb/files/upstreams.conf",
        "api={{ addresses(\"api\", port=\"http\")|join(\",\") }}\n",
    );
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "render",
            "--repo",
            repo.path_str(),
            "--env",
            "prod",
            "--app",
            "lb",
            "--file",
            "upstreams.conf",
        ];
        a.extend_from_slice(extra);
        pacer(&a)
    };
    let run = args(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "api=prod-api-0.pacer.invalid:31000,prod-api-1.pacer.invalid:31000,prod-api-2.pacer.invalid:31000\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("endpoints.json");
    std::fs::write(
        &file,
        r#"{"/prod/api": {"portNames": ["http"], "tasks": [
            {"host": "b.example", "ports": [8081], "taskId": "t2"},
            {"host": "a.example", "ports": [8080], "taskId": "t1"}]}}"#,
    )
    .unwrap();
    let mut a = vec![
        "render",
        "--repo",
        repo.path_str(),
        "--env",
        "prod",
        "--app",
        "lb",
        "--file",
        "upstreams.conf",
        "--endpoints",
    ];
    a.push(file.to_str().unwrap());
    let run = pacer(&a);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "api=a.example:8080,b.example:8081\n");

    // A typo is refused at its line, with the fix.
    repo.write(
        "apps/lb/files/upstreams.conf",
        "api={{ address(\"apii\") }}\n",
    );
    let run = pacer(&["validate", "--repo", repo.path_str()]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("apps/lb/files/upstreams.conf:1:"),
        "{run:?}"
    );
    assert!(run.stderr.contains("did you mean `api`?"), "{run:?}");
}
