//! The comparison as frames: one trace replayed into the three heaps,
//! and for every step and every heap the pages it changed (page views of
//! the walkers' chunks, drawn by tessera-viz), the bins, the walker's
//! notes and the differences from the other heaps.
//!
//! Differences are told in offsets from each heap's base (see
//! [`crate::model`]): a block at another offset than in Tessera, and a
//! free chunk merged in one heap while the other keeps the same bytes as
//! several chunks (glibc's tcache and fastbins keep freed chunks as they
//! are).

use crate::core::{Applied, Event, Record, Trace, PAGE};
use crate::dl::DlHeap;
use crate::glibc;
use crate::model::{bins_of, BinRow, Chunk, Picture, Who};
use crate::replay::{Replay, Subject};
use crate::tess::TesseraHeap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;
use tessera_viz::film::{Film, Frame, FramePage};
use tessera_viz::page::PageView;
use tessera_viz::{Bins, Histogram};

/// Most pages kept per heap and frame (the focus first).
pub const MAX_PAGES: usize = 6;

/// One heap's run through the trace.
#[derive(Clone, Debug)]
pub struct Run {
    /// Whose heap.
    pub who: Who,
    /// A line about the allocator (version, where its memory comes from).
    pub about: String,
    /// Per step (0 = before the first call): what the call did.
    pub applied: Vec<Option<Applied>>,
    /// Per step: the heap.
    pub pictures: Vec<Picture>,
    /// Per step: live blocks, recorded address -> (address, asked).
    pub blocks: Vec<BTreeMap<usize, (usize, usize)>>,
}

impl Run {
    /// Where block `rec` is at step `k`: `+0x60`, or `own mapping` for a
    /// chunk mapped on its own (Tessera's direct, glibc's mmapped chunks).
    fn place(&self, k: usize, rec: usize) -> Option<String> {
        let &(a, _) = self.blocks[k].get(&rec)?;
        let p = &self.pictures[k];
        let mapped = p.chunks.iter().any(|c| {
            c.mem() == a
                && matches!(
                    c.kind,
                    crate::model::Kind::Direct | crate::model::Kind::Mmapped
                )
        });
        Some(if mapped {
            "its own mapping".into()
        } else {
            offset_text(a - 16, p.base)
        })
    }
}

fn replay_in<S: Subject>(
    who: Who,
    about: String,
    subject: S,
    records: &[Record],
) -> Result<Run, String> {
    let mut r = Replay::new(subject);
    let mut run = Run {
        who,
        about,
        applied: vec![None],
        pictures: vec![r.subject.picture()],
        blocks: vec![BTreeMap::new()],
    };
    for (k, rec) in records.iter().enumerate() {
        let a = r
            .apply(rec)
            .map_err(|e| format!("{}: step {}: {e}", who.name(), k + 1))?;
        run.applied.push(Some(a));
        run.pictures.push(r.subject.picture());
        let req = r.requests();
        run.blocks.push(
            r.blocks()
                .into_iter()
                .map(|(rec, a)| (rec, (a, req.get(&a).copied().unwrap_or(0))))
                .collect(),
        );
    }
    Ok(run)
}

