//! `Tessera`, the Rust global allocator.
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: tessera::Tessera = tessera::Tessera;
//! ```
//!
//! Every `Layout` is served: alignments up to 16 go to `malloc`, larger
//! ones to `memalign`. The heap is created on first use from a
//! const-initialised static, so allocations before `main` work, and nothing
//! here allocates through the global allocator itself.
//!
//! Behind it: a per-thread cache of small chunks (no lock on the fast path,
//! see `tcache`) in front of a set of arenas, each a whole dlmalloc heap
//! with its own lock (see `arena`). Frees from other threads never wait:
//! they go to the owner's remote stack when its lock is taken.

use super::arena::{self, Arena};
use super::{decay, tcache};
use crate::heap::chunk::{align_up, request2size, Chunk, MALLOC_ALIGNMENT, MAX_REQUEST};
use crate::heap::classify::classify;
use crate::heap::lists::MAX_CACHED_REQUEST;
use crate::heap::mapping::MmapHeader;
use crate::heap::segment::{Segment, MAX_SEGMENT_CHUNK};
use crate::heap::{CheckError, Heap, Stats};
use crate::sys::os::Mmap;
use crate::sys::registry;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::Ordering;

/// The global allocator: `#[global_allocator] static A: Tessera = Tessera;`
#[derive(Clone, Copy, Debug, Default)]
pub struct Tessera;

// ---------------------------------------------------------------------
// The C-shaped API of the process-wide allocator. The C library
// (libtessera.so) and the benchmarks call these; none of them allocates
// through anything but Tessera itself. Only `malloc` sets errno (ENOMEM,
// on failure, from its slow paths, so that the C layer's `malloc` is one
// tail call); for the rest the C layer does.
// ---------------------------------------------------------------------

/// `malloc`: at least `size` bytes, 16-aligned; null and errno `ENOMEM`
/// on failure.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    tcache::malloc(size)
}

/// `free`. Null is ignored; misuse is detected where cheaply possible and
/// aborts with a one-line message.
///
/// # Safety
/// `ptr` must be null or live, from this allocator.
#[inline]
pub unsafe fn free(ptr: *mut u8) {
    // SAFETY: forwarded to the caller.
    unsafe { tcache::free(ptr) }
}

/// `calloc`: `n * size` zeroed bytes; null on overflow or failure.
#[inline]
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(bytes) = n.checked_mul(size) else {
        return ptr::null_mut();
    };
    if bytes <= MAX_CACHED_REQUEST {
        let p = malloc(bytes);
        if !p.is_null() {
            // SAFETY: a fresh block of at least `bytes` bytes.
            unsafe { ptr::write_bytes(p, 0, bytes) };
        }
        return p;
    }
    arena::with_current(|a| a.calloc(1, bytes)).unwrap_or_else(|| arena::orphan_malloc(bytes))
}

/// `realloc` with dlmalloc's rules: null `ptr` is `malloc`; `size == 0`
/// frees and returns null; on failure returns null and `ptr` stays valid.
/// A chunk is resized within the arena that owns it.
///
/// # Safety
/// `ptr` must be null or live, from this allocator.
pub unsafe fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: forwarded to the caller.
        unsafe { free(ptr) };
        return ptr::null_mut();
    }
    let c = classify(ptr, true);
    if !c.direct {
        tcache::check_realloc(ptr);
    }
    if size >= MAX_REQUEST {
        return ptr::null_mut();
    }
    if !c.owner.is_null() {
        let a: *mut Arena = c.owner.cast();
        // SAFETY: arenas are never freed; `ptr` is live in `a`.
        unsafe {
            if !(*a).abandoned && arena::try_lock_or_wait(a) {
                let r = (*a).realloc(ptr, size);
                arena::unlock(a);
                if !r.is_null() {
                    return r;
                }
            }
        }
    }
    // Move: another arena (or an orphan), copy, free the old block.
    let new = malloc(size);
    if !new.is_null() {
        // SAFETY: both blocks are live; `usable_size` bounds the old one.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, usable_size(ptr).min(size));
            free(ptr);
        }
    }
    new
}

