//! `tessera`: see the heap. Replays traces and draws snapshots as byte
//! grids (one 4 KiB page as 128 rows of 32 cells), in the terminal and as
//! a self-contained HTML explorer.
//!
//! Subcommands: `tour` (the built-in demo), `replay` (a trace), `art` (a
//! snapshot), `run` (any program under libtessera.so), `compare` (a trace
//! in Tessera, dlmalloc 2.8.6 and glibc side by side). Errors print one
//! line naming the file, the line and the problem, and exit with status 1.

mod art;
mod common;
mod compare;
mod replay;
mod run;
mod tour;

use clap::{Parser, Subcommand};
use common::{ColorWhen, PageArg};
use std::path::PathBuf;
use std::process::ExitCode;

/// The command's own allocations go to Tessera: dogfooding, and the glibc
/// child of `tessera compare` (this binary, run as `glibc-replay`) must
/// leave glibc's heap to the trace it replays.
#[global_allocator]
static ALLOCATOR: tessera::Tessera = tessera::Tessera;

/// `tessera glibc-replay` runs before Rust's runtime starts: glibc calls
/// the `.init_array` entries of the program with `argc, argv, envp`
/// before `main`, and Rust's start-up would otherwise use glibc's malloc
/// (its main-thread stack guard reads /proc/self/maps through stdio),
/// leaving chunks in the heap the child is to show.
#[used]
#[link_section = ".init_array"]
static GLIBC_CHILD: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = glibc_child_entry;

extern "C" fn glibc_child_entry(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    if argc != 2 || argv.is_null() {
        return;
    }
    // SAFETY: glibc passes the program's argv: argc valid C strings.
    let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(1)) };
    if arg.to_bytes() != b"glibc-replay" {
        return;
    }
    let code = match compare::glibc_child() {
        Ok(_) => 0,
        Err(msg) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("tessera: {msg}\n").as_bytes(),
            );
            1
        }
    };
    // SAFETY: ends the process without running Rust's runtime at all.
    unsafe { libc::_exit(code) }
}

/// See the heap: Tessera's chunks drawn byte by byte.
///
/// A page of memory (4 KiB) is drawn as 128 rows of 32 cells, one cell per
/// byte, numbered 0..4095. Each cell shows what its byte is to the
/// allocator: prev_foot, head, payload, slack, fd, bk, child[0], child[1],
/// parent, index, top, fencepost, segment record, ...
#[derive(Parser, Debug)]
#[command(name = "tessera", version, propagate_version = true)]
struct Cli {
    /// Colour in the terminal: auto (when stdout is a terminal and NO_COLOR
    /// is not set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    color: ColorWhen,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A guided tour of the allocator: a built-in demo trace replayed step
    /// by step, each with a one-line explanation and the bytes it changed.
    ///
    /// Shows a split from top, small-bin reuse, coalescing with both
    /// neighbours, a tree-bin chunk with its child/parent links, the dv at
    /// work, a memalign giving its slack back and a direct-mapped chunk.
    /// Also writes the same story as an HTML page (tessera-tour.html).
    Tour(TourArgs),
    /// Replays a trace (TESSERA_TRACE output) into a fresh heap and draws a
    /// page at a chosen step.
    Replay(ReplayArgs),
    /// Runs a program with libtessera.so preloaded, records a trace and/or
    /// a snapshot, and prints a summary: calls by kind, peak footprint,
    /// request sizes.
    Run(RunArgs),
    /// Draws a page of a saved snapshot (TESSERA_SNAPSHOT output).
    Art(ArtArgs),
    /// One trace in three heaps: Tessera, dlmalloc 2.8.6 (the dlmalloc
    /// crate) and glibc's malloc, drawn side by side step by step, with
    /// their differences marked.
    ///
    /// Without a trace, replays the tour's program. Also writes the
    /// comparison as an HTML page (tessera-compare.html).
    Compare(CompareArgs),
    /// (Internal: the glibc side of `compare`, reading a trace on stdin.)
    #[command(hide = true)]
    GlibcReplay,
}

