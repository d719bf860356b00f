//! Checks repo files against the JSON Schemas in `schemas/`, the same files
//! editors use through yaml-language-server, compiled into the binary.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{LazyLock, OnceLock};

const FILES: [(&str, &str); 4] = [
    (
        "pacer.schema.json",
        include_str!("../../schemas/pacer.schema.json"),
    ),
    (
        "environment.schema.json",
        include_str!("../../schemas/environment.schema.json"),
    ),
    (
        "app.schema.json",
        include_str!("../../schemas/app.schema.json"),
    ),
    (
        "marathon-app.schema.json",
        include_str!("../../schemas/marathon-app.schema.json"),
    ),
];

/// Base for relative `$ref`s between the schema files. Nothing is fetched
/// from it: the retriever below answers from the embedded copies.
const BASE: &str = "https://pacer.invalid/schemas/";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Pacer,
    Environment,
    App,
    MarathonApp,
}

impl Kind {
    fn file(self) -> &'static str {
        FILES[self as usize].0
    }
}

/// One schema violation, located by a JSON pointer into the checked value.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub pointer: String,
    /// Set for an unknown key: the pointer then names the key itself.
    pub unknown_key: bool,
    pub message: String,
    pub hint: Option<String>,
}

struct Embedded;

impl Retrieve for Embedded {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or_default();
        let name = name.split('#').next().unwrap_or_default();
        let text = FILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("no embedded schema `{name}`"))?;
        Ok(serde_json::from_str(text)?)
    }
}

/// The schemas as pacer checks them, parsed from the embedded files. A
/// layer's `marathon` is checked once the layers are merged, so the app and
/// environment schemas are checked with it as a plain map: that keeps the
/// large Marathon schema out of every layer's check (and out of start-up
/// for commands that read no app).
static RAW: LazyLock<BTreeMap<&'static str, Value>> = LazyLock::new(|| {
    let mut raw: BTreeMap<&'static str, Value> = FILES
        .iter()
        .map(|(n, t)| {
            (
                *n,
                serde_json::from_str(t).expect("embedded schema is JSON"),
            )
        })
        .collect();
    let app_defs = raw["app.schema.json"]["$defs"].clone();
    for file in ["app.schema.json", "environment.schema.json"] {
        let Some(props) = raw
            .get_mut(file)
            .and_then(|s| s.get_mut("properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        props.insert("marathon".into(), serde_json::json!({"type": "object"}));
        // The environment schema's only other outside references.
        for def in ["values", "secrets", "sops", "secretsInMarathon"] {
            if let Some(p) = props.get_mut(def)
                && p.get("$ref").and_then(Value::as_str)
                    == Some(&format!("app.schema.json#/$defs/{def}"))
            {
                *p = app_defs[def].clone();
            }
        }
    }
    raw
});

/// Each schema compiled on first use: a command pays only for the ones it checks.
static VALIDATORS: [OnceLock<Validator>; 4] = [const { OnceLock::new() }; 4];

fn validator(kind: Kind) -> &'static Validator {
    VALIDATORS[kind as usize].get_or_init(|| {
        let n = kind.file();
        jsonschema::options()
            .with_base_uri(format!("{BASE}{n}"))
            .with_retriever(Embedded)
            .build(&RAW[n])
            .unwrap_or_else(|e| panic!("embedded schema {n} does not compile: {e}"))
    })
}

/// Compiles the app schemas on another core while the caller reads the
/// repo: the Marathon schema is the largest to compile and the last one a
/// render needs, so a render that reaches its first app rarely waits for
/// it. Only the first call in a process starts anything; a process that
/// ends first just drops the work.
pub fn warm_up() {
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    // Without a second core, compiling on first use costs the same.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("pacer-schemas".into())
        .spawn(|| {
            validator(Kind::MarathonApp);
            validator(Kind::App);
        });
    // A thread that can't start leaves the compiling to first use.
    drop(spawned);
}

/// Every violation of the schema `kind` in `value`.
pub fn check(kind: Kind, value: &Value) -> Vec<Violation> {
    let validator = validator(kind);
    // Most files are valid: the boolean check skips building errors.
    if validator.is_valid(value) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for err in validator.iter_errors(value) {
        let pointer = err.instance_path().as_str().to_string();
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = known_keys(&RAW, kind.file(), err.schema_path().as_str());
                for key in unexpected {
                    out.push(Violation {
                        pointer: format!("{pointer}/{}", escape(key)),
                        unknown_key: true,
                        message: format!("unknown key `{key}`"),
                        hint: suggest(key, &known)
                            .map(|s| format!("did you mean `{s}`?"))
                            .or_else(|| {
                                (!known.is_empty())
                                    .then(|| format!("known keys here: {}", known.join(", ")))
                            }),
                    });
                }
            }
            kind => {
                let field = pointer.rsplit('/').next().filter(|s| !s.is_empty());
                let what = match kind {
                    ValidationErrorKind::Type { kind } => type_message(kind, err.instance()),
                    _ => err.to_string(),
                };
                let message = match field {
                    Some(f) => format!("`{}`: {}", unescape(f), what),
                    None => what,
                };
                out.push(Violation {
                    pointer,
                    unknown_key: false,
                    message,
                    hint: None,
                });
            }
        }
    }
    out
}