/// Resizes without moving; returns whether it did.
///
/// # Safety
/// `ptr` must be live, from this allocator.
pub unsafe fn realloc_in_place(ptr: *mut u8, size: usize) -> bool {
    let c = classify(ptr, true);
    if c.owner.is_null() {
        return false;
    }
    let a: *mut Arena = c.owner.cast();
    // SAFETY: arenas are never freed; `ptr` is live in `a`.
    unsafe {
        if (*a).abandoned || !arena::try_lock_or_wait(a) {
            return false;
        }
        let ok = (*a).realloc_in_place(ptr, size);
        arena::unlock(a);
        ok
    }
}

/// `memalign`: `size` bytes aligned to `align` (rounded up to a power of
/// two); null on failure.
pub fn memalign(align: usize, size: usize) -> *mut u8 {
    if align <= MALLOC_ALIGNMENT {
        return malloc(size);
    }
    // While another thread forks and every arena is taken, aligned requests
    // wait for the fork to end (unlike malloc, they have no orphan escape;
    // the stdio paths that fork can deadlock against never memalign).
    loop {
        if let Some(p) = arena::with_current(|a| a.memalign(align, size)) {
            return p;
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// `malloc_usable_size`: 0 for null.
///
/// # Safety
/// `ptr` must be null or live, from this allocator.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        return 0;
    }
    classify(ptr, false);
    // SAFETY: validated: an in-use chunk whose size bits only its owner's
    // thread changes, and never while it is in use.
    unsafe { Chunk::usable_size(Chunk::from_mem(ptr)) }
}

/// Does `ptr` look like a live allocation of this allocator? Never aborts.
pub fn owns(ptr: *mut u8) -> bool {
    if ptr.is_null() || ptr as usize & 15 != 0 {
        return false;
    }
    let p = Chunk::from_mem(ptr);
    let seg = Segment::of(p.cast());
    // SAFETY: records are read only after the registry vouches for them.
    unsafe {
        if Segment::is_live(seg) {
            Segment::holds(seg, p.cast()) && Chunk::cinuse(p)
        } else {
            registry::is_direct(p as usize) && !MmapHeader::of_chunk(p).is_null()
        }
    }
}

/// `malloc_trim(pad)`: empties the calling thread's cache and gives free
/// memory back to the OS in every arena. Returns whether anything was
/// released.
pub fn trim(pad: usize) -> bool {
    tcache::flush_current();
    let mut any = false;
    arena::for_each(&mut |_, a| {
        // SAFETY: locked by for_each.
        any |= unsafe { (*a).trim(pad) };
    });
    any
}

/// Statistics summed over every arena (chunks in thread caches count as in
/// use; chunks parked on the arenas' quick lists as free, in
/// `smblks`/`fsmblks`). `max_footprint` is the peak of the process-wide
/// total.
pub fn stats() -> Stats {
    let mut total = Stats::default();
    arena::for_each(&mut |_, a| {
        // SAFETY: locked by for_each.
        let s = unsafe { (*a).stats() };
        total.arena += s.arena;
        total.ordblks += s.ordblks;
        total.smblks += s.smblks;
        total.fsmblks += s.fsmblks;
        total.hblks += s.hblks;
        total.hblkhd += s.hblkhd;
        total.uordblks += s.uordblks;
        total.fordblks += s.fordblks;
        total.keepcost += s.keepcost;
        total.footprint += s.footprint;
        total.inuse_chunks += s.inuse_chunks;
        total.segments += s.segments;
        total.purged += s.purged;
        total.max_hblks += s.max_hblks;
        total.max_hblkhd += s.max_hblkhd;
        total.max_arena += s.max_arena;
    });
    total.max_footprint = arena::SHARED.peak.load(Ordering::Relaxed);
    total
}

/// Calls `f(index, heap)` for each arena, with that arena locked. `f` must
/// not allocate through the global allocator (that could deadlock).
pub fn for_each_heap(f: &mut dyn FnMut(usize, &Heap<Mmap>)) {
    arena::for_each(&mut |i, a| {
        // SAFETY: a temporary handle over a locked arena, never dropped.
        let h = core::mem::ManuallyDrop::new(unsafe { Heap::from_raw(a) });
        f(i, &h);
    });
}

/// Verifies every arena.
pub fn check() -> Result<(), CheckError> {
    let mut r = Ok(());
    arena::for_each(&mut |_, a| {
        if r.is_ok() {
            // SAFETY: locked by for_each.
            r = unsafe { (*a).check() };
        }
    });
    r
}

/// Tunables of the process-wide allocator (glibc's `mallopt` codes map here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunable {
    /// M_MMAP_THRESHOLD.
    MmapThreshold,
    /// M_TRIM_THRESHOLD.
    TrimThreshold,
    /// M_TOP_PAD.
    TopPad,
    /// M_MMAP_MAX.
    MmapMax,
    /// M_ARENA_MAX (0 = default: 2 x cores, or one arena per two threads
    /// once there are more than 4 x cores of them, at most 8 x cores).
    ArenaMax,
    /// Bytes each thread may keep in the medium classes of its cache
    /// (1-64 KiB blocks; default 128 KiB, at most 16 MiB). 0 turns the
    /// medium classes off: such requests are then neither rounded up to a
    /// class nor cached, for the least memory.
    MediumCache,
    /// Milliseconds an arena must sit unused before it gives back
    /// everything it holds (see `decay`; default 1000, at most one hour).
    DecayMs,
    /// The background thread that gives memory back (see `decay`): 0
    /// never, 1 once a second thread uses the allocator (default), 2 from
    /// the start.
    Background,
    /// M_PERTURB: 0 = off (the default); otherwise blocks handed out are
    /// filled with `!(value as u8)` and freed blocks with `value as u8`
    /// (see `Config::perturb`). While on, the thread caches stand aside so
    /// that every block is filled.
    Perturb,
    /// M_MXFAST: chunks of requests up to this many bytes are parked on
    /// the arenas' quick lists (0: none; at most 1032, every small class,
    /// which is the default).
    MaxFast,
    /// M_ARENA_TEST: without M_ARENA_MAX, this many arenas may exist
    /// before the number of cores limits them (default: none, the cores
    /// decide; glibc's is 8; at least 1).
    ArenaTest,
}

