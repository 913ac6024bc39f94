//! dlmalloc 2.8.6 through the `dlmalloc` crate (0.2, which ports malloc.c
//! 2.8.6 and ships that file as its reference), replayed in this process
//! and walked from memory with malloc.c's layout.
//!
//! # Where its memory comes from
//! The crate asks its [`Allocator`] for regions. [`Region`] hands them
//! out one after the other from one reserved range, so every request
//! lands right after the last: dlmalloc's `sys_alloc` then extends its
//! segment in place (its "append" case), as it does with a contiguous
//! `sbrk`. Region also remembers what it handed out, which is where the
//! walk starts. It never gives memory back (`can_release_part` is false):
//! trimming would only shorten top, never move a chunk.
//!
//! # What the walk reads, and what it infers
//! The crate's state (`Dlmalloc`: bins, `smallmap`, `treemap`, `dv`,
//! `top`) is a private Rust struct without a fixed layout, so it is not
//! read field by field. Everything comes from the segment's memory,
//! chunk by chunk from its first byte (malloc.c's "Chunk representations"):
//! - `head`: size | PINUSE (1) | CINUSE (2); a free chunk is one with
//!   CINUSE clear.
//! - **top** is the free chunk right before the segment's foot, whose head
//!   word is `TOP_FOOT_SIZE` (80) with no flag bits (`init_top` writes it).
//! - **bins** follow from the size: small bin `size >> 3` below 256 bytes,
//!   tree bin `compute_tree_index(size)` from 256 on; the links read are
//!   `fd`/`bk` (and `child[0..2]`, `parent`, `index` for tree chunks).
//! - **dv** is inferred: the one free chunk (not top) that no bin list
//!   reaches. A small chunk is in its bin when following `fd` goes round a
//!   ring of free chunks of its size (each `fd->bk` pointing back) through
//!   exactly one address outside the heap, the bin's head inside the
//!   state; a tree chunk when its ring of equal sizes holds one node whose
//!   parent names it as a child, or, for a root, whose tree-bin slot (read
//!   from the state's bytes at the address the root's `parent` gives)
//!   holds it. One case cannot be told apart: a dv whose bytes still carry
//!   the links of a chunk that was alone in a small bin of the same size at
//!   the same address (dlmalloc leaves an emptied bin's head as it was and
//!   only clears `smallmap`); the walk then counts it in that bin.
//! - **smallmap / treemap** are inferred from the bins that hold chunks
//!   (dlmalloc keeps bit i set exactly while bin i is non-empty).

use crate::core::PAGE;
use crate::model::{pages_to_track, Chunk, Kind, Link, PageTracker, Picture, Who};
use crate::replay::Subject;
use crate::tess::dl_links;
use dlmalloc::{Allocator, Dlmalloc};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

/// dlmalloc's `TOP_FOOT_SIZE` on x86-64: `pad_request(sizeof(msegment))`
/// (48) + `MIN_CHUNK_SIZE` (32).
pub const TOP_FOOT_SIZE: usize = 80;
/// dlmalloc's `FENCEPOST_HEAD`: `INUSE_BITS | SIZE_T_SIZE`.
pub const FENCEPOST_HEAD: usize = 3 | 8;
/// Address space reserved for the crate's heap (committed as handed out).
pub const RESERVE: usize = 1 << 30;
/// The reservation's alignment: offsets below it can be matched.
pub const ALIGN: usize = 1 << 20;

/// The memory the crate gets: consecutive pieces of one reserved range,
/// the first starting `offset` bytes past an [`ALIGN`] boundary.
pub struct Region {
    map: *mut u8,
    base: *mut u8,
    used: Cell<usize>,
}

// SAFETY: a Region is used by one Dlmalloc at a time; the pointer is to a
// private mapping that nothing else touches.
unsafe impl Send for Region {}

impl Region {
    /// Reserves [`RESERVE`] bytes of address space (no access until handed
    /// out), the first byte handed out `offset % ALIGN` bytes past an
    /// [`ALIGN`] boundary, so that dlmalloc's first chunk can sit where
    /// another heap's does modulo every alignment up to [`ALIGN`]. None if
    /// the kernel refuses.
    pub fn new(offset: usize) -> Option<Region> {
        // SAFETY: a fresh anonymous mapping; nothing is overwritten.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RESERVE + 2 * ALIGN,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let p: *mut u8 = p.cast();
        let skip = (p as usize).next_multiple_of(ALIGN) - p as usize + ((offset % ALIGN) & !15);
        Some(Region {
            map: p,
            // SAFETY: inside the mapping (skip < 2 * ALIGN).
            base: unsafe { p.add(skip) },
            used: Cell::new(0),
        })
    }

