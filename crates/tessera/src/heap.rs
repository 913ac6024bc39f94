//! One heap: dlmalloc's `malloc_state` (an mspace) and its algorithms.
//!
//! # Glossary
//! - **state**: the [`State`] of a heap: bins, dv, top, segment list,
//!   counters. It lives inside the heap's first segment, right after the
//!   segment record, so it never moves (chunks and records point at it) and
//!   the [`Heap`] handle is one pointer.
//! - **nb**: a normalised chunk size, the output of `request2size`.
//! - **dv** (designated victim): the free chunk left over by the last split
//!   of a small request; the next small request that no exact bin serves is
//!   cut from it, so runs of small mallocs land next to each other. It is in
//!   no bin.
//! - **top**: see [`crate::segment`].
//! - **direct chunk**: a chunk with its own mapping (see [`crate::direct`]).
//!
//! # Invariants
//! - `dv` null ⟺ `dvsize == 0`; else `dv` is a free chunk of `dvsize` bytes
//!   in no bin.
//! - `top` is a free chunk of `topsize >= MIN_CHUNK_SIZE` bytes with PINUSE
//!   set, the last chunk of `top_seg`, in no bin.
//! - `footprint == Σ committed bytes of segments + Σ direct mapping sizes`,
//!   and `max_footprint >= footprint`.
//! - bytes of top's segment in `[max(top_clean, top + 16), fencepost)` are
//!   zero (so calloc can skip clearing fresh memory).
//!
//! The trust boundary (dlmalloc: "trust the mstate, check the heap"):
//! fields of `State` are trusted. Everything read from heap memory that a
//! program could have overwritten (sizes, links, boundary tags) is checked
//! before it steers a write, and a failed check ends in
//! [`crate::report::fatal`].

use crate::chunk::{
    align_up, request2size, tag_ok, tag_ok_keyed, Chunk, Head, TreeChunk, CHECKS, CHUNK_OVERHEAD,
    MALLOC_ALIGNMENT, MAX_REQUEST, MEM_OFFSET, MIN_CHUNK_SIZE,
};
use crate::debug::DebugConfig;
use crate::direct::MmapHeader;
use crate::lock::RawLock;
use crate::os::{Mmap, PageSource};
use crate::registry;
use crate::report::{fatal, Misuse};
use crate::segment::{
    init_record, Emptied, Segment, MAX_SEGMENT_CHUNK, SEGMENT_HEADER, SEGMENT_SIZE,
    SEG_HOLDS_STATE, TOP_FOOT_SIZE,
};
use crate::smallbins::{is_small, small_index, small_index2size, SmallBins, MAX_SMALL_REQUEST};
use crate::treebins::{TreeBins, Unlinked};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize};

/// Tunables of one heap. Defaults follow dlmalloc 2.8.6 and glibc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Chunk sizes from here up are mapped directly (default 256 KiB; capped
    /// at half a segment, 32 MiB, like glibc's M_MMAP_THRESHOLD maximum).
    pub mmap_threshold: usize,
    /// Top is trimmed back to the OS when it grows beyond this after a free
    /// (default 2 MiB). `usize::MAX` disables automatic trimming.
    pub trim_threshold: usize,
    /// Extra bytes committed whenever top grows, and kept when trimming
    /// (glibc's M_TOP_PAD; default 128 KiB).
    pub top_pad: usize,
    /// Unit of growth and trimming (default 64 KiB).
    pub granularity: usize,
    /// Most direct chunks alive at once (glibc's M_MMAP_MAX; default 65536).
    /// 0 disables direct mapping except for requests too large for a segment.
    pub mmap_max: usize,
    /// glibc's dynamic threshold: when a direct chunk is freed, raise
    /// `mmap_threshold` to its size (up to 32 MiB) and `trim_threshold` to
    /// twice that, so a program that keeps allocating and freeing blocks of
    /// that size reuses heap memory instead of mapping and faulting in fresh
    /// pages every time. Off for `Heap` (dlmalloc has no such rule), on for
    /// the process allocator; setting a threshold explicitly (mallopt) turns
    /// it off, as in glibc.
    pub dynamic_threshold: bool,
}