/// Sets a tunable for every arena, present and future. Returns false when
/// the value is out of range.
pub fn set_tunable(t: Tunable, value: usize) -> bool {
    match t {
        Tunable::MmapThreshold if value > MAX_SEGMENT_CHUNK => return false,
        Tunable::MaxFast if value > MAX_CACHED_REQUEST => return false,
        Tunable::ArenaMax => {
            arena::set_limit(value);
            return true;
        }
        Tunable::ArenaTest => {
            arena::set_arena_test(value);
            return true;
        }
        Tunable::MediumCache => return tcache::set_medium_budget(value),
        Tunable::DecayMs => {
            if value > 3_600_000 {
                return false;
            }
            decay::set_delay_ms(value);
            return true;
        }
        Tunable::Background => {
            let b = match value {
                0 => decay::Background::Off,
                1 => decay::Background::Auto,
                2 => decay::Background::On,
                _ => return false,
            };
            decay::set_background(b);
            return true;
        }
        Tunable::Perturb => {
            let byte = (value != 0).then_some(value as u8);
            arena::update_config(|c| c.perturb = byte);
            tcache::set_perturbing(byte.is_some());
            tcache::reconsider_current();
            return true;
        }
        Tunable::MaxFast => {
            let chunk = if value == 0 { 0 } else { request2size(value) };
            arena::update_config(|c| c.max_fast = chunk);
            return true;
        }
        _ => {}
    }
    arena::update_config(|c| {
        match t {
            Tunable::MmapThreshold => c.mmap_threshold = value,
            Tunable::TrimThreshold => c.trim_threshold = value,
            Tunable::TopPad => c.top_pad = value,
            Tunable::MmapMax => c.mmap_max = value,
            _ => {}
        }
        // As in glibc, choosing a threshold by hand ends the dynamic rule.
        c.dynamic_threshold = false;
    });
    true
}

