//! `tessera tour`: the built-in demo, step by step.

use crate::common::{out, write_file};
use crate::TourArgs;
use std::process::ExitCode;
use tessera_viz::page::COLS;
use tessera_viz::text::{self, GridOptions};
use tessera_viz::{html, tour, Style};

const INTRO: &str = "\
Tessera tour: one heap, one call at a time.

Each step replays one call of a small program into a fresh heap and draws
the part of the 4 KiB page it changed: on the left the page as it is now,
on the right only the bytes the call wrote. A page is 128 rows of 32 cells,
one cell per byte; the number before a row is the cell number of its first
byte (0..4095) from the page's address. A chunk boundary shows as `├` at the
start of a row or `│` in its middle.
";

/// Runs the tour.
pub fn run(args: &TourArgs, style: Style) -> Result<ExitCode, String> {
    let film = tour::film(false).map_err(|e| format!("the built-in tour failed: {e}"))?;
    let last = film.frames.len() - 1;
    if let Some(s) = args.step {
        if s > last {
            return Err(format!(
                "the tour has steps 0..={last}; there is no step {s}"
            ));
        }
    }
    let mut o = String::new();
    if args.step.is_none() {
        o.push_str(INTRO);
        o.push('\n');
        o.push_str(&text::full_legend(style));
        o.push('\n');
    }
    for k in 0..=last {
        if args.step.is_some_and(|s| s != k) {
            continue;
        }
        if k == 0 {
            o.push_str(&fresh_heap(&film, style, args.full));
        } else {
            o.push_str(&text::frame(&film, k, style, args.full, 2));
        }
        o.push('\n');
        out(&o);
        o.clear();
    }
    if args.step.is_none() {
        o.push_str(&finale(&film, style, args.full));
        out(&o);
        o.clear();
        o.push_str(&chapter(style));
    }
    if !args.no_html {
        write_file(&args.html, &html::explorer(&film))?;
        o.push_str(&format!(
            "Wrote {}: open it in a browser to step through the same story, hover over any byte and click to see its chunk.\n",
            args.html.display()
        ));
    }
    out(&o);
    Ok(ExitCode::SUCCESS)
}

/// Frame 0: the segment record, the heap state and the start of top.
fn fresh_heap(film: &tessera_viz::film::Film, style: Style, full: bool) -> String {
    let f = &film.frames[0];
    let mut o = format!("━━ step 0 ━━ {} {}\n", f.title, "━".repeat(55));
    o.push_str(&text::wrap(&f.note, 78, ""));
    let Some(page) = f.focus.and_then(|p| film.page_at(0, p)) else {
        return o;
    };
    let top = page
        .chunks
        .iter()
        .find(|c| c.cell >= 0)
        .map_or(4, |c| c.cell as usize / COLS);
    let rows: Vec<usize> = if full {
        (0..128).collect()
    } else {
        text::squeeze(page, &(0..=(top + 1).min(127)).collect::<Vec<_>>(), 1)
    };
    let opts = GridOptions {
        rows,
        ..GridOptions::default()
    };
    o.push('\n');
    o.push_str(&text::title(page, &opts));
    o.push('\n');
    o.push_str(&text::grid(page, &opts, style));
    o
}

const CHAPTER: &str = "\
Last chapter: the same five calls in three allocators.

Tessera follows dlmalloc 2.8.6; glibc's malloc (ptmalloc2) grew from an
older dlmalloc. Here five calls run in Tessera's heap, in the real dlmalloc
2.8.6 (the dlmalloc crate) and in glibc's malloc (in a child process), each
heap walked from memory after every call (`tessera compare` does this for
any trace). Offsets count from each heap's first chunk.
";

/// The chapter: five calls in Tessera, dlmalloc and glibc.
fn chapter(style: Style) -> String {
    let t = tour::compare_trace();
    let notes = tour::explanations(tour::COMPARE_TRACE);
    let lines = t.lines.clone();
    let explain = move |k: usize| notes.get(lines.get(k.checked_sub(1)?)?).cloned();
    let exe = std::env::current_exe().ok();
    let mut o = format!("━━ last chapter {}\n{CHAPTER}\n", "━".repeat(62));
    match tessera_compare::film::runs(&t, t.records.len(), exe.as_deref()) {
        Ok((runs, missing)) => {
            let c = tessera_compare::film::compare(
                "the tour's last chapter",
                &t,
                &runs,
                missing,
                &explain,
            );
            o.push_str(&tessera_compare::text::intro(&c));
            o.push('\n');
            for k in 1..c.steps.len() {
                o.push_str(&tessera_compare::text::frame(&c, k, style, false));
                o.push('\n');
            }
        }
        Err(e) => o.push_str(&format!("(the comparison failed: {e})\n")),
    }
    o
}

/// After the last step: the first page in full, its chunks, the bins.
fn finale(film: &tessera_viz::film::Film, style: Style, full: bool) -> String {
    let last = film.frames.len() - 1;
    let f = &film.frames[last];
    let mut o = String::new();
    let Some(first) = film.frames[0].focus else {
        return o;
    };
    let Some(page) = film.page_at(last, first) else {
        return o;
    };
    let all: Vec<usize> = (0..128).collect();
    let opts = GridOptions {
        rows: if full {
            all
        } else {
            text::squeeze(page, &all, 1)
        },
        ..GridOptions::default()
    };
    o.push_str(&format!(
        "━━ the end ━━ the first page{} {}\n",
        if full {
            " in full"
        } else {
            " (runs of like rows cut; --full draws all)"
        },
        "━".repeat(if full { 44 } else { 12 })
    ));
    o.push_str(&text::page(page, &opts, style));
    o.push('\n');
    o.push_str(&f.bins.text("the heap", &|a| page.name_ptr(a)));
    o.push('\n');
    o.push_str(
        &f.hist
            .text("free-chunk sizes (bins and dv; top apart):", 30),
    );
    o.push('\n');
    o
}
