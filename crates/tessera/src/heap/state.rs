//! The state of one heap: dlmalloc's `malloc_state`, its tunables
//! ([`Config`]), and the few questions answered from the state alone
//! (who owns a pointer, how large a live block is). The algorithms that
//! change it are the files above this one (`bins`, `grow`, `direct`,
//! `free`, `malloc`, `realloc`); [`crate::heap::Heap`] is its handle.
//!
//! # Glossary
//! - **state**: the [`State`] of a heap: bins, dv, top, segment list,
//!   counters. It lives inside the heap's first segment, right after the
//!   segment record, so it never moves (chunks and records point at it) and
//!   the [`crate::heap::Heap`] handle is one pointer.
//! - **nb**: a normalised chunk size, the output of `request2size`.
//! - **dv** (designated victim): the free chunk left over by the last split
//!   of a small request; the next small request that no exact bin serves is
//!   cut from it, so runs of small mallocs land next to each other. It is in
//!   no bin.
//! - **top**: see [`crate::heap::segment`].
//! - **direct chunk**: a chunk with its own mapping (see
//!   [`crate::heap::mapping`]).
//!
//! # Invariants
//! - `dv` null ⟺ `dvsize == 0`; else `dv` is a free chunk of `dvsize` bytes
//!   in no bin.
//! - `top` is a free chunk of `topsize >= 16` bytes (its header: as in
//!   dlmalloc, splitting may leave top no larger) with PINUSE
//!   set, the last chunk of `top_seg`, in no bin.
//! - `footprint == Σ committed bytes of segments + Σ direct mapping sizes`,
//!   and `max_footprint >= footprint`.
//! - bytes of top's segment in `[max(top_clean, top + 16), fencepost)` are
//!   zero (so calloc can skip clearing fresh memory).
//! - `purged == Σ purgeable_bytes(p, size)` over the free chunks with
//!   FLAG4 set, which are all in tree bins; `tree_bytes == Σ size` over
//!   the chunks in tree bins.
//!
//! The trust boundary (dlmalloc: "trust the mstate, check the heap"):
//! fields of `State` are trusted. Everything read from heap memory that a
//! program could have overwritten (sizes, links, boundary tags) is checked
//! before it steers a write, and a failed check ends in
//! [`crate::sys::report::fatal`].

use super::chunk::{Chunk, MALLOC_ALIGNMENT};
use super::classify::classify;
use super::lists::MAX_CACHED_SIZE;
use super::mapping::MmapHeader;
use super::quick::QuickLists;
use super::segment::Segment;
use super::smallbins::SmallBins;
use super::treebins::TreeBins;
use crate::sys::lock::RawLock;
use crate::sys::os::PageSource;
use crate::sys::registry;
use crate::sys::report::{fatal, Misuse};
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
    /// glibc's M_PERTURB: with `Some(b)`, every block `malloc` (and
    /// `realloc`, `memalign`) hands out is filled with `b ^ 0xff` up to its
    /// usable size, and every block freed with `b` (up to the boundary
    /// tag), so that reads of uninitialised or freed memory show. `calloc`
    /// still returns zeros. Off (`None`) by default.
    pub perturb: Option<u8>,
    /// glibc's M_MXFAST: the largest chunk size parked on the quick lists
    /// (see `quick`); 0 parks nothing. Default: every small class (1040).
    pub max_fast: usize,
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
        perturb: None,
        max_fast: MAX_CACHED_SIZE,
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
    /// Bytes of the purgeable ranges of the purged chunks (FLAG4 set, in a
    /// tree bin): what purging has given back to the OS and the heap has
    /// not reused since. See `free`, "Purging".
    pub(crate) purged: usize,
    /// Bytes of the free chunks in the tree bins (the purgeable ones are
    /// among them): `tree_bytes - purged` is what purging could still give
    /// back.
    pub(crate) tree_bytes: usize,
    /// The heap's clock for purging, in ticks of `threads::decay`
    /// (advanced by the process allocator; 0 for a standalone heap): the
    /// stamp a chunk entering a tree bin gets (`TreeChunk::freed_at`).
    pub(crate) epoch: u32,
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
    /// Times the arena's lock was taken by the allocator's own paths
    /// (written only by the lock holder; read by the decay pass, which
    /// takes it as a sign of use: see `threads::decay`).
    pub(crate) uses: AtomicUsize,
    /// When (ms, see `threads::decay`) a slow path last ran decay on this
    /// arena; written under the lock.
    pub(crate) decayed_at: u64,
    /// With a decay delay of 0 (`threads::arena::purge_at_unlock`): the
    /// unpurged tree-bin bytes (`tree_bytes - purged`) after the last purge,
    /// lowered as they fall; the next purge waits until they exceed it by
    /// `DIRTY_FLOOR`. Written under the lock.
    pub(crate) dirty_mark: usize,
    /// The segment a free left empty and kept instead of unmapping it
    /// (see `release_if_empty`), or null. It may have been used again
    /// since: `release_if_empty` looks before it trusts it. Cleared before
    /// its segment is unmapped.
    pub(crate) spare: *mut Segment,
    /// The expensive tier of checks (see `debug`).
    pub(crate) debug: DebugConfig,
    /// The arena's quick lists (see `super::quick`); null for a
    /// standalone heap, which no thread cache flushes into.
    pub(crate) quick: *mut QuickLists,
    /// In a forked child: this arena was created while the parent forked and
    /// may be half-updated; it is never used again and frees into it leak.
    pub(crate) abandoned: bool,
    /// The byte the segment registry holds for each of this heap's segments
    /// (`registry::PLAIN` for a standalone heap, an arena's slot number
    /// plus one for an arena; see [`Heap::set_segment_tag`]).
    pub(crate) segment_tag: u8,
    pub(crate) source: S,
}

/// Debug settings of one heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugConfig {
    /// 0 or 1: cheap checks only (always on). 2: this module's checks.
    pub level: u8,
    /// Full check every `period` operations (0 = never).
    pub period: u32,
    /// Operations since the last full check.
    pub(crate) counter: u32,
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
}

/// What a validated user pointer turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owned {
    /// An in-use chunk inside one of this heap's segments.
    Segment(*mut Chunk),
    /// A live direct chunk of this heap.
    Direct(*mut Chunk),
}