impl Config {
    /// dlmalloc/glibc defaults.
    pub const DEFAULT: Config = Config {
        mmap_threshold: 256 << 10,
        trim_threshold: 2 << 20,
        top_pad: 128 << 10,
        granularity: 64 << 10,
        mmap_max: 65536,
        dynamic_threshold: false,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The state of one heap (dlmalloc's `struct malloc_state`). See the module
/// docs for its invariants. Field order puts what malloc's fast path reads
/// first.
#[repr(C)]
pub struct State<S: PageSource> {
    /// `registry::key() ^ address of this state`: proves it is intact.
    pub(crate) check: usize,
    pub(crate) small: SmallBins,
    pub(crate) tree: TreeBins,
    pub(crate) dvsize: usize,
    pub(crate) topsize: usize,
    pub(crate) dv: *mut Chunk,
    pub(crate) top: *mut Chunk,
    /// The segment that holds top.
    pub(crate) top_seg: *mut Segment,
    /// All segments of the heap, newest first.
    pub(crate) segments: *mut Segment,
    /// Live direct chunks (doubly linked through their mapping headers).
    pub(crate) direct: *mut MmapHeader,
    pub(crate) direct_count: usize,
    pub(crate) direct_bytes: usize,
    /// High-water marks of `direct_count`, `direct_bytes` and of the bytes
    /// committed in segments.
    pub(crate) max_direct_count: usize,
    pub(crate) max_direct_bytes: usize,
    pub(crate) max_segment_bytes: usize,
    pub(crate) footprint: usize,
    pub(crate) max_footprint: usize,
    /// 0 = unlimited.
    pub(crate) footprint_limit: usize,
    /// See the module invariant on fresh memory.
    pub(crate) top_clean: usize,
    /// Set by `carve_top` when the chunk it returns is all zero beyond its
    /// header; calloc clears it before allocating and reads it after.
    pub(crate) carved_clean: *mut Chunk,
    pub(crate) config: Config,
    /// Footprint shared by all arenas of the process allocator (null for a
    /// standalone heap).
    pub(crate) shared: *const SharedFootprint,
    /// Held by whoever operates on an arena's heap (unused by `Heap`).
    pub(crate) lock: RawLock,
    /// Chunks freed by threads that found `lock` taken: a lock-free stack
    /// linked through the first payload word, drained by the next lock holder.
    pub(crate) remote: AtomicPtr<u8>,
    /// Threads bound to this arena.
    pub(crate) attached: AtomicUsize,
    /// The expensive tier of checks (see `debug`).
    pub(crate) debug: DebugConfig,
    /// The arena's quick lists (see `crate::quick`); null for a
    /// standalone heap, which no thread cache flushes into.
    #[cfg(feature = "std")]
    pub(crate) quick: *mut crate::quick::QuickLists,
    /// In a forked child: this arena was created while the parent forked and
    /// may be half-updated; it is never used again and frees into it leak.
    pub(crate) abandoned: bool,
    pub(crate) source: S,
}

/// Footprint accounting shared by every arena of the process allocator, so
/// that one limit covers them all.
#[derive(Debug)]
pub struct SharedFootprint {
    /// Bytes obtained from the OS by all arenas.
    pub total: AtomicUsize,
    /// The largest `total` so far.
    pub peak: AtomicUsize,
    /// 0 = unlimited.
    pub limit: AtomicUsize,
}

impl SharedFootprint {
    /// Nothing counted, no limit.
    pub const fn new() -> Self {
        SharedFootprint {
            total: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
        }
    }
}

impl Default for SharedFootprint {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: PageSource> State<S> {
    // ----------------------------------------------------------------
    // Bins: routing a free chunk to the right structure.
    // ----------------------------------------------------------------

    /// Puts a free chunk into its small bin or tree bin (dlmalloc's
    /// `insert_chunk`).
    ///
    /// # Safety
    /// `p` must be a free chunk of `size` bytes in no bin.
    #[inline(always)]
    pub(crate) unsafe fn insert_chunk(&mut self, p: *mut Chunk, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe {
            if is_small(size) {
                self.small.insert(p, size);
            } else {
                self.tree.insert(TreeChunk::from_chunk(p), size);
            }
            if self.debugging() {
                self.debug_fill(p, size, true);
            }
        }
    }

    /// Takes a free chunk out of its bin (dlmalloc's `unlink_chunk`); a link
    /// that does not point back is reported as corruption.
    ///
    /// # Safety
    /// `p` must be a free chunk of `size` bytes in a bin.
    #[inline(always)]
    pub(crate) unsafe fn unlink_chunk(&mut self, p: *mut Chunk, size: usize) {
        if self.debugging() {
            // SAFETY: forwarded to the caller.
            unsafe { self.debug_verify(p, size, true) };
        }
        // SAFETY: forwarded to the caller.
        let ok = unsafe {
            if is_small(size) {
                self.small.unlink(p, size)
            } else {
                self.tree.unlink(TreeChunk::from_chunk(p)) == Unlinked::Ok
            }
        };
        if !ok {
            fatal(Misuse::CorruptLinks, Chunk::to_mem(p));
        }
    }

    /// Makes `r` (free, `rsize` bytes) the new dv, binning the old one
    /// (dlmalloc's `replace_dv`).
    ///
    /// # Safety
    /// `r` must be a free chunk in no bin.
    #[inline(always)]
    unsafe fn replace_dv(&mut self, r: *mut Chunk, rsize: usize) {
        if self.dvsize != 0 {
            // SAFETY: the old dv is a free chunk in no bin (invariant).
            unsafe { self.insert_chunk(self.dv, self.dvsize) };
        }
        self.dv = r;
        self.dvsize = rsize;
        if self.debugging() {
            // SAFETY: r is a free chunk of rsize bytes (caller).
            unsafe { self.debug_fill(r, rsize, false) };
        }
    }

    // ----------------------------------------------------------------
    // malloc
    // ----------------------------------------------------------------

    /// Allocates at least `bytes` bytes (dlmalloc's `dlmalloc`). Null on
    /// failure.
    #[inline]
    pub(crate) fn malloc(&mut self, bytes: usize) -> *mut u8 {
        if self.debug.level >= 2 {
            self.debug_tick();
        }
        // SAFETY: the state is consistent between public calls, and every
        // chunk the bins, dv and top name is a valid chunk of this heap.
        unsafe {
            let nb;
            if bytes <= MAX_SMALL_REQUEST {
                nb = request2size(bytes);
                let mut idx = small_index(nb);
                let smallbits = self.small.map >> idx;
                if smallbits & 0x3 != 0 {
                    // An exact fit, or one 16 bytes larger (too small to split).
                    idx += (!smallbits & 1) as usize;
                    return self.take_small(idx);
                }
                if nb > self.dvsize {
                    if smallbits != 0 {
                        // The next non-empty small bin; split it, remainder to dv.
                        let i = (smallbits & !1).trailing_zeros() as usize + idx;
                        return self.split_small(i, nb);
                    }
                    if self.tree.map != 0 {
                        return self.tmalloc_small(nb);
                    }
                }
            } else if bytes >= MAX_REQUEST {
                return ptr::null_mut();
            } else {
                nb = request2size(bytes);
                if self.tree.map != 0 {
                    let mem = self.tmalloc_large(nb);
                    if !mem.is_null() {
                        return mem;
                    }
                }
            }

            if nb <= self.dvsize {
                return self.take_from_dv(nb);
            }
            if nb + MIN_CHUNK_SIZE <= self.topsize {
                return self.carve_top(nb);
            }
            self.consolidate_or_sys_alloc(bytes, nb)
        }
    }

    /// Nothing in the bins, dv or top serves `nb`: before asking the OS
    /// for more, merge the quick lists' chunks and try again if there are
    /// any (parked chunks must never be why the heap grows), unless the
    /// request gets a mapping of its own anyway.
    ///
    /// # Safety
    /// The heap must be consistent.
    #[cold]
    #[inline(never)]
    unsafe fn consolidate_or_sys_alloc(&mut self, bytes: usize, nb: usize) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        unsafe {
            if nb < self.config.mmap_threshold && self.quick_pending() {
                self.consolidate_quick();
                return self.malloc(bytes);
            }
            self.sys_alloc(nb)
        }
    }

    /// Pops the first chunk of small bin `i` and hands it out whole.
    ///
    /// # Safety
    /// Bin `i` must be non-empty.
    #[inline(always)]
    unsafe fn take_small(&mut self, i: usize) -> *mut u8 {
        // SAFETY: bin members are free chunks of this heap (caller/invariant);
        // the head is verified before the links are followed.
        unsafe {
            let size = small_index2size(i);
            self.verify_free(self.small.heads[i], size);
            let p = self.small.pop(i);
            if p.is_null() {
                fatal(Misuse::CorruptLinks, Chunk::to_mem(self.small.heads[i]));
            }
            if self.debugging() {
                self.debug_verify(p, size, true);
            }
            Chunk::set_inuse_and_pinuse(p, size);
            Chunk::to_mem(p)
        }
    }

    /// Pops a chunk of small bin `i` (larger than `nb`), splits off `nb`
    /// bytes and makes the remainder the dv.
    ///
    /// # Safety
    /// Bin `i` must be non-empty with `small_index2size(i) > nb`.
    #[cold]
    unsafe fn split_small(&mut self, i: usize, nb: usize) -> *mut u8 {
        // SAFETY: as in `take_small`; the split stays inside the chunk.
        unsafe {
            let size = small_index2size(i);
            self.verify_free(self.small.heads[i], size);
            let p = self.small.pop(i);
            if p.is_null() {
                fatal(Misuse::CorruptLinks, Chunk::to_mem(self.small.heads[i]));
            }
            if self.debugging() {
                self.debug_verify(p, size, true);
            }
            let rsize = size - nb;
            if rsize < MIN_CHUNK_SIZE {
                Chunk::set_inuse_and_pinuse(p, size);
            } else {
                Chunk::set_size_and_pinuse_of_inuse(p, nb);
                let r = Chunk::plus_offset(p, nb);
                Chunk::set_free_with_pinuse_only(r, rsize);
                self.replace_dv(r, rsize);
            }
            Chunk::to_mem(p)
        }
    }

    /// Serves a small request from the smallest tree chunk (dlmalloc's
    /// `tmalloc_small`); the remainder becomes the dv.
    ///
    /// # Safety
    /// The tree map must be non-empty.
    unsafe fn tmalloc_small(&mut self, nb: usize) -> *mut u8 {
        // SAFETY: tree members are free chunks of this heap.
        unsafe {
            let v = self.tree.smallest();
            let vc = TreeChunk::as_chunk(v);
            let size = Chunk::size(vc);
            self.verify_free(vc, size);
            self.unlink_chunk(vc, size);
            let rsize = size - nb;
            if rsize < MIN_CHUNK_SIZE {
                Chunk::set_inuse_and_pinuse(vc, size);
            } else {
                Chunk::set_size_and_pinuse_of_inuse(vc, nb);
                let r = Chunk::plus_offset(vc, nb);
                Chunk::set_free_with_pinuse_only(r, rsize);
                self.replace_dv(r, rsize);
            }
            Chunk::to_mem(vc)
        }
    }

    /// Serves a large request from the best-fitting tree chunk, unless the
    /// dv fits better (dlmalloc's `tmalloc_large`). Null if neither bins nor
    /// dv can.
    ///
    /// # Safety
    /// The heap must be consistent.
    unsafe fn tmalloc_large(&mut self, nb: usize) -> *mut u8 {
        // SAFETY: tree members are free chunks of this heap.
        unsafe {
            let (v, rsize) = self.tree.best_fit(nb);
            if v.is_null() || rsize >= self.dvsize.wrapping_sub(nb) {
                return ptr::null_mut();
            }
            let vc = TreeChunk::as_chunk(v);
            let size = rsize + nb;
            self.verify_free(vc, size);
            self.unlink_chunk(vc, size);
            if rsize < MIN_CHUNK_SIZE {
                Chunk::set_inuse_and_pinuse(vc, size);
            } else {
                Chunk::set_size_and_pinuse_of_inuse(vc, nb);
                let r = Chunk::plus_offset(vc, nb);
                Chunk::set_free_with_pinuse_only(r, rsize);
                self.insert_chunk(r, rsize);
            }
            Chunk::to_mem(vc)
        }
    }

    /// Cuts `nb <= dvsize` bytes from the front of the dv.
    ///
    /// # Safety
    /// `nb <= dvsize`.
    #[inline(always)]
    unsafe fn take_from_dv(&mut self, nb: usize) -> *mut u8 {
        let p = self.dv;
        let rsize = self.dvsize - nb;
        // SAFETY: dv is a free chunk of dvsize bytes (invariant).
        unsafe {
            if self.debugging() {
                self.debug_verify(p, self.dvsize, false);
            }
            if rsize >= MIN_CHUNK_SIZE {
                let r = Chunk::plus_offset(p, nb);
                self.dv = r;
                self.dvsize = rsize;
                Chunk::set_free_with_pinuse_only(r, rsize);
                Chunk::set_size_and_pinuse_of_inuse(p, nb);
            } else {
                let whole = self.dvsize;
                self.dvsize = 0;
                self.dv = ptr::null_mut();
                Chunk::set_inuse_and_pinuse(p, whole);
            }
        }
        Chunk::to_mem(p)
    }

    /// Cuts `nb` bytes from the front of top (`nb + MIN_CHUNK_SIZE <= topsize`).
    ///
    /// # Safety
    /// `nb + MIN_CHUNK_SIZE <= topsize`.
    #[inline(always)]
    pub(crate) unsafe fn carve_top(&mut self, nb: usize) -> *mut u8 {
        let p = self.top;
        let rsize = self.topsize - nb;
        let r = Chunk::plus_offset(p, nb);
        if p as usize + MEM_OFFSET >= self.top_clean {
            self.carved_clean = p;
        }
        let header_end = r as usize + MEM_OFFSET;
        if header_end > self.top_clean {
            self.top_clean = header_end;
        }
        self.top = r;
        self.topsize = rsize;
        // SAFETY: top is a free chunk of topsize bytes; r lies inside it.
        unsafe {
            Chunk::set_head(r, rsize | Head::PINUSE);
            Chunk::set_size_and_pinuse_of_inuse(p, nb);
        }
        Chunk::to_mem(p)
    }

    /// Gets memory from the OS for a chunk of `nb` bytes (dlmalloc's
    /// `sys_alloc`): a direct mapping for large chunks, else a longer top
    /// (grown in place, or a new segment). Null, with errno left to the
    /// caller, when everything fails.
    ///
    /// # Safety
    /// The heap must be consistent.
    #[cold]
    #[inline(never)]
    unsafe fn sys_alloc(&mut self, nb: usize) -> *mut u8 {
        let too_big = nb >= MAX_SEGMENT_CHUNK;
        let direct_ok = self.direct_count < self.config.mmap_max;
        // SAFETY: forwarded (heap consistent).
        unsafe {
            if too_big || (nb >= self.config.mmap_threshold && direct_ok) {
                let mem = self.direct_alloc(nb);
                if !mem.is_null() || too_big {
                    return mem;
                }
            }
            let need = nb + MIN_CHUNK_SIZE;
            if self.grow_top(need) || self.add_segment(need) {
                return self.carve_top(nb);
            }
            // No room for a segment: a mapping of its own may still fit.
            if direct_ok && nb < self.config.mmap_threshold {
                return self.direct_alloc(nb);
            }
        }
        ptr::null_mut()
    }

    // ----------------------------------------------------------------
    // free
    // ----------------------------------------------------------------

    /// Validates a pointer received from a caller and classifies it. Reads
    /// no byte through `mem` before the registry has vouched for its
    /// address. Aborts with a one-line message on misuse.
    #[inline(always)]
    pub(crate) fn validate(&self, mem: *mut u8, for_realloc: bool) -> Owned {
        let c = classify(mem, for_realloc);
        if c.owner != self.owner() {
            fatal(Misuse::WrongHeap, mem);
        }
        if c.direct {
            Owned::Direct(c.chunk)
        } else {
            Owned::Segment(c.chunk)
        }
    }

    /// The owner tag stored in segment records and mapping headers.
    #[inline(always)]
    pub(crate) fn owner(&self) -> *mut () {
        (self as *const Self).cast_mut().cast()
    }

    /// Checks that a chunk taken from a bin looks free and is closed by a
    /// correct boundary tag; aborts otherwise.
    ///
    /// # Safety
    /// `p` must be a readable chunk of this heap.
    #[inline(always)]
    unsafe fn verify_free(&self, p: *mut Chunk, size: usize) {
        if !crate::chunk::CHECKS {
            return;
        }
        // SAFETY: p and its successor are chunks of this heap (caller).
        unsafe {
            let head = Chunk::head(p);
            let next = Chunk::plus_offset(p, size);
            // One compare: the size right, CINUSE clear, no tag.
            if head.0 & !(Head::PINUSE | Head::FLAG4) != size {
                fatal(Misuse::CorruptHeader, Chunk::to_mem(p));
            }
            if Chunk::prev_foot(next) != size || Chunk::pinuse(next) {
                fatal(Misuse::CorruptHeader, Chunk::to_mem(next));
            }
        }
    }

    /// Frees `mem` (dlmalloc's `dlfree`).
    ///
    /// # Safety
    /// `mem` must be null or a pointer this heap handed out and not yet
    /// freed; anything else is detected where cheaply possible and aborts.
    #[inline]
    pub(crate) unsafe fn free(&mut self, mem: *mut u8) {
        if mem.is_null() {
            return;
        }
        if self.debug.level >= 2 {
            self.debug_tick();
        }
        // SAFETY: `validate` vouches for the chunk.
        unsafe {
            match self.validate(mem, false) {
                Owned::Segment(p) => {
                    self.free_chunk(p, Chunk::size(p));
                    self.after_free();
                }
                Owned::Direct(p) => self.direct_free(p),
            }
        }
    }

    /// Frees a chunk that [`classify`] has just validated as this heap's
    /// (the arena path: no second validation).
    ///
    /// # Safety
    /// `c` must come from `classify` on a live pointer, with `c.owner` this
    /// heap, and nothing may have touched the chunk since.
    #[inline]
    pub(crate) unsafe fn free_classified(&mut self, c: Classified) {
        if self.debug.level >= 2 {
            self.debug_tick();
        }
        // SAFETY: forwarded to the caller.
        unsafe {
            if c.direct {
                self.direct_free(c.chunk);
            } else {
                self.free_chunk(c.chunk, Chunk::size(c.chunk));
                self.after_free();
            }
        }
    }

    /// After a segment chunk was freed: if top grew past the trim
    /// threshold, the heap is emptying out, and the quick lists are
    /// consolidated first so that their chunks can merge into top too;
    /// then top is trimmed (dlmalloc's free tail). (glibc also
    /// consolidates its fastbins whenever a free leaves a chunk of 64 KiB
    /// or more; measured here, that emptied the lists so often that the
    /// trace workload got slower than with no lists at all.)
    ///
    /// # Safety
    /// The heap must be consistent.
    #[inline(always)]
    pub(crate) unsafe fn after_free(&mut self) {
        // SAFETY: forwarded to the caller.
        unsafe {
            if self.topsize > self.config.trim_threshold {
                if self.quick_pending() {
                    self.consolidate_quick();
                }
                self.trim_top(self.config.top_pad);
            }
        }
    }

    // Without `std` there are no thread caches, so nothing is ever parked
    // (see `crate::quick` for the real ones).
    #[cfg(not(feature = "std"))]
    #[inline(always)]
    pub(crate) fn quick_pending(&self) -> bool {
        false
    }
    #[cfg(not(feature = "std"))]
    pub(crate) unsafe fn consolidate_quick(&mut self) {}
    #[cfg(not(feature = "std"))]
    pub(crate) fn is_parked(&self, _: *mut Chunk, _: usize) -> bool {
        false
    }

    /// Frees the in-use chunk `p` of `psize` bytes (not direct): merges it
    /// with free neighbours, then puts the result into top, the dv or a bin,
    /// or unmaps its segment if the segment became empty (dlmalloc's free
    /// body and `dispose_chunk`).
    ///
    /// # Safety
    /// `p` must be a validated in-use chunk of this heap with `psize` its
    /// size; it may have CINUSE set or clear (callers splitting chunks pass
    /// pieces with any flags), only its PINUSE bit is read.
    pub(crate) unsafe fn free_chunk(&mut self, mut p: *mut Chunk, mut psize: usize) {
        // SAFETY: p is a chunk of this heap; every neighbour reached through
        // a size or tag is validated before it is written.
        unsafe {
            let next = Chunk::plus_offset(p, psize);
            // If p is merged into its predecessor, its old head stays behind
            // inside the free chunk: clear CINUSE there (the tag stays), so
            // a second free of p is reported as the double free it is.
            let h = Chunk::head(p);
            Chunk::set_head(p, h.0 & !Head::CINUSE);
            if !Chunk::pinuse(p) {
                let prevsize = Chunk::prev_foot(p);
                let prev = Chunk::minus_offset(p, prevsize);
                let seg = Segment::of(p.cast());
                let ph = if Segment::holds(seg, prev.cast()) && prevsize >= MIN_CHUNK_SIZE {
                    Chunk::head(prev)
                } else {
                    Head(usize::MAX)
                };
                if ph.size() != prevsize || ph.cinuse() {
                    fatal(Misuse::CorruptHeader, Chunk::to_mem(p));
                }
                psize += prevsize;
                p = prev;
                if p != self.dv {
                    self.unlink_chunk(p, prevsize);
                } else if Chunk::head(next).0 & Head::INUSE_BITS == Head::INUSE_BITS {
                    if self.debugging() {
                        self.debug_verify(p, prevsize, false);
                    }
                    self.dvsize = psize;
                    Chunk::set_free_with_pinuse(p, psize, next);
                    if self.debugging() {
                        self.debug_fill(p, psize, false);
                    }
                    return;
                }
            }
            let nh = Chunk::head(next);
            if nh.cinuse() && !nh.is_fencepost() && !tag_ok(next, nh) {
                // The chunk after p lost its tag: p's payload overflowed.
                fatal(Misuse::CorruptHeader, Chunk::to_mem(next));
            }
            if !nh.cinuse() {
                if next == self.top {
                    self.topsize += psize;
                    let tsize = self.topsize;
                    self.top = p;
                    Chunk::set_head(p, tsize | Head::PINUSE);
                    if p == self.dv {
                        self.dv = ptr::null_mut();
                        self.dvsize = 0;
                    }
                    return;
                }
                if next == self.dv {
                    if self.debugging() {
                        self.debug_verify(next, self.dvsize, false);
                    }
                    self.dvsize += psize;
                    let dsize = self.dvsize;
                    self.dv = p;
                    Chunk::set_free_with_pinuse_only(p, dsize);
                    if self.debugging() {
                        self.debug_fill(p, dsize, false);
                    }
                    self.release_dv_if_empty();
                    return;
                }
                let nsize = Chunk::size(next);
                self.verify_free(next, nsize);
                psize += nsize;
                self.unlink_chunk(next, nsize);
                Chunk::set_free_with_pinuse_only(p, psize);
                if p == self.dv {
                    self.dvsize = psize;
                    if self.debugging() {
                        self.debug_fill(p, psize, false);
                    }
                    self.release_dv_if_empty();
                    return;
                }
            } else {
                Chunk::set_free_with_pinuse(p, psize, next);
            }
            self.bin_unless_released(p, psize, Segment::of(p.cast()));
        }
    }

    /// If the dv now spans a whole (non-top) segment, unmaps that segment.
    ///
    /// # Safety
    /// The dv must be valid.
    unsafe fn release_dv_if_empty(&mut self) {
        let (dv, dvsize) = (self.dv, self.dvsize);
        // SAFETY: the dv is a free chunk in no bin.
        unsafe {
            match self.release_if_empty(dv, dvsize, Segment::of(dv.cast())) {
                Emptied::No => {}
                Emptied::Released => {
                    self.dv = ptr::null_mut();
                    self.dvsize = 0;
                }
                Emptied::Shrunk(n) => self.dvsize = n,
            }
        }
    }

    // ----------------------------------------------------------------
    // realloc, memalign, calloc
    // ----------------------------------------------------------------

    /// Resizes the chunk `p` to `nb` bytes without moving it, or with an
    /// `mremap` for direct chunks when `can_move` (dlmalloc's
    /// `try_realloc_chunk`). Returns the chunk (maybe moved) or null.
    ///
    /// # Safety
    /// `p` must be a validated in-use chunk of this heap.
    unsafe fn try_realloc_chunk(&mut self, p: *mut Chunk, nb: usize, can_move: bool) -> *mut Chunk {
        // SAFETY: p is validated; neighbours are chunks of its segment.
        unsafe {
            let head = Chunk::head(p);
            if head.is_mmapped() {
                return self.direct_resize(p, nb, can_move);
            }
            let oldsize = head.size();
            let next = Chunk::plus_offset(p, oldsize);
            if oldsize >= nb {
                // Shrink: give the tail back if it is worth a chunk.
                let rsize = oldsize - nb;
                if rsize >= MIN_CHUNK_SIZE {
                    let r = Chunk::plus_offset(p, nb);
                    Chunk::set_inuse(p, nb);
                    Chunk::set_inuse(r, rsize);
                    self.free_chunk(r, rsize);
                }
                return p;
            }
            if next == self.top {
                if oldsize + self.topsize < nb + MIN_CHUNK_SIZE
                    && !self.grow_top(nb + MIN_CHUNK_SIZE - oldsize)
                {
                    return ptr::null_mut();
                }
                let newtopsize = oldsize + self.topsize - nb;
                let newtop = Chunk::plus_offset(p, nb);
                Chunk::set_inuse(p, nb);
                Chunk::set_head(newtop, newtopsize | Head::PINUSE);
                self.top = newtop;
                self.topsize = newtopsize;
                let header_end = newtop as usize + MEM_OFFSET;
                if header_end > self.top_clean {
                    self.top_clean = header_end;
                }
                return p;
            }
            if next == self.dv {
                let dvs = self.dvsize;
                if oldsize + dvs < nb {
                    return ptr::null_mut();
                }
                if self.debugging() {
                    self.debug_verify(next, dvs, false);
                }
                let dsize = oldsize + dvs - nb;
                if dsize >= MIN_CHUNK_SIZE {
                    let r = Chunk::plus_offset(p, nb);
                    let n = Chunk::plus_offset(r, dsize);
                    Chunk::set_inuse(p, nb);
                    Chunk::set_free_with_pinuse(r, dsize, n);
                    self.dv = r;
                    self.dvsize = dsize;
                } else {
                    Chunk::set_inuse(p, oldsize + dvs);
                    self.dv = ptr::null_mut();
                    self.dvsize = 0;
                }
                return p;
            }
            if !Chunk::cinuse(next) {
                let nextsize = Chunk::size(next);
                if oldsize + nextsize < nb {
                    return ptr::null_mut();
                }
                self.verify_free(next, nextsize);
                self.unlink_chunk(next, nextsize);
                let rsize = oldsize + nextsize - nb;
                if rsize < MIN_CHUNK_SIZE {
                    Chunk::set_inuse(p, oldsize + nextsize);
                } else {
                    let r = Chunk::plus_offset(p, nb);
                    Chunk::set_inuse(p, nb);
                    Chunk::set_inuse(r, rsize);
                    self.free_chunk(r, rsize);
                }
                return p;
            }
        }
        ptr::null_mut()
    }

    /// dlmalloc's `dlrealloc` without the `realloc(p, 0)` rule (the callers
    /// decide that): resize in place if possible, else allocate, copy, free.
    /// Null (and `mem` untouched) on failure.
    ///
    /// # Safety
    /// `mem` must be a live pointer of this heap.
    pub(crate) unsafe fn realloc(&mut self, mem: *mut u8, bytes: usize) -> *mut u8 {
        if bytes >= MAX_REQUEST {
            // Validate anyway: a bad pointer must not pass silently.
            self.validate(mem, true);
            return ptr::null_mut();
        }
        let nb = request2size(bytes);
        let p = match self.validate(mem, true) {
            Owned::Segment(p) | Owned::Direct(p) => p,
        };
        // SAFETY: p is validated.
        unsafe {
            let newp = self.try_realloc_chunk(p, nb, true);
            if !newp.is_null() {
                return Chunk::to_mem(newp);
            }
            let new = self.malloc(bytes);
            if !new.is_null() {
                let old_usable = Chunk::usable_size(p);
                ptr::copy_nonoverlapping(mem, new, old_usable.min(bytes));
                self.free(mem);
            }
            new
        }
    }

    /// Resizes without moving (dlmalloc's `dlrealloc_in_place`). Returns
    /// whether it worked.
    ///
    /// # Safety
    /// `mem` must be a live pointer of this heap.
    pub(crate) unsafe fn realloc_in_place(&mut self, mem: *mut u8, bytes: usize) -> bool {
        let p = match self.validate(mem, true) {
            Owned::Segment(p) | Owned::Direct(p) => p,
        };
        if bytes >= MAX_REQUEST {
            return false;
        }
        // SAFETY: p is validated.
        unsafe {
            !self
                .try_realloc_chunk(p, request2size(bytes), false)
                .is_null()
        }
    }

    /// Allocates `bytes` at an address that is a multiple of `alignment`
    /// (dlmalloc's `internal_memalign`): over-allocate, then give the
    /// leading and trailing slack back as free chunks (or, for direct
    /// chunks, unmap the slack pages).
    pub(crate) fn memalign(&mut self, alignment: usize, bytes: usize) -> *mut u8 {
        if self.debug.level >= 2 {
            self.debug_tick();
        }
        if alignment <= MALLOC_ALIGNMENT {
            return self.malloc(bytes);
        }
        let alignment = alignment.max(MIN_CHUNK_SIZE);
        let Some(alignment) = alignment.checked_next_power_of_two() else {
            return ptr::null_mut();
        };
        // (The alignment test first: `MAX_REQUEST - alignment` would
        // underflow for an alignment above MAX_REQUEST.)
        if alignment >= MAX_REQUEST / 2 || bytes >= MAX_REQUEST - alignment {
            return ptr::null_mut();
        }
        let nb = request2size(bytes);
        let req = nb + alignment + MIN_CHUNK_SIZE - CHUNK_OVERHEAD;
        let mem = self.malloc(req);
        if mem.is_null() {
            return mem;
        }
        let mut p = Chunk::from_mem(mem);
        // SAFETY: p is a fresh in-use chunk of req bytes; the aligned position
        // lies inside it with at least MIN_CHUNK_SIZE before it.
        unsafe {
            if mem as usize % alignment != 0 {
                let aligned_mem = align_up(mem as usize, alignment);
                let mut br = Chunk::from_mem(aligned_mem as *mut u8);
                if (br as usize) - (p as usize) < MIN_CHUNK_SIZE {
                    br = Chunk::plus_offset(br, alignment);
                }
                let leadsize = br as usize - p as usize;
                let newsize = Chunk::size(p) - leadsize;
                if Chunk::head(p).is_mmapped() {
                    Chunk::set_prev_foot(br, Chunk::prev_foot(p) + leadsize);
                    Chunk::set_head(br, newsize);
                } else {
                    Chunk::set_inuse(br, newsize);
                    Chunk::set_inuse(p, leadsize);
                    self.free_chunk(p, leadsize);
                }
                p = br;
            }
            if Chunk::head(p).is_mmapped() {
                self.direct_trim(p, nb);
            } else {
                let size = Chunk::size(p);
                if size > nb + MIN_CHUNK_SIZE {
                    let rsize = size - nb;
                    let r = Chunk::plus_offset(p, nb);
                    Chunk::set_inuse(p, nb);
                    Chunk::set_inuse(r, rsize);
                    self.free_chunk(r, rsize);
                }
            }
            Chunk::to_mem(p)
        }
    }

    /// Allocates `n * size` zeroed bytes; null on overflow or failure. Skips
    /// the clearing for memory fresh from the OS.
    pub(crate) fn calloc(&mut self, n: usize, size: usize) -> *mut u8 {
        let Some(bytes) = n.checked_mul(size) else {
            return ptr::null_mut();
        };
        self.carved_clean = ptr::null_mut();
        let mem = self.malloc(bytes);
        if !mem.is_null() {
            let p = Chunk::from_mem(mem);
            // SAFETY: mem is a fresh allocation of at least `bytes` bytes.
            unsafe {
                if !Chunk::head(p).is_mmapped() && p != self.carved_clean {
                    ptr::write_bytes(mem, 0, bytes);
                }
            }
        }
        mem
    }

    /// Usable bytes of a live allocation.
    ///
    /// # Safety
    /// `mem` must be a live pointer of this heap.
    pub(crate) unsafe fn usable_size(&self, mem: *mut u8) -> usize {
        match self.validate(mem, false) {
            // SAFETY: validated.
            Owned::Segment(p) | Owned::Direct(p) => unsafe { Chunk::usable_size(p) },
        }
    }

    /// Does `mem` look like a live allocation of this heap? Never aborts.
    pub(crate) fn owns(&self, mem: *mut u8) -> bool {
        if mem.is_null() || mem as usize & (MALLOC_ALIGNMENT - 1) != 0 {
            return false;
        }
        let p = Chunk::from_mem(mem);
        let seg = Segment::of(p.cast());
        // SAFETY: records are read only after the registry vouches for them.
        unsafe {
            if Segment::is_live(seg) {
                (*seg).owner == self.owner() && Segment::holds(seg, p.cast())
            } else if registry::is_direct(p as usize) {
                let h = MmapHeader::of_chunk(p);
                !h.is_null() && (*h).owner == self.owner()
            } else {
                false
            }
        }
    }

    // ----------------------------------------------------------------
    // independent_calloc / independent_comalloc / bulk_free
    // ----------------------------------------------------------------

    /// Allocates `count` chunks carved from one block, so they sit next to
    /// each other (dlmalloc's `ialloc`). `size_of(i)` gives each request.
    /// Writes the pointers to `out[..count]`. All or nothing.
    pub(crate) fn ialloc(
        &mut self,
        count: usize,
        size_of: &dyn Fn(usize) -> usize,
        zero: bool,
        out: &mut [*mut u8],
    ) -> bool {
        if count == 0 || out.len() < count {
            return count == 0;
        }
        let mut total: usize = 0;
        for i in 0..count {
            let s = size_of(i);
            if s >= MAX_REQUEST {
                return false;
            }
            match total.checked_add(request2size(s)) {
                Some(t) if t < MAX_SEGMENT_CHUNK => total = t,
                _ => return false,
            }
        }
        // One chunk for all; it must come from a segment to be split, so
        // direct mapping is off for this call.
        let saved = self.config.mmap_max;
        self.config.mmap_max = 0;
        let saved_threshold = self.config.mmap_threshold;
        self.config.mmap_threshold = usize::MAX;
        let mem = self.malloc(total - CHUNK_OVERHEAD);
        self.config.mmap_max = saved;
        self.config.mmap_threshold = saved_threshold;
        if mem.is_null() {
            return false;
        }
        let mut p = Chunk::from_mem(mem);
        // SAFETY: p is a fresh in-use segment chunk of at least `total`
        // bytes; the pieces tile it exactly.
        unsafe {
            let mut remaining = Chunk::size(p);
            if zero {
                ptr::write_bytes(mem, 0, remaining - CHUNK_OVERHEAD);
            }
            for (i, slot) in out.iter_mut().enumerate().take(count) {
                *slot = Chunk::to_mem(p);
                if i + 1 < count {
                    let size = request2size(size_of(i));
                    Chunk::set_size_and_pinuse_of_inuse(p, size);
                    remaining -= size;
                    p = Chunk::plus_offset(p, size);
                } else {
                    Chunk::set_size_and_pinuse_of_inuse(p, remaining);
                }
            }
        }
        true
    }

    // ----------------------------------------------------------------
    // trim
    // ----------------------------------------------------------------

    /// Gives memory back to the OS (dlmalloc's `malloc_trim` plus glibc's
    /// purge of free chunks): trims top to `pad` bytes, unmaps empty
    /// segments, and lets the kernel drop the whole pages inside large free
    /// chunks. Returns whether anything was released.
    pub(crate) fn trim(&mut self, pad: usize) -> bool {
        // SAFETY: the heap is consistent between public calls.
        unsafe {
            self.consolidate_quick();
            let mut released = self.release_unused_segments();
            released += self.trim_top(pad);
            if !self.debugging() {
                released += self.purge_free_chunks();
            }
            released != 0
        }
    }

    /// `MADV_DONTNEED` on the whole pages inside every free chunk in the
    /// bins and the dv (not the header and links at the front, nor the
    /// boundary tag at the end). Returns the bytes purged.
    ///
    /// # Safety
    /// The heap must be consistent.
    unsafe fn purge_free_chunks(&mut self) -> usize {
        let page = self.source.page_size();
        let mut purged = 0;
        let mut seg = self.segments;
        // SAFETY: walks the segments chunk by chunk; all chunks are valid.
        unsafe {
            while !seg.is_null() {
                let fence = Segment::fencepost(seg);
                let mut p = Segment::first_chunk(seg);
                while p < fence && p != self.top {
                    let head = Chunk::head(p);
                    let size = head.size();
                    if size == 0 {
                        break;
                    }
                    if !head.cinuse() {
                        let start = align_up(p as usize + core::mem::size_of::<TreeChunk>(), page);
                        let end = (p as usize + size) & !(page - 1);
                        if end > start {
                            self.source.purge(start as *mut u8, end - start);
                            purged += end - start;
                        }
                    }
                    p = Chunk::plus_offset(p, size);
                }
                seg = (*seg).next;
            }
        }
        purged
    }
}

/// What to call a pointer that is in no segment and no live mapping: a
/// recently unmapped direct chunk (a double free), or anything else.
pub(crate) fn unknown_pointer(p: *mut Chunk, for_realloc: bool) -> Misuse {
    if registry::was_direct_freed(p as usize) {
        if for_realloc {
            Misuse::ReallocFreed
        } else {
            Misuse::DoubleFree
        }
    } else {
        Misuse::InvalidPointer
    }
}

/// Names what is wrong with a pointer into segment `seg` whose chunk failed
/// validation (not in use, wrong tag, impossible size). Walks the segment
/// from its first chunk (this is the error path; the process is about to
/// stop) to learn whether `p` is a real chunk boundary:
/// - a boundary whose head is a genuine free chunk (or top): double free;
/// - a boundary whose head is garbage: the header was overwritten;
/// - inside a free chunk, with a stale head that still carries its own tag:
///   a chunk freed and merged into its predecessor, freed again;
/// - anywhere else: not a pointer malloc returned.
///
/// # Safety
/// `seg` must be a live segment and `p` inside its chunk range.
pub(crate) unsafe fn diagnose(seg: *mut Segment, p: *mut Chunk, for_realloc: bool) -> Misuse {
    let freed = if for_realloc {
        Misuse::ReallocFreed
    } else {
        Misuse::DoubleFree
    };
    // SAFETY: every head read lies before the fencepost of a live segment;
    // each step is bounds-checked before it is taken.
    unsafe {
        let fence = Segment::fencepost(seg);
        let mut q = Segment::first_chunk(seg);
        while q < fence {
            let h = Chunk::head(q);
            let size = h.size();
            let next = Chunk::plus_offset(q, size);
            if size < MIN_CHUNK_SIZE || size % MALLOC_ALIGNMENT != 0 || next > fence {
                // The walk breaks at or before p: a header was overwritten.
                return if q <= p {
                    Misuse::CorruptHeader
                } else {
                    Misuse::InvalidPointer
                };
            }
            if q == p {
                if h.cinuse() && h.flag4() && tag_ok(p, h) {
                    // Parked on a quick list, or cached by a thread that
                    // is writing a snapshot: the program freed it before.
                    return freed;
                }
                let genuine_free = !h.cinuse()
                    && h.tag() == 0
                    && h.pinuse()
                    && (next == fence || (Chunk::prev_foot(next) == size && !Chunk::pinuse(next)));
                return if genuine_free {
                    freed
                } else {
                    Misuse::CorruptHeader
                };
            }
            if p < next {
                // p is inside q.
                // A chunk freed into its free predecessor q leaves its old
                // head behind with CINUSE cleared and the tag kept (see
                // `free_chunk`); the tag was made with CINUSE set.
                let ph = Chunk::head(p);
                if !h.cinuse() && ph.tag() != 0 && tag_ok(p, Head(ph.0 | Head::CINUSE)) {
                    return freed;
                }
                return Misuse::InvalidPointer;
            }
            q = next;
        }
    }
    Misuse::InvalidPointer
}

/// A pointer from outside, validated by [`classify`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Classified {
    /// Its chunk.
    pub(crate) chunk: *mut Chunk,
    /// The heap state that owns it (null for an orphan direct chunk).
    pub(crate) owner: *mut (),
    /// A direct chunk (else an in-use chunk of a segment).
    pub(crate) direct: bool,
}

/// Validates a pointer received from outside (the trust boundary) and finds
/// its chunk and owner. No byte is read through `mem` before the registry
/// has vouched for its address. An in-segment chunk must lie in its
/// segment's chunk range, be in use, carry its keyed tag, and end inside
/// the segment before a chunk whose PINUSE is set; a direct chunk must have
/// an intact keyed mapping header. Anything else aborts with a one-line
/// message naming the misuse.
#[inline(always)]
pub(crate) fn classify(mem: *mut u8, for_realloc: bool) -> Classified {
    if mem as usize & (MALLOC_ALIGNMENT - 1) != 0 {
        fatal(Misuse::Misaligned, mem);
    }
    let p = Chunk::from_mem(mem);
    let seg = Segment::of(p.cast());
    if registry::in_segment(seg as usize) {
        // SAFETY: the registry vouches for the segment record; the chunk
        // address is checked against the committed range before use.
        unsafe {
            // (The key is loaded once, for the record and the tag.)
            let key = registry::key();
            if (*seg).check != key ^ (seg as usize) {
                fatal(Misuse::CorruptRecord, mem);
            }
            if !Segment::holds(seg, p.cast()) {
                fatal(Misuse::InvalidPointer, mem);
            }
            let head = Chunk::head(p);
            let size = head.size();
            let next = Chunk::plus_offset(p, size);
            // (Top and every free chunk have CINUSE clear; with the checks
            // on, the tag check covers that: only in-use heads carry tags.)
            // FLAG4 marks a chunk parked on a quick list (or, while its
            // thread writes a snapshot, in a thread cache): freed already.
            if (!CHECKS && !head.cinuse())
                || !tag_ok_keyed(mem, head, key)
                || (CHECKS && head.flag4())
                || size < MIN_CHUNK_SIZE
                || next > Segment::fencepost(seg)
                || !Chunk::pinuse(next)
            {
                fatal(diagnose(seg, p, for_realloc), mem);
            }
            Classified {
                chunk: p,
                owner: (*seg).owner,
                direct: false,
            }
        }
    } else if registry::is_direct(p as usize) {
        // SAFETY: the registry vouches for a live mapping in this page.
        unsafe {
            let h = MmapHeader::of_chunk(p);
            if h.is_null() {
                fatal(Misuse::CorruptHeader, mem);
            }
            if (*h).check != registry::key() ^ (h as usize) {
                fatal(Misuse::CorruptRecord, mem);
            }
            Classified {
                chunk: p,
                owner: (*h).owner,
                direct: true,
            }
        }
    } else {
        fatal(unknown_pointer(p, for_realloc), mem)
    }
}

/// What a validated user pointer turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owned {
    /// An in-use chunk inside one of this heap's segments.
    Segment(*mut Chunk),
    /// A live direct chunk of this heap.
    Direct(*mut Chunk),
}

/// Where the first chunk of a heap's first segment starts: at a fixed
/// offset, whatever the state's exact size, so that the layout a learner
/// sees (and the golden grids) does not move when a field is added. The
/// record and the state must fit before it (checked below for the page
/// sources Tessera ships; a larger source moves the first chunk up).
pub const FIRST_CHUNK_OFFSET: usize = 1024;

/// Offset of the state inside the first segment, and of the first chunk.
const fn state_offsets<S: PageSource>() -> (usize, usize) {
    let align = core::mem::align_of::<State<S>>();
    let state_off = align_up(SEGMENT_HEADER, align);
    let end = align_up(
        state_off + core::mem::size_of::<State<S>>(),
        MALLOC_ALIGNMENT,
    );
    let first = if end > FIRST_CHUNK_OFFSET {
        end
    } else {
        FIRST_CHUNK_OFFSET
    };
    (state_off, first)
}

const _: () = assert!(state_offsets::<Mmap>().1 == FIRST_CHUNK_OFFSET);
const _: () = assert!(state_offsets::<crate::os::Faulty<Mmap>>().1 == FIRST_CHUNK_OFFSET);

/// One heap: dlmalloc's mspace. Single-threaded (`Send`, not `Sync`);
/// wrap it in a lock to share it. Dropping it returns all its memory.
///
/// ```
/// let mut heap = tessera::Heap::new();
/// let p = heap.malloc(100);
/// assert!(!p.is_null());
/// assert!(unsafe { heap.usable_size(p) } >= 100);
/// unsafe { heap.free(p) };
/// heap.check().unwrap();
/// ```
pub struct Heap<S: PageSource = Mmap> {
    state: NonNull<State<S>>,
}

// SAFETY: a Heap owns its memory exclusively; moving it to another thread
// moves that ownership. The page source must be Send for the same reason.
unsafe impl<S: PageSource + Send> Send for Heap<S> {}

impl Heap<Mmap> {
    /// A new heap on `mmap`. Panics if the OS refuses the first segment;
    /// see [`Heap::try_new`].
    pub fn new() -> Self {
        Self::try_new().expect("tessera: could not map the first segment of a heap")
    }

