//! `pacer serve`'s API tokens and webhook budgets from its flags, and the
//! token a client (`pacer status --daemon`) sends. A token comes from a
//! file or from an environment variable, never from a flag's value (it
//! would show in `ps`); errors name the file, never what it holds.

use crate::server;
use clap::Args;
use std::path::PathBuf;

/// `pacer serve`'s flags for its API: the tokens and the webhook's budgets.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The largest webhook body read; a larger delivery gets 413 (and the
    /// poll picks its commit up).
    #[arg(
        long,
        env = "PACER_WEBHOOK_MAX_BODY",
        default_value_t = crate::server::guard::WEBHOOK_MAX_BODY as u64,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024),
        help_heading = "API"
    )]
    pub webhook_max_body: u64,
    /// Webhooks one source address may send at once, before
    /// `--webhook-rate` applies; past it, 429 with Retry-After.
    #[arg(
        long,
        env = "PACER_WEBHOOK_BURST",
        default_value_t = 60,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        help_heading = "API"
    )]
    pub webhook_burst: u32,
    /// Webhooks per second one source address may send after its burst.
    #[arg(
        long,
        env = "PACER_WEBHOOK_RATE",
        default_value_t = 5,
        value_name = "PER_SECOND",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        help_heading = "API"
    )]
    pub webhook_rate: u32,
    /// A file holding the admin token (or the token itself in
    /// PACER_ADMIN_TOKEN): writes (`POST /api/v1/retry`, an endpoint
    /// release) and the full status. Without one, writes are refused.
    #[arg(
        long,
        env = "PACER_ADMIN_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "API"
    )]
    pub admin_token_file: Option<PathBuf>,
    /// A file holding the read token (or the token itself in
    /// PACER_READ_TOKEN): the full status, with errors and messages.
    /// Without a token the status shows states, counts and commits only.
    #[arg(
        long,
        env = "PACER_READ_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "API"
    )]
    pub read_token_file: Option<PathBuf>,
}

/// The API's guards from the flags: the tokens (each from its file, or
/// from its variable in `env`), the webhook's limits.
pub(crate) fn access(
    a: &ApiArgs,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<server::Access> {
    let admin = token(a.admin_token_file.as_deref(), "PACER_ADMIN_TOKEN", &env)?;
    let read = token(a.read_token_file.as_deref(), "PACER_READ_TOKEN", &env)?;
    let tokens = server::auth::Tokens::new(admin, read).map_err(anyhow::Error::msg)?;
    let rate = crate::delivery::limit::Rate {
        burst: f64::from(a.webhook_burst),
        per_second: f64::from(a.webhook_rate),
        ..server::guard::WEBHOOK_RATE
    };
    let max_body = usize::try_from(a.webhook_max_body).unwrap_or(usize::MAX);
    Ok(server::Access::new(tokens, max_body, rate))
}

/// A token from `file` (its first line), else from the variable `var`.
/// Both given is a mistake; an error names the file, never its content.
pub(crate) fn token(
    file: Option<&std::path::Path>,
    var: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<String>> {
    let from_env = env(var).filter(|v| !v.is_empty());
    match (file, from_env) {
        (Some(_), Some(_)) => anyhow::bail!("give the token in a file or in {var}, not both"),
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", path.display()))?;
            let t = text.lines().next().unwrap_or("").trim();
            if t.is_empty() {
                anyhow::bail!("the token file {} is empty", path.display());
            }
            Ok(Some(t.to_string()))
        }
        (None, v) => Ok(v.map(|v| v.trim().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        api: ApiArgs,
    }

    fn args(extra: &[&str]) -> ApiArgs {
        let mut all = vec!["t"];
        all.extend_from_slice(extra);
        Cli::try_parse_from(all).unwrap().api
    }

    const ADMIN: &str = "admin-0123456789abcdef";
    const READ: &str = "read-0123456789abcdef";

    #[test]
    fn tokens_come_from_a_file_or_a_variable_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin");
        std::fs::write(&file, format!("{ADMIN}\n")).unwrap();
        let path = file.to_str().unwrap();
        let no_env = |_: &str| None;
        let a = access(&args(&["--admin-token-file", path]), no_env).unwrap();
        assert_eq!(
            a.tokens.admin.as_ref().map(|t| t.expose().as_str()),
            Some(ADMIN)
        );
        assert!(a.tokens.read.is_none());
        let env = |k: &str| (k == "PACER_READ_TOKEN").then(|| READ.to_string());
        let a = access(&args(&["--admin-token-file", path]), env).unwrap();
        assert_eq!(
            a.tokens.read.as_ref().map(|t| t.expose().as_str()),
            Some(READ)
        );
        // Both a file and the variable: which one is meant?
        let both = |k: &str| (k == "PACER_ADMIN_TOKEN").then(|| ADMIN.to_string());
        let e = access(&args(&["--admin-token-file", path]), both).unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        // An empty or missing file, a short token: refused, never quoted.
        std::fs::write(&file, "\n").unwrap();
        let e = access(&args(&["--admin-token-file", path]), no_env).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
        std::fs::write(&file, "hunter2").unwrap();
        let e = access(&args(&["--admin-token-file", path]), no_env).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let missing = dir.path().join("nope");
        let e = access(
            &args(&["--read-token-file", missing.to_str().unwrap()]),
            no_env,
        );
        assert!(e.is_err());
        // None at all is fine: writes are off, the status public.
        let a = access(&args(&[]), no_env).unwrap();
        assert!(a.tokens.admin.is_none() && a.tokens.read.is_none());
    }

    #[test]
    fn the_webhook_budgets_are_the_operators() {
        let a = access(&args(&[]), |_| None).unwrap();
        assert_eq!(a.webhook_max_body, server::guard::WEBHOOK_MAX_BODY);
        let a = access(&args(&["--webhook-max-body", "4096"]), |_| None).unwrap();
        assert_eq!(a.webhook_max_body, 4096);
        for bad in [&["--webhook-max-body", "10"][..], &["--webhook-rate", "0"]] {
            let mut all = vec!["t"];
            all.extend_from_slice(bad);
            assert!(Cli::try_parse_from(all).is_err(), "{bad:?}");
        }
    }
}