/// Replays the first `steps` records of `trace` into Tessera and
/// dlmalloc here, and into glibc through `exe glibc-replay` when `exe` is
/// given. A heap that cannot be had is left out with the reason.
pub fn runs(
    trace: &Trace,
    steps: usize,
    exe: Option<&Path>,
) -> Result<(Vec<Run>, Vec<String>), String> {
    let records: Vec<Record> = trace.records.iter().take(steps).copied().collect();
    let mut missing = Vec::new();
    let t = TesseraHeap::new();
    let first = t.chunks().1;
    let mut out = vec![replay_in(
        Who::Tessera,
        "tessera::Heap (one heap: no thread cache, no quick lists), as `tessera replay`".into(),
        t,
        &records,
    )?];
    match DlHeap::new(first) {
        Some(d) => out.push(replay_in(
            Who::Dlmalloc,
            "the dlmalloc crate 0.2 (a port of malloc.c 2.8.6; it has no mmap threshold), its segment placed at Tessera's page offset".into(),
            d,
            &records,
        )?),
        None => missing.push("dlmalloc: no address space for its heap".into()),
    }
    if let Some(exe) = exe {
        let mut short = trace.clone();
        short.records = records.clone();
        short.lines.truncate(records.len());
        match glibc::run_child(exe, &short) {
            Ok((header, steps)) => {
                let version = header
                    .split(' ')
                    .find_map(|w| w.strip_prefix("version="))
                    .unwrap_or("?")
                    .to_owned();
                let mut run = Run {
                    who: Who::Glibc,
                    about: format!(
                        "glibc {version} malloc (ptmalloc2), main arena, in a child process"
                    ),
                    applied: Vec::new(),
                    pictures: Vec::new(),
                    blocks: Vec::new(),
                };
                for s in steps {
                    run.applied.push(s.applied);
                    run.pictures.push(s.picture);
                    run.blocks.push(s.blocks);
                }
                if run.pictures.len() != records.len() + 1 {
                    missing.push(format!(
                        "glibc: the child reported {} steps of {}",
                        run.pictures.len().saturating_sub(1),
                        records.len()
                    ));
                } else {
                    out.push(run);
                }
            }
            Err(e) => missing.push(format!("glibc: {e}")),
        }
    }
    Ok((out, missing))
}

/// Differences at step `k`: notes by heap and chunk address, and lines
/// for the step's summary.
pub fn differences(runs: &[Run], k: usize) -> (Vec<BTreeMap<usize, String>>, Vec<String>) {
    let mut notes: Vec<BTreeMap<usize, String>> = vec![BTreeMap::new(); runs.len()];
    let mut lines = Vec::new();
    let Some(t) = runs.first() else {
        return (notes, lines);
    };
    // Blocks at other offsets than in Tessera.
    for (rec, &(ta, _)) in &t.blocks[k] {
        let Some(to) = t.place(k, *rec) else { continue };
        let mut others = Vec::new();
        for (i, r) in runs.iter().enumerate().skip(1) {
            let Some(o) = r.place(k, *rec) else { continue };
            if o != to {
                let at = r.blocks[k][rec].0 - 16;
                notes[i].insert(at, format!("at {o} here, {to} in Tessera"));
                others.push(format!("{} {o}", r.who.name()));
            }
        }
        if !others.is_empty() {
            notes[0].insert(ta - 16, format!("at {to} here; {}", others.join(", ")));
            lines.push(format!(
                "block {rec:#x}: Tessera {to}, {}",
                others.join(", ")
            ));
        }
    }
    // Free chunks merged in one heap and not in another.
    for (i, a) in runs.iter().enumerate() {
        for (j, b) in runs.iter().enumerate() {
            if i == j {
                continue;
            }
            let (pa, pb) = (&a.pictures[k], &b.pictures[k]);
            for c in pa
                .chunks
                .iter()
                .filter(|c| c.kind.merged() && c.addr >= pa.base)
            {
                let (s, e) = (c.addr - pa.base, c.end() - pa.base);
                if c.kind == crate::model::Kind::Top {
                    continue;
                }
                let inside: Vec<&Chunk> = pb
                    .chunks
                    .iter()
                    .filter(|x| x.addr >= pb.base)
                    .filter(|x| x.addr - pb.base < e && x.end() - pb.base > s)
                    .collect();
                let same = inside.len() == 1
                    && inside[0].addr - pb.base == s
                    && inside[0].end() - pb.base == e;
                if same || inside.is_empty() {
                    continue;
                }
                if inside.len() == 1 && inside[0].kind.merged() {
                    continue; // part of a larger free chunk there: its own note
                }
                let kinds: Vec<String> = inside
                    .iter()
                    .map(|x| format!("{} B {}", x.size, short(x)))
                    .collect();
                let note = format!(
                    "merged here ({} B); {} keeps these bytes as {}",
                    c.size,
                    b.who.name(),
                    kinds.join(" + ")
                );
                notes[i].entry(c.addr).or_insert(note.clone());
                for x in &inside {
                    notes[j].entry(x.addr).or_insert(format!(
                        "{} merges these bytes into one free chunk of {} B",
                        a.who.name(),
                        c.size
                    ));
                }
                lines.push(format!("+{s:#x}..+{e:#x}: {} {note}", a.who.name()));
            }
        }
    }
    (notes, lines)
}