    /// A new heap on `mmap`, or `None` if the OS refuses the first segment.
    pub fn try_new() -> Option<Self> {
        Self::with_source(Mmap)
    }
}

impl Default for Heap<Mmap> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: PageSource> Heap<S> {
    /// A new heap drawing pages from `source`, with default tunables.
    pub fn with_source(source: S) -> Option<Self> {
        Self::with_config(source, Config::DEFAULT)
    }

    /// A new heap drawing pages from `source` with the given tunables. Maps
    /// the first segment, which holds the state; `None` if that fails.
    pub fn with_config(source: S, config: Config) -> Option<Self> {
        let config = Config {
            mmap_threshold: config.mmap_threshold.min(MAX_SEGMENT_CHUNK),
            ..config
        };
        let (state_off, first) = state_offsets::<S>();
        let page = source.page_size();
        let grain = align_up(config.granularity.max(1), page);
        let commit = align_up(
            first + MIN_CHUNK_SIZE + TOP_FOOT_SIZE + config.top_pad,
            grain,
        )
        .min(SEGMENT_SIZE);
        let base = source.reserve(SEGMENT_SIZE, SEGMENT_SIZE);
        if base.is_null() {
            return None;
        }
        // SAFETY: `base` is a fresh reservation; the state, first chunk and
        // fencepost all lie in the committed prefix.
        unsafe {
            if !source.commit(base, commit) || !registry::add_segment(base as usize) {
                source.unmap(base, SEGMENT_SIZE);
                return None;
            }
            let state: *mut State<S> = base.add(state_off).cast();
            let seg = init_record(base, state.cast(), commit, first, SEG_HOLDS_STATE);
            let top = Segment::first_chunk(seg);
            let topsize = commit - first - TOP_FOOT_SIZE;
            state.write(State {
                check: registry::key() ^ (state as usize),
                small: SmallBins::EMPTY,
                tree: TreeBins::EMPTY,
                dvsize: 0,
                topsize,
                dv: ptr::null_mut(),
                top,
                top_seg: seg,
                segments: seg,
                direct: ptr::null_mut(),
                direct_count: 0,
                direct_bytes: 0,
                max_direct_count: 0,
                max_direct_bytes: 0,
                max_segment_bytes: commit,
                footprint: commit,
                max_footprint: commit,
                footprint_limit: 0,
                top_clean: top as usize + MEM_OFFSET,
                carved_clean: ptr::null_mut(),
                config,
                shared: ptr::null(),
                lock: RawLock::new(),
                remote: AtomicPtr::new(ptr::null_mut()),
                attached: AtomicUsize::new(0),
                debug: DebugConfig::default(),
                #[cfg(feature = "std")]
                quick: ptr::null_mut(),
                abandoned: false,
                source,
            });
            Chunk::set_head(top, topsize | Head::PINUSE);
            Segment::write_fencepost(seg, false);
            Some(Heap {
                state: NonNull::new_unchecked(state),
            })
        }
    }

