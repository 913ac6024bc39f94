//! Replaying a trace step by step while keeping a snapshot of the heap,
//! so that any step can be drawn and compared with the one before.
//!
//! # Glossary
//! - **step**: step 0 is the fresh heap; step `k` is the heap after the
//!   trace's `k`-th record.
//! - **tracked pages**: the pages whose bytes the session keeps up to date.
//!   While the heap's committed memory is small (up to [`TRACK_ALL_LIMIT`])
//!   that is every committed page, so every byte change is seen. Past that,
//!   only pages touched by changed chunks are read and kept, and a page's
//!   first change after it starts being tracked has no "before" bytes.
//!
//! The invariant after each [`Session::step`]: `snapshot().pages[p]` equals
//! the live heap's page `p` for every tracked page `p`.

use crate::page::{page_of, role_with_requests, Requests};
use std::collections::{BTreeMap, BTreeSet};
use tessera::inspect::trace::{Applied, Record, Replayer, Trace, TraceError};
use tessera::inspect::{ChunkInfo, PAGE};
use tessera::{Heap, Snapshot};

/// Committed bytes up to which every page is tracked.
pub const TRACK_ALL_LIMIT: usize = 16 << 20;

/// What one step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepInfo {
    /// Step number (1-based: the heap after this many records).
    pub step: usize,
    /// The record and its line in the trace file.
    pub record: Record,
    /// Its line in the trace file.
    pub line: usize,
    /// What the replay did, in replay addresses.
    pub applied: Applied,
    /// Chunks that are new or changed (size, head, kind or request).
    pub changed: Vec<ChunkInfo>,
    /// Chunks of the step before that no longer exist as they were.
    pub removed: Vec<ChunkInfo>,
    /// Pages whose bytes or byte roles changed, ascending.
    pub pages: Vec<usize>,
    /// The most telling of them, ascending: pages whose bytes changed or
    /// that hold a changed chunk's header, end or request end (not the
    /// inside of a chunk whose bytes only changed role).
    pub key_pages: Vec<usize>,
    /// The page the step is about: the new block's, else the freed one's,
    /// else the first changed page.
    pub focus: Option<usize>,
}

/// A trace being replayed into a fresh heap.
pub struct Session {
    trace: Trace,
    replayer: Replayer<tessera::Mmap>,
    next: usize,
    snap: Snapshot,
    requests: Requests,
    tracking: bool,
}

/// The committed pages a snapshot of `snap`'s layout could hold: every page
/// of every segment's committed part, and the first and last page of each
/// direct mapping (the only ones the allocator writes).
fn committed_pages(snap: &Snapshot) -> Vec<usize> {
    let mut v = Vec::new();
    for s in &snap.segments {
        v.extend((s.base..s.base + s.committed).step_by(PAGE));
    }
    for d in &snap.directs {
        v.push(d.header);
        let last = d.header + d.map_size - PAGE;
        if last != d.header {
            v.push(last);
        }
    }
    v
}

fn is_committed(snap: &Snapshot, page: usize) -> bool {
    snap.segments
        .iter()
        .any(|s| page >= s.base && page < s.base + s.committed)
        || snap
            .directs
            .iter()
            .any(|d| page >= d.header && page < d.header + d.map_size)
}

/// Reads one page of the replay heap.
///
/// Callers pass only pages that `is_committed` found inside a committed
/// segment range or a direct mapping of the walk just taken of the heap
/// this session owns; nothing else runs on that heap meanwhile.
fn read_page(page: usize) -> Box<[u8; PAGE]> {
    // SAFETY: see above: the page is mapped readable and writable, and the
    // heap (which only we drive) is between calls, so no one writes it.
    Box::new(unsafe { std::ptr::read(page as *const [u8; PAGE]) })
}

impl Session {
    /// A session at step 0 over a fresh heap. `track` decides whether page
    /// bytes are kept from the start (off for a fast-forward; see
    /// [`Session::set_tracking`]).
    pub fn new(trace: Trace, track: bool) -> Session {
        let mut s = Session {
            trace,
            replayer: Replayer::new(Heap::new()),
            next: 0,
            snap: Snapshot::default(),
            requests: Requests::new(),
            tracking: false,
        };
        s.set_tracking(track);
        s
    }

