//! The frames of a replay: for each step, the pages it changed (as page
//! views, with the bytes that changed marked), the bins and the free-chunk
//! histogram. `tessera tour` prints frames; the HTML explorer embeds them.
//!
//! Page views are shared between frames: a frame holds a view only for the
//! pages that changed at its step, and the page as it stands at frame `k`
//! is the latest view at or before `k` ([`Film::page_at`]). Frame 0 holds
//! every page that any frame shows, so that lookup always succeeds.

use crate::bins::{Bins, Histogram};
use crate::page::{page_of, PageView};
use crate::session::{Session, StepInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use tessera::inspect::trace::{Event, TraceError};
use tessera::Snapshot;

/// Most pages kept per frame (the focus first).
pub const MAX_PAGES_PER_FRAME: usize = 8;

/// One page at one frame.
#[derive(Clone, Debug)]
pub struct FramePage {
    /// The page as it stands after the step.
    pub view: Rc<PageView>,
    /// Cells whose role or value changed at this step (None in frame 0).
    pub changes: Option<Vec<bool>>,
}

/// The heap after one step.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Step number (0: before the first record shown).
    pub step: usize,
    /// Short title: the call, e.g. `malloc(40) = 0x7f..330`.
    pub title: String,
    /// One-line explanation (the tour's) or where the record is.
    pub note: String,
    /// The page the step is about.
    pub focus: Option<usize>,
    /// Pages whose view changed at this step, with their new views.
    pub pages: BTreeMap<usize, FramePage>,
    /// Pages shown before that this step unmapped.
    pub gone: Vec<usize>,
    /// The step's details, if this frame is a step.
    pub info: Option<StepInfo>,
    /// The bins after the step.
    pub bins: Bins,
    /// Free-chunk sizes after the step.
    pub hist: Histogram,
    /// Blocks live in the replay.
    pub live: usize,
    /// The snapshot after the step, if the film keeps them.
    pub snapshot: Option<Snapshot>,
}

/// A sequence of frames.
#[derive(Clone, Debug, Default)]
pub struct Film {
    /// What is shown (the trace file, or "tour").
    pub title: String,
    /// The frames, in step order.
    pub frames: Vec<Frame>,
    /// The frame the explorer opens on.
    pub start: usize,
}

/// How a film is made.
pub struct Recording<'a> {
    /// The title.
    pub title: String,
    /// Steps to record after the session's current one.
    pub steps: usize,
    /// Title and explanation of step `k` (1-based), if the caller has them.
    pub explain: &'a dyn Fn(usize) -> Option<(String, String)>,
    /// Pages to keep in every frame besides those a step changes.
    pub pinned: Vec<usize>,
    /// Keep each frame's whole snapshot (for tests and doc generation).
    pub keep_snapshots: bool,
}

/// The captured page where the most chunks start (the first chunk's page
/// if no page was captured); None for a snapshot without chunks.
pub fn busiest_page(snap: &Snapshot) -> Option<usize> {
    let mut starts: BTreeMap<usize, usize> = BTreeMap::new();
    for c in &snap.chunks {
        let p = page_of(c.addr);
        if snap.page(p).is_some() {
            *starts.entry(p).or_default() += 1;
        }
    }
    // The lowest address wins ties.
    let best = starts
        .iter()
        .max_by_key(|(p, n)| (**n, std::cmp::Reverse(**p)));
    best.map(|(p, _)| *p)
        .or_else(|| snap.chunks.first().map(|c| page_of(c.addr)))
}

/// `malloc(40) = 0x7f...`: a record in replay addresses.
pub fn describe(info: &StepInfo) -> String {
    let a = &info.applied;
    let ret = |p: usize| {
        if p == 0 {
            "NULL".to_owned()
        } else {
            format!("{p:#x}")
        }
    };
    match info.record.event {
        Event::Malloc { size, .. } => format!("malloc({size}) = {}", ret(a.new)),
        Event::Calloc { n, size, .. } => format!("calloc({n}, {size}) = {}", ret(a.new)),
        Event::Realloc { ptr, size, .. } => {
            let old = if ptr == 0 { "NULL".into() } else { ret(a.old) };
            format!("realloc({old}, {size}) = {}", ret(a.new))
        }
        Event::Memalign { align, size, .. } => {
            format!("memalign({align}, {size}) = {}", ret(a.new))
        }
        Event::Free { ptr } => {
            if ptr == 0 {
                "free(NULL)".into()
            } else {
                format!("free({})", ret(a.old))
            }
        }
        Event::Exit { live } => format!("exit: {live} blocks still live"),
    }
}

