//! The `sops:` key of a sealed file: the wrapped data keys, the stamps,
//! and which keys' values are sealed.

use super::file::SOPS_VERSION;
use super::keys::{MAX_ARMORED_BYTES, MAX_RECIPIENTS, Stanza};
use super::tree::{self, Node};
use super::{Error, Kind};
use regex::Regex;

/// Which keys' values are sealed: sops' four options, as the file says.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub encrypted_regex: Option<String>,
    pub unencrypted_regex: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_suffix: Option<String>,
    compiled: Option<(Option<Regex>, Option<Regex>)>,
}

impl Selection {
    pub fn regex(r: &str) -> Result<Selection, Error> {
        Selection {
            encrypted_regex: Some(r.to_string()),
            ..Selection::default()
        }
        .compile()
    }

    fn compile(mut self) -> Result<Selection, Error> {
        let re = |r: &Option<String>| {
            r.as_deref()
                .map(|r| {
                    regex::RegexBuilder::new(r)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| Error::new(Kind::Metadata, None, format!("regex `{r}`: {e}")))
                })
                .transpose()
        };
        self.compiled = Some((re(&self.encrypted_regex)?, re(&self.unencrypted_regex)?));
        Ok(self)
    }

    /// sops' `shouldBeEncrypted`: the later options override the earlier.
    pub fn seals(&self, path: &[&str]) -> bool {
        let (enc_re, unenc_re) = match &self.compiled {
            Some((a, b)) => (a.as_ref(), b.as_ref()),
            None => (None, None),
        };
        let mut sealed = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(s.as_str()))
        {
            sealed = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            sealed = path.iter().any(|p| p.ends_with(s.as_str()));
        }
        if let Some(r) = unenc_re
            && path.iter().any(|p| r.is_match(p))
        {
            sealed = false;
        }
        if let Some(r) = enc_re {
            sealed = path.iter().any(|p| r.is_match(p));
        }
        sealed
    }
}

/// The `sops:` key of a file.
#[derive(Clone, Debug)]
pub struct Metadata {
    pub age: Vec<Stanza>,
    pub lastmodified: String,
    pub mac: String,
    pub selection: Selection,
    pub mac_only_encrypted: bool,
    /// The line of `sops:`.
    pub line: usize,
}

impl Metadata {
    pub fn recipients(&self) -> Vec<String> {
        self.age.iter().map(|s| s.recipient.clone()).collect()
    }
}

pub(super) fn metadata(node: &Node, line: usize) -> Result<Metadata, Error> {
    let bad = |m: String| Error::new(Kind::Metadata, Some(line), m);
    let Node::Map(items) = node else {
        return Err(bad("`sops:` is not a map".into()));
    };
    let get = |k: &str| items.iter().find(|(key, _)| key.name == k).map(|(_, v)| v);
    let text = |k: &str| match get(k) {
        Some(Node::Scalar(s)) if !(s.plain && tree::is_null(&s.value)) => Some(s.value.clone()),
        _ => None,
    };
    // Other key services: pacer holds only age identities.
    for other in [
        "kms",
        "gcp_kms",
        "azure_kv",
        "hc_vault",
        "pgp",
        "key_groups",
    ] {
        if matches!(get(other), Some(Node::Seq(l)) if !l.is_empty()) {
            return Err(Error::new(
                Kind::Unsupported,
                Some(line),
                format!(
                    "the data key is also sealed with `{other}`: pacer reads age recipients only"
                ),
            )
            .hint("seal the file for age recipients only (`pacer secret rotate`)"));
        }
    }
    for unsupported in [
        "encrypted_comment_regex",
        "unencrypted_comment_regex",
        "shamir_threshold",
    ] {
        if text(unsupported).is_some() {
            return Err(Error::new(
                Kind::Unsupported,
                Some(line),
                format!("`sops.{unsupported}` is not supported by pacer"),
            )
            .hint("seal the file with `--encrypted-regex '^secrets$'` only"));
        }
    }
    let mut age = Vec::new();
    if let Some(Node::Seq(list)) = get("age") {
        {
            if list.len() > MAX_RECIPIENTS {
                return Err(Error::new(
                    Kind::Budget,
                    Some(line),
                    format!(
                        "{} age recipients, over the limit of {MAX_RECIPIENTS}",
                        list.len()
                    ),
                ));
            }
            for n in list {
                let Node::Map(m) = n else {
                    return Err(bad("an entry of `sops.age` is not a map".into()));
                };
                let field = |k: &str| {
                    m.iter()
                        .find(|(key, _)| key.name == k)
                        .and_then(|(_, v)| match v {
                            Node::Scalar(s) => Some(s.value.clone()),
                            _ => None,
                        })
                };
                let (Some(recipient), Some(enc)) = (field("recipient"), field("enc")) else {
                    return Err(bad(
                        "an entry of `sops.age` lacks `recipient` or `enc`".into()
                    ));
                };
                if enc.len() > MAX_ARMORED_BYTES || recipient.len() > 256 {
                    return Err(Error::new(
                        Kind::Budget,
                        Some(line),
                        format!("a wrapped data key over {MAX_ARMORED_BYTES} bytes"),
                    ));
                }
                age.push(Stanza { recipient, enc });
            }
        }
    }
    if age.is_empty() {
        return Err(Error::new(
            Kind::Unsupported,
            Some(line),
            "`sops.age` names no recipient: pacer reads files sealed for age recipients".into(),
        )
        .hint("seal it with `sops --encrypt --age RECIPIENT` or `pacer secret encrypt`"));
    }
    let selection = Selection {
        encrypted_regex: text("encrypted_regex"),
        unencrypted_regex: text("unencrypted_regex"),
        encrypted_suffix: text("encrypted_suffix"),
        unencrypted_suffix: text("unencrypted_suffix"),
        compiled: None,
    }
    .compile()?;
    Ok(Metadata {
        age,
        lastmodified: text("lastmodified")
            .ok_or_else(|| bad("`sops.lastmodified` is missing".into()))?,
        mac: text("mac").ok_or_else(|| bad("`sops.mac` is missing".into()))?,
        selection,
        mac_only_encrypted: text("mac_only_encrypted").is_some_and(|v| v == "true"),
        line,
    })
}

pub(super) fn metadata_block(
    stanzas: &[Stanza],
    lastmodified: &str,
    mac: &str,
    sel: &Selection,
) -> String {
    let mut s = String::from("sops:\n    age:\n");
    for st in stanzas {
        s.push_str(&format!(
            "        - recipient: {}\n          enc: |\n",
            st.recipient
        ));
        for line in st.enc.lines() {
            s.push_str(&format!("            {line}\n"));
        }
    }
    s.push_str(&format!(
        "    lastmodified: \"{lastmodified}\"\n    mac: {mac}\n"
    ));
    let opts = [
        ("encrypted_regex", &sel.encrypted_regex),
        ("unencrypted_regex", &sel.unencrypted_regex),
        ("encrypted_suffix", &sel.encrypted_suffix),
        ("unencrypted_suffix", &sel.unencrypted_suffix),
    ];
    for (name, v) in opts {
        if let Some(v) = v {
            s.push_str(&format!(
                "    {name}: {}\n",
                serde_json::to_string(v).unwrap_or_default()
            ));
        }
    }
    s.push_str(&format!("    version: {SOPS_VERSION}\n"));
    s
}
