use super::*;
use crate::source::Snapshot;

const SETTINGS: &str = "version: 1\nenvironments:\n  dev: {}\n";

fn snap(app_yaml: &str, files: &[(&str, &str)]) -> Arc<Snapshot> {
    let mut all = vec![
        ("pacer.yaml".to_string(), SETTINGS.as_bytes().to_vec()),
        (
            "environments/dev.yaml".to_string(),
            b"values: {}\n".to_vec(),
        ),
        (
            "apps/web/app.yaml".to_string(),
            app_yaml.as_bytes().to_vec(),
        ),
    ];
    for (p, c) in files {
        all.push((p.to_string(), c.as_bytes().to_vec()));
    }
    Snapshot::from_files(all)
}

const BASE: &str = "\
secrets:
  password: hunter2-very-secret
# The masking of a secret in a Marathon field is what these tests check.
secretsInMarathon: true
marathon:
  cmd: ./web
  instances: 2
  constraints: [[hostname, UNIQUE], [rack, GROUP_BY]]
  env:
    DB_PASSWORD: \"{{ secrets.password }}\"
files:
  nginx.conf: {path: /etc/nginx.conf, reload: hot}
  app.ini: {path: /etc/app.ini}
";

fn files(nginx: &'static str, ini: &'static str) -> [(&'static str, &'static str); 2] {
    [
        ("apps/web/files/nginx.conf", nginx),
        ("apps/web/files/app.ini", ini),
    ]
}

fn class_of(old: Arc<Snapshot>, new: Arc<Snapshot>) -> Option<(Class, Vec<Class>)> {
    let r = between(old, new, None).unwrap();
    let app = r.environments.first()?.apps.first()?.clone();
    Some((app.class?, app.aspects))
}

#[test]
fn identical_inputs_are_not_rendered_or_reported() {
    let r = between(
        snap(BASE, &files("a", "b")),
        snap(BASE, &files("a", "b")),
        None,
    )
    .unwrap();
    assert!(!r.has_changes());
    assert_eq!(r.summary.rendered, 0, "equal inputs must skip the render");
}

#[test]
fn classes_follow_what_changed() {
    let base = || snap(BASE, &files("a", "b"));
    assert_eq!(
        class_of(base(), snap(BASE, &files("a2", "b"))),
        Some((Class::Hot, vec![Class::Hot]))
    );
    assert_eq!(
        class_of(
            base(),
            snap(
                &BASE.replace("instances: 2", "instances: 3"),
                &files("a", "b")
            )
        ),
        Some((Class::Scale, vec![Class::Scale]))
    );
    assert_eq!(
        class_of(base(), snap(BASE, &files("a", "b2"))),
        Some((Class::Restart, vec![Class::Restart]))
    );
    assert_eq!(
        class_of(
            base(),
            snap(
                &BASE.replace("instances: 2", "instances: 3"),
                &files("a2", "b")
            )
        ),
        Some((Class::Scale, vec![Class::Hot, Class::Scale]))
    );
    assert_eq!(
        class_of(
            base(),
            snap(&BASE.replace("./web", "./web2"), &files("a", "b"))
        ),
        Some((Class::Redeploy, vec![Class::Redeploy]))
    );
}

#[test]
fn reordering_a_set_field_is_no_change() {
    let swapped = BASE.replace(
        "[[hostname, UNIQUE], [rack, GROUP_BY]]",
        "[[rack, GROUP_BY], [hostname, UNIQUE]]",
    );
    let r = between(
        snap(BASE, &files("a", "b")),
        snap(&swapped, &files("a", "b")),
        None,
    )
    .unwrap();
    assert!(!r.has_changes(), "{r:?}");
    assert_eq!(r.summary.rendered, 1);
}

#[test]
fn secrets_never_appear_in_any_format() {
    let changed = BASE.replace("hunter2-very-secret", "correct-horse-battery");
    let r = between(
        snap(BASE, &files("a", "b")),
        snap(&changed, &files("a", "b")),
        None,
    )
    .unwrap();
    let app = &r.environments[0].apps[0];
    assert!(app.secret_changed);
    assert_eq!(app.class, Some(Class::Redeploy));
    for f in [
        format::Format::Text,
        format::Format::Markdown,
        format::Format::Json,
    ] {
        let out = format::render(&r, f, false);
        assert!(
            !out.contains("hunter2"),
            "{f:?} leaks the old secret:\n{out}"
        );
        assert!(
            !out.contains("correct-horse"),
            "{f:?} leaks the new secret:\n{out}"
        );
    }
    assert!(format::render(&r, format::Format::Text, false).contains("(secret changed)"));
}

#[test]
fn added_and_removed_apps_are_reported() {
    let old = snap(BASE, &files("a", "b"));
    let mut all: Vec<(String, Vec<u8>)> = old
        .entries()
        .keys()
        .map(|p| (p.clone(), old.read_bytes(p).unwrap()))
        .collect();
    all.push((
        "apps/api/app.yaml".into(),
        b"marathon: {cmd: ./api}\n".to_vec(),
    ));
    let new = Snapshot::from_files(all);
    let r = between(old.clone(), new.clone(), None).unwrap();
    assert_eq!(r.summary.added, 1);
    assert_eq!(r.environments[0].apps[0].id, "/dev/api");
    let r = between(new, old, None).unwrap();
    assert_eq!(r.summary.removed, 1);
    assert_eq!(r.environments[0].apps[0].status, Status::Removed);
}

#[test]
fn credentials_in_a_marathon_url_are_never_shown() {
    let env = |url: &str| render::EnvSettings {
        name: "dev".into(),
        group: "/dev".into(),
        marathon: Some(url.into()),
        policy: Default::default(),
    };
    let a = env("https://ops:hunter2@marathon.example.com:8080");
    let b = env("https://ops:rotated@marathon.example.com:8080");
    assert_eq!(
        settings_changes(&a, &b),
        ["marathon: (credentials changed)"]
    );
    let c = env("https://ops:rotated@marathon2.example.com:8080");
    let changes = settings_changes(&a, &c).join("\n");
    assert_eq!(
        changes,
        "marathon: https://***@marathon.example.com:8080 → https://***@marathon2.example.com:8080"
    );
}
