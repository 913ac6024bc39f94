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
//! For now all threads share one heap behind one lock (see `lock.rs`).

use crate::chunk::{MALLOC_ALIGNMENT, MAX_REQUEST};
use crate::heap::{Heap, State};
use crate::lock::RawLock;
use crate::os::Mmap;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

/// The global allocator: `#[global_allocator] static A: Tessera = Tessera;`
#[derive(Clone, Copy, Debug, Default)]
pub struct Tessera;

struct Global {
    lock: RawLock,
    state: UnsafeCell<*mut State<Mmap>>,
}

// SAFETY: `state` is only read or written with `lock` held.
unsafe impl Sync for Global {}

static GLOBAL: Global = Global {
    lock: RawLock::new(),
    state: UnsafeCell::new(ptr::null_mut()),
};

/// Runs `f` on the global heap with the lock held; None if the heap could
/// not be created.
#[inline(always)]
fn with_heap<R>(f: impl FnOnce(&mut State<Mmap>) -> R) -> Option<R> {
    GLOBAL.lock.lock();
    // SAFETY: the lock is held, so this thread alone uses `state`.
    let r = unsafe {
        let slot = &mut *GLOBAL.state.get();
        if slot.is_null() {
            *slot = create();
        }
        if slot.is_null() {
            None
        } else {
            Some(f(&mut **slot))
        }
    };
    // SAFETY: taken above.
    unsafe { GLOBAL.lock.unlock() };
    r
}

#[cold]
fn create() -> *mut State<Mmap> {
    CONFIG_LOCK.lock();
    // SAFETY: CONFIG is read with its lock held.
    let cfg = unsafe {
        let c = *CONFIG.get();
        CONFIG_LOCK.unlock();
        c
    };
    match Heap::with_config(Mmap, cfg) {
        Some(h) => {
            let raw = h.as_raw();
            core::mem::forget(h);
            raw
        }
        None => ptr::null_mut(),
    }
}

/// Runs `f` on the global heap (creating it if needed), with the lock held.
/// Returns None if the heap cannot be created. For statistics, checks and
/// snapshots of the global heap: `f` must not allocate through the global
/// allocator (that would deadlock).
pub fn with_global_heap<R>(f: impl FnOnce(&mut Heap<Mmap>) -> R) -> Option<R> {
    with_heap(|state| {
        // SAFETY: a temporary handle over the global state, never dropped.
        let mut h = core::mem::ManuallyDrop::new(unsafe { Heap::from_raw(state) });
        f(&mut h)
    })
}

// ---------------------------------------------------------------------
// The C-shaped API of the process-wide allocator. The C library
// (libtessera.so) and the benchmarks call these; none of them allocates
// through anything but Tessera itself, and none sets errno (the C layer
// does).
// ---------------------------------------------------------------------

/// `malloc`: at least `size` bytes, 16-aligned; null on failure.
#[inline]
pub fn malloc(size: usize) -> *mut u8 {
    with_heap(|h| h.malloc(size)).unwrap_or(ptr::null_mut())
}

/// `free`. Null is ignored; misuse is detected where cheaply possible and
/// aborts with a one-line message.
///
/// # Safety
/// `ptr` must be null or live, from this allocator.
#[inline]
pub unsafe fn free(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: forwarded to the caller.
    with_heap(|h| unsafe { h.free(ptr) });
}

/// `calloc`: `n * size` zeroed bytes; null on overflow or failure.
#[inline]
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    with_heap(|h| h.calloc(n, size)).unwrap_or(ptr::null_mut())
}

/// `realloc` with dlmalloc's rules: null `ptr` is `malloc`; `size == 0`
/// frees and returns null; on failure returns null and `ptr` stays valid.
///
/// # Safety
/// `ptr` must be null or live, from this allocator.
#[inline]
pub unsafe fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: forwarded to the caller.
        unsafe { free(ptr) };
        return ptr::null_mut();
    }
    // SAFETY: forwarded to the caller.
    with_heap(|h| unsafe { h.realloc(ptr, size) }).unwrap_or(ptr::null_mut())
}

/// Resizes without moving; returns whether it did.
///
/// # Safety
/// `ptr` must be live, from this allocator.
pub unsafe fn realloc_in_place(ptr: *mut u8, size: usize) -> bool {
    // SAFETY: forwarded to the caller.
    with_heap(|h| unsafe { h.realloc_in_place(ptr, size) }).unwrap_or(false)
}

/// `memalign`: `size` bytes aligned to `align` (rounded up to a power of
/// two); null on failure.
#[inline]
pub fn memalign(align: usize, size: usize) -> *mut u8 {
    with_heap(|h| h.memalign(align, size)).unwrap_or(ptr::null_mut())
}

/// `malloc_usable_size`: 0 for null.
///
/// # Safety
/// `ptr` must be null or live, from this allocator.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        return 0;
    }
    // SAFETY: forwarded to the caller.
    with_heap(|h| unsafe { h.usable_size(ptr) }).unwrap_or(0)
}

/// Does `ptr` look like a live allocation of this allocator? Never aborts.
pub fn owns(ptr: *mut u8) -> bool {
    with_heap(|h| h.owns(ptr)).unwrap_or(false)
}

/// `malloc_trim(pad)`: gives free memory back to the OS everywhere.
/// Returns whether anything was released.
pub fn trim(pad: usize) -> bool {
    with_heap(|h| h.trim(pad)).unwrap_or(false)
}

