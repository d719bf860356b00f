//! Plain data shared by every pipeline stage. No I/O, no async.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// An environment's name as written in `pacer.yaml` (`dev`, `staging`, `prod`).
pub type EnvName = String;

/// An app's path relative to its environment's group (`web`, `payments/api`).
/// It is the directory under `apps/` that holds the app.
pub type AppPath = String;

/// A content digest, written `sha256:<hex>` like Flux's artifact digests so
/// that it names its algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(pub String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// A digest over several named parts. Names and lengths are framed so
    /// that moving bytes from one part to the next changes the digest.
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut h = Sha256::new();
        for (name, bytes) in parts {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The first 12 hex digits: enough to tell versions apart in a label.
    pub fn short(&self) -> &str {
        let hex = self.0.strip_prefix("sha256:").unwrap_or(&self.0);
        &hex[..hex.len().min(12)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value that must never be printed: logs, diffs, plans and errors show
/// `***` instead.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The only way to the value. Callers that print must redact.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn digest_parts_are_framed() {
        let a = Digest::of_parts([("a", b"bc".as_slice()), ("d", b"".as_slice())]);
        let b = Digest::of_parts([("a", b"b".as_slice()), ("d", b"c".as_slice())]);
        assert_ne!(a, b);
        assert!(a.0.starts_with("sha256:"));
        assert_eq!(a.short().len(), 12);
    }
}
