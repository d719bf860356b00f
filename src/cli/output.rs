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
