//! `pacer verify` against commits signed for real by `git commit -S`: SSH
//! keys from ssh-keygen and OpenPGP keys from gpg, each in a temp dir.

use crate::util::keys::{Keys, Sign};
use crate::util::pacer;

const PACER_YAML: &str = "version: 1\nenvironments:\n  dev:\n    verify:\n      mode: head\n      signers: .pacer/allowed_signers\n";

/// A config repo with its own keys and a GNUPGHOME.
struct Signed {
    repo: tempfile::TempDir,
    keys: Keys,
}

impl Signed {
    fn new() -> Signed {
        let s = Signed {
            repo: tempfile::tempdir().unwrap(),
            keys: Keys::new(),
        };
        s.git(&["init", "-q", "-b", "main"]);
        s.write("pacer.yaml", PACER_YAML);
        s.write("environments/dev.yaml", "values: {}\n");
        s
    }

    fn dir(&self) -> &str {
        self.repo.path().to_str().unwrap()
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.repo.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn git(&self, args: &[&str]) -> String {
        self.keys.git(self.repo.path(), args)
    }

    /// A new ed25519 SSH key; returns (private key file, public line).
    fn ssh_key(&self, name: &str) -> (String, String) {
        self.keys.ssh(name)
    }

    /// A new OpenPGP key; returns (its email, the armored public key).
    fn pgp_key(&self, email: &str) -> (String, String) {
        self.keys.pgp(email)
    }

    fn commit(&self, message: &str, sign: Sign) -> String {
        self.keys.commit(self.repo.path(), message, sign)
    }

    fn verify(&self, extra: &[&str]) -> crate::util::Run {
        let mut args = vec!["verify", "--repo", self.dir()];
        args.extend_from_slice(extra);
        pacer(&args)
    }
}

/// A base commit trusting `lines`, then nothing else.
fn with_signers(lines: &str) -> Signed {
    let s = Signed::new();
    s.write(".pacer/allowed_signers", lines);
    s.commit("base", Sign::No);
    s
}

#[test]
fn ssh_good_untrusted_unsigned_and_json() {
    let s = Signed::new();
    let (alice, alice_pub) = s.ssh_key("alice");
    let (eve, _) = s.ssh_key("eve");
    s.write(
        ".pacer/allowed_signers",
        &format!("alice@example.com {alice_pub}\n"),
    );
    s.commit("base", Sign::No);
    s.commit("signed by alice", Sign::Ssh(alice));
    let ok = s.verify(&["--signers-from", "HEAD~1"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout.contains("ok ") && ok.stdout.contains("alice@example.com"),
        "{ok:?}"
    );
    let json = s.verify(&["--signers-from", "HEAD~1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["verified"], true);
    let c = &v["checks"][0]["commits"][0];
    assert_eq!(c["signer"]["kind"], "ssh");
    assert!(
        c["signer"]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );

    s.commit("signed by eve", Sign::Ssh(eve));
    let bad = s.verify(&["--signers-from", "HEAD~2"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stdout.contains("REFUSED") && bad.stdout.contains("not in the trust list (SHA256:"),
        "{bad:?}"
    );
    assert!(
        bad.stdout.contains("Mallory Test <author@example.com>"),
        "{bad:?}"
    );

    s.commit("unsigned", Sign::No);
    let bad = s.verify(&["--signers-from", "HEAD~3", "--format", "json"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    let v: serde_json::Value = serde_json::from_str(&bad.stdout).unwrap();
    assert_eq!(
        v["checks"][0]["commits"][0]["refused"]["reason"],
        "unsigned"
    );
}

#[test]
fn a_tampered_commit_keeps_its_signature_and_is_refused() {
    let s = Signed::new();
    let (alice, alice_pub) = s.ssh_key("alice");
    s.write(".pacer/allowed_signers", &format!("alice {alice_pub}\n"));
    s.commit("base", Sign::No);
    s.commit("deploy 1 replica", Sign::Ssh(alice));
    let object = s.git(&["cat-file", "commit", "HEAD"]);
    assert!(object.contains("gpgsig -----BEGIN SSH SIGNATURE-----"));
    let forged = object.replace("deploy 1 replica", "deploy 9 replicas");
    let path = s.keys.dir.path().join("forged");
    std::fs::write(&path, format!("{forged}\n")).unwrap();
    let id = s.git(&["hash-object", "-w", "-t", "commit", path.to_str().unwrap()]);
    let bad = s.verify(&["--rev", &id, "--signers-from", "HEAD~1"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stdout.contains("does not match the commit"), "{bad:?}");
}

#[test]
fn outside_valid_before_and_wrong_namespace_lines() {
    let s = Signed::new();
    let (alice, alice_pub) = s.ssh_key("alice");
    let (bob, bob_pub) = s.ssh_key("bob");
    s.write(
        ".pacer/allowed_signers",
        &format!(
            "alice valid-before=\"20200101Z\" {alice_pub}\nbob namespaces=\"file\" {bob_pub}\n"
        ),
    );
    s.commit("base", Sign::No);
    s.commit("late", Sign::Ssh(alice));
    let bad = s.verify(&["--signers-from", "HEAD~1"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stdout
            .contains("outside its validity window: valid-before=2020-01-01"),
        "{bad:?}"
    );
    s.commit("wrong namespace", Sign::Ssh(bob));
    let bad = s.verify(&["--signers-from", "HEAD~2"]);
    assert!(bad.stdout.contains("namespace"), "{bad:?}");
}

#[test]
fn merges_and_mode_all_with_one_unsigned_commit() {
    let s = Signed::new();
    let (alice, alice_pub) = s.ssh_key("alice");
    s.write(".pacer/allowed_signers", &format!("alice {alice_pub}\n"));
    let base = s.commit("base", Sign::No);
    s.git(&["checkout", "-q", "-b", "side"]);
    s.write("side.txt", "x");
    s.commit("side", Sign::Ssh(alice.clone()));
    s.git(&["checkout", "-q", "main"]);
    s.write("main.txt", "y");
    s.commit("main", Sign::Ssh(alice.clone()));
    let sign = format!("user.signingkey={alice}");
    s.git(&[
        "-c",
        "gpg.format=ssh",
        "-c",
        &sign,
        "merge",
        "-q",
        "-S",
        "--no-edit",
        "side",
    ]);
    let ok = s.verify(&["--signers-from", &base, "--mode", "all"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("3 of 3 commits verified"), "{ok:?}");

    s.git(&["checkout", "-q", "side"]);
    s.commit("unsigned on the side", Sign::No);
    s.git(&["checkout", "-q", "main"]);
    s.git(&[
        "-c",
        "gpg.format=ssh",
        "-c",
        &sign,
        "merge",
        "-q",
        "-S",
        "--no-edit",
        "side",
    ]);
    let head_only = s.verify(&["--signers-from", &base]);
    assert_eq!(
        head_only.code, 0,
        "mode head checks only the merge: {head_only:?}"
    );
    let all = s.verify(&["--signers-from", &base, "--mode", "all"]);
    assert_eq!(all.code, 1, "{all:?}");
    assert!(
        all.stdout.contains("4 of 5 commits verified, 1 refused"),
        "{all:?}"
    );
    assert!(all.stdout.contains("unsigned on the side"), "{all:?}");
}

#[test]
fn a_key_added_in_the_same_commit_is_not_trusted() {
    let s = Signed::new();
    let (_, alice_pub) = s.ssh_key("alice");
    let (eve, eve_pub) = s.ssh_key("eve");
    s.write(".pacer/allowed_signers", &format!("alice {alice_pub}\n"));
    s.commit("base", Sign::No);
    s.write(
        ".pacer/allowed_signers",
        &format!("alice {alice_pub}\neve {eve_pub}\n"),
    );
    s.commit("trust myself", Sign::Ssh(eve));
    let bad = s.verify(&["--signers-from", "HEAD~1"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stdout.contains("not in the trust list"), "{bad:?}");
    // Without a trusted base there is no check at all, rather than one
    // that reads the commit's own trust list.
    let usage = s.verify(&[]);
    assert_eq!(usage.code, 1, "{usage:?}");
    assert!(usage.stderr.contains("--signers-from REV"), "{usage:?}");
}

#[test]
fn a_trust_list_outside_the_repo() {
    let s = with_signers("# nobody\n");
    let (alice, alice_pub) = s.ssh_key("alice");
    s.commit("signed", Sign::Ssh(alice));
    let file = s.keys.dir.path().join("trusted");
    std::fs::write(&file, format!("alice {alice_pub}\n")).unwrap();
    let ok = s.verify(&["--signers", file.to_str().unwrap(), "--env", "dev"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    std::fs::write(&file, "alice frob ssh-ed25519 AAAA\n").unwrap();
    let bad = s.verify(&["--signers", file.to_str().unwrap()]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("trusted:1: unknown option `frob`"),
        "{bad:?}"
    );
}

#[test]
fn openpgp_good_untrusted_and_tampered() {
    let s = Signed::new();
    let (alice, alice_key) = s.pgp_key("alice@example.com");
    let (eve, _) = s.pgp_key("eve@example.com");
    s.write(
        ".pacer/allowed_signers",
        &format!("# OpenPGP keys may share the file\n{alice_key}\n"),
    );
    s.commit("base", Sign::No);
    s.commit("pgp signed", Sign::Pgp(alice));
    let ok = s.verify(&["--signers-from", "HEAD~1", "--format", "json"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    let v: serde_json::Value = serde_json::from_str(&ok.stdout).unwrap();
    let signer = &v["checks"][0]["commits"][0]["signer"];
    assert_eq!(signer["kind"], "pgp");
    assert_eq!(signer["principal"], "Test <alice@example.com>");
    assert_eq!(signer["fingerprint"].as_str().unwrap().len(), 40);

    let object = s.git(&["cat-file", "commit", "HEAD"]);
    let path = s.keys.dir.path().join("forged");
    std::fs::write(
        &path,
        format!("{}\n", object.replace("pgp signed", "pgp signed, really")),
    )
    .unwrap();
    let id = s.git(&["hash-object", "-w", "-t", "commit", path.to_str().unwrap()]);
    let bad = s.verify(&["--rev", &id, "--signers-from", "HEAD~1"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stdout.contains("does not match the commit"), "{bad:?}");

    s.commit("eve's", Sign::Pgp(eve));
    let bad = s.verify(&["--signers-from", "HEAD~2"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stdout.contains("not in the trust list"), "{bad:?}");
}

#[test]
fn validate_points_at_the_policy_and_the_trust_list() {
    let s = with_signers("alice frob ssh-ed25519 AAAA\n");
    let bad = pacer(&["validate", "--repo", s.dir()]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains(".pacer/allowed_signers:1"), "{bad:?}");
    s.write(
        "pacer.yaml",
        &PACER_YAML.replace(".pacer/allowed_signers", "../etc/passwd"),
    );
    let bad = pacer(&["validate", "--repo", s.dir()]);
    assert!(bad.stderr.contains("pacer.yaml:6"), "{bad:?}");
    s.write(
        "pacer.yaml",
        &PACER_YAML.replace("mode: head", "mode: some"),
    );
    let bad = pacer(&["validate", "--repo", s.dir()]);
    assert!(bad.stderr.contains("pacer.yaml:5"), "{bad:?}");
}
