//! age identities (who can read) and recipients (who a file is sealed
//! for), and the data key wrapped once per recipient, armored, as sops
//! stores it under `sops.age`.

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::str::FromStr;

/// At most this many recipients in one file, and bytes in one wrapped key.
pub const MAX_RECIPIENTS: usize = 64;
pub const MAX_ARMORED_BYTES: usize = 4096;
/// A key file: bytes and identities.
pub const MAX_KEY_FILE_BYTES: usize = 256 * 1024;
pub const MAX_IDENTITIES: usize = 1000;

/// The demo key of the example repo: public, documented as such.
pub const DEMO_KEY_FILE: &str = include_str!("demo-age-key.txt");
pub const DEMO_RECIPIENT: &str = "age1mjlh8y6esazugpmj07mue9mmuhmaypl3huj39qjmj79hhd87yqaqqhhytx";

/// The age identities this process holds. Debug shows only their public keys.
#[derive(Default)]
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
    /// Where they came from (paths, variable names), for messages.
    pub sources: Vec<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("recipients", &self.recipients())
            .field("sources", &self.sources)
            .finish()
    }
}

/// Where identities may come from: the environment as read at the command
/// line's edge, in sops' order, plus pacer's own file.
#[derive(Clone, Debug, Default)]
pub struct IdentitySources {
    /// `PACER_AGE_KEY_FILE`.
    pub pacer_key_file: Option<PathBuf>,
    /// `SOPS_AGE_KEY_FILE`.
    pub sops_key_file: Option<PathBuf>,
    /// `SOPS_AGE_KEY`: the keys themselves. Never printed.
    pub sops_key: Option<crate::model::Secret<String>>,
    /// sops' default file: `$XDG_CONFIG_HOME/sops/age/keys.txt`, else
    /// `$HOME/.config/sops/age/keys.txt`. Read when it exists.
    pub default_file: Option<PathBuf>,
    /// The demo key (`pacer demo` only).
    pub demo: bool,
}

/// The names of what is looked at, for a "no identity" message.
pub const WHERE: &str =
    "PACER_AGE_KEY_FILE, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY or ~/.config/sops/age/keys.txt";

impl IdentitySources {
    /// Reads the variables. The only place the environment is read.
    pub fn from_env() -> IdentitySources {
        let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
        let default_file = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("sops/age/keys.txt"));
        IdentitySources {
            pacer_key_file: var("PACER_AGE_KEY_FILE").map(PathBuf::from),
            sops_key_file: var("SOPS_AGE_KEY_FILE").map(PathBuf::from),
            sops_key: std::env::var("SOPS_AGE_KEY")
                .ok()
                .filter(|v| !v.is_empty())
                .map(crate::model::Secret::new),
            default_file,
            demo: false,
        }
    }
}

impl Identities {
    pub fn none() -> Identities {
        Identities::default()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads every source that is set. A file named by a variable must
    /// exist; sops' default file may not.
    pub fn load(src: &IdentitySources) -> Result<Identities, String> {
        let mut ids = Identities::none();
        let named = [
            ("PACER_AGE_KEY_FILE", &src.pacer_key_file),
            ("SOPS_AGE_KEY_FILE", &src.sops_key_file),
        ];
        for (var, path) in named {
            if let Some(p) = path {
                let text = read_bounded(p).map_err(|e| format!("{var}={}: {e}", p.display()))?;
                ids.add(&text, &format!("{var} ({})", p.display()))?;
            }
        }
        if let Some(k) = &src.sops_key {
            ids.add(k.expose(), "SOPS_AGE_KEY")?;
        }
        if let Some(p) = &src.default_file
            && p.is_file()
        {
            let text = read_bounded(p).map_err(|e| format!("{}: {e}", p.display()))?;
            ids.add(&text, &p.display().to_string())?;
        }
        if src.demo {
            ids.add(DEMO_KEY_FILE, "the demo key")?;
        }
        Ok(ids)
    }

    /// Adds the identities of a key file's text (`age-keygen`'s format:
    /// `AGE-SECRET-KEY-1…` lines, `#` comments). An error names the line,
    /// never its content.
    pub fn add(&mut self, text: &str, source: &str) -> Result<(), String> {
        if text.len() > MAX_KEY_FILE_BYTES {
            return Err(format!("{source}: over {} KiB", MAX_KEY_FILE_BYTES / 1024));
        }
        let mut found = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line).map_err(|_| {
                format!(
                    "{source}: line {} is not an age identity (AGE-SECRET-KEY-1…); pacer reads X25519 identities only",
                    i + 1
                )
            })?;
            if self.keys.len() >= MAX_IDENTITIES {
                return Err(format!("{source}: more than {MAX_IDENTITIES} identities"));
            }
            self.keys.push(id);
            found += 1;
        }
        if found == 0 {
            return Err(format!("{source}: holds no age identity"));
        }
        self.sources.push(source.to_string());
        Ok(())
    }

    /// The public keys of the identities held.
    pub fn recipients(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.to_public().to_string())
            .collect()
    }

    /// The data key, from the first stanza one of the identities opens.
    pub fn unwrap(&self, stanzas: &[Stanza]) -> Result<[u8; 32], UnwrapError> {
        if self.keys.is_empty() {
            return Err(UnwrapError::NoIdentity);
        }
        let ids: Vec<&dyn age::Identity> = self.keys.iter().map(|k| k as _).collect();
        for s in stanzas {
            if s.enc.len() > MAX_ARMORED_BYTES {
                continue;
            }
            let Ok(d) = age::Decryptor::new_buffered(ArmoredReader::new(s.enc.as_bytes())) else {
                continue;
            };
            let Ok(reader) = d.decrypt(ids.iter().copied()) else {
                continue;
            };
            let mut key = Vec::new();
            // A data key is 32 bytes: read one more to tell a longer one.
            if reader.take(33).read_to_end(&mut key).is_ok()
                && let Ok(k) = <[u8; 32]>::try_from(key.as_slice())
            {
                return Ok(k);
            }
        }
        Err(UnwrapError::NoMatch)
    }
}

