//! The C allocation API: what `stdlib.h` and `malloc.h` declare.
//!
//! Each function is one call into `tessera_core::global` plus the C rules
//! the core leaves to us: errno, the argument checks of the aligned
//! allocators, overflow checks, and the hooks of [`crate::runtime`]
//! (tracing, per-call checks) when the mode word asks for them.
//!
//! | call | rule |
//! |---|---|
//! | `malloc(0)` | a unique pointer that can be freed |
//! | failure | NULL and `ENOMEM`; success leaves errno as it was |
//! | `realloc(NULL, n)` | `malloc(n)` |
//! | `realloc(p, 0)` | frees `p`, returns NULL (glibc's choice), errno unchanged |
//! | `realloc` failure | NULL, `ENOMEM`, `p` intact |
//! | `calloc`, `reallocarray` overflow | NULL and `ENOMEM` |
//! | `memalign(a, n)` | `a` > SIZE_MAX/2+1: `EINVAL`; other non-powers of two round up |
//! | `aligned_alloc(a, n)` | glibc 2.38: `a` = 0 or not a power of two: `EINVAL` |
//! | `posix_memalign` | `EINVAL`/`ENOMEM` returned and set in errno |
//! | `valloc`, `pvalloc` | page aligned; `pvalloc` rounds the size up to a page |
//!
//! `aligned_alloc` differs from glibc 2.36 (the system this was written
//! on), where it was an alias of `memalign` and accepted any alignment; we
//! follow glibc 2.38 and C17/C23, see `docs/c-library.md`.

use crate::errno::Errno;
use crate::runtime::{self, mode, READY, TRACING};
use core::ffi::{c_int, c_void};
use core::ptr;
use tessera_core::global;
use tessera_core::heap::chunk::MALLOC_ALIGNMENT;
use tessera_core::inspect::trace::Event;

/// The page size (`valloc`, `pvalloc`).
pub const PAGE: usize = tessera_core::sys::os::PAGE_SIZE;

/// The largest alignment `memalign` accepts (glibc's limit).
pub const MAX_ALIGN: usize = usize::MAX / 2 + 1;

/// `malloc(size)`.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    if !runtime::ready() {
        return traced_malloc(size);
    }
    // The core keeps errno intact on its slow paths (its fast paths make
    // no system call) and sets ENOMEM on failure.
    global::malloc(size).cast()
}

/// `malloc` while set-up has not finished or calls are being recorded
/// (set-up, if it has not happened, runs here).
#[cold]
#[inline(never)]
extern "C" fn traced_malloc(size: usize) -> *mut c_void {
    let m = mode();
    let e = Errno::save();
    let p = global::malloc(size);
    runtime::after(
        m,
        Event::Malloc {
            size,
            ret: p as usize,
        },
    );
    e.finish(p)
}

/// `free(ptr)`.
///
/// # Safety
/// `ptr` is null or a live block of this allocator.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    if !runtime::ready() {
        // SAFETY: forwarded to the caller.
        return unsafe { traced_free(ptr) };
    }
    // SAFETY: a live block (caller). errno: as in `malloc`.
    unsafe { global::free(ptr.cast()) };
}

/// `free` while set-up has not finished or calls are being recorded (set-up,
/// if it has not happened, runs here).
///
/// # Safety
/// As for `free`.
#[cold]
#[inline(never)]
unsafe extern "C" fn traced_free(ptr: *mut c_void) {
    let m = mode();
    let e = Errno::save();
    runtime::before_free(m, Event::Free { ptr: ptr as usize });
    // SAFETY: a live block (caller).
    unsafe { global::free(ptr.cast()) };
    e.restore();
}

/// `calloc(n, size)`: zeroed; NULL and `ENOMEM` if `n * size` overflows.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let m = mode();
    let e = Errno::save();
    let p = global::calloc(n, size);
    if m != READY {
        runtime::after(
            m,
            Event::Calloc {
                n,
                size,
                ret: p as usize,
            },
        );
    }
    e.finish(p)
}

/// `realloc(ptr, size)` (see the module table).
///
/// # Safety
/// `ptr` is null or a live block of this allocator.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let m = mode();
    let e = Errno::save();
    if m & TRACING != 0 {
        // SAFETY: forwarded to the caller.
        return unsafe { traced_realloc(m, &e, ptr.cast(), size) };
    }
    // SAFETY: forwarded to the caller.
    let p = unsafe { global::realloc(ptr.cast(), size) };
    if p.is_null() && !ptr.is_null() && size == 0 {
        // realloc(p, 0) freed p: a success that returns NULL.
        e.restore();
        return ptr::null_mut();
    }
    e.finish(p)
}