    #[inline(always)]
    pub(crate) fn state(&self) -> &State<S> {
        // SAFETY: the state lives as long as the handle.
        unsafe { self.state.as_ref() }
    }

    #[inline(always)]
    pub(crate) fn state_mut(&mut self) -> &mut State<S> {
        // SAFETY: the state lives as long as the handle, which is unique.
        unsafe { self.state.as_mut() }
    }

    /// The raw state pointer (for the arena layer, which locks around it).
    pub(crate) fn as_raw(&self) -> *mut State<S> {
        self.state.as_ptr()
    }

    /// Takes ownership back from [`Heap::as_raw`] + `mem::forget`.
    ///
    /// # Safety
    /// `state` must come from a heap that was forgotten, used at most once.
    pub(crate) unsafe fn from_raw(state: *mut State<S>) -> Self {
        Heap {
            // SAFETY: a state pointer is never null (caller).
            state: unsafe { NonNull::new_unchecked(state) },
        }
    }

    /// Allocates at least `bytes` bytes, 16-aligned. Null if the request
    /// cannot be met (too large, OS refused, footprint limit).
    #[inline]
    pub fn malloc(&mut self, bytes: usize) -> *mut u8 {
        self.state_mut().malloc(bytes)
    }

    /// Frees an allocation. Null is ignored.
    ///
    /// # Safety
    /// `mem` must be null or a live pointer from this heap. Double frees,
    /// foreign and interior pointers are detected where possible and abort
    /// the process with a one-line message.
    #[inline]
    pub unsafe fn free(&mut self, mem: *mut u8) {
        // SAFETY: forwarded to the caller.
        unsafe { self.state_mut().free(mem) }
    }

