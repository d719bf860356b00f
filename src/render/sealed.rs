//! Secrets sealed with sops in the repo's YAML files: opened in memory when
//! a file is read, checked against `.sops.yaml`'s creation rules, and handed
//! on as the plain `Secret` values the rest of the render uses.
//!
//! A file that can't be opened never renders with empty or made-up values.
//! Without a key that opens it, each app that reads one of its secrets fails
//! to render (the daemon keeps its last good version; apps that read none
//! render), unless the caller asked for placeholders (`validate`, `render`,
//! `diff`), in which case those secrets read as `<secret:name>` and each app
//! that reads one says so ([`RenderedApp::unreadable_secrets`]). A file that
//! is corrupt, tampered with or fails its MAC fails every app that merges it.

use super::*;
use crate::sops;
use std::sync::OnceLock;

/// The identities a render opens sealed files with, and what to do
/// without one that opens a file.
#[derive(Clone, Default)]
pub struct SecretKeys {
    pub identities: Arc<sops::Identities>,
    /// No identity opens a file: its secrets become placeholders instead of
    /// failing the apps that read them. For commands that only show.
    pub placeholders: bool,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("recipients", &self.identities.recipients())
            .field("placeholders", &self.placeholders)
            .finish()
    }
}

static PROCESS_DEFAULT: OnceLock<SecretKeys> = OnceLock::new();

impl SecretKeys {
    pub fn new(identities: sops::Identities, placeholders: bool) -> SecretKeys {
        SecretKeys {
            identities: Arc::new(identities),
            placeholders,
        }
    }

    /// What [`Repo::load`] uses when not given keys: set once by the
    /// command line at start (`pacer serve`, `pacer demo`), else none.
    pub fn process_default() -> SecretKeys {
        PROCESS_DEFAULT.get().cloned().unwrap_or_default()
    }

    /// Sets [`Self::process_default`]; false if it was set already.
    pub fn install_process_default(keys: SecretKeys) -> bool {
        PROCESS_DEFAULT.set(keys).is_ok()
    }
}

/// What a layer's sealed secrets came to.
#[derive(Debug, Default)]
pub(super) struct Sealing {
    /// The file's secrets can't be used: each app that merges it fails.
    pub problem: Option<Diagnostic>,
    /// Secrets whose values are placeholders: nothing held opens the file.
    pub unreadable: BTreeSet<String>,
    /// Why they are, for each app that reads one (unless the render asked
    /// for placeholders): such an app fails.
    pub locked: Option<Diagnostic>,
}

/// `.sops.yaml`, if the repo has one. Its presence makes the files its
/// rules name require sealing.
pub(super) fn read_rules(snap: &Snapshot, diags: &mut Diagnostics) -> Option<Arc<sops::Rules>> {
    let file = sops::rules::RULES_FILE;
    if !snap.contains(file) {
        return None;
    }
    let text = match snap.read_text(file) {
        Ok(t) => t,
        Err(e) => {
            diags.push(source_diag(file, &e));
            return None;
        }
    };
    match sops::Rules::parse(&text) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            diags.push(
                Diagnostic::file(file, e)
                    .with_hint("see sops' creation rules: `creation_rules: [{path_regex, encrypted_regex: '^secrets$', age}]`"),
            );
            None
        }
    }
}

fn diag(layer: &Layer, e: &sops::Error) -> Diagnostic {
    let mut d =
        Diagnostic::file(&layer.file, e.message.clone()).with_position(e.line.map(|l| (l, 1)));
    d.hint = e.hint.clone();
    d
}

/// Opens the layer's sealed secrets in place and checks them against the
/// rules. Problems with the rules are the repo's (`diags`); a file that
/// can't be opened is each reading app's ([`Sealing::problem`]).
pub(super) fn open(
    layer: &mut Layer,
    keys: &SecretKeys,
    rules: Option<&sops::Rules>,
    diags: &mut Diagnostics,
) {
    let sealed = layer
        .data
        .as_object_mut()
        .and_then(|m| m.remove("sops"))
        .is_some();
    if let Some(p) = sealed_outside_secrets(&layer.data, "") {
        diags.push(layer.diag(&p, Target::Value, format!("`{p}` is sealed: pacer seals only `secrets`, so that what reaches Marathon stays reviewable")).with_hint("seal with `--encrypted-regex '^secrets$'` (or `pacer secret encrypt`)"));
        return;
    }
    let plain_secrets = !sealed
        && layer
            .get("/secrets")
            .and_then(Value::as_object)
            .is_some_and(|m| m.values().any(|v| !v.is_null()));
    let meta = if sealed {
        match sops::file::inspect(&layer.text) {
            Ok(m) => m,
            Err(e) => {
                layer.sealing.problem = Some(diag(layer, &e));
                return;
            }
        }
    } else {
        None
    };
    if let Err(e) = sops::rules::check(rules, &layer.file, meta.as_ref(), plain_secrets) {
        let mut d = diag(layer, &e);
        if e.line.is_none() && e.kind == sops::Kind::Plaintext {
            d = d.with_position(yaml::locate(&layer.text, "/secrets", Target::Key));
        }
        diags.push(d);
        return;
    }
    if !sealed {
        return;
    }
    match sops::file::open(&layer.text, &keys.identities) {
        Ok(Some(opened)) => {
            for v in &opened.values {
                if let Some(slot) = layer.data.pointer_mut(&v.pointer) {
                    *slot = Value::String(v.plain.expose().text());
                }
            }
        }
        Ok(None) => {}
        Err(e) if matches!(e.kind, sops::Kind::NoIdentity | sops::Kind::NotForYou) => {
            layer.sealing.locked = Some(diag(layer, &e));
            if let Some(Value::Object(m)) = layer.data.get_mut("secrets") {
                for (name, v) in m.iter_mut() {
                    if v.as_str().is_some_and(|s| !s.is_empty()) {
                        *v = Value::String(secrets::placeholder(name));
                        layer.sealing.unreadable.insert(name.clone());
                    }
                }
            }
        }
        Err(e) => layer.sealing.problem = Some(diag(layer, &e)),
    }
}