/// `realloc` while recording: the new block is made (or the old one
/// resized in place) before the record, and the old block freed after it,
/// so that no other thread can be handed the old address before the
/// record's `seq` (see [`crate::trace`]).
///
/// # Safety
/// `old` is null or a live block of this allocator.
#[cold]
unsafe fn traced_realloc(m: u8, e: &Errno, old: *mut u8, size: usize) -> *mut c_void {
    let rec = |ret: *mut u8| Event::Realloc {
        ptr: old as usize,
        size,
        ret: ret as usize,
    };
    if old.is_null() {
        let p = global::malloc(size);
        runtime::after(m, rec(p));
        return e.finish(p);
    }
    if size == 0 {
        runtime::before_free(m, rec(ptr::null_mut()));
        // SAFETY: a live block (caller).
        unsafe { global::free(old) };
        e.restore();
        return ptr::null_mut();
    }
    // SAFETY: a live block (caller).
    if unsafe { global::realloc_in_place(old, size) } {
        runtime::after(m, rec(old));
        e.restore();
        return old.cast();
    }
    let new = global::malloc(size);
    if new.is_null() {
        runtime::after(m, rec(new));
        return e.finish(new);
    }
    // SAFETY: `old` is live with at least its usable size readable; `new`
    // is a fresh block of at least `size` bytes; they do not overlap.
    unsafe {
        let keep = global::usable_size(old).min(size);
        ptr::copy_nonoverlapping(old, new, keep);
    }
    runtime::after(m, rec(new));
    // SAFETY: `old` is still live; its contents were copied.
    unsafe { global::free(old) };
    e.restore();
    new.cast()
}

/// `reallocarray(ptr, n, size)`: `realloc(ptr, n * size)`, NULL and
/// `ENOMEM` on overflow (with `ptr` untouched).
///
/// # Safety
/// `ptr` is null or a live block of this allocator.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded to the caller.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            crate::errno::set(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// An aligned block, recorded as `memalign` when tracing. `align` has
/// been checked by the caller.
#[inline]
fn aligned(m: u8, align: usize, size: usize) -> *mut u8 {
    let p = if align <= MALLOC_ALIGNMENT {
        global::malloc(size)
    } else {
        global::memalign(align, size)
    };
    if m != READY {
        runtime::after(
            m,
            Event::Memalign {
                align,
                size,
                ret: p as usize,
            },
        );
    }
    p
}

/// `memalign(align, size)`: a non-power-of-two alignment is rounded up to
/// the next power of two, as glibc does; beyond SIZE_MAX/2+1 it is
/// `EINVAL`.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let m = mode();
    let e = Errno::save();
    if align > MAX_ALIGN {
        e.fail(libc::EINVAL);
        return ptr::null_mut();
    }
    e.finish(aligned(m, align, size))
}

/// `aligned_alloc(align, size)` (C17 as implemented by glibc 2.38): any
/// power of two, 1 included, with any size; 0 or a non-power-of-two is
/// `EINVAL`.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    let m = mode();
    let e = Errno::save();
    if !align.is_power_of_two() {
        e.fail(libc::EINVAL);
        return ptr::null_mut();
    }
    e.finish(aligned(m, align, size))
}

/// `posix_memalign(out, align, size)`: returns 0, `EINVAL` (alignment not
/// a power-of-two multiple of `sizeof(void *)`) or `ENOMEM`, and sets
/// errno to the code it returns (glibc does for `ENOMEM`); `*out` is
/// written only on success, and success leaves errno alone.
///
/// # Safety
/// `out` must be valid for a pointer write.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    const WORD: usize = core::mem::size_of::<*mut c_void>();
    if align % WORD != 0 || !(align / WORD).is_power_of_two() {
        crate::errno::set(libc::EINVAL);
        return libc::EINVAL;
    }
    let m = mode();
    let e = Errno::save();
    let p = aligned(m, align, size);
    if p.is_null() {
        e.fail(libc::ENOMEM);
        return libc::ENOMEM;
    }
    e.restore();
    // SAFETY: `out` is writable (caller).
    unsafe { out.write(p.cast()) };
    0
}

/// `valloc(size)`: page aligned.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    let m = mode();
    let e = Errno::save();
    e.finish(aligned(m, PAGE, size))
}