    /// The segment: everything handed out so far, `(start, end)`.
    pub fn segment(&self) -> (usize, usize) {
        (self.base as usize, self.base as usize + self.used.get())
    }

    /// Reads the word at `addr` of the segment.
    fn word(&self, addr: usize) -> Option<usize> {
        let (lo, hi) = self.segment();
        (addr >= lo && addr + 8 <= hi && addr % 8 == 0).then(|| {
            // SAFETY: inside the handed-out (readable) part of our mapping;
            // the crate is between calls.
            unsafe { self.base.add(addr - lo).cast::<usize>().read() }
        })
    }

    /// A copy of the page at `page`, if it is in the segment (the bytes
    /// of its first page before the segment read as zero).
    fn page(&self, page: usize) -> Option<[u8; PAGE]> {
        let (lo, hi) = self.segment();
        if page + PAGE <= lo || page >= hi || hi - lo < PAGE {
            return None;
        }
        let mut out = [0u8; PAGE];
        let from = page.max(lo);
        let to = (page + PAGE).min(hi);
        // SAFETY: [from, to) is inside the handed-out part of our mapping.
        let src = unsafe { std::slice::from_raw_parts(self.base.add(from - lo), to - from) };
        out[from - page..to - page].copy_from_slice(src);
        Some(out)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used by anyone.
        unsafe { libc::munmap(self.map.cast(), RESERVE + 2 * ALIGN) };
    }
}

// SAFETY: `alloc` hands out fresh, zeroed, readable and writable memory
// that is never handed out twice; nothing is ever released.
unsafe impl Allocator for Region {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let used = self.used.get();
        // Pieces end on page boundaries (the first one starts off one).
        let end = (self.base as usize + used + size).next_multiple_of(PAGE);
        let size = end - (self.base as usize + used);
        if used + size > RESERVE {
            return (std::ptr::null_mut(), 0, 0);
        }
        // SAFETY: inside our reservation.
        let p = unsafe { self.base.add(used) };
        let page = (p as usize) & !(PAGE - 1);
        // SAFETY: making part of our own mapping accessible.
        let ok = unsafe {
            libc::mprotect(
                page as *mut libc::c_void,
                end - page,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if ok != 0 {
            return (std::ptr::null_mut(), 0, 0);
        }
        self.used.set(used + size);
        (p, size, 0)
    }
    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        std::ptr::null_mut()
    }
    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }
    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }
    fn can_release_part(&self, _: u32) -> bool {
        false
    }
    fn allocates_zeros(&self) -> bool {
        true
    }
    fn page_size(&self) -> usize {
        PAGE
    }
}

/// The dlmalloc crate's heap being replayed into.
pub struct DlHeap {
    /// The allocator; boxed because its small bins point into itself.
    dl: Box<Dlmalloc<Region>>,
    tracker: PageTracker,
}

impl DlHeap {
    /// A fresh heap whose first chunk will sit `offset` bytes past an
    /// [`ALIGN`] boundary. None if the address space cannot be reserved.
    pub fn new(offset: usize) -> Option<DlHeap> {
        Some(DlHeap {
            dl: Box::new(Dlmalloc::new_with_allocator(Region::new(offset)?)),
            tracker: PageTracker::default(),
        })
    }

    /// The crate's state: its address range.
    fn state(&self) -> (usize, usize) {
        let a = &*self.dl as *const Dlmalloc<Region> as usize;
        (a, a + std::mem::size_of::<Dlmalloc<Region>>())
    }

    /// Reads a word of the heap or of the crate's state (bin heads and
    /// tree-bin slots live there).
    fn word(&self, addr: usize) -> Option<usize> {
        let (lo, hi) = self.state();
        if addr >= lo && addr + 8 <= hi && addr % 8 == 0 {
            let base = &*self.dl as *const Dlmalloc<Region> as *const u8;
            // SAFETY: an aligned, initialised word inside the boxed state,
            // which only the crate writes, and only during its calls. The
            // words read are the bins' pointers (`smallbins`, `treebins`).
            return Some(unsafe { base.add(addr - lo).cast::<usize>().read() });
        }
        self.dl.allocator().word(addr)
    }

