//! Shared bits of the subcommands: colour choice, page and address
//! arguments, writing output files.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::str::FromStr;
use tessera_viz::Style;

/// When to colour the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// When stdout is a terminal and NO_COLOR is unset or empty.
    Auto,
    /// Always (ANSI escapes).
    Always,
    /// Never (plain box drawing).
    Never,
}

impl ColorWhen {
    /// The renderer this choice gives here.
    pub fn style(self) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        match self {
            ColorWhen::Always => Style::Ansi,
            ColorWhen::Never => Style::Plain,
            ColorWhen::Auto if !no_color && std::io::stdout().is_terminal() => Style::Ansi,
            ColorWhen::Auto => Style::Plain,
        }
    }
}

/// `--page`: a page by address, or chosen automatically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageArg {
    /// The page the step changed (replay) or the busiest page (art).
    Auto,
    /// The page holding this address.
    Addr(usize),
}

impl FromStr for PageArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            Ok(PageArg::Auto)
        } else {
            parse_addr(s).map(PageArg::Addr)
        }
    }
}

/// An address: `0x` and hex digits, or decimal digits.
pub fn parse_addr(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => usize::from_str_radix(&h.replace('_', ""), 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("`{s}` is not an address (expected 0x followed by hex digits)"))
}

/// Writes `text` to `path`, naming the file on failure.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// Prints to stdout, ignoring a closed pipe (`tessera tour | head`).
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}
