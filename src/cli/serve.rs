//! `pacer serve`: flags to a daemon config.

use super::args::ServeArgs;
use super::exit;
use crate::apply;
use crate::model::{Digest, Secret};
use crate::reconcile::daemon::{self, Config};
use crate::source::remote::{GitAuth, RemoteSpec};
use std::time::Duration;

pub fn config(a: ServeArgs) -> Config {
    let auth = match (&a.git_token, &a.git_ssh_key) {
        (Some(t), _) => GitAuth::Token(Secret::new(t.clone())),
        (None, Some(key)) => GitAuth::SshKey {
            path: key.clone(),
            passphrase: std::env::var("PACER_GIT_SSH_PASSPHRASE")
                .ok()
                .map(Secret::new),
        },
        _ => GitAuth::None,
    };
    // One mirror per repo and branch, so two daemons on one host don't share.
    let workdir = a.workdir.clone().unwrap_or_else(|| {
        let key =
            Digest::of(format!("{}#{}", crate::redact::url(&a.repo_url), a.branch).as_bytes());
        std::env::temp_dir().join(format!("pacer-mirror-{}", key.short()))
    });
    Config {
        remote: RemoteSpec {
            url: a.repo_url,
            branch: a.branch,
            auth,
            ca_file: a.git_ca_file,
            known_hosts: a.git_known_hosts,
        },
        prefix: a.repo_path,
        workdir,
        listen: a.listen,
        listener: None,
        poll: Duration::from_secs(a.poll.max(1)),
        envs: (!a.envs.is_empty()).then(|| a.envs.into_iter().collect()),
        marathon_url: a.marathon.marathon,
        marathon_user: a.marathon.marathon_user,
        marathon_password: a.marathon.marathon_password.map(Secret::new),
        marathon_token: a.marathon.marathon_token.map(Secret::new),
        marathon_timeout: Duration::from_secs(a.marathon.marathon_timeout),
        marathon_events: a.marathon.marathon_events,
        apply: apply::Options {
            concurrency: a.concurrency,
            deploy_timeout: Duration::from_secs(a.deploy_timeout),
            ..apply::Options::default()
        },
        webhook_secret: a.webhook_secret.map(Secret::new),
        allow_rewind: a.allow_rewind,
        apply_all: false,
        records: a.records,
        render_timeout: Duration::from_secs(a.render_timeout),
        http: crate::listen::Limits {
            max_connections: usize::try_from(a.max_connections).unwrap_or(usize::MAX),
            header_read_timeout: Duration::from_secs(a.header_timeout),
        },
    }
}

pub fn run(a: ServeArgs) -> anyhow::Result<u8> {
    // SAFETY: no other thread runs yet: the runtime starts below, and
    // nothing before it spawns one.
    unsafe {
        crate::source::remote::set_network_timeout(Duration::from_secs(
            a.git_timeout.max(1).into(),
        ));
    }
    let rt = tokio::runtime::Runtime::new()?;
    let ran = rt.block_on(daemon::run(config(a), shutdown_signal()));
    // A Git push stuck in a blocking thread must not hold the exit (Marathon
    // kills the task after its grace period anyway).
    rt.shutdown_timeout(Duration::from_secs(10));
    ran?;
    Ok(exit::OK)
}

/// Ctrl-C or SIGTERM (how Marathon stops a task).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
