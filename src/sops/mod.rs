//! Secrets sealed in Git, in sops' format with age recipients.
//!
//! A repo YAML file sealed by `sops --encrypt --encrypted-regex
//! '^secrets$' --age RECIPIENT` keeps its `values` and `marathon` readable;
//! each value under `secrets` is sealed on its own with AES-256-GCM under
//! the file's data key, with its path as additional data, and the data key
//! is wrapped once per age recipient under the top-level `sops:` key with a
//! MAC over every value. pacer reads what the `sops` 3.x binary writes and
//! writes what it reads; unlike sops, it seals in place, so the file's
//! comments, key order and formatting stay, and an unchanged value keeps
//! its ciphertext.
//!
//! Pure but for [`keys::Identities::load`], which reads the key files
//! [`keys::IdentitySources`] names (the CLI reads the environment).
//! No error or `Debug` holds a plaintext value or a key.

pub mod cipher;
mod comments;
pub mod file;
pub mod keys;
mod meta;
pub mod rules;
pub mod tree;

pub use file::{Metadata, Opened, Selection};
pub use keys::{Identities, IdentitySources};
pub use rules::Rules;

/// What went wrong, for callers that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Yaml,
    Metadata,
    Unsupported,
    Budget,
    NoIdentity,
    NotForYou,
    Corrupt,
    Mac,
    Plaintext,
    Recipients,
    Rules,
    AlreadySealed,
}

/// A problem with a sealed file: a message and a fix, at a line when
/// known. Never holds a value or a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: Kind,
    pub line: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, line: Option<usize>, message: String) -> Error {
        Error {
            kind,
            line,
            message,
            hint: None,
        }
    }

    pub fn hint(mut self, h: impl Into<String>) -> Error {
        self.hint = Some(h.into());
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Seals a plaintext file for `recipients` under a new data key.
pub fn encrypt(
    text: &str,
    recipients: &[String],
    encrypted_regex: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, Error> {
    let key: [u8; 32] = rand::random();
    let stanzas = keys::wrap(&key, recipients).map_err(|e| Error::new(Kind::Rules, None, e))?;
    file::seal(
        text,
        &key,
        file::Trailer::New(&stanzas),
        &Selection::regex(encrypted_regex)?,
        &Default::default(),
        now,
    )
}

/// Seals an opened file again under a new data key for `recipients`:
/// every value gets a new ciphertext.
pub fn rotate(
    opened: &Opened,
    text: &str,
    recipients: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, Error> {
    let key: [u8; 32] = rand::random();
    let stanzas = keys::wrap(&key, recipients).map_err(|e| Error::new(Kind::Rules, None, e))?;
    file::seal(
        &opened.view(text),
        &key,
        file::Trailer::New(&stanzas),
        &opened.meta.selection,
        &Default::default(),
        now,
    )
}

#[cfg(test)]
mod tests;