    /// Allocates `n * size` zeroed bytes; null on overflow or failure.
    pub fn calloc(&mut self, n: usize, size: usize) -> *mut u8 {
        self.state_mut().calloc(n, size)
    }

    /// Resizes an allocation, moving it if needed. `realloc(null, n)` is
    /// `malloc(n)`; `realloc(p, 0)` frees `p` and returns null (dlmalloc's
    /// REALLOC_ZERO_BYTES_FREES). On failure returns null and `mem` stays
    /// valid and unchanged.
    ///
    /// # Safety
    /// `mem` must be null or a live pointer from this heap.
    pub unsafe fn realloc(&mut self, mem: *mut u8, bytes: usize) -> *mut u8 {
        if mem.is_null() {
            return self.malloc(bytes);
        }
        if bytes == 0 {
            // SAFETY: forwarded to the caller.
            unsafe { self.free(mem) };
            return ptr::null_mut();
        }
        // SAFETY: forwarded to the caller.
        unsafe { self.state_mut().realloc(mem, bytes) }
    }

    /// Resizes an allocation only if it can stay where it is. Returns
    /// whether it did; the allocation is unchanged otherwise.
    ///
    /// # Safety
    /// `mem` must be a live pointer from this heap.
    pub unsafe fn realloc_in_place(&mut self, mem: *mut u8, bytes: usize) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe { self.state_mut().realloc_in_place(mem, bytes) }
    }