    /// The segment `(start, end)`.
    pub fn segment(&self) -> (usize, usize) {
        self.dl.allocator().segment()
    }

    /// Walks the heap (see the module docs).
    pub fn walk(&self) -> (Vec<Chunk>, Vec<String>) {
        let (lo, hi) = self.segment();
        let mut chunks = Vec::new();
        let mut notes = Vec::new();
        let mut p = lo;
        while p < hi {
            let Some(head) = self.word(p + 8) else { break };
            if head == FENCEPOST_HEAD {
                chunks.push(Chunk {
                    addr: p,
                    size: hi - p,
                    head,
                    kind: Kind::Fencepost,
                    links: Vec::new(),
                });
                break;
            }
            if head == TOP_FOOT_SIZE && p + TOP_FOOT_SIZE == hi {
                if let Some(top) = chunks.last_mut() {
                    if top.head & 2 == 0 {
                        top.kind = Kind::Top;
                    }
                }
                chunks.push(Chunk {
                    addr: p,
                    size: TOP_FOOT_SIZE,
                    head,
                    kind: Kind::TopFoot,
                    links: Vec::new(),
                });
                break;
            }
            let size = head & !7;
            // (A top may be as small as its 16-byte header: malloc.c splits
            // top whenever `nb < topsize`.)
            let small_top = size == 16 && head & 2 == 0 && p + size + TOP_FOOT_SIZE == hi;
            if (size < 32 && !small_top) || p + size > hi {
                notes.push(format!(
                    "the walk stopped at {p:#x}: head {head:#x} is no chunk"
                ));
                break;
            }
            let kind = if head & 2 != 0 {
                Kind::InUse
            } else if size < 256 {
                Kind::SmallBin((size >> 3) as u8)
            } else {
                Kind::TreeBin(tree_index(size))
            };
            chunks.push(Chunk {
                addr: p,
                size,
                head,
                kind,
                links: Vec::new(),
            });
            p += size;
        }
        // An in-use chunk right before fenceposts holds a segment record.
        for i in 1..chunks.len() {
            if chunks[i].kind == Kind::Fencepost && chunks[i - 1].kind == Kind::InUse {
                chunks[i - 1].kind = Kind::SegmentRecord;
            }
        }
        for c in chunks.iter_mut() {
            c.links = dl_links(c.kind)
                .iter()
                .filter_map(|&(name, offset, len)| {
                    let w = self.word(c.addr + offset)?;
                    Some(Link {
                        name,
                        offset,
                        len,
                        value: if len == 4 { w & 0xffff_ffff } else { w },
                    })
                })
                .collect();
        }
        self.infer_dv(&mut chunks, &mut notes);
        (chunks, notes)
    }