/// `+0x60`, or `-0x290` for a chunk before the base (glibc's tcache
/// struct).
pub fn offset_text(addr: usize, base: usize) -> String {
    if addr >= base {
        format!("+{:#x}", addr - base)
    } else {
        format!("-{:#x}", base - addr)
    }
}

fn short(c: &Chunk) -> String {
    use crate::model::Kind;
    match c.kind {
        Kind::Tcache(_) => "in tcache".into(),
        Kind::Fastbin(_) => "in a fastbin".into(),
        Kind::InUse => "in use".into(),
        k => k.text(),
    }
}

/// A record as a call, with the trace's own pointers: `malloc(40)`,
/// `free(0xb0)`.
pub fn call_text(r: &Record) -> String {
    match r.event {
        Event::Malloc { size, .. } => format!("malloc({size})"),
        Event::Calloc { n, size, .. } => format!("calloc({n}, {size})"),
        Event::Realloc { ptr, size, .. } => format!("realloc({ptr:#x}, {size})"),
        Event::Memalign { align, size, .. } => format!("memalign({align}, {size})"),
        Event::Free { ptr } => format!("free({ptr:#x})"),
        Event::Exit { live } => format!("exit ({live} live)"),
    }
}

/// One heap's frames.
#[derive(Clone, Debug)]
pub struct Side {
    /// Whose heap.
    pub who: Who,
    /// About the allocator.
    pub about: String,
    /// The frames (pages, focus) as the explorer's film holds them.
    pub film: Film,
    /// Per frame: the bins.
    pub bins: Vec<Vec<BinRow>>,
    /// Per frame: the walker's notes.
    pub notes: Vec<Vec<String>>,
    /// Per frame: the chunks that changed (address, size, text).
    pub changed: Vec<Vec<String>>,
}

/// The whole comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// What is compared.
    pub title: String,
    /// Per frame: title and explanation.
    pub steps: Vec<(String, String)>,
    /// Per frame: differences between the heaps.
    pub diffs: Vec<Vec<String>>,
    /// The heaps, in panel order.
    pub sides: Vec<Side>,
    /// Heaps that could not be shown, and why.
    pub missing: Vec<String>,
}