    /// Allocates `bytes` aligned to `alignment` (rounded up to a power of
    /// two). Null on failure.
    pub fn memalign(&mut self, alignment: usize, bytes: usize) -> *mut u8 {
        self.state_mut().memalign(alignment, bytes)
    }

    /// Bytes usable at `mem` (at least what was asked).
    ///
    /// # Safety
    /// `mem` must be a live pointer from this heap.
    pub unsafe fn usable_size(&self, mem: *mut u8) -> usize {
        // SAFETY: forwarded to the caller.
        unsafe { self.state().usable_size(mem) }
    }

    /// Is `mem` a pointer into this heap's live memory? Never aborts, reads
    /// nothing that the registry has not vouched for.
    pub fn owns(&self, mem: *mut u8) -> bool {
        self.state().owns(mem)
    }

    /// `n` zeroed blocks of `size` bytes carved from one chunk, written to
    /// `out[..n]` (dlmalloc's `independent_calloc`). Each block can be freed
    /// on its own. Returns false (allocating nothing) on failure.
    pub fn independent_calloc(&mut self, n: usize, size: usize, out: &mut [*mut u8]) -> bool {
        self.state_mut().ialloc(n, &|_| size, true, out)
    }

    /// Blocks of the given sizes carved from one chunk, written to
    /// `out[..sizes.len()]` (dlmalloc's `independent_comalloc`).
    pub fn independent_comalloc(&mut self, sizes: &[usize], out: &mut [*mut u8]) -> bool {
        self.state_mut()
            .ialloc(sizes.len(), &|i| sizes[i], false, out)
    }