fn read_bounded(p: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(p).map_err(|e| e.to_string())?;
    if meta.len() > MAX_KEY_FILE_BYTES as u64 {
        return Err(format!("over {} KiB", MAX_KEY_FILE_BYTES / 1024));
    }
    std::fs::read_to_string(p).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwrapError {
    NoIdentity,
    NoMatch,
}

/// One recipient's copy of the data key (`sops.age[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    pub recipient: String,
    pub enc: String,
}

/// Checks a recipient string: an X25519 age public key.
pub fn parse_recipient(r: &str) -> Result<age::x25519::Recipient, String> {
    age::x25519::Recipient::from_str(r.trim()).map_err(|_| {
        format!(
            "`{}` is not an age recipient (age1…); pacer seals for X25519 recipients only",
            r.chars().take(80).collect::<String>()
        )
    })
}

/// Wraps the data key for each recipient on its own, as sops does.
pub fn wrap(key: &[u8; 32], recipients: &[String]) -> Result<Vec<Stanza>, String> {
    if recipients.is_empty() {
        return Err("no recipients: name at least one age public key".into());
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(format!("more than {MAX_RECIPIENTS} recipients"));
    }
    recipients
        .iter()
        .map(|r| {
            let rec = parse_recipient(r)?;
            let enc = age::Encryptor::with_recipients(std::iter::once(&rec as _))
                .map_err(|e| format!("sealing for {r}: {e}"))?;
            let mut out = Vec::new();
            let armored = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)
                .map_err(|e| e.to_string())?;
            let mut w = enc.wrap_output(armored).map_err(|e| e.to_string())?;
            w.write_all(key).map_err(|e| e.to_string())?;
            w.finish()
                .and_then(|a| a.finish())
                .map_err(|e| e.to_string())?;
            Ok(Stanza {
                recipient: r.trim().to_string(),
                enc: String::from_utf8(out).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_for_its_recipient() {
        let mut demo = Identities::none();
        demo.add(DEMO_KEY_FILE, "demo").unwrap();
        assert_eq!(demo.recipients(), [DEMO_RECIPIENT]);
        let other = age::x25519::Identity::generate();
        let key = [9u8; 32];
        let stanzas = wrap(&key, &[DEMO_RECIPIENT.to_string()]).unwrap();
        assert!(
            stanzas[0]
                .enc
                .starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
        );
        assert_eq!(demo.unwrap(&stanzas), Ok(key));
        let mut them = Identities::none();
        use age::secrecy::ExposeSecret;
        them.add(other.to_string().expose_secret(), "other")
            .unwrap();
        assert_eq!(them.unwrap(&stanzas), Err(UnwrapError::NoMatch));
        assert_eq!(
            Identities::none().unwrap(&stanzas),
            Err(UnwrapError::NoIdentity)
        );
    }

    #[test]
    fn a_bad_key_line_is_named_never_shown() {
        let mut ids = Identities::none();
        let e = ids
            .add("# c\nAGE-SECRET-KEY-1NOTAKEYATALLBUTSECRETISH\n", "f")
            .unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("NOTAKEY"), "{e}");
    }
}
