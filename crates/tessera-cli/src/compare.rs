//! `tessera compare [TRACE]`: one trace in Tessera, dlmalloc 2.8.6 and
//! glibc's malloc, step by step.

use crate::CompareArgs;
use std::process::ExitCode;
use tessera_viz::Style;

/// Runs `compare`.
pub fn run(_args: &CompareArgs, _style: Style) -> Result<ExitCode, String> {
    Ok(ExitCode::SUCCESS)
}

/// The hidden `glibc-replay` subcommand: the child side of the glibc heap.
pub fn glibc_child() -> Result<ExitCode, String> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    tessera_compare::glibc::child(&mut std::io::stdin().lock(), &mut out)?;
    std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