    /// Frees every non-null pointer of `ptrs` that belongs to this heap and
    /// nulls its slot (dlmalloc's `bulk_free`). Returns how many were left
    /// because another heap owns them.
    ///
    /// # Safety
    /// Each non-null pointer must be live (in this heap or another).
    pub unsafe fn bulk_free(&mut self, ptrs: &mut [*mut u8]) -> usize {
        let mut unfreed = 0;
        for slot in ptrs.iter_mut() {
            if slot.is_null() {
                continue;
            }
            if self.owns(*slot) {
                // SAFETY: a live pointer of this heap (caller + owns).
                unsafe { self.free(*slot) };
                *slot = ptr::null_mut();
            } else {
                unfreed += 1;
            }
        }
        unfreed
    }

    /// Returns unused memory to the OS, keeping `pad` bytes in top. Returns
    /// whether anything was released.
    pub fn trim(&mut self, pad: usize) -> bool {
        self.state_mut().trim(pad)
    }

    /// Bytes currently obtained from the OS (committed segment bytes plus
    /// direct mappings).
    pub fn footprint(&self) -> usize {
        self.state().footprint
    }

    /// The largest footprint so far.
    pub fn max_footprint(&self) -> usize {
        self.state().max_footprint
    }

    /// The footprint limit (0 = none).
    pub fn footprint_limit(&self) -> usize {
        self.state().footprint_limit
    }