/// Arguments of `tessera compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The trace (TESSERA_TRACE output); default: the tour's program.
    pub trace: Option<PathBuf>,
    /// Where to write the HTML page.
    #[arg(long, value_name = "FILE", default_value = "tessera-compare.html")]
    pub html: PathBuf,
    /// Do not write the HTML page.
    #[arg(long)]
    pub no_html: bool,
    /// Show only this step (0 = the fresh heaps).
    #[arg(long, value_name = "N")]
    pub step: Option<usize>,
    /// Compare at most this many steps of the trace.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub steps: usize,
    /// Leave glibc out (no child process).
    #[arg(long)]
    pub no_glibc: bool,
}

/// Arguments of `tessera tour`.
#[derive(clap::Args, Debug)]
pub struct TourArgs {
    /// Where to write the HTML page.
    #[arg(long, value_name = "FILE", default_value = "tessera-tour.html")]
    pub html: PathBuf,
    /// Do not write the HTML page.
    #[arg(long)]
    pub no_html: bool,
    /// Draw all 128 rows of each page a step changed, not only the rows
    /// around the change.
    #[arg(long)]
    pub full: bool,
    /// Show only this step (0 = the fresh heap).
    #[arg(long, value_name = "N")]
    pub step: Option<usize>,
}

/// Arguments of `tessera replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The trace file (format: docs/visualiser.md).
    pub trace: PathBuf,
    /// Draw the heap after this many calls (default: the last; 0 = the
    /// fresh heap).
    #[arg(long, value_name = "N")]
    pub step: Option<usize>,
    /// The page to draw: an address inside it (0x...), or `auto` for the
    /// page the step changed.
    #[arg(long, value_name = "ADDR|auto", default_value = "auto")]
    pub page: PageArg,
    /// Which chunk holds this address? Draws its page with the chunk
    /// marked and names the chunk and the byte's field. A pointer the trace
    /// recorded for a live block stands for that block in the replay (replay
    /// addresses change from run to run).
    #[arg(long, value_name = "ADDR")]
    pub at: Option<String>,
    /// Only the rows around the bytes the step changed.
    #[arg(long)]
    pub compact: bool,
    /// Also write an HTML explorer of the steps around --step.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Steps the HTML page covers.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub window: usize,
}

/// Arguments of `tessera run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Keep the trace in FILE (`%p` is replaced by the process id).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write a snapshot of the heap at exit to FILE (`%p` = process id).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// The library to preload (default: libtessera.so next to this binary,
    /// else target/release/libtessera.so).
    #[arg(long, value_name = "PATH")]
    pub lib: Option<PathBuf>,
    /// The program and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM ARGS"
    )]
    pub command: Vec<std::ffi::OsString>,
}

/// Arguments of `tessera art`.
#[derive(clap::Args, Debug)]
pub struct ArtArgs {
    /// The snapshot file (one snapshot per arena, back to back).
    pub snapshot: PathBuf,
    /// The page to draw: an address inside it (0x...), or `auto` for the
    /// captured page with the most chunks.
    #[arg(long, value_name = "ADDR|auto", default_value = "auto")]
    pub page: PageArg,
    /// Which chunk holds this address? Looks in every arena.
    #[arg(long, value_name = "ADDR")]
    pub at: Option<String>,
    /// The arena to draw (0-based, in file order).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub arena: usize,
    /// Also write an HTML explorer of the snapshot (one frame per arena).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = cli.color.style();
    let result = match cli.cmd {
        Cmd::Tour(a) => tour::run(&a, style),
        Cmd::Replay(a) => replay::run(&a, style),
        Cmd::Art(a) => art::run(&a, style),
        Cmd::Run(a) => run::run(&a),
        Cmd::Compare(a) => compare::run(&a, style),
        Cmd::GlibcReplay => compare::glibc_child(),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("tessera: {msg}");
            ExitCode::from(1)
        }
    }
}
