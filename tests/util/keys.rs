//! Real signing keys for signed-commit tests: SSH keys from ssh-keygen and
//! OpenPGP keys from gpg, in a temp dir with its own GNUPGHOME, and
//! `git commit -S` with either.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How a commit is signed.
#[derive(Clone, Debug)]
pub enum Sign {
    No,
    /// With the SSH private key at this path.
    Ssh(String),
    /// With the OpenPGP key of this email.
    Pgp(String),
}

pub struct Keys {
    pub dir: tempfile::TempDir,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new()
    }
}

impl Keys {
    pub fn new() -> Keys {
        let k = Keys {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(k.gnupg()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(k.gnupg(), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        k
    }

    pub fn gnupg(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }

    /// A new ed25519 SSH key: (private key file, public line).
    pub fn ssh(&self, name: &str) -> (String, String) {
        let f = self.dir.path().join(name);
        tool(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&f),
        );
        let public = std::fs::read_to_string(f.with_extension("pub")).unwrap();
        (f.to_str().unwrap().to_string(), public.trim().to_string())
    }

    /// A new OpenPGP signing key for `email`: (email, armored public key).
    pub fn pgp(&self, email: &str) -> (String, String) {
        let gpg = |args: &[&str]| {
            tool(
                Command::new("gpg")
                    .env("GNUPGHOME", self.gnupg())
                    .args(["--batch", "--quiet"])
                    .args(args),
            )
        };
        gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("Test <{email}>"),
            "ed25519",
            "sign",
            "1y",
        ]);
        (email.to_string(), gpg(&["--armor", "--export", email]))
    }

    /// `git` in `dir` with this GNUPGHOME and a fixed author.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        tool(
            Command::new("git")
                .current_dir(dir)
                .args(args)
                .env("GNUPGHOME", self.gnupg())
                .env("GIT_AUTHOR_NAME", "Mallory Test")
                .env("GIT_AUTHOR_EMAIL", "author@example.com")
                .env("GIT_COMMITTER_NAME", "Mallory Test")
                .env("GIT_COMMITTER_EMAIL", "author@example.com"),
        )
    }

    /// Commits everything in `dir`, signed as `sign`: the commit id.
    pub fn commit(&self, dir: &Path, message: &str, sign: Sign) -> String {
        self.git(dir, &["add", "-A"]);
        let mut args: Vec<String> = Vec::new();
        match &sign {
            Sign::No => {}
            Sign::Ssh(key) => args.extend([
                "-c".into(),
                "gpg.format=ssh".into(),
                "-c".into(),
                format!("user.signingkey={key}"),
            ]),
            Sign::Pgp(email) => args.extend([
                "-c".into(),
                "gpg.format=openpgp".into(),
                "-c".into(),
                "gpg.program=gpg".into(),
                "-c".into(),
                format!("user.signingkey={email}"),
            ]),
        }
        args.extend(["commit", "-q", "--allow-empty", "-m", message].map(String::from));
        if !matches!(sign, Sign::No) {
            args.push("-S".into());
        }
        self.git(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
        self.git(dir, &["rev-parse", "HEAD"])
    }
}

/// Runs a tool that must succeed: its trimmed stdout.
pub fn tool(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
