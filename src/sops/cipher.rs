//! One sops value: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, sealed
//! with AES-256-GCM under the file's data key, a 32-byte IV (sops' choice,
//! not GCM's usual 12) and the value's path as additional data.

use super::tree::go_float;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

type Gcm = aes_gcm::AesGcm<aes::Aes256, U32>;

pub const IV_BYTES: usize = 32;
const TAG_BYTES: usize = 16;
/// The largest sealed value read: a config file is at most 4 MiB, a secret
/// a few KiB; this refuses a blob long before it costs anything.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;

/// A plaintext value, typed as sops types it.
#[derive(Clone, PartialEq)]
pub enum Plain {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Comment(String),
}

/// Never the value.
impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plain({})", self.kind())
    }
}

impl Plain {
    pub fn kind(&self) -> &'static str {
        match self {
            Plain::Str(_) => "str",
            Plain::Int(_) => "int",
            Plain::Float(_) => "float",
            Plain::Bool(_) => "bool",
            Plain::Comment(_) => "comment",
        }
    }

    /// The bytes sealed (and, but for a bool, hashed into the MAC).
    fn sealed_bytes(&self) -> Vec<u8> {
        match self {
            Plain::Bool(true) => b"True".to_vec(),
            Plain::Bool(false) => b"False".to_vec(),
            other => other.text().into_bytes(),
        }
    }

    /// What the MAC hashes for this value (sops' `ToBytes`).
    pub fn mac_bytes(&self) -> Vec<u8> {
        self.sealed_bytes()
    }

    /// The value as text: what a template sees.
    pub fn text(&self) -> String {
        match self {
            Plain::Str(s) | Plain::Comment(s) => s.clone(),
            Plain::Int(i) => i.to_string(),
            Plain::Float(f) => go_float(*f),
            Plain::Bool(b) => b.to_string(),
        }
    }

    /// sops leaves an empty string as it is.
    pub fn is_empty(&self) -> bool {
        matches!(self, Plain::Str(s) | Plain::Comment(s) if s.is_empty())
    }
}

/// Why a sealed value can't be opened. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("not a sops value (`ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`)")]
    Format,
    #[error("its {0} is not valid base64")]
    Base64(&'static str),
    #[error("its iv has {0} bytes; sops writes {IV_BYTES}")]
    IvLength(usize),
    #[error("its tag has {0} bytes; AES-GCM's has {TAG_BYTES}")]
    TagLength(usize),
    #[error("its ciphertext is over {} KiB", MAX_VALUE_BYTES / 1024)]
    TooLarge,
    #[error("unknown type `{0}` (sops writes str, int, float, bool, comment)")]
    Type(String),
    #[error(
        "it does not decrypt: the ciphertext, its tag or its place in the file was changed, or it was sealed with another data key"
    )]
    Tampered,
    #[error("it decrypts to something that is not a valid {0}")]
    BadPlain(&'static str),
}

/// A parsed `ENC[...]`.
pub struct Sealed {
    data: Vec<u8>,
    iv: [u8; IV_BYTES],
    tag: [u8; TAG_BYTES],
    kind: String,
}

impl Sealed {
    pub fn parse(s: &str) -> Result<Sealed, ValueError> {
        if s.len() > MAX_VALUE_BYTES * 2 {
            return Err(ValueError::TooLarge);
        }
        let body = s
            .strip_prefix("ENC[AES256_GCM,data:")
            .and_then(|b| b.strip_suffix(']'))
            .ok_or(ValueError::Format)?;
        let (data, rest) = body.split_once(",iv:").ok_or(ValueError::Format)?;
        let (iv, rest) = rest.split_once(",tag:").ok_or(ValueError::Format)?;
        let (tag, kind) = rest.split_once(",type:").ok_or(ValueError::Format)?;
        let data = B64.decode(data).map_err(|_| ValueError::Base64("data"))?;
        if data.len() > MAX_VALUE_BYTES {
            return Err(ValueError::TooLarge);
        }
        let iv = B64.decode(iv).map_err(|_| ValueError::Base64("iv"))?;
        let tag = B64.decode(tag).map_err(|_| ValueError::Base64("tag"))?;
        Ok(Sealed {
            data,
            iv: iv
                .as_slice()
                .try_into()
                .map_err(|_| ValueError::IvLength(iv.len()))?,
            tag: tag
                .as_slice()
                .try_into()
                .map_err(|_| ValueError::TagLength(tag.len()))?,
            kind: kind.to_string(),
        })
    }

