//! Keeping secrets out of everything people see.
//!
//! Text matching can't do it: a template may transform a secret (`| upper`,
//! `| reverse`, `[8:]`), JSON escapes one holding `"` or a newline, and a
//! short secret matches unrelated text. So an app that uses a secret is
//! rendered twice: with the real values, for the write to Marathon and for
//! change detection, and with `<secret:name>` in place of every secret, for
//! `render`, `diff`, `plan`, the daemon's status and every error. Whatever a
//! template does, the second rendering never saw a real value.
//!
//! Apps whose templates read no secret render once: both renderings are
//! the same.

use crate::model::{Digest, Secret};
use minijinja::value::{Enumerator, Object, ObjectRepr, Value as JinjaValue};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What people see in place of secret `name`.
pub fn placeholder(name: &str) -> String {
    format!("<secret:{name}>")
}

/// What people see in place of a live value that held a secret and is no
/// longer what Git renders.
pub const CHANGED: &str = "<secret changed>";

/// The `secrets` a template sees. It records which secrets were read, so
/// that an app that reads none is rendered once, and so that a change to a
/// secret can be told apart from a visible change.
pub struct SecretsObject {
    values: BTreeMap<String, JinjaValue>,
    used: Mutex<BTreeSet<String>>,
    /// How many times a template read a secret.
    reads: AtomicUsize,
    placeholders: bool,
}

/// Never the values: minijinja's `debug()` prints objects with this.
impl std::fmt::Debug for SecretsObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.values.keys().map(|k| placeholder(k)))
            .finish()
    }
}

impl SecretsObject {
    /// The real values.
    pub fn real(secrets: &[(String, Secret<String>)]) -> Arc<Self> {
        Self::build(
            secrets
                .iter()
                .map(|(n, s)| (n.clone(), JinjaValue::from(s.expose().as_str()))),
            false,
        )
    }

    /// Placeholders: `<secret:name>` for each.
    pub fn placeholders(secrets: &[(String, Secret<String>)]) -> Arc<Self> {
        Self::build(
            secrets
                .iter()
                .map(|(n, _)| (n.clone(), JinjaValue::from(placeholder(n)))),
            true,
        )
    }

    fn build(values: impl Iterator<Item = (String, JinjaValue)>, placeholders: bool) -> Arc<Self> {
        Arc::new(SecretsObject {
            values: values.collect(),
            used: Mutex::new(BTreeSet::new()),
            reads: AtomicUsize::new(0),
            placeholders,
        })
    }

    /// How many reads so far: compare before and after a template to learn
    /// whether it read a secret.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// These are placeholders, not the real values.
    pub fn is_placeholders(&self) -> bool {
        self.placeholders
    }

    /// The names read since the last call.
    pub fn take_used(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.used.lock())
    }
}

impl Object for SecretsObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        let name = key.as_str()?;
        let v = self.values.get(name)?.clone();
        self.used.lock().insert(name.to_string());
        self.reads.fetch_add(1, Ordering::Relaxed);
        Some(v)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.values
                .keys()
                .map(|k| JinjaValue::from(k.as_str()))
                .collect(),
        )
    }
}

/// A digest of the values of the secrets `names`, so that a change to one
/// of them shows as "(secret changed)" even where the placeholder rendering
/// is equal. Never printed.
pub fn digest_of(names: &BTreeSet<String>, secrets: &[(String, Secret<String>)]) -> Digest {
    Digest::of_parts(
        secrets
            .iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(n, s)| (n.as_str(), s.expose().as_bytes())),
    )
}

/// The app as people see it: secrets replaced. Kept only for apps whose
/// templates read a secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Shown {
    /// The app definition with placeholders.
    pub marathon: Value,
    /// File contents with placeholders, by file name.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Per part (`""` for the app definition, else the file's name): the
    /// digest of the secrets it read. Absent: the part reads none.
    pub secret_digests: BTreeMap<String, Digest>,
}

/// `live` (an app as Marathon has it, real secrets included) made fit to
/// show beside the placeholder rendering `shown` of `real`:
///
/// - where Git's value came from a secret (`real` and `shown` differ) and
///   Marathon has that same value, it shows as the placeholder, so an app in
///   sync shows no diff;
/// - where Marathon has another value there, it shows as `<secret changed>`;
/// - any other value of Marathon's that differs from Git's and holds a
///   secret's value anywhere shows as `<secret changed>` as a whole: it can't
///   be rendered, and a part of it must not be printed.
///
/// A diff of `shown` against the result differs exactly where a diff of
/// `real` against `live` does.
pub fn shown_live(
    real: &Value,
    shown: &Value,
    live: &Value,
    secrets: &[(String, Secret<String>)],
) -> Value {
    let mut out = live.clone();
    mask(real, Some(shown), &mut out, secrets);
    out
}

fn mask(
    real: &Value,
    shown: Option<&Value>,
    live: &mut Value,
    secrets: &[(String, Secret<String>)],
) {
    match live {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                let r = real.get(k).unwrap_or(&Value::Null);
                mask(r, shown.and_then(|s| s.get(k)), v, secrets);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                let r = real.get(i).unwrap_or(&Value::Null);
                mask(r, shown.and_then(|s| s.get(i)), v, secrets);
            }
        }
        leaf => {
            let from_secret = shown.is_some_and(|s| s != real);
            if from_secret {
                *leaf = if *leaf == *real {
                    shown.cloned().unwrap_or(Value::Null)
                } else {
                    Value::String(CHANGED.into())
                };
            } else if *leaf != *real && holds_secret(leaf, secrets) {
                *leaf = Value::String(CHANGED.into());
            }
        }
    }
}

fn holds_secret(v: &Value, secrets: &[(String, Secret<String>)]) -> bool {
    let Value::String(s) = v else { return false };
    secrets
        .iter()
        .any(|(_, x)| !x.expose().is_empty() && s.contains(x.expose().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets() -> Vec<(String, Secret<String>)> {
        vec![("pw".into(), Secret::new("hunter2".into()))]
    }

    #[test]
    fn live_values_from_secrets_show_as_placeholders() {
        let real = json!({"env": {"PW": "HUNTER2", "A": "x"}, "args": ["--pw", "hunter2"]});
        let shown =
            json!({"env": {"PW": "<SECRET:PW>", "A": "x"}, "args": ["--pw", "<secret:pw>"]});
        // In sync: the live app shows exactly as the placeholder rendering.
        assert_eq!(shown_live(&real, &shown, &real, &secrets()), shown);
        // A changed secret shows as changed, never as its value.
        let live = json!({"env": {"PW": "OLDPW", "A": "x"}, "args": ["--pw", "old"]});
        let out = shown_live(&real, &shown, &live, &secrets());
        assert_eq!(
            out,
            json!({"env": {"PW": CHANGED, "A": "x"}, "args": ["--pw", CHANGED]})
        );
        // A live-only value holding the secret is hidden whole.
        let live = json!({"env": {"OLD": "u:hunter2@db", "A": "y"}});
        let out = shown_live(&real, &shown, &live, &secrets());
        assert_eq!(out, json!({"env": {"OLD": CHANGED, "A": "y"}}));
    }
}
