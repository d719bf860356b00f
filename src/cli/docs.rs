//! `pacer completions` and `pacer man`: generated from the clap definitions,
//! so they never disagree with `--help`.

use super::args::{Cli, CompletionsArgs, ManArgs};
use super::exit;
use anyhow::Context;
use clap::CommandFactory;

pub fn completions(a: CompletionsArgs) -> anyhow::Result<u8> {
    // Into memory first: clap_complete panics on a failed write, and a
    // closed stdout must end the command quietly.
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "pacer", &mut buf);
    super::output::out_bytes(&buf)?;
    Ok(exit::OK)
}

pub fn man(a: ManArgs) -> anyhow::Result<u8> {
    let cmd = Cli::command();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating `{}`", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages to `{}`", dir.display()))?;
            eprintln!("wrote man pages to {}", dir.display());
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            super::output::out_bytes(&buf)?;
        }
    }
    Ok(exit::OK)
}