/// "expected a number, got the string `lots`": the schema's `null` (which
/// only means "remove" in a layer) is left out of what is expected.
fn type_message(kind: &jsonschema::error::TypeKind, got: &Value) -> String {
    use jsonschema::JsonType;
    use jsonschema::error::TypeKind;
    let wanted: Vec<JsonType> = match kind {
        TypeKind::Single(t) => vec![*t],
        TypeKind::Multiple(set) => set.iter().filter(|t| *t != JsonType::Null).collect(),
    };
    let names: Vec<&str> = wanted
        .iter()
        .map(|t| match t {
            JsonType::Array => "a list",
            JsonType::Boolean => "true or false",
            JsonType::Integer => "a whole number",
            JsonType::Null => "null",
            JsonType::Number => "a number",
            JsonType::Object => "a map",
            JsonType::String => "a string",
        })
        .collect();
    let got = match got {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) if s.len() <= 60 => format!("the string `{s}`"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    };
    format!("expected {}, got {got}", names.join(" or "))
}

/// The properties declared next to the `additionalProperties` keyword that
/// failed, found by walking the schema path (through `$ref`s) in the raw schemas.
fn known_keys(raw: &BTreeMap<&'static str, Value>, file: &str, schema_path: &str) -> Vec<String> {
    let mut segs: Vec<String> = schema_path
        .trim_start_matches('/')
        .split('/')
        .map(unescape)
        .collect();
    segs.pop(); // "additionalProperties"
    let Some(mut node) = raw.get(file) else {
        return Vec::new();
    };
    let mut root = node;
    for seg in &segs {
        if seg == "$ref" {
            let Some(target) = node.get("$ref").and_then(Value::as_str) else {
                return Vec::new();
            };
            let (doc, frag) = target.split_once('#').unwrap_or((target, ""));
            if !doc.is_empty() {
                let name = doc.rsplit('/').next().unwrap_or(doc);
                match raw.get(name) {
                    Some(r) => root = r,
                    None => return Vec::new(),
                }
            }
            node = if frag.is_empty() {
                root
            } else {
                match root.pointer(frag) {
                    Some(n) => n,
                    None => return Vec::new(),
                }
            };
        } else {
            node = match node {
                Value::Object(m) => match m.get(seg) {
                    Some(n) => n,
                    None => return Vec::new(),
                },
                Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get(i)) {
                    Some(n) => n,
                    None => return Vec::new(),
                },
                _ => return Vec::new(),
            };
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The closest known name, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, known: &'a [String]) -> Option<&'a str> {
    let word = word.to_lowercase();
    known
        .iter()
        .filter_map(|k| {
            let lk = k.to_lowercase();
            // Edit distance catches swapped letters in short names (`wbe`);
            // Jaro-Winkler catches dropped letters in long ones.
            let edits = strsim::damerau_levenshtein(&word, &lk);
            let close =
                edits <= (lk.chars().count() / 3).max(1) || strsim::jaro_winkler(&word, &lk) > 0.85;
            close.then_some((edits, k))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, k)| k.as_str())
}

pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Appends `key` to `pointer` as one segment, escaped as [`escape`] does.
pub fn push_escaped(pointer: &mut String, key: &str) {
    if key.contains(['~', '/']) {
        pointer.push_str(&escape(key));
    } else {
        pointer.push_str(key);
    }
}

pub fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let known: Vec<String> = ["instances", "cpus", "mem"].map(String::from).to_vec();
        assert_eq!(suggest("intances", &known), Some("instances"));
        assert_eq!(suggest("cpu", &known), Some("cpus"));
        assert_eq!(suggest("zzzzzz", &known), None);
    }

    #[test]
    fn a_pushed_segment_is_escaped_as_escape_does() {
        for key in ["port", "a/b", "~x", "a~1/", ""] {
            let mut p = String::from("/marathon");
            push_escaped(&mut p, key);
            assert_eq!(p, format!("/marathon{}", escape(key)));
        }
    }

    #[test]
    fn every_embedded_schema_compiles() {
        for kind in [Kind::Pacer, Kind::Environment, Kind::App, Kind::MarathonApp] {
            check(kind, &serde_json::json!({}));
        }
    }
}
#[cfg(test)]
mod suggest_tests {
    #[test]
    fn swapped_letters_in_short_names() {
        let known: Vec<String> = ["api", "payments/ledger", "web", "worker"]
            .map(String::from)
            .to_vec();
        assert_eq!(super::suggest("wbe", &known), Some("web"));
        assert_eq!(
            super::suggest("prdo", &["dev".into(), "prod".into()]),
            Some("prod")
        );
    }
}