impl Film {
    /// Records `rec.steps` steps of `session` (which must track pages),
    /// starting with a frame for its current step.
    pub fn record(session: &mut Session, rec: &Recording<'_>) -> Result<Film, TraceError> {
        let start = session.position();
        let snap0 = session.snapshot().clone();
        let req0 = session.requests().clone();
        let mut latest: BTreeMap<usize, Rc<PageView>> = BTreeMap::new();
        let mut shown: BTreeSet<usize> = rec.pinned.iter().map(|&p| page_of(p)).collect();
        let first_page = snap0.segments.first().map(|s| s.base);
        let mut frames = vec![Frame {
            step: start,
            title: if start == 0 {
                "the fresh heap".into()
            } else {
                format!("step {start}")
            },
            note: if start == 0 {
                "A new heap: its first segment starts with the segment record and the heap state; everything after them is one free chunk, top, closed by a fencepost.".into()
            } else {
                format!("The heap after {start} steps of the trace.")
            },
            focus: first_page,
            pages: BTreeMap::new(),
            gone: Vec::new(),
            info: None,
            bins: Bins::of(&snap0),
            hist: Histogram::free_chunks(&snap0),
            live: session.live(),
            snapshot: rec.keep_snapshots.then(|| snap0.clone()),
        }];
        shown.extend(first_page);
        for _ in 0..rec.steps {
            let Some(info) = session.step() else { break };
            let info = info?;
            let snap = session.snapshot();
            let req = session.requests();
            let mut pages: Vec<usize> = info.focus.into_iter().collect();
            pages.extend(info.key_pages.iter().copied());
            pages.extend(info.pages.iter().copied());
            pages.extend(rec.pinned.iter().map(|&p| page_of(p)));
            let mut frame_pages = BTreeMap::new();
            let mut gone = Vec::new();
            for p in pages {
                if frame_pages.len() >= MAX_PAGES_PER_FRAME || frame_pages.contains_key(&p) {
                    continue;
                }
                if snap.page(p).is_none() && snap.chunks_on_page(p).is_empty() {
                    let was_shown = latest.remove(&p).is_some()
                        || snap0.page(p).is_some()
                        || !snap0.chunks_on_page(p).is_empty();
                    if was_shown {
                        gone.push(p);
                    }
                    continue; // unmapped
                }
                let view = PageView::new(snap, p, Some(req));
                let before = match latest.get(&p) {
                    Some(v) => v.clone(),
                    None => Rc::new(PageView::new(&snap0, p, Some(&req0))),
                };
                if *before == view {
                    continue;
                }
                let changes = view.changes(&before);
                latest.insert(p, Rc::new(view));
                shown.insert(p);
                frame_pages.insert(
                    p,
                    FramePage {
                        view: latest[&p].clone(),
                        changes: Some(changes),
                    },
                );
            }
            let (title, note) = (rec.explain)(info.step).unwrap_or_else(|| {
                let tid = if session
                    .trace()
                    .records
                    .iter()
                    .any(|r| r.tid != info.record.tid)
                {
                    format!(" · thread {}", info.record.tid)
                } else {
                    String::new()
                };
                (describe(&info), format!("trace line {}{tid}", info.line))
            });
            frames.push(Frame {
                step: info.step,
                title,
                note,
                focus: info.focus,
                pages: frame_pages,
                gone,
                info: Some(info),
                bins: Bins::of(snap),
                hist: Histogram::free_chunks(snap),
                live: session.live(),
                snapshot: rec.keep_snapshots.then(|| snap.clone()),
            });
        }
        // Frame 0 holds the starting view of every page shown later.
        for p in shown {
            if snap0.page(p).is_some() || !snap0.chunks_on_page(p).is_empty() {
                frames[0].pages.insert(
                    p,
                    FramePage {
                        view: Rc::new(PageView::new(&snap0, p, Some(&req0))),
                        changes: None,
                    },
                );
            }
        }
        Ok(Film {
            title: rec.title.clone(),
            frames,
            start: 0,
        })
    }

    /// One frame per snapshot (per arena): every captured page of it.
    pub fn from_snapshots(title: &str, snaps: &[Snapshot]) -> Film {
        let mut frames: Vec<Frame> = Vec::new();
        let mut before: Vec<usize> = Vec::new();
        for (i, snap) in snaps.iter().enumerate() {
            let mut pages = BTreeMap::new();
            let mut addrs: BTreeSet<usize> = snap.pages.keys().copied().collect();
            addrs.extend(busiest_page(snap));
            for &p in &addrs {
                pages.insert(
                    p,
                    FramePage {
                        view: Rc::new(PageView::new(snap, p, None)),
                        changes: None,
                    },
                );
            }
            frames.push(Frame {
                step: i,
                title: format!("arena {i} of {}", snaps.len()),
                note: format!(
                    "{} chunks in {} segment(s) and {} direct mapping(s); {} pages captured.",
                    snap.chunks.len(),
                    snap.segments.len(),
                    snap.directs.len(),
                    snap.pages.len()
                ),
                focus: busiest_page(snap),
                pages,
                gone: before
                    .iter()
                    .copied()
                    .filter(|p| !addrs.contains(p))
                    .collect(),
                info: None,
                bins: Bins::of(snap),
                hist: Histogram::free_chunks(snap),
                live: 0,
                snapshot: None,
            });
            before = addrs.into_iter().collect();
        }
        Film {
            title: title.to_owned(),
            frames,
            start: 0,
        }
    }

    /// The page at `addr` as it stands at frame `k`: the latest view at or
    /// before `k` (None if the page is not part of the film or unmapped).
    pub fn page_at(&self, k: usize, addr: usize) -> Option<&Rc<PageView>> {
        for f in self.frames[..=k.min(self.frames.len() - 1)].iter().rev() {
            if let Some(p) = f.pages.get(&addr) {
                return Some(&p.view);
            }
            if f.gone.contains(&addr) {
                return None;
            }
        }
        None
    }

    /// Every page address some frame holds, ascending.
    pub fn pages(&self) -> BTreeSet<usize> {
        self.frames
            .iter()
            .flat_map(|f| f.pages.keys().copied())
            .collect()
    }
}
