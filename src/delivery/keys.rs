//! The token signing key: from `--token-key-file`, else generated at first
//! start and kept (mode 0600) in the state directory, so a restart keeps
//! every agent's token valid.
//!
//! A key file holds the key as hex or base64 (standard or URL-safe, padded
//! or not), at least 32 bytes once decoded. It must be private (owned by
//! this user, or by root for a mounted secret; no group or other bits):
//! whoever can replace it forges tokens.

use super::private;
use super::token::Key;
use base64::Engine;
use std::io::Read;
use std::path::Path;

/// A key file larger than this is not a key.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "token.key";

const HOW: &str = "e.g. `openssl rand -hex 32 > FILE && chmod 600 FILE`";

/// The key material a key file's text stands for: hex when it is hex, else
/// base64; `None` when it is neither.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.trim_ascii();
    if let Ok(bytes) = hex::decode(text) {
        return Some(bytes);
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(text).ok())
}

/// Reads a key file (not through a symlink), checking it is private.
pub fn read(path: &Path) -> anyhow::Result<Key> {
    let f = private::open_read(path)
        .map_err(|e| anyhow::anyhow!("token key {}: {e} ({HOW})", path.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| anyhow::anyhow!("token key {}: {e}", path.display()))?;
    private::check(path, "the token key", &meta, true)?;
    let len = meta.len();
    if len > MAX_KEY_FILE_BYTES {
        anyhow::bail!(
            "token key {}: {len} bytes; a key file holds at most {MAX_KEY_FILE_BYTES} ({HOW})",
            path.display()
        );
    }
    let mut text = Vec::new();
    f.take(MAX_KEY_FILE_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| anyhow::anyhow!("token key {}: {e}", path.display()))?;
    let Some(bytes) = decode(&text) else {
        anyhow::bail!(
            "token key {}: neither hex nor base64 ({HOW})",
            path.display()
        );
    };
    Key::new(bytes).map_err(|e| anyhow::anyhow!("token key {}: {e} ({HOW})", path.display()))
}

/// The key in `dir` (already checked private), made when absent: 32 random
/// bytes, hex, written to a temp file, fsync'd and linked into place, so a
/// crash or a second daemon never leaves a half-written key.
pub fn load_or_create(dir: &Path) -> anyhow::Result<Key> {
    let path = dir.join(KEY_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => return read(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("token key {}: {e}", path.display()),
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    let tmp = private::write_temp(&path, key.as_bytes())
        .map_err(|e| anyhow::anyhow!("creating the token key {}: {e}", path.display()))?;
    // A link, not a rename: it never replaces a key another daemon on the
    // same directory put there first (then theirs is used).
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            private::sync_parent(&path);
            tracing::info!(path = %path.display(), "generated a token signing key");
        }
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
            addr: None,
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

    /// Writes a private key file.
    fn write(p: &Path, text: impl AsRef<[u8]>) {
        std::fs::write(p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    #[test]
    fn short_or_huge_key_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write(&p, "short\n");
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("hex nor base64") && e.contains("openssl rand"),
            "{e}"
        );
        write(&p, vec![b'a'; 5000]);
        assert!(read(&p).is_err());
        write(&p, format!("{}\n", "ab".repeat(32)));
        assert!(read(&p).is_ok());
    }

    #[test]
    fn key_material_is_decoded_and_needs_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        // 40 hex digits are 20 bytes of key, however long the text.
        write(&p, "ab".repeat(20));
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("20 bytes") && e.contains("at least 32"), "{e}");
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        write(&p, format!("{b64}\n"));
        assert!(read(&p).is_ok());
        assert_eq!(decode(b64.as_bytes()), Some(vec![7u8; 32]));
        // Typed text is not a key: 40 letters that are neither encoding.
        write(&p, "this is not a key, just forty characters");
        assert!(read(&p).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_or_linked_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write(&p, "ab".repeat(32));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("644"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A token.key planted as a symlink in the state directory.
        let state = dir.path().join("state");
        private::ensure_dir(&state).unwrap();
        std::os::unix::fs::symlink(&p, state.join(KEY_FILE)).unwrap();
        assert!(load_or_create(&state).is_err());
    }
}
