//! The command line: clap types in [`args`], one function per subcommand.
//! Only this module turns errors into exit codes, and every result is
//! printed through [`output`], so a closed stdout ends any command cleanly.

#[macro_use]
pub(crate) mod output;

mod apply;
mod args;
mod commands;
mod config_server;
mod demo;
mod docs;
mod history;
mod plan;
mod secret;
pub mod serve;
mod status;
mod tokens;
pub(crate) mod verify;

pub use args::Cli;
use args::Command;
use clap::Parser;
use std::process::ExitCode;

/// Exit codes, shared by every subcommand and documented in `--help` and the README.
pub mod exit {
    /// Success; for `diff` and `plan`, also "no changes".
    pub const OK: u8 = 0;
    /// An error: bad input (usage errors too), an unreachable service, a failed action.
    pub const ERROR: u8 = 1;
    /// `diff` and `plan` only: there are changes (terraform's `-detailed-exitcode`).
    pub const CHANGES: u8 = 2;
}

/// The exit code for what clap stopped on: `--help` and `--version` are
/// answers (0); everything else is a usage error (1), never clap's own 2,
/// which pacer keeps for "changes found".
fn parse_exit(err: &clap::Error) -> u8 {
    if err.use_stderr() {
        exit::ERROR
    } else {
        exit::OK
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // A closed stdout while printing help is as fine as anywhere.
            let _ = err.print();
            return ExitCode::from(parse_exit(&err));
        }
    };
    if !matches!(cli.command, Command::Serve(_) | Command::Demo(_)) {
        // SAFETY: no other thread runs yet. Only `serve` (and `demo`, which
        // runs it) fetch from a Git server.
        unsafe { crate::source::remote::start_without_https() };
    }
    init_tracing(cli.log.as_deref());
    let json = cli.command.format() == Some(args::Format::Json);
    if let Err(err) = install_keys(&cli.command) {
        output::report_error(&err, json);
        return ExitCode::from(exit::ERROR);
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if output::is_stdout_closed(&err) => ExitCode::from(exit::OK),
        Err(err) => {
            output::report_error(&err, json);
            ExitCode::from(exit::ERROR)
        }
    }
}

fn init_tracing(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("warn,pacer=info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, not for log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// The age identities every render of this process opens sealed secrets
/// with, read from the environment here, at the edge. Commands that only
/// show (validate, render, diff) fall back to placeholders without a key
/// that opens a file; the others refuse the apps that read such secrets.
/// `pacer demo` adds the example's demo key.
fn install_keys(command: &Command) -> anyhow::Result<()> {
    let show_only = matches!(
        command,
        Command::Validate(_) | Command::Render(_) | Command::Diff(_)
    );
    let renders = show_only
        || matches!(
            command,
            Command::Plan(_)
                | Command::Apply(_)
                | Command::Retry(_)
                | Command::History(_)
                | Command::Status(_)
                | Command::Serve(_)
                | Command::Demo(_)
        );
    if !renders {
        return Ok(());
    }
    let mut sources = crate::sops::IdentitySources::from_env();
    sources.demo = matches!(command, Command::Demo(_));
    let ids = crate::sops::Identities::load(&sources).map_err(anyhow::Error::msg)?;
    crate::render::SecretKeys::install_process_default(crate::render::SecretKeys::new(
        ids, show_only,
    ));
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate(a) => commands::validate(a),
        Command::Render(a) => commands::render(a),
        Command::Diff(a) => commands::diff(a),
        Command::Demo(a) => demo::run(a),
        Command::Plan(a) => plan::plan_cmd(a),
        Command::Apply(a) => apply::apply_cmd(a),
        Command::Retry(a) => apply::retry_cmd(a),
        Command::History(a) => history::history_cmd(a),
        Command::Status(a) => status::status_cmd(a),
        Command::Verify(a) => verify::verify_cmd(a),
        Command::Secret(a) => secret::run(a),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
        Command::Serve(a) => serve::run(*a),
        Command::Agent(a) => crate::agent::run(a),
        Command::Sim(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(crate::sim::run(args)).map_err(|e| {
                // Its first line is its address: a reader gone by then is a
                // closed stdout like any other.
                let closed = e
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
                if closed {
                    output::StdoutClosed.into()
                } else {
                    e
                }
            })?;
            Ok(exit::OK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_exit_1_and_help_exits_0() {
        let code = |args: &[&str]| {
            let err = Cli::try_parse_from(args).expect_err("clap stops");
            parse_exit(&err)
        };
        assert_eq!(code(&["pacer", "diff", "--bse", "HEAD"]), exit::ERROR);
        assert_eq!(code(&["pacer", "plan", "--format", "jsn"]), exit::ERROR);
        assert_eq!(code(&["pacer"]), exit::ERROR);
        assert_eq!(code(&["pacer", "--help"]), exit::OK);
        assert_eq!(code(&["pacer", "plan", "--help"]), exit::OK);
        assert_eq!(code(&["pacer", "--version"]), exit::OK);
    }
}