    /// Sets the footprint limit, rounded up to whole pages (0 = none).
    /// Requests that would take the footprint past it fail with null.
    /// Returns the limit in effect.
    pub fn set_footprint_limit(&mut self, bytes: usize) -> usize {
        let page = self.state().source.page_size();
        let limit = if bytes == 0 || bytes > usize::MAX - page {
            0
        } else {
            align_up(bytes, page)
        };
        self.state_mut().footprint_limit = limit;
        limit
    }

    /// The current tunables.
    pub fn config(&self) -> Config {
        self.state().config
    }

    /// Changes the tunables (the mmap threshold is capped at 32 MiB).
    pub fn set_config(&mut self, config: Config) {
        self.state_mut().config = Config {
            mmap_threshold: config.mmap_threshold.min(MAX_SEGMENT_CHUNK),
            ..config
        };
    }

    /// The page source.
    pub fn source(&self) -> &S {
        &self.state().source
    }
}

impl<S: PageSource> Drop for Heap<S> {
    fn drop(&mut self) {
        // SAFETY: the handle is unique; after this nothing refers to the
        // heap's memory. The state segment goes last, after the source has
        // been moved out of it.
        unsafe {
            let state = self.state.as_ptr();
            (*state).release_all_direct();
            let mut seg = (*state).segments;
            let mut state_seg = ptr::null_mut();
            while !seg.is_null() {
                let next = (*seg).next;
                if (*seg).flags & SEG_HOLDS_STATE != 0 {
                    state_seg = seg;
                } else {
                    registry::remove_segment(seg as usize);
                    (*seg).check = 0;
                    (*state).source.unmap(seg.cast(), (*seg).reserved);
                }
                seg = next;
            }
            (*state).check = 0;
            let source = ptr::read(ptr::addr_of!((*state).source));
            registry::remove_segment(state_seg as usize);
            (*state_seg).check = 0;
            source.unmap(state_seg.cast(), SEGMENT_SIZE);
        }
    }
}

impl<S: PageSource> core::fmt::Debug for Heap<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.state();
        f.debug_struct("Heap")
            .field("state", &self.state)
            .field("footprint", &s.footprint)
            .field("top", &s.top)
            .field("topsize", &s.topsize)
            .field("dv", &s.dv)
            .field("dvsize", &s.dvsize)
            .finish()
    }
}

// Everything before the first chunk of a heap's first segment (record and
// state), plus the fencepost, must leave any chunk that spans a whole
// segment larger than `MIN_SEGMENT_SPAN` (the free path relies on it).
const _: () =
    assert!(state_offsets::<Mmap>().1 + TOP_FOOT_SIZE + crate::segment::MIN_SEGMENT_SPAN <= 4096);
const _: () = assert!(
    state_offsets::<crate::os::Faulty<Mmap>>().1 + TOP_FOOT_SIZE + crate::segment::MIN_SEGMENT_SPAN
        <= 4096
);
