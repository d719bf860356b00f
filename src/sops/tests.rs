use super::*;
use crate::sops::cipher::Plain;
use proptest::prelude::*;

fn demo() -> Identities {
    let mut ids = Identities::none();
    ids.add(keys::DEMO_KEY_FILE, "demo").unwrap();
    ids
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

const PLAIN: &str = "\
# top
values:
  port: 8080 # the port
secrets:
  # the database
  dbPassword: hunter2
  n: 42
  ratio: 1.50
  on: true
  quoted: \"0123\"
  empty: \"\"
  list: [a, 'b, c']
  block: |
    line one
    line two
marathon:
  cpus: 0.5
";

fn sealed() -> String {
    encrypt(
        PLAIN,
        &[keys::DEMO_RECIPIENT.into()],
        rules::PACER_REGEX,
        now(),
    )
    .unwrap()
}

#[test]
fn a_sealed_file_keeps_its_shape_and_opens_to_its_values() {
    let text = sealed();
    assert!(
        !text.contains("hunter2") && !text.contains("line one"),
        "{text}"
    );
    assert!(
        text.starts_with("# top\nvalues:\n  port: 8080 # the port\nsecrets:\n  #ENC[AES256_GCM,")
    );
    assert!(
        text.contains("  empty: \"\"\n"),
        "sops leaves an empty value: {text}"
    );
    assert!(text.contains("marathon:\n  cpus: 0.5\nsops:\n"));
    let opened = file::open(&text, &demo()).unwrap().unwrap();
    let get = |p: &str| opened.get(p).map(Plain::text);
    assert_eq!(get("/secrets/dbPassword").as_deref(), Some("hunter2"));
    assert_eq!(opened.get("/secrets/n"), Some(&Plain::Int(42)));
    assert_eq!(opened.get("/secrets/ratio"), Some(&Plain::Float(1.5)));
    assert_eq!(opened.get("/secrets/on"), Some(&Plain::Bool(true)));
    assert_eq!(get("/secrets/quoted").as_deref(), Some("0123"));
    assert_eq!(get("/secrets/list/1").as_deref(), Some("b, c"));
    assert_eq!(
        get("/secrets/block").as_deref(),
        Some("line one\nline two\n")
    );
    // The view is the plaintext file back, formatting and comments kept.
    let view = opened.view(&text);
    assert_eq!(
        view,
        PLAIN
            .replace("ratio: 1.50", "ratio: 1.5")
            .replace("'b, c'", "\"b, c\"")
            .replace(
                "block: |\n    line one\n    line two",
                "block: \"line one\\nline two\\n\""
            )
    );
}

#[test]
fn an_edit_changes_only_the_edited_value() {
    let text = sealed();
    let opened = file::open(&text, &demo()).unwrap().unwrap();
    let view = opened
        .view(&text)
        .replace("dbPassword: hunter2", "dbPassword: hunter3");
    let again = opened.reseal(&view, now()).unwrap();
    let changed: Vec<(&str, &str)> = text
        .lines()
        .zip(again.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 2, "the value and the MAC: {changed:#?}");
    assert!(changed[0].0.starts_with("  dbPassword: ENC["));
    assert!(changed[1].0.starts_with("    mac: ENC["));
    let reopened = file::open(&again, &demo()).unwrap().unwrap();
    assert_eq!(
        reopened
            .get("/secrets/dbPassword")
            .map(Plain::text)
            .as_deref(),
        Some("hunter3")
    );
}

#[test]
fn tampering_is_refused_and_never_shows_a_value() {
    let text = sealed();
    // A value moved to another key: its additional data no longer matches.
    let pw = text
        .lines()
        .find(|l| l.starts_with("  dbPassword: "))
        .unwrap();
    let n = text.lines().find(|l| l.starts_with("  n: ")).unwrap();
    let swapped = text
        .replace(pw, "\u{0}swap\u{0}")
        .replace(n, &pw.replace("dbPassword", "n"))
        .replace("\u{0}swap\u{0}", &n.replace("  n:", "  dbPassword:"));
    let e = file::open(&swapped, &demo()).err().unwrap();
    assert_eq!(e.kind, Kind::Corrupt, "{e}");
    // A plaintext value edited by hand outside `secrets` breaks the MAC.
    let e = file::open(&text.replace("cpus: 0.5", "cpus: 4"), &demo())
        .err()
        .unwrap();
    assert_eq!(e.kind, Kind::Mac, "{e}");
    // Plaintext where a sealed value belongs.
    let e = file::open(&text.replace(pw, "  dbPassword: letmein"), &demo())
        .err()
        .unwrap();
    assert_eq!(e.kind, Kind::Plaintext);
    assert_eq!(e.line, Some(6));
    assert!(!e.to_string().contains("letmein"), "{e}");
    // Nobody's key.
    let e = file::open(&text, &Identities::none()).err().unwrap();
    assert_eq!(e.kind, Kind::NoIdentity);
    assert!(e.to_string().contains(keys::DEMO_RECIPIENT));
}

#[test]
fn a_file_that_would_not_read_back_sealed_is_refused() {
    // A top-level map away from column 1 parses, but not with the `sops:`
    // block after it (found by the fuzz target).
    let e = crate::sops::encrypt(
        "# a comment\n  secrets:\n    db: hunter2\n",
        &[keys::DEMO_RECIPIENT.into()],
        "^secrets$",
        now(),
    )
    .unwrap_err();
    assert_eq!(e.kind, Kind::Unsupported, "{e}");
    assert!(e.to_string().contains("column 1"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn rules_name_the_recipients_of_each_file() {
    let rules = Rules::parse(&format!(
        "creation_rules:\n  - path_regex: (environments/prod|apps/.*/env/prod)\\.yaml$\n    encrypted_regex: '^secrets$'\n    age: {}\n  - path_regex: .*\\.yaml$\n    encrypted_regex: '^secrets$'\n    age: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n",
        keys::DEMO_RECIPIENT
    ))
    .unwrap();
    let text = sealed();
    let meta = file::inspect(&text).unwrap().unwrap();
    assert!(rules::check(Some(&rules), "apps/api/env/prod.yaml", Some(&meta), false).is_ok());
    let e = rules::check(Some(&rules), "apps/api/env/dev.yaml", Some(&meta), false).unwrap_err();
    assert_eq!(e.kind, Kind::Recipients);
    assert!(
        e.message
            .contains(&format!("also readable by {}", keys::DEMO_RECIPIENT)),
        "{e}"
    );
    let e = rules::check(Some(&rules), "environments/prod.yaml", None, true).unwrap_err();
    assert_eq!(e.kind, Kind::Plaintext);
    assert!(rules::check(None, "environments/prod.yaml", None, true).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_secrets_round_trip(values in proptest::collection::btree_map("[a-z][a-zA-Z0-9_]{0,8}", "\\PC{0,24}", 1..6)) {
        let mut text = String::from("values: {a: 1}\nsecrets:\n");
        for (k, v) in &values {
            text.push_str(&format!("  {k}: {}\n", serde_json::to_string(v).unwrap()));
        }
        let sealed = encrypt(&text, &[keys::DEMO_RECIPIENT.into()], rules::PACER_REGEX, now()).unwrap();
        let opened = file::open(&sealed, &demo()).unwrap().unwrap();
        for (k, v) in &values {
            let got = opened.get(&format!("/secrets/{k}")).map(Plain::text).unwrap_or_default();
            prop_assert_eq!(&got, v);
        }
        // The view seals back to a file that opens to the same values.
        let again = opened.reseal(&opened.view(&sealed), now()).unwrap();
        prop_assert_eq!(&again.lines().filter(|l| !l.contains("mac:")).collect::<Vec<_>>(), &sealed.lines().filter(|l| !l.contains("mac:")).collect::<Vec<_>>());
    }
}
