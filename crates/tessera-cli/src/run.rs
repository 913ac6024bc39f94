//! `tessera run -- PROGRAM ARGS...`: any program under libtessera.so, with
//! a trace and/or a snapshot, and a summary of its allocations.
//!
//! The summary goes to stderr, so the program's own output stays on stdout
//! untouched; the exit status is the program's.

use crate::RunArgs;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use tessera::inspect::trace::{Event, Replayer, Trace};
use tessera_viz::bins::{bytes, Bins, Histogram};
use tessera_viz::files::{load_snapshots, load_trace};

/// The library's file name.
pub const LIB: &str = "libtessera.so";

/// Where to look for the library: next to this binary, then
/// `target/release` under the current directory and its parents.
pub fn find_lib(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(format!("{}: no such library", p.display()))
        };
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        tried.push(dir.join(LIB));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            tried.push(dir.join("target").join("release").join(LIB));
        }
    }
    for p in &tried {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    Err(format!(
        "cannot find {LIB} (looked next to the tessera binary and in target/release); build it with `cargo build --release`, or pass --lib PATH"
    ))
}

/// `%p` in a path template becomes `pid`.
fn expand(template: &Path, pid: u32) -> PathBuf {
    PathBuf::from(template.to_string_lossy().replace("%p", &pid.to_string()))
}

/// Runs `run`.
pub fn run(args: &RunArgs) -> Result<ExitCode, String> {
    let lib = find_lib(args.lib.as_deref())?;
    let lib = lib.canonicalize().unwrap_or(lib);
    let (program, rest) = args
        .command
        .split_first()
        .ok_or("no program given: tessera run -- PROGRAM ARGS...")?;
    let temp = args.trace.is_none();
    let trace_template = match &args.trace {
        Some(t) => t.clone(),
        None => std::env::temp_dir().join(format!("tessera-run-{}.%p.trace", std::process::id())),
    };
    let mut preload = OsString::from(&lib);
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .env("LD_PRELOAD", &preload)
        .env("TESSERA_TRACE", &trace_template);
    if let Some(s) = &args.snapshot {
        cmd.env("TESSERA_SNAPSHOT", s);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    let pid = child.id();
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", program.to_string_lossy()))?;
    let trace_path = expand(&trace_template, pid);

    let mut o = format!(
        "── tessera run: {} (pid {pid}) {} ──\n",
        program.to_string_lossy(),
        match status.code() {
            Some(c) => format!("exited with {c}"),
            None => "was killed by a signal".into(),
        }
    );
    if trace_path.is_file() {
        match load_trace(&trace_path) {
            Ok(t) => o.push_str(&summary(&t)),
            Err(e) => o.push_str(&format!("the trace is unreadable: {e}\n")),
        }
        if temp {
            let _ = std::fs::remove_file(&trace_path);
        } else {
            o.push_str(&format!("trace: {}\n", trace_path.display()));
        }
    } else {
        o.push_str(&format!(
            "no trace was written ({} does not record TESSERA_TRACE, or the program never allocated)\n",
            lib.display()
        ));
    }
    if let Some(s) = &args.snapshot {
        let path = expand(s, pid);
        match load_snapshots(&path) {
            Ok(snaps) => {
                o.push_str(&format!(
                    "snapshot: {} ({} arena{})\n",
                    path.display(),
                    snaps.len(),
                    if snaps.len() == 1 { "" } else { "s" }
                ));
                for (i, snap) in snaps.iter().enumerate() {
                    o.push_str(&Bins::of(snap).text(&format!("arena {i}"), &|a| format!("{a:#x}")));
                }
            }
            Err(e) => o.push_str(&format!("no usable snapshot: {e}\n")),
        }
    }
    eprint!("{o}");
    Ok(match status.code() {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::from(128),
    })
}

/// Calls by kind, threads, peak footprint of a replay, request sizes.
pub fn summary(t: &Trace) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sizes = Vec::new();
    let mut tids = std::collections::BTreeSet::new();
    for r in &t.records {
        tids.insert(r.tid);
        let (k, size) = match r.event {
            Event::Malloc { size, .. } => ("malloc", Some(size)),
            Event::Calloc { n, size, .. } => ("calloc", Some(n.saturating_mul(size))),
            Event::Realloc { size, .. } => ("realloc", Some(size)),
            Event::Memalign { size, .. } => ("memalign", Some(size)),
            Event::Free { ptr: 0 } => ("free(NULL)", None),
            Event::Free { .. } => ("free", None),
            Event::Exit { .. } => continue,
        };
        *kinds.entry(k).or_default() += 1;
        sizes.extend(size);
    }
    let mut o = String::new();
    let total: usize = kinds.values().sum();
    let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    o.push_str(&format!(
        "calls: {total} ({}) in {} thread{}\n",
        list.join(", "),
        tids.len(),
        if tids.len() == 1 { "" } else { "s" }
    ));
    let mut r = Replayer::new(tessera::Heap::new());
    match r.run(t) {
        Ok(_) => {
            o.push_str(&format!(
                "peak footprint (replayed into one Tessera heap): {} · live blocks at exit: {}{}\n",
                bytes(r.heap.max_footprint()),
                r.live(),
                match t.exit_live {
                    Some(n) if n == r.live() => " (as the program reported)".to_owned(),
                    Some(n) => format!(" (the program reported {n})"),
                    None => " (the trace has no exit record: cut short?)".to_owned(),
                }
            ));
        }
        Err(e) => o.push_str(&format!(
            "the replay stopped at line {}: {}\n",
            e.line, e.msg
        )),
    }
    o.push_str(&Histogram::of(sizes).text("request sizes (bytes):", 40));
    o
}
