use super::*;

const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByrlc56WZllRNdeJkG06PsyReXl7alREF3aEgQxWVXS";
const P256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCL1sjpMjva64DeYYwsvE3+ytAOrruwp6CivD5AmHVO/pTVYeLhtsGqCv4jxLPZTxj5kDt33vn0jw0sKlwsEsxw=";

fn parse(text: &str) -> Result<TrustList, Vec<TrustError>> {
    TrustList::parse(".pacer/allowed_signers", text.as_bytes())
}

#[test]
fn plain_lines_with_comments_and_blank_lines() {
    let list = parse(&format!(
        "# who may sign\n\nalice@example.com {ED} alice's laptop\nbob@example.com,ci {P256}\n"
    ))
    .unwrap();
    assert_eq!(list.ssh.len(), 2);
    assert_eq!(list.ssh[0].principals, ["alice@example.com"]);
    assert_eq!(list.ssh[0].at, ".pacer/allowed_signers:3");
    assert!(list.ssh[0].fingerprint().starts_with("SHA256:"));
    assert_eq!(list.ssh[1].principals, ["bob@example.com", "ci"]);
    assert!(list.ssh[1].namespaces.is_none());
}

#[test]
fn options_quoted_and_case_insensitive() {
    let list = parse(&format!(
        "\"alice@example.com\" NAMESPACES=\"git,file\",valid-after=\"20240101\",valid-before=\"20250101120000Z\" {ED}\n"
    ))
    .unwrap();
    let s = &list.ssh[0];
    assert_eq!(s.principals, ["alice@example.com"]);
    assert_eq!(
        s.namespaces.as_deref(),
        Some(&["git".to_string(), "file".to_string()][..])
    );
    assert!(s.allows_namespace("git"));
    assert!(!s.allows_namespace("email"));
    assert_eq!(s.valid_before, Some(1_735_732_800));
    assert!(s.valid_after.is_some());
}

#[test]
fn namespace_patterns_and_negation() {
    let list = parse(&format!("a namespaces=\"g*,!file\" {ED}\n")).unwrap();
    assert!(list.ssh[0].allows_namespace("git"));
    assert!(!list.ssh[0].allows_namespace("file"));
    assert!(!list.ssh[0].allows_namespace("x"));
}

#[test]
fn cert_authority_lines_are_skipped_with_a_note() {
    let list = parse(&format!("*@example.com cert-authority {ED}\nb {ED}\n")).unwrap();
    assert_eq!(list.ssh.len(), 1);
    assert_eq!(list.notes.len(), 1);
    assert!(list.notes[0].starts_with(".pacer/allowed_signers:1: a cert-authority"));
}

#[test]
fn bad_lines_are_reported_each_with_its_line() {
    let errors = parse(&format!(
        "ok {ED}\nnokey\nx valid-before=\"2024\" {ED}\ny frobnicate {ED}\nz ssh-ed25519 AAAAnotbase64\nq \"unterminated {ED}\n"
    ))
    .unwrap_err();
    let lines: Vec<usize> = errors
        .iter()
        .map(|e| match e {
            TrustError::Malformed { line, .. } => *line,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(lines, [2, 3, 4, 5, 6]);
    let text = errors[2].to_string();
    assert!(
        text.starts_with(".pacer/allowed_signers:4: unknown option"),
        "{text}"
    );
}

#[test]
fn times_in_every_length() {
    assert_eq!(parse_time("19700102Z").unwrap(), 86_400);
    assert_eq!(parse_time("197001020001Z").unwrap(), 86_460);
    assert_eq!(parse_time("19700102000101Z").unwrap(), 86_461);
    assert!(parse_time("19701302Z").is_err());
    assert!(parse_time("1970010").is_err());
    assert!(parse_time("٣٣٣٣٣٣٣٣").is_err());
}

#[test]
fn budgets_and_garbage() {
    let big = vec![b'#'; MAX_TRUST_BYTES + 1];
    assert!(matches!(
        TrustList::parse("f", &big).unwrap_err()[0],
        TrustError::TooLarge { .. }
    ));
    let many = format!("a {ED}\n").repeat(MAX_TRUST_ENTRIES + 1);
    assert!(matches!(
        parse(&many).unwrap_err()[0],
        TrustError::TooManyEntries { .. }
    ));
    assert!(TrustList::parse("f", b"\xff\xfe").is_err());
    let unclosed = parse("-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n").unwrap_err();
    assert!(
        unclosed[0].to_string().contains("without"),
        "{:?}",
        unclosed
    );
    let junk =
        parse("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n")
            .unwrap_err();
    assert!(matches!(junk[0], TrustError::Malformed { line: 1, .. }));
}

proptest::proptest! {
    #[test]
    fn never_panics_on_garbage(s in "\\PC{0,200}") {
        let _ = parse(&s);
        let _ = parse(&format!("{s} {ED}"));
    }
}