#[allow(clippy::needless_range_loop)] // k indexes several per-step lists
/// Builds the frames of `runs` (see the module docs); `explain` gives a
/// step's title and note when the caller has them.
pub fn compare(
    title: &str,
    trace: &Trace,
    runs: &[Run],
    missing: Vec<String>,
    explain: &dyn Fn(usize) -> Option<(String, String)>,
) -> Comparison {
    let n = runs.first().map_or(0, |r| r.pictures.len());
    let mut steps = Vec::new();
    let mut diffs = Vec::new();
    let mut notes_by_step = Vec::new();
    for k in 0..n {
        let (t, note) = explain(k).unwrap_or_else(|| {
            if k == 0 {
                ("the fresh heaps".into(), "Before the first call.".into())
            } else {
                let rec = &trace.records[k - 1];
                (call_text(rec), format!("trace line {}", trace.lines[k - 1]))
            }
        });
        steps.push((t, note));
        let (notes, lines) = differences(runs, k);
        diffs.push(lines);
        notes_by_step.push(notes);
    }
    let sides = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            side(
                r,
                &notes_by_step
                    .iter()
                    .map(|v| v[i].clone())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    Comparison {
        title: title.to_owned(),
        steps,
        diffs,
        sides,
        missing,
    }
}

fn view(p: &Picture, page: usize, drawn: &[tessera_viz::page::Drawn]) -> PageView {
    PageView::from_drawn(
        page,
        p.pages.get(&page).map(|b| &**b),
        drawn,
        &|a| p.outside_role(a),
        (p.state.0, p.state.1),
        p.state.2,
    )
}

#[allow(clippy::needless_range_loop)] // k indexes several per-step lists
fn side(r: &Run, notes: &[BTreeMap<usize, String>]) -> Side {
    let n = r.pictures.len();
    let requests = |k: usize| -> BTreeMap<usize, usize> { r.blocks[k].values().copied().collect() };
    let mut frames: Vec<Frame> = Vec::new();
    let mut latest: BTreeMap<usize, Rc<PageView>> = BTreeMap::new();
    let mut bins = Vec::new();
    let mut wnotes = Vec::new();
    let mut changed_text = Vec::new();
    let base_page = |p: &Picture| p.chunks.first().map(|c| c.addr & !(PAGE - 1));
    for k in 0..n {
        let p = &r.pictures[k];
        let req = requests(k);
        let focus = r.applied[k]
            .and_then(|a| [a.new, a.old].into_iter().find(|&x| x != 0))
            .map(|m| (m - 16) & !(PAGE - 1))
            .filter(|pg| p.pages.contains_key(pg))
            .or_else(|| if k == 0 { base_page(p) } else { None });
        // Pages whose bytes changed, and pages of chunks that changed.
        let before: Option<&Picture> = k.checked_sub(1).map(|j| &r.pictures[j]);
        let old: BTreeSet<(usize, usize, String)> = before
            .map(|b| {
                b.chunks
                    .iter()
                    .map(|c| (c.addr, c.size, format!("{:?}{:?}", c.kind, c.links)))
                    .collect()
            })
            .unwrap_or_default();
        let mut changed_chunks = Vec::new();
        let mut pages: Vec<usize> = focus.into_iter().collect();
        for c in &p.chunks {
            if !old.contains(&(c.addr, c.size, format!("{:?}{:?}", c.kind, c.links))) && k > 0 {
                pages.push(c.addr & !(PAGE - 1));
                changed_chunks.push(format!(
                    "{:#x} {}: {} B {}{}",
                    c.addr,
                    if matches!(
                        c.kind,
                        crate::model::Kind::Direct | crate::model::Kind::Mmapped
                    ) {
                        "(own mapping)".to_owned()
                    } else {
                        offset_text(c.addr, p.base)
                    },
                    c.size,
                    c.kind.text(),
                    notes[k]
                        .get(&c.addr)
                        .map(|n| format!(" · {n}"))
                        .unwrap_or_default()
                ));
            }
        }
        pages.extend(p.changed.iter().copied());
        if k == 0 {
            pages.extend(base_page(p));
        }
        let mut fpages = BTreeMap::new();
        let drawn = p.drawn(&req, &notes[k]);
        for pg in pages {
            if fpages.len() >= MAX_PAGES || fpages.contains_key(&pg) || !p.pages.contains_key(&pg) {
                continue;
            }
            let v = view(p, pg, &drawn);
            let prev = latest.get(&pg).cloned();
            if prev.as_deref() == Some(&v) && k > 0 {
                continue;
            }
            let changes = prev
                .map(|pv| v.changes(&pv))
                .or_else(|| (k > 0).then(|| vec![true; PAGE]));
            let v = Rc::new(v);
            latest.insert(pg, v.clone());
            fpages.insert(pg, FramePage { view: v, changes });
        }
        let gone: Vec<usize> = latest
            .keys()
            .copied()
            .filter(|pg| !p.pages.contains_key(pg))
            .collect();
        for g in &gone {
            latest.remove(g);
        }
        frames.push(Frame {
            step: k,
            title: String::new(),
            note: String::new(),
            focus,
            pages: fpages,
            gone,
            info: None,
            bins: Bins::default(),
            hist: Histogram::default(),
            live: r.blocks[k].len(),
            snapshot: None,
        });
        bins.push(bins_of(&p.chunks));
        wnotes.push(p.notes.clone());
        changed_text.push(changed_chunks);
    }
    Side {
        who: r.who,
        about: r.about.clone(),
        film: Film {
            title: r.who.name().into(),
            frames,
            start: 0,
        },
        bins,
        notes: wnotes,
        changed: changed_text,
    }
}