/// Bytes obtained from the OS by all arenas.
pub fn footprint() -> usize {
    arena::SHARED.total.load(Ordering::Relaxed)
}

/// The largest footprint so far.
pub fn max_footprint() -> usize {
    arena::SHARED.peak.load(Ordering::Relaxed)
}

/// The process-wide footprint limit (0 = none).
pub fn footprint_limit() -> usize {
    arena::SHARED.limit.load(Ordering::Relaxed)
}

/// Sets the process-wide footprint limit, rounded up to pages (0 = none);
/// returns the limit in effect.
pub fn set_footprint_limit(bytes: usize) -> usize {
    let limit = if bytes == 0 || bytes > usize::MAX - 4096 {
        0
    } else {
        align_up(bytes, 4096)
    };
    arena::SHARED.limit.store(limit, Ordering::Relaxed);
    limit
}

/// Fork support: call before `fork`. The allocator registers these three
/// with `pthread_atfork` itself on first use (unless
/// [`leave_fork_handlers_to_embedder`] was called); registering them again
/// is harmless (nested calls do nothing). With one thread in the process
/// they do nothing at all, so a signal handler may fork.
pub fn fork_prepare() {
    arena::fork_prepare();
}

/// For an embedder that calls [`fork_prepare`], [`fork_parent`] and
/// [`fork_child`] from fork handlers of its own, in an order it must
/// choose (libtessera.so takes stdio's list lock first): the allocator
/// will not register its own. Call it before the first allocation;
/// returns false if they were registered already.
pub fn leave_fork_handlers_to_embedder() -> bool {
    arena::leave_fork_handlers_to_embedder()
}

/// Fork support: call in the parent after `fork`.
pub fn fork_parent() {
    arena::fork_parent();
}

/// Fork support: call in the child after `fork`.
pub fn fork_child() {
    arena::fork_child();
}

/// Empties the calling thread's cache into the arenas (it refills on the
/// next small malloc). Threads flush automatically when they exit.
pub fn flush_thread_cache() {
    tcache::flush_current();
}

/// Sets the check level of every arena (`TESSERA_CHECK`): 2 turns on the
/// debug tier (see `debug`): freed memory filled and verified on reuse,
/// and a full check every `period` operations. 0 and 1 leave the cheap,
/// always-on checks alone. Set it before the first allocation to keep
/// thread caches out of the way.
pub fn set_check_level(level: u8, period: u32) {
    arena::set_debug(level, period);
}

/// Number of arenas created so far.
pub fn arena_count() -> usize {
    arena::count()
}

// SAFETY: every pointer returned satisfies the layout (16-byte alignment from
// malloc, more from memalign) and stays valid until freed; pointers passed
// back were returned by this allocator (GlobalAlloc contract).
unsafe impl GlobalAlloc for Tessera {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGNMENT {
            malloc(layout.size())
        } else {
            memalign(layout.align(), layout.size())
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (caller).
        unsafe { free(ptr) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGNMENT {
            calloc(1, layout.size())
        } else {
            let p = memalign(layout.align(), layout.size());
            if !p.is_null() {
                // SAFETY: p is a fresh block of at least `size` bytes.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        }
    }

    #[inline]
    unsafe fn realloc(&self, old: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGNMENT {
            // SAFETY: `old` is live with `layout` (caller); new_size > 0.
            return unsafe { realloc(old, new_size) };
        }
        // SAFETY: as above.
        unsafe {
            if realloc_in_place(old, new_size) {
                return old;
            }
            let new = memalign(layout.align(), new_size);
            if !new.is_null() {
                ptr::copy_nonoverlapping(old, new, layout.size().min(new_size));
                free(old);
            }
            new
        }
    }
}
