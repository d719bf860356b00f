//! `pacer serve`'s config server flags (see `crate::delivery`), and how
//! they become its settings.

use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The config server's flags (see `delivery`).
#[derive(Debug, Args)]
pub struct ConfigServerArgs {
    /// Where the token signing key, the task ids that logged in and the
    /// live endpoints last released to templates are kept: a persistent directory of the daemon's own (mode 0700, made if
    /// absent; refused when another user owns it or group/others may read
    /// it). Default: beside the mirror, `<workdir>.state`.
    #[arg(
        long,
        env = "PACER_STATE_DIR",
        value_name = "DIR",
        help_heading = "Config server"
    )]
    pub state_dir: Option<PathBuf>,
    /// A file holding the token signing key, hex or base64 (at least 32
    /// bytes decoded, e.g. `openssl rand -hex 32`; mode 0600 or 0400);
    /// replicas share it. Default: one generated
    /// in the state directory at first start.
    #[arg(
        long,
        env = "PACER_TOKEN_KEY_FILE",
        value_name = "FILE",
        help_heading = "Config server"
    )]
    pub token_key_file: Option<PathBuf>,
    /// Seconds after its start within which a task must log in.
    #[arg(
        long,
        env = "PACER_LOGIN_GRACE",
        default_value_t = 120,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600),
        help_heading = "Config server"
    )]
    pub login_grace: u64,
    /// Seconds a task's token lives; the agent renews it while the task runs.
    #[arg(
        long,
        env = "PACER_TOKEN_TTL",
        default_value_t = 900,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        help_heading = "Config server"
    )]
    pub token_ttl: u64,
    /// Whether a login must come from its task's host (`false` behind NAT;
    /// `/api/v1/status` then shows `configServer.addressCheck: false`).
    #[arg(
        long,
        env = "PACER_TASK_ADDRESS_CHECK",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL",
        help_heading = "Config server"
    )]
    pub task_address_check: bool,
    /// Seconds between checks with Marathon that a token's task still runs.
    #[arg(
        long,
        env = "PACER_TASK_RECHECK",
        default_value_t = 30,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=3600),
        help_heading = "Config server"
    )]
    pub task_recheck: u64,
    /// Logins and renewals one address may make at once (a host's tasks
    /// starting together), before `--login-rate` applies.
    #[arg(
        long,
        env = "PACER_LOGIN_BURST",
        default_value_t = 60,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        help_heading = "Config server"
    )]
    pub login_burst: u32,
    /// Logins and renewals per second one address may make after its burst.
    #[arg(
        long,
        env = "PACER_LOGIN_RATE",
        default_value_t = 10,
        value_name = "PER_SECOND",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        help_heading = "Config server"
    )]
    pub login_rate: u32,
    /// `ENV=URL`: the Marathon that vouches for ENV's task logins, when
    /// `--marathon` is not given (repeat per environment). pacer.yaml's
    /// `marathon:` is never trusted for logins: without one of these the
    /// config server refuses ENV's logins.
    #[arg(
        long,
        env = "PACER_CONFIG_SERVER_MARATHON",
        value_name = "ENV=URL",
        value_delimiter = ',',
        help_heading = "Config server"
    )]
    pub config_server_marathon: Vec<String>,
    /// Seconds a hot update may take to reach every running task (each
    /// task's agent reports the bundle it holds); past it the delivery
    /// fails, in the status and the history.
    #[arg(
        long,
        env = "PACER_DELIVERY_TIMEOUT",
        default_value_t = 300,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        help_heading = "Config server"
    )]
    pub delivery_timeout: u64,
}

/// `--config-server-marathon`'s `ENV=URL`s; an error never quotes a URL
/// (it may hold a password).
pub(super) fn env_marathons(values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let Some((env, url)) = v.split_once('=') else {
            anyhow::bail!(
                "--config-server-marathon takes ENV=URL (e.g. dev=http://marathon.dev:8080)"
            );
        };
        let env = env.trim();
        if env.is_empty() {
            anyhow::bail!("--config-server-marathon: the environment before `=` is empty");
        }
        let url = super::args::http_url(url.trim()).map_err(|e| {
            anyhow::anyhow!(
                "--config-server-marathon {env}={}: {e}",
                crate::redact::url(url)
            )
        })?;
        if out.insert(env.to_string(), url).is_some() {
            anyhow::bail!("--config-server-marathon: environment {env} is given twice");
        }
    }
    Ok(out)
}

impl ConfigServerArgs {
    pub(crate) fn settings(&self) -> anyhow::Result<crate::delivery::Settings> {
        Ok(crate::delivery::Settings {
            marathons: env_marathons(&self.config_server_marathon)?,
            state_dir: self.state_dir.clone(),
            token_key_file: self.token_key_file.clone(),
            login_grace: Duration::from_secs(self.login_grace),
            token_ttl: Duration::from_secs(self.token_ttl),
            check_address: self.task_address_check,
            task_recheck: Duration::from_secs(self.task_recheck),
            delivery_timeout: Duration::from_secs(self.delivery_timeout),
            login_rate: crate::delivery::limit::Rate {
                burst: f64::from(self.login_burst),
                per_second: f64::from(self.login_rate),
                ..crate::delivery::limit::LOGIN
            },
            // Set from the listener's connection cap when it starts.
            ..crate::delivery::Settings::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::env_marathons;

    #[test]
    fn config_server_marathons_are_env_equals_url_and_errors_hide_passwords() {
        let m = env_marathons(&["dev=http://m-dev:8080".into(), "prod=m-prod".into()]).unwrap();
        assert_eq!(m["dev"], "http://m-dev:8080");
        assert!(m["prod"].starts_with("http://m-prod"), "{m:?}");
        assert!(env_marathons(&["http://m".into()]).is_err());
        assert!(env_marathons(&["=http://m".into()]).is_err());
        assert!(env_marathons(&["dev=http://a".into(), "dev=http://b".into()]).is_err());
        let e = env_marathons(&["dev=ftp://u:hunter2@m".into()])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        c: super::ConfigServerArgs,
    }

    #[test]
    fn the_login_rate_is_the_operators_and_never_zero() {
        use clap::Parser;
        let s = Cli::try_parse_from(["t"]).unwrap().c.settings().unwrap();
        assert_eq!((s.login_rate.burst, s.login_rate.per_second), (60.0, 10.0));
        let c = Cli::try_parse_from(["t", "--login-burst", "500", "--login-rate", "50"]).unwrap();
        let s = c.c.settings().unwrap();
        assert_eq!((s.login_rate.burst, s.login_rate.per_second), (500.0, 50.0));
        assert_eq!(
            s.login_rate.max_callers,
            crate::delivery::limit::LOGIN.max_callers
        );
        assert!(Cli::try_parse_from(["t", "--login-rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["t", "--login-burst", "-1"]).is_err());
    }
}
