//! The command line: clap types in [`args`], one function per subcommand.
//! Only this module turns errors into exit codes.

mod args;
mod commands;
mod demo;
mod live;
pub mod serve;

pub use args::Cli;
use args::Command;
use clap::Parser;
use std::process::ExitCode;

/// Exit codes, shared by every subcommand and documented in `--help` and the README.
pub mod exit {
    /// Success; for `diff` and `plan`, also "no changes".
    pub const OK: u8 = 0;
    /// An error: bad input, an unreachable service, a failed action.
    pub const ERROR: u8 = 1;
    /// `diff` and `plan` only: there are changes (terraform's `-detailed-exitcode`).
    pub const CHANGES: u8 = 2;
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Demo(_)) {
        // SAFETY: no other thread runs yet. Only `serve` (and `demo`, which
        // runs it) fetch from a Git server.
        unsafe { crate::source::remote::start_without_https() };
    }
    init_tracing(cli.log.as_deref());
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
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

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate(a) => commands::validate(a),
        Command::Render(a) => commands::render(a),
        Command::Diff(a) => commands::diff(a),
        Command::Demo(a) => demo::run(a),
        Command::Plan(a) => live::plan_cmd(a),
        Command::Apply(a) => live::apply_cmd(a, false),
        Command::Retry(a) => live::apply_cmd(a, true),
        Command::History(a) => live::history_cmd(a),
        Command::Serve(a) => serve::run(a),
        Command::Sim(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(crate::sim::run(args))?;
            Ok(exit::OK)
        }
    }
}