    /// Number of steps (records) in the trace.
    pub fn len(&self) -> usize {
        self.trace.records.len()
    }

    /// Does the trace have no records?
    pub fn is_empty(&self) -> bool {
        self.trace.records.is_empty()
    }

    /// The current step (records applied).
    pub fn position(&self) -> usize {
        self.next
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The snapshot at the current step (tracked pages only).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// Requested sizes of the live blocks, by replay address.
    pub fn requests(&self) -> &Requests {
        &self.requests
    }

    /// Blocks live in the replay.
    pub fn live(&self) -> usize {
        self.replayer.live()
    }

    /// The replay address and requested size of a block the trace recorded
    /// at `recorded`, while it is live.
    pub fn lookup(&self, recorded: usize) -> Option<(usize, usize)> {
        self.replayer.lookup(recorded)
    }

    /// The replay heap (for its stats and checker).
    pub fn heap(&self) -> &Heap {
        &self.replayer.heap
    }

    /// Turns page tracking on (reading the pages it needs now) or off.
    pub fn set_tracking(&mut self, on: bool) {
        self.tracking = on;
        self.snap = Snapshot::capture(&self.replayer.heap, 0);
        self.requests = self.replayer.requested_sizes();
        if on {
            let total: usize = committed_pages(&self.snap).len() * PAGE;
            if total <= TRACK_ALL_LIMIT {
                for p in committed_pages(&self.snap) {
                    self.snap.pages.insert(p, read_page(p));
                }
            }
        }
    }

    /// Starts tracking `page` (if committed) so it can be drawn.
    pub fn track(&mut self, page: usize) {
        let page = page_of(page);
        if is_committed(&self.snap, page) && !self.snap.pages.contains_key(&page) {
            self.snap.pages.insert(page, read_page(page));
        }
    }

    /// Applies records without tracking until `step` records are applied.
    pub fn fast_forward(&mut self, step: usize) -> Result<(), TraceError> {
        let was = self.tracking;
        self.tracking = false;
        while self.next < step.min(self.len()) {
            let i = self.next;
            self.replayer
                .apply(&self.trace.records[i], self.trace.lines[i])?;
            self.next += 1;
        }
        self.set_tracking(was);
        Ok(())
    }

    /// Applies the next record; `None` at the end of the trace.
    pub fn step(&mut self) -> Option<Result<StepInfo, TraceError>> {
        let i = self.next;
        let record = *self.trace.records.get(i)?;
        let line = self.trace.lines[i];
        let applied = match self.replayer.apply(&record, line) {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        self.next += 1;
        let mut new = Snapshot::capture(&self.replayer.heap, 0);
        let requests = self.replayer.requested_sizes();
        let old = std::mem::take(&mut self.snap);
        let old_requests = std::mem::replace(&mut self.requests, requests);
        let (changed, removed) = chunk_diff(&old, &old_requests, &new, &self.requests);

        // Pages whose roles may differ: those holding the header, the
        // boundary tag or the request end of a changed chunk, and any page
        // inside it whose first byte changed role.
        let mut pages: BTreeSet<usize> = BTreeSet::new();
        let mut key: BTreeSet<usize> = BTreeSet::new();
        for c in changed.iter().chain(&removed) {
            key.insert(page_of(c.addr));
            key.insert(page_of(c.addr + 63));
            key.insert(page_of(c.addr + c.size));
            for req in [&old_requests, &self.requests] {
                if let Some(&r) = req.get(&c.mem()) {
                    key.insert(page_of(c.mem() + r));
                }
            }
            pages.extend(key.iter().copied());
            let mut p = page_of(c.addr) + PAGE;
            while p < c.addr + c.size {
                let before = role_with_requests(&old, Some(&old_requests), p);
                let after = role_with_requests(&new, Some(&self.requests), p);
                if before != after {
                    pages.insert(p);
                }
                p += PAGE;
            }
        }
        // Pages whose bytes changed.
        if self.tracking {
            let all = committed_pages(&new);
            let track_all = all.len() * PAGE <= TRACK_ALL_LIMIT;
            let candidates: BTreeSet<usize> = if track_all {
                all.into_iter().collect()
            } else {
                old.pages
                    .keys()
                    .copied()
                    .chain(pages.iter().copied())
                    .collect()
            };
            let mut kept = BTreeMap::new();
            for p in candidates {
                if !is_committed(&new, p) {
                    continue;
                }
                let bytes = read_page(p);
                match old.pages.get(&p) {
                    Some(b) if **b == *bytes => {}
                    _ => {
                        pages.insert(p);
                        key.insert(p);
                    }
                }
                kept.insert(p, bytes);
            }
            new.pages = kept;
        }
        let pages: Vec<usize> = pages.into_iter().collect();
        let key_pages: Vec<usize> = key.into_iter().collect();
        let live_page = |mem: usize| {
            let p = page_of(mem - 16);
            is_committed(&new, p).then_some(p)
        };
        let focus = (applied.new != 0)
            .then(|| live_page(applied.new))
            .flatten()
            .or_else(|| (applied.old != 0).then(|| live_page(applied.old)).flatten())
            .or_else(|| {
                pages
                    .iter()
                    .copied()
                    .find(|&p| is_committed(&new, p) && p != page_of(new.heap.state))
            })
            .or_else(|| pages.first().copied());
        self.snap = new;
        Some(Ok(StepInfo {
            step: self.next,
            record,
            line,
            applied,
            changed,
            removed,
            pages,
            key_pages,
            focus,
        }))
    }
}

/// Chunks of `new` that are not in `old` as they were (size, head, kind
/// or request), and chunks of `old` that are gone or changed.
fn chunk_diff(
    old: &Snapshot,
    old_req: &Requests,
    new: &Snapshot,
    new_req: &Requests,
) -> (Vec<ChunkInfo>, Vec<ChunkInfo>) {
    let key = |c: &ChunkInfo, r: &Requests| (*c, r.get(&c.mem()).copied());
    let a: BTreeMap<usize, _> = old
        .chunks
        .iter()
        .map(|c| (c.addr, key(c, old_req)))
        .collect();
    let b: BTreeMap<usize, _> = new
        .chunks
        .iter()
        .map(|c| (c.addr, key(c, new_req)))
        .collect();
    let changed = b
        .iter()
        .filter(|(addr, v)| a.get(addr) != Some(v))
        .map(|(_, v)| v.0)
        .collect();
    let removed = a
        .iter()
        .filter(|(addr, v)| b.get(addr) != Some(v))
        .map(|(_, v)| v.0)
        .collect();
    (changed, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_report_changed_chunks_and_pages() {
        let t = Trace::parse(
            "tessera-trace 1\n1 1 malloc 100 0x10\n2 1 malloc 100 0x20\n3 1 free 0x10\n",
        )
        .unwrap();
        let mut s = Session::new(t, true);
        let first = s.step().unwrap().unwrap();
        assert_eq!(first.step, 1);
        assert_eq!(first.changed.len(), 2, "new chunk and moved top");
        let p = first.focus.unwrap();
        assert!(first.pages.contains(&p));
        assert!(s.snapshot().page(p).is_some());
        s.step().unwrap().unwrap();
        let third = s.step().unwrap().unwrap();
        assert_eq!(third.applied.old, first.applied.new);
        assert_eq!(third.focus, Some(p));
        assert!(s.step().is_none());
        assert_eq!(s.live(), 1);
    }

    #[test]
    fn a_fast_forward_then_tracking_matches_a_tracked_replay() {
        let text = "tessera-trace 1\n1 1 malloc 10 0x10\n2 1 malloc 5000 0x20\n3 1 free 0x10\n4 1 malloc 20 0x30\n";
        let mut a = Session::new(Trace::parse(text).unwrap(), true);
        for _ in 0..3 {
            a.step().unwrap().unwrap();
        }
        let mut b = Session::new(Trace::parse(text).unwrap(), false);
        b.fast_forward(3).unwrap();
        b.set_tracking(true);
        assert_eq!(a.snapshot().chunks.len(), b.snapshot().chunks.len());
        assert_eq!(
            a.snapshot().pages.keys().count(),
            b.snapshot().pages.keys().count()
        );
        let sa = a.step().unwrap().unwrap();
        let sb = b.step().unwrap().unwrap();
        assert_eq!(sa.changed.len(), sb.changed.len());
        assert_eq!(sa.pages.len(), sb.pages.len());
    }
}
