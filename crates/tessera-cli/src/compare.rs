//! `tessera compare [TRACE]`: one trace in Tessera, dlmalloc 2.8.6 and
//! glibc's malloc, step by step.

use crate::common::{out, write_file};
use crate::CompareArgs;
use std::process::ExitCode;
use tessera_compare::film::{compare, runs, Comparison};
use tessera_viz::files::load_trace;
use tessera_viz::Style;

const INTRO: &str = "\
tessera compare: one program, three allocators.

Each step replays one call into Tessera's heap, into dlmalloc 2.8.6 (the
dlmalloc crate, in this process) and into glibc's malloc (in a child
process), walks each heap from memory, and draws the rows of the page the
call changed (left: the page now; right: only the bytes the call wrote).
Offsets are counted from each heap's first chunk (in glibc: the chunk after
its tcache_perthread_struct), so equal offsets mean the same layout.
";

/// A step's title and explanation, when the trace has them.
type Explain = Box<dyn Fn(usize) -> Option<(String, String)>>;

/// Replays the trace (or the tour's program) into the three heaps.
pub fn build(args: &CompareArgs) -> Result<Comparison, String> {
    let (trace, title, explain): (_, String, Explain) = match &args.trace {
        Some(p) => (
            load_trace(p).map_err(|e| e.to_string())?,
            p.display().to_string(),
            Box::new(|_| None),
        ),
        None => {
            let t = tessera_viz::tour::trace();
            let notes = tessera_viz::tour::explanations(tessera_viz::tour::TRACE);
            let lines = t.lines.clone();
            (
                t,
                "the tour's program".into(),
                Box::new(move |k: usize| notes.get(lines.get(k.checked_sub(1)?)?).cloned()),
            )
        }
    };
    let exe = if args.no_glibc {
        None
    } else {
        Some(std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?)
    };
    let steps = args.steps.min(trace.records.len());
    let (runs, missing) = runs(&trace, steps, exe.as_deref())?;
    Ok(compare(&title, &trace, &runs, missing, &*explain))
}

/// Runs `compare`.
pub fn run(args: &CompareArgs, style: Style) -> Result<ExitCode, String> {
    let c = build(args)?;
    let last = c.steps.len() - 1;
    if let Some(s) = args.step {
        if s > last {
            return Err(format!(
                "the comparison has steps 0..={last}; there is no step {s}"
            ));
        }
    }
    let mut o = String::new();
    if args.step.is_none() {
        o.push_str(INTRO);
        o.push('\n');
        o.push_str(&tessera_compare::text::intro(&c));
        o.push('\n');
    }
    for k in 0..=last {
        if args.step.is_some_and(|s| s != k) {
            continue;
        }
        o.push_str(&tessera_compare::text::frame(&c, k, style, false));
        o.push('\n');
        out(&o);
        o.clear();
    }
    if !args.no_html {
        write_file(&args.html, &tessera_compare::html::page(&c))?;
        o.push_str(&format!(
            "Wrote {}: one step slider drives the three heaps; differences are marked.\n",
            args.html.display()
        ));
    }
    out(&o);
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
