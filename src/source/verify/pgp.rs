//! OpenPGP commit signatures, checked with rpgp against the armored public
//! keys of the trust list.

use super::{Kind, Refused, Verified};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, KeyId};

/// One trusted OpenPGP key (with its subkeys).
#[derive(Clone, Debug)]
pub struct PgpSigner {
    pub key: SignedPublicKey,
    /// The primary key's fingerprint, upper-case hex (as gpg prints it).
    pub fingerprint: String,
    /// Its first user id, `Name <mail>`.
    pub user_id: String,
    /// Where it was read, `file:line`.
    pub at: String,
}

/// Reads every key of one armored block; its self-signatures and subkey
/// bindings must hold, or the block is refused.
pub(super) fn parse_keys(block: &str, at: &str) -> Result<Vec<PgpSigner>, String> {
    let (keys, _) = SignedPublicKey::from_string_many(block)
        .map_err(|e| format!("unreadable OpenPGP public key block: {e}"))?;
    let mut out = Vec::new();
    for key in keys {
        let key = key.map_err(|e| format!("unreadable OpenPGP public key: {e}"))?;
        key.verify_bindings()
            .map_err(|e| format!("OpenPGP key whose self-signatures do not verify: {e}"))?;
        let user_id = key
            .details
            .users
            .first()
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .unwrap_or_default();
        out.push(PgpSigner {
            fingerprint: format!("{:X}", key.fingerprint()),
            user_id,
            key,
            at: at.to_string(),
        });
    }
    if out.is_empty() {
        return Err("an OpenPGP block without a key".into());
    }
    Ok(out)
}

fn key_id_hex(id: &KeyId) -> String {
    hex::encode_upper(id.as_ref())
}

/// The newest of `sigs` that says when the key expires: seconds after the
/// key's creation, or `None` if it never expires.
fn expiry_of(sigs: &[&Signature]) -> Option<u32> {
    sigs.iter()
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
        .and_then(|s| s.key_expiration_time())
        .map(|d| d.as_secs())
        .filter(|&d| d > 0)
}

pub(super) fn verify(
    armored: &str,
    payload: &[u8],
    trust: &super::TrustList,
) -> Result<Verified, Refused> {
    let (sig, _) = DetachedSignature::from_string(armored).map_err(|e| Refused::Malformed {
        detail: format!("unreadable OpenPGP signature: {e}"),
    })?;
    let s = &sig.signature;
    let fps: Vec<String> = s
        .issuer_fingerprint()
        .iter()
        .map(|f| format!("{f:X}"))
        .collect();
    let ids: Vec<String> = s.issuer_key_id().iter().map(|k| key_id_hex(k)).collect();
    let issued_by = |fp: String, id: &KeyId| {
        let id = key_id_hex(id);
        (fps.is_empty() && ids.is_empty()) || fps.contains(&fp) || ids.contains(&id)
    };
    let signed_at = s.created().map(|t| t.as_secs()).unwrap_or(0);
    for signer in &trust.pgp {
        let primary = &signer.key;
        if issued_by(
            format!("{:X}", primary.fingerprint()),
            &primary.legacy_key_id(),
        ) {
            let self_sigs: Vec<&Signature> = primary
                .details
                .users
                .iter()
                .flat_map(|u| u.signatures.iter())
                .chain(primary.details.direct_signatures.iter())
                .collect();
            if sig.verify(primary, payload).is_ok() {
                return checked(
                    signer,
                    expiry_of(&self_sigs),
                    primary.created_at().as_secs(),
                    signed_at,
                    &signer.fingerprint,
                );
            }
            return Err(bad(&signer.fingerprint));
        }
        for sub in &primary.public_subkeys {
            if !issued_by(
                format!("{:X}", sub.key.fingerprint()),
                &sub.key.legacy_key_id(),
            ) {
                continue;
            }
            let fp = format!("{:X}", sub.key.fingerprint());
            if sig.verify(sub, payload).is_ok() {
                let binds: Vec<&Signature> = sub.signatures.iter().collect();
                return checked(
                    signer,
                    expiry_of(&binds),
                    sub.key.created_at().as_secs(),
                    signed_at,
                    &fp,
                );
            }
            return Err(bad(&fp));
        }
    }
    Err(Refused::UnknownKey {
        kind: Kind::Pgp,
        fingerprint: fps
            .into_iter()
            .chain(ids)
            .next()
            .unwrap_or_else(|| "unknown".into()),
    })
}

fn bad(fp: &str) -> Refused {
    Refused::BadSignature {
        fingerprint: fp.to_string(),
    }
}

/// The key that signed must not be revoked, nor expired when it signed.
fn checked(
    signer: &PgpSigner,
    expiry: Option<u32>,
    created: u32,
    signed_at: u32,
    fp: &str,
) -> Result<Verified, Refused> {
    if !signer.key.details.revocation_signatures.is_empty() {
        return Err(Refused::Expired {
            fingerprint: fp.to_string(),
            detail: "the key is revoked".into(),
        });
    }
    if let Some(exp) = expiry {
        let until = u64::from(created) + u64::from(exp);
        if u64::from(signed_at) >= until {
            return Err(Refused::Expired {
                fingerprint: fp.to_string(),
                detail: format!(
                    "the key expired at {} and the signature was made at {}",
                    super::show_time(until as i64),
                    super::show_time(i64::from(signed_at))
                ),
            });
        }
    }
    Ok(Verified {
        kind: Kind::Pgp,
        principal: signer.user_id.clone(),
        fingerprint: fp.to_string(),
    })
}
