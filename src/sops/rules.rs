//! `.sops.yaml` creation rules: which age recipients seal which files.
//! sops' own file, so that `sops` and pacer seal the same files for the
//! same keys. The first rule whose `path_regex` matches a file's path
//! (relative to the `.sops.yaml`) is the file's rule.

use super::file::Metadata;
use super::{Error, Kind};
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeSet;

pub const RULES_FILE: &str = ".sops.yaml";
/// What pacer seals in its files, and so what a rule for them must say.
pub const PACER_REGEX: &str = "^secrets$";
const MAX_RULES: usize = 1000;

#[derive(Debug)]
pub struct Rule {
    /// 1-based position in `creation_rules`.
    pub index: usize,
    pub path_regex: Option<String>,
    matcher: Option<Regex>,
    pub age: Vec<String>,
    pub encrypted_regex: Option<String>,
    /// Key services other than age the rule names.
    pub others: Vec<&'static str>,
}

#[derive(Debug, Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    creation_rules: Vec<RawRule>,
}

#[derive(Deserialize)]
struct RawRule {
    path_regex: Option<String>,
    filename_regex: Option<String>,
    #[serde(default)]
    age: Option<AgeList>,
    encrypted_regex: Option<String>,
    pgp: Option<serde_yaml::Value>,
    kms: Option<serde_yaml::Value>,
    gcp_kms: Option<serde_yaml::Value>,
    azure_keyvault: Option<serde_yaml::Value>,
    hc_vault_transit_uri: Option<serde_yaml::Value>,
    key_groups: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AgeList {
    One(String),
    Many(Vec<String>),
}

impl Rules {
    pub fn parse(text: &str) -> Result<Rules, String> {
        let raw: RawFile = serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
        if raw.creation_rules.len() > MAX_RULES {
            return Err(format!("more than {MAX_RULES} creation rules"));
        }
        let mut rules = Vec::new();
        for (i, r) in raw.creation_rules.into_iter().enumerate() {
            let index = i + 1;
            let path_regex = r.path_regex.or(r.filename_regex);
            let matcher = path_regex
                .as_deref()
                .map(|p| {
                    regex::RegexBuilder::new(p)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| format!("rule {index}: `path_regex`: {e}"))
                })
                .transpose()?;
            let age: Vec<String> = match r.age {
                None => Vec::new(),
                Some(AgeList::One(s)) => s
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect(),
                Some(AgeList::Many(v)) => v.into_iter().map(|a| a.trim().to_string()).collect(),
            };
            for a in &age {
                super::keys::parse_recipient(a).map_err(|e| format!("rule {index}: {e}"))?;
            }
            let mut others = Vec::new();
            for (name, v) in [
                ("pgp", &r.pgp),
                ("kms", &r.kms),
                ("gcp_kms", &r.gcp_kms),
                ("azure_keyvault", &r.azure_keyvault),
                ("hc_vault_transit_uri", &r.hc_vault_transit_uri),
                ("key_groups", &r.key_groups),
            ] {
                if v.as_ref()
                    .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
                {
                    others.push(name);
                }
            }
            rules.push(Rule {
                index,
                path_regex,
                matcher,
                age,
                encrypted_regex: r.encrypted_regex,
                others,
            });
        }
        Ok(Rules { rules })
    }

    /// The rule of `path` (relative to the rules file), as sops picks it.
    pub fn for_path(&self, path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.matcher.as_ref().is_none_or(|m| m.is_match(path)))
    }
}

impl Rule {
    fn name(&self) -> String {
        match &self.path_regex {
            Some(p) => format!("{RULES_FILE} rule {} (`{p}`)", self.index),
            None => format!("{RULES_FILE} rule {}", self.index),
        }
    }

    /// The recipients a pacer file under this rule is sealed for.
    pub fn pacer_recipients(&self) -> Result<&[String], Error> {
        if !self.others.is_empty() || self.age.is_empty() {
            return Err(Error::new(
                Kind::Rules,
                None,
                format!(
                    "{} names {}: pacer seals for age recipients only",
                    self.name(),
                    if self.age.is_empty() {
                        "no age recipient".to_string()
                    } else {
                        self.others.join(", ")
                    }
                ),
            )
            .hint("list the environment's age public keys under `age:`"));
        }
        if self.encrypted_regex.as_deref() != Some(PACER_REGEX) {
            return Err(Error::new(
                Kind::Rules,
                None,
                format!("{} must say `encrypted_regex: '{PACER_REGEX}'`: pacer files keep `values` and `marathon` readable", self.name()),
            )
            .hint(format!("add `encrypted_regex: '{PACER_REGEX}'` to the rule")));
        }
        Ok(&self.age)
    }
}

/// Whether a repo file is sealed as its rules require. `plain_secrets`:
/// the file has a non-empty `secrets:` in plaintext.
pub fn check(
    rules: Option<&Rules>,
    path: &str,
    meta: Option<&Metadata>,
    plain_secrets: bool,
) -> Result<(), Error> {
    let Some(rules) = rules else { return Ok(()) };
    let Some(rule) = rules.for_path(path) else {
        if let Some(m) = meta {
            return Err(Error::new(
                Kind::Rules,
                Some(m.line),
                format!("sealed, but no rule of {RULES_FILE} names this file, so nothing says who may read it"),
            )
            .hint(format!("add a creation rule whose `path_regex` matches `{path}`")));
        }
        return Ok(());
    };
    let want = rule.pacer_recipients()?;
    match meta {
        None if plain_secrets => Err(Error::new(
            Kind::Plaintext,
            None,
            format!(
                "`secrets` in plaintext: {} requires this file sealed",
                rule.name()
            ),
        )
        .hint(format!("seal it: `pacer secret encrypt {path}`"))),
        None => Ok(()),
        Some(m) => {
            let have: BTreeSet<&str> = m.age.iter().map(|s| s.recipient.as_str()).collect();
            let want_set: BTreeSet<&str> = want.iter().map(String::as_str).collect();
            if have == want_set {
                return Ok(());
            }
            let extra: Vec<&str> = have.difference(&want_set).copied().collect();
            let missing: Vec<&str> = want_set.difference(&have).copied().collect();
            let mut msg = format!("sealed for recipients other than {}'s:", rule.name());
            if !extra.is_empty() {
                msg.push_str(&format!(" also readable by {}", extra.join(", ")));
            }
            if !missing.is_empty() {
                msg.push_str(&format!(
                    "{} not sealed for {}",
                    if extra.is_empty() { "" } else { ";" },
                    missing.join(", ")
                ));
            }
            Err(
                Error::new(Kind::Recipients, Some(m.line), msg).hint(format!(
                    "re-seal it for the rule's recipients: `pacer secret rotate {path}`"
                )),
            )
        }
    }
}