/// The first value outside `/secrets` that holds a sops ciphertext.
fn sealed_outside_secrets(v: &Value, pointer: &str) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with("ENC[AES256_GCM,") => Some(pointer.to_string()),
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !(pointer.is_empty() && *k == "secrets"))
            .find_map(|(k, v)| {
                sealed_outside_secrets(v, &format!("{pointer}/{}", schema::escape(k)))
            }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| sealed_outside_secrets(v, &format!("{pointer}/{i}"))),
        _ => None,
    }
}

/// The first JSON pointer where `a` and `b` differ.
pub(super) fn first_difference(a: &Value, b: &Value, pointer: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.iter().find_map(|(k, v)| {
            let p = format!("{pointer}/{}", schema::escape(k));
            match y.get(k) {
                Some(w) => first_difference(v, w, &p),
                None => Some(p),
            }
        }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{pointer}/{i}"))),
        _ if a == b => None,
        _ => Some(pointer.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::keys::{DEMO_KEY_FILE, DEMO_RECIPIENT};

    fn repo() -> Arc<Snapshot> {
        let env = sops::encrypt(
            "secrets:\n  pw: hunter2\n",
            &[DEMO_RECIPIENT.into()],
            sops::rules::PACER_REGEX,
            chrono::Utc::now(),
        )
        .unwrap();
        let files = [
            (
                "pacer.yaml",
                "version: 1\nenvironments:\n  prod: {}\n".to_string(),
            ),
            ("environments/prod.yaml", env),
            (
                "apps/reads/app.yaml",
                "marathon: {cmd: x, mem: 64}\nfiles:\n  c: {path: /c}\n".into(),
            ),
            ("apps/reads/files/c", "pw={{ secrets.pw }}\n".into()),
            (
                "apps/plain/app.yaml",
                "marathon: {cmd: x, mem: 64}\n".into(),
            ),
        ];
        Snapshot::from_files(files.map(|(p, t)| (p.to_string(), t.into_bytes())))
    }

    fn render(keys: &SecretKeys) -> (Option<Desired>, String) {
        match render_keyed(repo(), &Scope::default(), &Budgets::default(), None, keys) {
            Ok(d) => (Some(d), String::new()),
            Err(diags) => (None, diags.iter().map(|d| format!("{d}\n")).collect()),
        }
    }

    #[test]
    fn without_a_key_only_the_apps_that_read_a_sealed_secret_fail() {
        let mut diags = Diagnostics::default();
        let r = Repo::load_keyed(
            repo(),
            &Budgets::default(),
            &SecretKeys::default(),
            &mut diags,
        )
        .unwrap();
        let pairs = [(
            "prod".to_string(),
            vec!["plain".to_string(), "reads".to_string()],
        )];
        let d = render_pairs(&r, &pairs, &mut diags);
        let text = diags.to_string();
        assert!(d.envs["prod"].apps.contains_key("plain"), "{text}");
        assert!(!d.envs["prod"].apps.contains_key("reads"));
        assert!(
            text.contains("environments/prod.yaml") && text.contains("no age identity"),
            "{text}"
        );
        assert!(text.contains(DEMO_RECIPIENT), "{text}");
    }

    #[test]
    fn placeholders_render_and_say_so_and_a_key_opens() {
        let (d, e) = render(&SecretKeys::new(sops::Identities::none(), true));
        let d = d.unwrap_or_else(|| panic!("{e}"));
        let app = &d.envs["prod"].apps["reads"];
        assert_eq!(app.files["c"].content, b"pw=<secret:pw>\n");
        assert!(app.unreadable().is_some_and(|w| w.contains("`pw`")));
        let mut ids = sops::Identities::none();
        ids.add(DEMO_KEY_FILE, "demo").unwrap();
        let (d, e) = render(&SecretKeys::new(ids, false));
        let d = d.unwrap_or_else(|| panic!("{e}"));
        let app = &d.envs["prod"].apps["reads"];
        assert_eq!(app.files["c"].content, b"pw=hunter2\n");
        assert!(app.unreadable().is_none());
    }
}