/// `pvalloc(size)`: page aligned, the size rounded up to whole pages.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let m = mode();
    let e = Errno::save();
    let Some(padded) = size.checked_add(PAGE - 1) else {
        e.fail(libc::ENOMEM);
        return ptr::null_mut();
    };
    e.finish(aligned(m, PAGE, padded & !(PAGE - 1)))
}

/// `malloc_usable_size(ptr)`: 0 for NULL, else at least what was asked.
///
/// # Safety
/// `ptr` is null or a live block of this allocator.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if ptr.is_null() {
        return 0;
    }
    let _ = mode();
    // SAFETY: a live block (caller).
    unsafe { global::usable_size(ptr.cast()) }
}

/// C23 `free_sized(ptr, size)`: `free`; the size is a hint we do not need.
///
/// # Safety
/// `ptr` is null or a live block of this allocator.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, _size: usize) {
    // SAFETY: forwarded to the caller.
    unsafe { free(ptr) }
}

/// C23 `free_aligned_sized(ptr, align, size)`: `free`.
///
/// # Safety
/// `ptr` is null or a live block of this allocator.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: forwarded to the caller.
    unsafe { free(ptr) }
}

#[cfg(test)]
mod tests {
    //! The C rules, called as Rust functions (the test build does not
    //! export them, so the test harness keeps glibc's malloc for itself).
    use super::*;

    fn errno() -> c_int {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() }
    }

    #[test]
    fn errors_set_errno_and_successes_keep_it() {
        crate::errno::set(1234);
        let p = malloc(0);
        assert!(!p.is_null());
        assert_eq!(errno(), 1234);
        assert!(malloc(usize::MAX - 64).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        crate::errno::set(0);
        assert!(calloc(usize::MAX / 2, 3).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        // SAFETY: `p` is live.
        unsafe {
            crate::errno::set(0);
            assert!(reallocarray(p, usize::MAX / 2, 3).is_null());
            assert_eq!(errno(), libc::ENOMEM);
            crate::errno::set(0);
            assert!(realloc(p, usize::MAX - 64).is_null());
            assert_eq!(errno(), libc::ENOMEM);
            crate::errno::set(77);
            assert!(realloc(p, 0).is_null(), "realloc(p, 0) frees");
            assert_eq!(errno(), 77);
            free(ptr::null_mut());
            assert_eq!(malloc_usable_size(ptr::null_mut()), 0);
        }
    }

    #[test]
    fn alignment_rules() {
        for bad in [0, 3, 24, 1000] {
            crate::errno::set(0);
            assert!(aligned_alloc(bad, 8).is_null(), "align {bad}");
            assert_eq!(errno(), libc::EINVAL);
        }
        let p = aligned_alloc(1, 1);
        assert!(!p.is_null());
        // SAFETY: live blocks from this allocator.
        unsafe { free(p) };
        crate::errno::set(0);
        assert!(aligned_alloc(MAX_ALIGN, 1).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        crate::errno::set(0);
        assert!(memalign(MAX_ALIGN + 1, 1).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let p = memalign(48, 10);
        assert_eq!(p as usize % 64, 0, "48 rounds up to 64");
        // SAFETY: as above.
        unsafe { free(p) };
        let mut out = ptr::null_mut();
        for bad in [0, 4, 12, 24, 40] {
            crate::errno::set(5);
            // SAFETY: `out` is writable.
            assert_eq!(unsafe { posix_memalign(&mut out, bad, 8) }, libc::EINVAL);
            assert!(out.is_null());
            assert_eq!(errno(), libc::EINVAL, "the code is set in errno too");
        }
        crate::errno::set(5);
        // SAFETY: `out` is writable.
        assert_eq!(
            unsafe { posix_memalign(&mut out, MAX_ALIGN, 8) },
            libc::ENOMEM
        );
        assert_eq!(errno(), libc::ENOMEM);
        crate::errno::set(5);
        // SAFETY: `out` is writable.
        assert_eq!(unsafe { posix_memalign(&mut out, 64, 8) }, 0);
        assert_eq!(errno(), 5, "success leaves errno alone");
        // SAFETY: a live block.
        unsafe { free(out) };
        let p = pvalloc(1);
        assert_eq!(p as usize % PAGE, 0);
        // SAFETY: live block.
        unsafe {
            assert!(malloc_usable_size(p) >= PAGE);
            free(p);
        }
        crate::errno::set(0);
        assert!(pvalloc(usize::MAX - 10).is_null());
        assert_eq!(errno(), libc::ENOMEM);
    }
}
