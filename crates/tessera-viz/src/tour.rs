//! The built-in demo of `tessera tour`: a trace whose steps show, one by
//! one, a split from top, small-bin reuse, coalescing with both neighbours,
//! a tree-bin chunk with its child/parent links, the dv at work, a memalign
//! with its slack given back, and a direct-mapped chunk.
//!
//! The trace is ordinary `tessera::inspect::trace` text (`tour.trace` beside this
//! file), so `tessera replay` can replay it too. A `#:` comment right above
//! a record is that step's title and one-line explanation, separated by
//! ` | `. The tests in `tests/tour.rs` check that each step really shows
//! what its explanation says.

use crate::film::{Film, Recording};
use crate::session::Session;
use std::collections::HashMap;
use tessera::inspect::trace::{Event, Trace, TraceError};

/// The demo trace.
pub const TRACE: &str = include_str!("tour.trace");

/// The last chapter's trace: five calls that `tessera tour` replays into
/// Tessera, dlmalloc 2.8.6 and glibc's malloc side by side (the
/// comparison itself is `tessera_compare`'s), with the one place glibc
/// differs (its thread cache keeps freed chunks unmerged) explained.
pub const COMPARE_TRACE: &str = include_str!("tour-compare.trace");

/// The chapter's trace, parsed.
pub fn compare_trace() -> Trace {
    Trace::parse(COMPARE_TRACE).expect("the built-in chapter trace parses (tested)")
}

/// The demo trace, parsed.
pub fn trace() -> Trace {
    Trace::parse(TRACE).expect("the built-in tour trace parses (tested)")
}

/// Title and explanation of each record, by its line in [`TRACE`].
pub fn explanations(text: &str) -> HashMap<usize, (String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(rest) = l.strip_prefix("#:") {
            let (title, note) = rest.split_once(" | ").unwrap_or((rest, ""));
            // The record is the next line; lines are 1-based.
            out.insert(i + 2, (title.trim().to_owned(), note.trim().to_owned()));
        }
    }
    out
}

/// Number of steps the tour shows (every record but the final `exit`).
pub fn steps(t: &Trace) -> usize {
    t.records
        .iter()
        .filter(|r| !matches!(r.event, Event::Exit { .. }))
        .count()
}

/// Replays the tour into a fresh heap and records its frames.
pub fn film(keep_snapshots: bool) -> Result<Film, TraceError> {
    let t = trace();
    let notes = explanations(TRACE);
    let lines = t.lines.clone();
    let n = steps(&t);
    let mut s = Session::new(t, true);
    let explain = move |step: usize| -> Option<(String, String)> {
        notes.get(lines.get(step.checked_sub(1)?)?).cloned()
    };
    Film::record(
        &mut s,
        &Recording {
            title: "tessera tour".into(),
            steps: n,
            explain: &explain,
            pinned: Vec::new(),
            keep_snapshots,
        },
    )
}
