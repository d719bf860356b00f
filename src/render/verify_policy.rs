//! `verify:` in pacer.yaml: which commits an environment deploys only when
//! signed, and the file in the repo that lists the trusted keys. Checking
//! signatures is `source::verify`'s; this reads and checks the setting.

use super::*;
use crate::source::verify::{Mode, TrustList};

/// An environment's signed-commit policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyPolicy {
    #[serde(default)]
    pub mode: Mode,
    /// The trust list, a file under `.pacer/` (e.g. `.pacer/allowed_signers`):
    /// allowed_signers lines and armored OpenPGP public keys.
    pub signers: String,
}

/// Each environment's `verify:` policy, read from `pacer.yaml` in `snap`
/// (environments without one are absent).
pub fn verify_policies(
    snap: &Snapshot,
) -> Result<BTreeMap<EnvName, VerifyPolicy>, Vec<Diagnostic>> {
    let mut diags = Diagnostics::default();
    let Some(config) = read_layer(
        snap,
        CONFIG_FILE,
        schema::Kind::Pacer,
        &Budgets::default(),
        &mut diags,
    ) else {
        if diags.is_empty() {
            diags.push(Diagnostic::file(
                CONFIG_FILE,
                "missing: this is not a pacer config repo",
            ));
        }
        return Err(diags.finish());
    };
    let raw: RawConfig = serde_json::from_value(config.data.clone())
        .map_err(|e| vec![config.diag("", Target::Value, format!("invalid settings: {e}"))])?;
    Ok(raw
        .environments
        .into_iter()
        .filter_map(|(name, env)| Some((name, env?.verify?)))
        .collect())
}

/// The signers file must be a plain path under `.pacer/` and a readable trust
/// list; problems point at `verify.signers` in pacer.yaml, or at the
/// trust list's own line.
pub(super) fn check_policy(
    config: &Layer,
    env: &str,
    policy: &VerifyPolicy,
    snap: &Snapshot,
    diags: &mut Diagnostics,
) {
    let ptr = format!("/environments/{}/verify/signers", schema::escape(env));
    let file = policy.signers.trim_start_matches("./");
    let plain = !file.is_empty()
        && !file.starts_with('/')
        && file
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if !plain {
        diags.push(
            config
                .diag(
                    &ptr,
                    Target::Value,
                    format!(
                        "environment `{env}`: `verify.signers` `{}` is not a path inside the repo",
                        policy.signers
                    ),
                )
                .with_hint("write a path relative to the repo root, e.g. `.pacer/allowed_signers`"),
        );
        return;
    }
    let bytes = match snap.read_bytes(file) {
        Ok(b) => b,
        Err(e) => {
            diags.push(
                config
                    .diag(&ptr, Target::Value, format!("environment `{env}`: the trust list `{file}` cannot be read: {e}"))
                    .with_hint("commit the trust list (allowed_signers lines and armored OpenPGP keys) at that path"),
            );
            return;
        }
    };
    if let Err(errors) = TrustList::parse(file, &bytes) {
        for e in errors {
            diags.push(match e {
                crate::source::verify::TrustError::Malformed {
                    file,
                    line,
                    message,
                } => Diagnostic::at(file, line, 1, message),
                other => Diagnostic::file(file, other.to_string()),
            });
        }
    }
}