/// Statistics summed over every heap of the allocator.
pub fn stats() -> crate::Stats {
    with_global_heap(|h| h.stats()).unwrap_or_default()
}

/// Calls `f(index, heap)` for each heap (arena) of the allocator, with that
/// heap locked. `f` must not allocate through the global allocator.
pub fn for_each_heap(f: &mut dyn FnMut(usize, &Heap<Mmap>)) {
    with_global_heap(|h| f(0, h));
}

/// Verifies every heap of the allocator.
pub fn check() -> Result<(), crate::CheckError> {
    with_global_heap(|h| h.check()).unwrap_or(Ok(()))
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
    /// M_ARENA_MAX (0 = default, 8 x cores).
    ArenaMax,
}

/// Sets a tunable for every heap, present and future. Returns false when
/// the value is out of range.
pub fn set_tunable(t: Tunable, value: usize) -> bool {
    CONFIG_LOCK.lock();
    // SAFETY: CONFIG is only touched with CONFIG_LOCK held.
    let ok = unsafe {
        let c = &mut *CONFIG.get();
        match t {
            Tunable::MmapThreshold => {
                if value > crate::segment::MAX_SEGMENT_CHUNK {
                    false
                } else {
                    c.mmap_threshold = value;
                    true
                }
            }
            Tunable::TrimThreshold => {
                c.trim_threshold = value;
                true
            }
            Tunable::TopPad => {
                c.top_pad = value;
                true
            }
            Tunable::MmapMax => {
                c.mmap_max = value;
                true
            }
            Tunable::ArenaMax => true,
        }
    };
    // SAFETY: taken above; reading the copy under the lock.
    let cfg = unsafe {
        let c = *CONFIG.get();
        CONFIG_LOCK.unlock();
        c
    };
    if ok {
        with_global_heap(|h| h.set_config(cfg));
    }
    ok
}

/// The tunables every heap starts with (and `set_tunable` updates).
static CONFIG: ConfigCell = ConfigCell(UnsafeCell::new(crate::heap::Config::DEFAULT));
static CONFIG_LOCK: RawLock = RawLock::new();

struct ConfigCell(UnsafeCell<crate::heap::Config>);
// SAFETY: only accessed with CONFIG_LOCK held.
unsafe impl Sync for ConfigCell {}
impl ConfigCell {
    fn get(&self) -> *mut crate::heap::Config {
        self.0.get()
    }
}

/// Bytes obtained from the OS by all heaps.
pub fn footprint() -> usize {
    with_global_heap(|h| h.footprint()).unwrap_or(0)
}

/// The largest footprint so far (summed per heap).
pub fn max_footprint() -> usize {
    with_global_heap(|h| h.max_footprint()).unwrap_or(0)
}

/// The footprint limit (0 = none).
pub fn footprint_limit() -> usize {
    with_global_heap(|h| h.footprint_limit()).unwrap_or(0)
}

/// Sets the footprint limit for the whole allocator (0 = none); returns the
/// limit in effect.
pub fn set_footprint_limit(bytes: usize) -> usize {
    with_global_heap(|h| h.set_footprint_limit(bytes)).unwrap_or(0)
}

/// Writes a snapshot of every heap (see `inspect`), without allocating.
pub fn write_snapshot(sink: &mut dyn crate::inspect::Sink, max_pages: usize) {
    with_global_heap(|h| h.write_snapshot(sink, max_pages));
}

/// Fork support: call before `fork` (takes the allocator's locks).
pub fn fork_prepare() {
    GLOBAL.lock.lock();
}

/// Fork support: call in the parent after `fork`.
pub fn fork_parent() {
    // SAFETY: taken in fork_prepare by this thread.
    unsafe { GLOBAL.lock.unlock() };
}

/// Fork support: call in the child after `fork`.
pub fn fork_child() {
    // SAFETY: the child has one thread, the one that took the lock.
    unsafe { GLOBAL.lock.reset() };
}

// SAFETY: every pointer returned satisfies the layout (16-byte alignment from
// malloc, more from memalign) and stays valid until freed; pointers passed
// back were returned by this allocator (GlobalAlloc contract).
unsafe impl GlobalAlloc for Tessera {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        with_heap(|h| {
            if align <= MALLOC_ALIGNMENT {
                h.malloc(size)
            } else {
                h.memalign(align, size)
            }
        })
        .unwrap_or(ptr::null_mut())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (caller).
        with_heap(|h| unsafe { h.free(ptr) });
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        with_heap(|h| {
            if align <= MALLOC_ALIGNMENT {
                h.calloc(1, size)
            } else {
                let p = h.memalign(align, size);
                if !p.is_null() {
                    // SAFETY: p is a fresh block of at least `size` bytes.
                    unsafe { ptr::write_bytes(p, 0, size) };
                }
                p
            }
        })
        .unwrap_or(ptr::null_mut())
    }

    #[inline]
    unsafe fn realloc(&self, old: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if new_size >= MAX_REQUEST {
            return ptr::null_mut();
        }
        with_heap(|h| {
            // SAFETY: `old` is live in this allocator with `layout` (caller).
            unsafe {
                if align <= MALLOC_ALIGNMENT {
                    return h.realloc(old, new_size);
                }
                if h.realloc_in_place(old, new_size) {
                    return old;
                }
                let new = h.memalign(align, new_size);
                if !new.is_null() {
                    ptr::copy_nonoverlapping(old, new, layout.size().min(new_size));
                    h.free(old);
                }
                new
            }
        })
        .unwrap_or(ptr::null_mut())
    }
}
