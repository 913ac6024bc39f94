//! Tessera's own heap as a [`Subject`]: a `tessera::Heap` (one mspace, no
//! thread cache, no quick lists), walked through its snapshot.

use crate::core::{ChunkKind, Role, PAGE};
use crate::model::{pages_to_track, Chunk, Kind, Link, PageTracker, Picture, Who};
use crate::replay::Subject;
use tessera::{Heap, Snapshot};
use tessera_viz::ByteRole;

/// A Tessera heap being replayed into.
pub struct TesseraHeap {
    /// The heap.
    pub heap: Heap,
    tracker: PageTracker,
}

impl TesseraHeap {
    /// A fresh heap with the default configuration (`tessera replay`'s).
    pub fn new() -> Self {
        Self::with_heap(Heap::new())
    }

    /// Replays into `heap`.
    pub fn with_heap(heap: Heap) -> Self {
        TesseraHeap {
            heap,
            tracker: PageTracker::default(),
        }
    }
}

impl Default for TesseraHeap {
    fn default() -> Self {
        Self::new()
    }
}

/// The chunk kind of the comparison for a Tessera chunk kind.
pub fn kind_of(k: ChunkKind) -> Kind {
    match k {
        ChunkKind::InUse => Kind::InUse,
        ChunkKind::Cached => Kind::Cached,
        ChunkKind::Parked => Kind::Parked,
        ChunkKind::SmallBin(i) => Kind::SmallBin(i),
        ChunkKind::TreeBin(i) => Kind::TreeBin(i),
        ChunkKind::Dv => Kind::Dv,
        ChunkKind::Top => Kind::Top,
        ChunkKind::Fencepost => Kind::Fencepost,
        ChunkKind::Direct => Kind::Direct,
    }
}

/// The link words a free chunk of this kind keeps (dlmalloc's layout).
pub fn dl_links(kind: Kind) -> &'static [(&'static str, usize, usize)] {
    match kind {
        Kind::SmallBin(_) => &[("fd", 16, 8), ("bk", 24, 8)],
        Kind::TreeBin(_) => &[
            ("fd", 16, 8),
            ("bk", 24, 8),
            ("child[0]", 32, 8),
            ("child[1]", 40, 8),
            ("parent", 48, 8),
            ("index", 56, 4),
        ],
        _ => &[],
    }
}

/// A picture of a snapshot whose link words are read with `word`.
pub fn picture_of(snap: &Snapshot, word: &dyn Fn(usize) -> Option<usize>) -> Picture {
    let chunks = snap
        .chunks
        .iter()
        .map(|c| {
            let kind = kind_of(c.kind);
            let links = dl_links(kind)
                .iter()
                .filter_map(|&(name, offset, len)| {
                    let w = word(c.addr + offset)?;
                    let value = if len == 4 { w & 0xffff_ffff } else { w };
                    Some(Link {
                        name,
                        offset,
                        len,
                        value,
                    })
                })
                .collect();
            Chunk {
                addr: c.addr,
                size: c.size,
                head: c.head.0,
                kind,
                links,
            }
        })
        .collect();
    let mut areas = Vec::new();
    for s in &snap.segments {
        areas.push((
            s.base,
            s.base + 64.min(s.first_chunk - s.base),
            ByteRole::Core(Role::SegmentRecord),
        ));
        if s.holds_state {
            areas.push((s.base + 64, s.first_chunk, ByteRole::Core(Role::HeapState)));
        }
    }
    for d in &snap.directs {
        areas.push((d.header, d.header + 48, ByteRole::Core(Role::MmapHeader)));
    }
    Picture {
        who: Who::Tessera,
        chunks,
        base: snap.segments.first().map_or(0, |s| s.first_chunk),
        state: (
            snap.heap.state,
            snap.heap.state + snap.heap.state_size,
            "state",
        ),
        areas,
        notes: Vec::new(),
        pages: Default::default(),
        changed: Default::default(),
    }
}

impl TesseraHeap {
    /// The chunks and base of the heap now, without page bytes.
    pub fn chunks(&self) -> (Vec<Chunk>, usize) {
        let snap = Snapshot::capture(&self.heap, 0);
        let word = committed_reader(&snap);
        let p = picture_of(&snap, &|a| word(a));
        (p.chunks, p.base)
    }
}

/// Reads words of the committed memory of the heap `snap` was taken of.
fn committed_reader(snap: &Snapshot) -> impl Fn(usize) -> Option<usize> {
    let mut readable: Vec<(usize, usize)> = snap
        .segments
        .iter()
        .map(|s| (s.base, s.base + s.committed))
        .collect();
    readable.extend(
        snap.directs
            .iter()
            .map(|d| (d.header, d.header + d.map_size)),
    );
    move |a: usize| {
        let ok = readable.iter().any(|&(lo, hi)| a >= lo && a + 8 <= hi);
        // SAFETY: the word lies in memory the heap has committed, and the
        // heap (owned by the caller alone) is between calls.
        ok.then(|| unsafe { (a as *const usize).read() })
    }
}

impl Subject for TesseraHeap {
    fn malloc(&mut self, size: usize) -> usize {
        self.heap.malloc(size) as usize
    }
    fn calloc(&mut self, n: usize, size: usize) -> usize {
        self.heap.calloc(n, size) as usize
    }
    fn realloc(&mut self, p: usize, size: usize) -> usize {
        // SAFETY: the replay passes live pointers of this heap only.
        unsafe { self.heap.realloc(p as *mut u8, size) as usize }
    }
    fn memalign(&mut self, align: usize, size: usize) -> usize {
        self.heap.memalign(align, size) as usize
    }
    fn free(&mut self, p: usize) {
        // SAFETY: the replay passes live pointers of this heap only.
        unsafe { self.heap.free(p as *mut u8) }
    }
    fn picture(&mut self) -> Picture {
        let snap = Snapshot::capture(&self.heap, 0);
        // The committed ranges of this heap, the only memory read below.
        let mut readable: Vec<(usize, usize)> = snap
            .segments
            .iter()
            .map(|s| (s.base, s.base + s.committed))
            .collect();
        readable.extend(
            snap.directs
                .iter()
                .map(|d| (d.header, d.header + d.map_size)),
        );
        let ok = |a: usize, n: usize| readable.iter().any(|&(lo, hi)| a >= lo && a + n <= hi);
        let word = |a: usize| {
            // SAFETY: the word lies in memory this heap has committed, and
            // the heap (ours alone) is between calls.
            ok(a, 8).then(|| unsafe { (a as *const usize).read() })
        };
        let mut pic = picture_of(&snap, &word);
        let mut pages = pages_to_track(&pic.chunks);
        for s in &snap.segments {
            pages.insert(s.base);
        }
        let (pages, changed) = self.tracker.update(&pages, &mut |p| {
            // SAFETY: as for `word`.
            ok(p, PAGE).then(|| unsafe { (p as *const [u8; PAGE]).read() })
        });
        pic.pages = pages;
        pic.changed = changed;
        pic
    }
}
