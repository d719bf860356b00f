//! The token signing key: from `--token-key-file`, else generated at first
//! start and kept (mode 0600) in the state directory, so a restart keeps
//! every agent's token valid.

use super::token::Key;
use std::io::Write;
use std::path::Path;

/// A key file larger than this is not a key.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "token.key";

/// Reads a key file: its bytes, surrounding white space trimmed.
pub fn read(path: &Path) -> anyhow::Result<Key> {
    let len = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("token key {}: {e}", path.display()))?
        .len();
    if len > MAX_KEY_FILE_BYTES {
        anyhow::bail!(
            "token key {}: {len} bytes; a key file holds at most {MAX_KEY_FILE_BYTES} (e.g. `openssl rand -hex 32`)",
            path.display()
        );
    }
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("token key {}: {e}", path.display()))?;
    let trimmed = bytes.trim_ascii().to_vec();
    Key::new(trimmed).map_err(|e| {
        anyhow::anyhow!(
            "token key {}: {e} (e.g. `openssl rand -hex 32`)",
            path.display()
        )
    })
}

/// The key in `dir`, made (32 random bytes, hex, mode 0600) when absent.
pub fn load_or_create(dir: &Path) -> anyhow::Result<Key> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        return read(&path);
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(key.as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "generated a token signing key");
        }
        // Another daemon on the same directory made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => anyhow::bail!("creating the token key {}: {e}", path.display()),
    }
    read(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        let claims = super::super::token::Claims {
            env: "dev".into(),
            app: "/dev/web".into(),
            task: "t".into(),
            exp: 10,
        };
        let t = super::super::token::sign(&a, &claims);
        assert!(
            super::super::token::verify(&b, &t, 0).is_ok(),
            "same key after a restart"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn short_or_huge_key_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "short\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("at least 32") && e.contains("openssl rand"),
            "{e}"
        );
        std::fs::write(&p, vec![b'a'; 5000]).unwrap();
        assert!(read(&p).is_err());
        std::fs::write(&p, format!("{}\n", "ab".repeat(32))).unwrap();
        assert!(read(&p).is_ok());
    }
}
