//! Everything the CLI prints as its result goes through [`write_out`]. A reader
//! that stops early (`pacer render | head -1`) closes the pipe; the write
//! then fails with `BrokenPipe`, which becomes [`StdoutClosed`] and ends the
//! command quietly with exit 0 (see `cli::main`), instead of the panic
//! `println!` would raise.

use std::fmt;
use std::io::{self, Write};

/// Stdout was closed by its reader: a normal end, not an error.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Writes to stdout and flushes, so a closed pipe is noticed here and not in
/// a destructor at exit.
pub fn write_out(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Raw bytes to stdout (a rendered file that is not text), like [`write_out`].
pub fn out_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Whether an error is (or was caused by) a closed stdout.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<StdoutClosed>())
}

/// `print!` through [`write_out`]; evaluates to `anyhow::Result<()>`.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::write_out(format_args!($($arg)*)) };
}

/// `println!` through [`write_out`]; evaluates to `anyhow::Result<()>`.
macro_rules! outln {
    () => { $crate::cli::output::write_out(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// The config repo did not render: every problem, each at file:line.
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
pub struct Problems {
    pub summary: String,
    pub diagnostics: Vec<crate::render::Diagnostic>,
}

impl Problems {
    /// `what` says what could not be done ("nothing was planned").
    pub fn new(diagnostics: Vec<crate::render::Diagnostic>, what: &str) -> Problems {
        let n = diagnostics.len();
        Problems {
            summary: format!(
                "{n} problem{} in the config repo: {what}",
                if n == 1 { "" } else { "s" }
            ),
            diagnostics,
        }
    }
}

/// Tells the user why a command failed: always on stderr, and with
/// `--format json` also on stdout as `{"errors": [{file, line, column,
/// message}]}` (fields absent when unknown), so a script reading stdout
/// never gets a bare string or nothing.
pub fn report_error(err: &anyhow::Error, json: bool) {
    let problems = err.chain().find_map(|c| c.downcast_ref::<Problems>());
    if let Some(p) = problems {
        for d in &p.diagnostics {
            eprintln!("{d}");
        }
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if json {
        let errors = match problems {
            Some(p) if !p.diagnostics.is_empty() => serde_json::to_value(&p.diagnostics)
                .unwrap_or_else(|_| serde_json::json!([{ "message": format!("{err:#}") }])),
            _ => serde_json::json!([{ "message": format!("{err:#}") }]),
        };
        let body = serde_json::json!({ "errors": errors });
        // Stdout may be gone too; stderr has said it all.
        let _ = write_out(format_args!(
            "{}\n",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_count_and_say_what_was_not_done() {
        let d = crate::render::Diagnostic {
            file: "apps/web/app.yaml".into(),
            line: Some(3),
            column: Some(1),
            message: "unknown key".into(),
            hint: None,
        };
        let p = Problems::new(vec![d.clone(), d], "nothing was planned");
        assert_eq!(
            p.to_string(),
            "2 problems in the config repo: nothing was planned"
        );
    }
}
