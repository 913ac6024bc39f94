//! `tessera replay TRACE`: a trace replayed into a fresh heap, one page
//! drawn at one step.

use crate::common::{out, parse_addr, write_file, PageArg};
use crate::ReplayArgs;
use std::process::ExitCode;
use tessera_viz::bins::{Bins, Histogram};
use tessera_viz::files::{load_trace, FileError};
use tessera_viz::film::{describe, Film, Recording};
use tessera_viz::page::{page_of, PageView};
use tessera_viz::text::{self, compact_rows, GridOptions};
use tessera_viz::{html, Session, Style};

/// Runs `replay`.
pub fn run(args: &ReplayArgs, style: Style) -> Result<ExitCode, String> {
    let path = &args.trace;
    let trace = load_trace(path).map_err(|e| e.to_string())?;
    let len = trace.records.len();
    let step = args.step.unwrap_or(len);
    if step > len {
        return Err(format!(
            "{}: the trace has {len} steps; there is no step {step}",
            path.display()
        ));
    }
    let at = args.at.as_deref().map(parse_addr).transpose()?;
    let replay_err =
        |e: tessera::inspect::trace::TraceError| FileError::new(path, e.line, e.msg).to_string();

    let mut s = Session::new(trace.clone(), false);
    s.fast_forward(step.saturating_sub(1)).map_err(replay_err)?;
    s.set_tracking(true);
    let before = s.snapshot().clone();
    let before_req = s.requests().clone();
    let info = if step > 0 {
        Some(s.step().expect("step <= len").map_err(replay_err)?)
    } else {
        None
    };
    let snap = s.snapshot();
    // A block pointer as the trace recorded it stands for its replay block.
    let mut o = String::new();
    let at = at.map(|a| match s.lookup(a) {
        Some((r, _)) => {
            o.push_str(&format!(
                "{a:#x} is a block the trace recorded; in this replay it is at {r:#x}\n"
            ));
            r
        }
        None => a,
    });
    let page = match (at, args.page) {
        (Some(a), _) => page_of(a),
        (None, PageArg::Addr(a)) => page_of(a),
        (None, PageArg::Auto) => info
            .as_ref()
            .and_then(|i| i.focus)
            .or_else(|| snap.segments.first().map(|g| g.base))
            .unwrap_or(0),
    };
    s.track(page);
    let snap = s.snapshot();
    let view = PageView::new(snap, page, Some(s.requests()));
    match &info {
        Some(i) => o.push_str(&format!(
            "step {step} of {len} · {}:{} · {}\n",
            path.display(),
            i.line,
            describe(i)
        )),
        None => o.push_str(&format!("step 0 of {len} · the fresh heap\n")),
    }
    let mut opts = GridOptions::default();
    if info.is_some() {
        let old = PageView::new(&before, page, Some(&before_req));
        let changes = view.changes(&old);
        if args.compact {
            opts.rows = compact_rows(&view, &changes, true);
            if opts.rows.is_empty() {
                opts.rows = (0..4).collect();
            }
        }
        if changes.iter().any(|&c| c) {
            opts.changes = Some(changes);
        }
    }
    if let Some(a) = at {
        match snap.chunk_at(a) {
            Some(c) => {
                opts.highlight = Some((
                    c.addr.max(page) - page,
                    (c.addr + c.size).min(page + 4096) - page,
                ));
                o.push_str(&which(&view, a));
            }
            None => o.push_str(&format!(
                "{a:#x} is in no chunk: {}\n",
                tessera_viz::page::role_with_requests(snap, Some(s.requests()), a).name()
            )),
        }
    }
    o.push_str(&text::page(&view, &opts, style));
    o.push('\n');
    o.push_str(&Bins::of(snap).text("the replay heap", &|a| view.name_ptr(a)));
    o.push('\n');
    o.push_str(
        &Histogram::free_chunks(snap).text("free-chunk sizes (bins and dv; top apart):", 30),
    );
    out(&o);

    if let Some(file) = &args.html {
        let window = args.window.max(1);
        let start = step
            .saturating_sub(window / 2)
            .min(len.saturating_sub(window));
        let mut s = Session::new(trace, false);
        s.fast_forward(start).map_err(replay_err)?;
        s.set_tracking(true);
        let none = |_: usize| None;
        let mut film = Film::record(
            &mut s,
            &Recording {
                title: path.display().to_string(),
                steps: window.min(len - start),
                explain: &none,
                pinned: vec![page],
                keep_snapshots: false,
            },
        )
        .map_err(replay_err)?;
        film.start = step - start;
        write_file(file, &html::explorer(&film))?;
        out(&format!(
            "\nWrote {} (steps {start}..{}).\n",
            file.display(),
            start + film.frames.len() - 1
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// "0x... is in the chunk at 0x..., 112 B in use · field: payload".
pub fn which(view: &PageView, a: usize) -> String {
    let i = a - view.addr;
    match view.chunk_of(i) {
        Some(c) => format!(
            "{a:#x} is in the chunk at {:#x} ({} B, {}, head {}) · byte {} of it · field: {}\n",
            c.info.addr,
            c.info.size,
            c.kind_text(),
            c.head_text(),
            a - c.info.addr,
            view.cells[i].role.name()
        ),
        None => format!("{a:#x} is in no chunk: {}\n", view.cells[i].role.name()),
    }
}
