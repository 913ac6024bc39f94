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
    match Heap::try_new() {
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