    pub fn open(&self, key: &[u8; 32], aad: &str) -> Result<Plain, ValueError> {
        let known = ["str", "int", "int64", "float", "bool", "comment", "bytes"];
        if !known.contains(&self.kind.as_str()) {
            return Err(ValueError::Type(self.kind.chars().take(16).collect()));
        }
        let gcm = Gcm::new(key.into());
        let mut msg = self.data.clone();
        msg.extend_from_slice(&self.tag);
        let plain = gcm
            .decrypt(
                (&self.iv).into(),
                Payload {
                    msg: &msg,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| ValueError::Tampered)?;
        let text = String::from_utf8(plain).map_err(|_| ValueError::BadPlain("UTF-8 text"))?;
        Ok(match self.kind.as_str() {
            "str" | "bytes" => Plain::Str(text),
            "comment" => Plain::Comment(text),
            "int" | "int64" => Plain::Int(go_atoi(&text).ok_or(ValueError::BadPlain("int"))?),
            "float" => Plain::Float(text.parse().map_err(|_| ValueError::BadPlain("float"))?),
            _ => Plain::Bool(go_bool(&text).ok_or(ValueError::BadPlain("bool"))?),
        })
    }

    /// The IV, for sealing the same value in the same place again
    /// (an unchanged value keeps its ciphertext, as sops does).
    pub fn iv(&self) -> [u8; IV_BYTES] {
        self.iv
    }
}

/// Seals `plain` at `aad` with `iv`. The caller picks a fresh random IV
/// unless it is re-sealing the very same value at the same place.
pub fn seal(plain: &Plain, key: &[u8; 32], aad: &str, iv: &[u8; IV_BYTES]) -> String {
    let gcm = Gcm::new(key.into());
    let out = gcm
        .encrypt(
            iv.into(),
            Payload {
                msg: &plain.sealed_bytes(),
                aad: aad.as_bytes(),
            },
        )
        // AES-GCM fails only past 64 GiB of plaintext.
        .unwrap_or_default();
    let (data, tag) = out.split_at(out.len().saturating_sub(TAG_BYTES));
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
        B64.encode(data),
        B64.encode(iv),
        B64.encode(tag),
        plain.kind()
    )
}

pub fn random_iv() -> [u8; IV_BYTES] {
    rand::random()
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_sealed_value_opens_at_its_place_only(v in ".{0,64}", n in any::<i64>(), b in any::<bool>(), f in -1e9f64..1e9) {
            let key = [7u8; 32];
            for plain in [Plain::Str(v.clone()), Plain::Int(n), Plain::Bool(b), Plain::Float(f), Plain::Comment(v.clone())] {
                let s = seal(&plain, &key, "secrets:pw:", &random_iv());
                let sealed = Sealed::parse(&s).unwrap();
                prop_assert_eq!(sealed.open(&key, "secrets:pw:").unwrap(), plain);
                prop_assert_eq!(sealed.open(&key, "secrets:other:").err(), Some(ValueError::Tampered));
                prop_assert_eq!(sealed.open(&[8u8; 32], "secrets:pw:").err(), Some(ValueError::Tampered));
            }
        }
    }

    #[test]
    fn a_changed_ciphertext_is_refused_without_a_panic() {
        let key = [1u8; 32];
        let s = seal(&Plain::Str("hunter2".into()), &key, "a:", &random_iv());
        let flipped = s.replacen("data:", "data:A", 1);
        let r = Sealed::parse(&flipped).and_then(|v| v.open(&key, "a:"));
        assert!(r.is_err());
        assert_eq!(
            Sealed::parse("ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]").err(),
            Some(ValueError::IvLength(1))
        );
        assert_eq!(Sealed::parse("hunter2").err(), Some(ValueError::Format));
    }
}