    /// Marks as the dv the one free chunk no bin reaches (module docs).
    fn infer_dv(&self, chunks: &mut [Chunk], notes: &mut Vec<String>) {
        let by_addr: BTreeMap<usize, (usize, Kind)> =
            chunks.iter().map(|c| (c.addr, (c.size, c.kind))).collect();
        let (lo, hi) = self.segment();
        let in_heap = |a: usize| a >= lo && a < hi;
        let fd = |a: usize| self.word(a + 16);
        let bk = |a: usize| self.word(a + 24);
        // Is `p` (free, `size`) on a well-formed ring of its bin?
        let ringed = |p: usize, size: usize, small: bool| -> bool {
            let mut x = p;
            let mut outside = 0;
            let mut node = 0;
            for _ in 0..=chunks.len() + 1 {
                let Some(f) = fd(x) else { return false };
                if bk(f) != Some(x) {
                    return false;
                }
                if in_heap(f) {
                    match by_addr.get(&f) {
                        Some(&(s, k)) if s == size && k != Kind::Top && k != Kind::InUse => {}
                        _ => return false,
                    }
                    if !small && self.word(f + 48).is_some_and(|w| w != 0) {
                        node += 1;
                    }
                } else {
                    outside += 1;
                }
                x = f;
                if x == p {
                    break;
                }
            }
            if x != p {
                return false;
            }
            if small {
                return outside == 1;
            }
            if outside != 0 || node != 1 {
                return false;
            }
            // The node: its parent names it as a child, or its slot holds it.
            let mut x = p;
            loop {
                let parent = self.word(x + 48).unwrap_or(0);
                if parent != 0 {
                    let kids = [self.word(parent + 32), self.word(parent + 40)];
                    return if in_heap(parent) {
                        kids.contains(&Some(x))
                    } else {
                        self.word(parent) == Some(x)
                    };
                }
                x = fd(x).unwrap_or(p);
                if x == p {
                    return false;
                }
            }
        };
        let mut unbinned: Vec<usize> = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            match c.kind {
                Kind::SmallBin(_) if !ringed(c.addr, c.size, true) => unbinned.push(i),
                Kind::TreeBin(_) if !ringed(c.addr, c.size, false) => unbinned.push(i),
                _ => {}
            }
        }
        match unbinned.as_slice() {
            [] => {}
            [i] => {
                chunks[*i].kind = Kind::Dv;
                chunks[*i].links.clear();
            }
            many => notes.push(format!(
                "{} free chunks are in no bin list (at most one, the dv, can be): {}",
                many.len(),
                many.iter()
                    .map(|&i| format!("{:#x}", chunks[i].addr))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
    }
}

/// dlmalloc's `compute_tree_index`, written plainly: bin `2k` holds sizes
/// from `256 << k` up to the middle of that doubling, bin `2k + 1` the
/// rest; bin 31 everything from 12 MiB (`0xc00000`) on.
pub fn tree_index(size: usize) -> u8 {
    for i in 0..31u8 {
        let k = i as usize / 2;
        let lo = (256usize << k) + (i as usize % 2) * (128usize << k);
        let next = if i % 2 == 0 {
            lo + (128usize << k)
        } else {
            512usize << k
        };
        if size >= lo && size < next {
            return i;
        }
    }
    if size < 256 {
        0
    } else {
        31
    }
}

/// The inferences a dlmalloc picture rests on, for its notes.
pub const INFERRED: &str = "read from memory only (the crate's state has no fixed layout): top is the free chunk before the segment's foot (head 80); bins follow from sizes; the dv is the one free chunk no bin list reaches; smallmap/treemap are the bins that hold chunks";

/// Small and tree bitmaps implied by a walk.
pub fn maps(chunks: &[Chunk]) -> (u32, u32) {
    let mut small = 0u32;
    let mut tree = 0u32;
    for c in chunks {
        match c.kind {
            Kind::SmallBin(i) => small |= 1 << i,
            Kind::TreeBin(i) => tree |= 1 << i,
            _ => {}
        }
    }
    (small, tree)
}

impl Subject for DlHeap {
    fn malloc(&mut self, size: usize) -> usize {
        // SAFETY: no preconditions on the size.
        unsafe { self.dl.c_malloc(size) as usize }
    }
    fn calloc(&mut self, n: usize, size: usize) -> usize {
        let Some(bytes) = n.checked_mul(size) else {
            return 0;
        };
        // SAFETY: 16 is the crate's natural alignment.
        unsafe { self.dl.calloc(bytes, 16) as usize }
    }
    fn realloc(&mut self, p: usize, size: usize) -> usize {
        // SAFETY: the replay passes live pointers of this heap only.
        unsafe { self.dl.c_realloc(p as *mut u8, size) as usize }
    }
    fn memalign(&mut self, align: usize, size: usize) -> usize {
        let align = align.max(1).next_power_of_two();
        // SAFETY: a power of two.
        unsafe { self.dl.c_memalign(align, size) as usize }
    }
    fn free(&mut self, p: usize) {
        // SAFETY: the replay passes live pointers of this heap only.
        unsafe { self.dl.c_free(p as *mut u8) }
    }
    fn picture(&mut self) -> Picture {
        let (chunks, mut notes) = self.walk();
        let (small, tree) = maps(&chunks);
        notes.insert(
            0,
            format!("{INFERRED} (smallmap {small:#x}, treemap {tree:#x})"),
        );
        let pages: BTreeSet<usize> = pages_to_track(&chunks);
        let region = self.dl.allocator();
        let (pages, changed) = self.tracker.update(&pages, &mut |p| region.page(p));
        let state = self.state();
        Picture {
            who: Who::Dlmalloc,
            base: self.segment().0,
            chunks,
            state: (state.0, state.1, "state"),
            areas: Vec::new(),
            notes,
            pages,
            changed,
        }
    }
}
