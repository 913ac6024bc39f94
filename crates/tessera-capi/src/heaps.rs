//! The extra API of `include/tessera.h`: separate heaps (dlmalloc's
//! mspaces), footprint and its limit, checks and snapshots.
//!
//! # Separate heaps
//! A `tessera_heap *` points to a [`Handle`]: a lock, the core's
//! [`Heap`] (one pointer: its state lives inside the heap's own first
//! segment) and the links of the list of all handles. The handle's storage
//! comes from the process-wide allocator (`tessera_core::global::malloc`),
//! not from the heap itself, so destroying the heap unmaps every byte the
//! heap ever mapped and then frees the handle.
//!
//! Each call locks the handle, so one heap may be shared between threads.
//! The list exists for fork: this module's fork handlers, registered when
//! the first heap is created, lock the list, then every heap on it, so a
//! child can go on using any heap. (Registered after the runtime's, they
//! run first before `fork` and last after it: stdio's list lock, the heaps,
//! then the trace recorder, then the arenas, and back in reverse; see
//! [`crate::fork`].)
//!
//! Blocks of a separate heap must be freed with `tessera_heap_free` on the
//! same heap; `free()` of such a block (or `tessera_heap_free` of a block
//! of another heap) is detected by the core and aborts with a message.
//! Calls on separate heaps are not recorded by `TESSERA_TRACE`.

use crate::errno::Errno;
use crate::out::{fwrite_all, StackBuf};
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::fmt::Write;
use core::mem::ManuallyDrop;
use core::ptr;
use core::sync::atomic::AtomicBool;
use tessera_core::global;
use tessera_core::sys::fork::ForkGate;
use tessera_core::sys::lock::RawLock;
use tessera_core::{Heap, Stats};

/// The object behind a `tessera_heap *`.
pub struct Handle {
    lock: RawLock,
    heap: ManuallyDrop<Heap>,
    prev: *mut Handle,
    next: *mut Handle,
}

/// The statistics of `struct tessera_stats` (same fields as [`Stats`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TesseraStats {
    /// Bytes committed in segments.
    pub arena: usize,
    /// Free chunks, top included.
    pub ordblks: usize,
    /// Directly mapped chunks.
    pub hblks: usize,
    /// Bytes mapped for them.
    pub hblkhd: usize,
    /// Bytes in use within segments.
    pub uordblks: usize,
    /// Bytes free within segments, top included.
    pub fordblks: usize,
    /// Size of the top chunk.
    pub keepcost: usize,
    /// Bytes obtained from the OS now.
    pub footprint: usize,
    /// The most ever obtained at once.
    pub max_footprint: usize,
    /// In-use chunks in segments.
    pub inuse_chunks: usize,
    /// Segments.
    pub segments: usize,
}

impl From<Stats> for TesseraStats {
    fn from(s: Stats) -> Self {
        TesseraStats {
            arena: s.arena,
            ordblks: s.ordblks,
            hblks: s.hblks,
            hblkhd: s.hblkhd,
            uordblks: s.uordblks,
            fordblks: s.fordblks,
            keepcost: s.keepcost,
            footprint: s.footprint,
            max_footprint: s.max_footprint,
            inuse_chunks: s.inuse_chunks,
            segments: s.segments,
        }
    }
}

/// Every live handle, for the fork handlers.
struct List {
    lock: RawLock,
    head: UnsafeCell<*mut Handle>,
}
// SAFETY: `head` and the links of the handles on the list are only touched
// with `lock` held.
unsafe impl Sync for List {}
static LIST: List = List {
    lock: RawLock::new(),
    head: UnsafeCell::new(ptr::null_mut()),
};

/// Runs `f` on the heap of `h` with its lock held.
///
/// # Safety
/// `h` must be a live handle from [`tessera_heap_create`].
unsafe fn with<R>(h: *mut Handle, f: impl FnOnce(&mut Heap) -> R) -> R {
    // SAFETY: a live handle (caller); the heap is only used with its lock.
    unsafe {
        (*h).lock.lock();
        let r = f(&mut (*h).heap);
        (*h).lock.unlock();
        r
    }
}

/// `tessera_heap_create()`: a new empty heap, or NULL and `ENOMEM`.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn tessera_heap_create() -> *mut Handle {
    let _ = crate::runtime::mode();
    let e = Errno::save();
    ensure_atfork();
    let h: *mut Handle = global::malloc(core::mem::size_of::<Handle>()).cast();
    if h.is_null() {
        e.fail(libc::ENOMEM);
        return h;
    }
    let Some(heap) = Heap::try_new() else {
        // SAFETY: the block just allocated, unused.
        unsafe { global::free(h.cast()) };
        e.fail(libc::ENOMEM);
        return ptr::null_mut();
    };
    LIST.lock.lock();
    // SAFETY: `h` is a fresh block of the handle's size, 16-aligned; the
    // list is locked while it is linked in.
    unsafe {
        let head = LIST.head.get();
        h.write(Handle {
            lock: RawLock::new(),
            heap: ManuallyDrop::new(heap),
            prev: ptr::null_mut(),
            next: *head,
        });
        if !(*head).is_null() {
            (**head).prev = h;
        }
        *head = h;
        LIST.lock.unlock();
    }
    e.restore();
    h
}

/// `tessera_heap_destroy(h)`: unmaps everything the heap holds. NULL is
/// ignored.
///
/// # Safety
/// `h` is null or a live handle that no other thread is using.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_destroy(h: *mut Handle) {
    if h.is_null() {
        return;
    }
    let e = Errno::save();
    LIST.lock.lock();
    // SAFETY: a live handle (caller) on the list, which is locked.
    unsafe {
        let (prev, next) = ((*h).prev, (*h).next);
        if prev.is_null() {
            *LIST.head.get() = next;
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
        LIST.lock.unlock();
        (*h).lock.lock();
        ManuallyDrop::drop(&mut (*h).heap);
        global::free(h.cast());
    }
    e.restore();
}

/// `tessera_heap_malloc(h, n)`.
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_malloc(h: *mut Handle, n: usize) -> *mut c_void {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return ptr::null_mut();
    }
    let e = Errno::save();
    // SAFETY: a live handle (caller).
    e.finish(unsafe { with(h, |heap| heap.malloc(n)) })
}

/// `tessera_heap_calloc(h, n, size)`.
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_calloc(h: *mut Handle, n: usize, size: usize) -> *mut c_void {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return ptr::null_mut();
    }
    let e = Errno::save();
    // SAFETY: a live handle (caller).
    e.finish(unsafe { with(h, |heap| heap.calloc(n, size)) })
}

/// `tessera_heap_free(h, p)`; NULL `p` is ignored.
///
/// # Safety
/// `h` is a live handle; `p` is null or a live block of it.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_free(h: *mut Handle, p: *mut c_void) {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return;
    }
    if p.is_null() {
        return;
    }
    let e = Errno::save();
    // SAFETY: a live handle and block (caller).
    unsafe { with(h, |heap| heap.free(p.cast())) };
    e.restore();
}

/// `tessera_heap_realloc(h, p, n)`: `realloc`'s rules on heap `h`.
///
/// # Safety
/// `h` is a live handle; `p` is null or a live block of it.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_realloc(
    h: *mut Handle,
    p: *mut c_void,
    n: usize,
) -> *mut c_void {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return ptr::null_mut();
    }
    let e = Errno::save();
    // SAFETY: a live handle and block (caller).
    let r = unsafe { with(h, |heap| heap.realloc(p.cast(), n)) };
    if r.is_null() && !p.is_null() && n == 0 {
        e.restore();
        return ptr::null_mut();
    }
    e.finish(r)
}

/// `tessera_heap_memalign(h, align, n)`: `memalign`'s rules on heap `h`.
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_memalign(
    h: *mut Handle,
    align: usize,
    n: usize,
) -> *mut c_void {
    let e = Errno::save();
    if h.is_null() || align > crate::exports::MAX_ALIGN {
        e.fail(libc::EINVAL);
        return ptr::null_mut();
    }
    // SAFETY: a live handle (caller).
    e.finish(unsafe { with(h, |heap| heap.memalign(align, n)) })
}

/// `tessera_heap_usable_size(h, p)`: 0 for NULL.
///
/// # Safety
/// `h` is a live handle; `p` is null or a live block of it.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_usable_size(h: *mut Handle, p: *mut c_void) -> usize {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return 0;
    }
    if p.is_null() {
        return 0;
    }
    // SAFETY: a live handle and block (caller).
    unsafe { with(h, |heap| heap.usable_size(p.cast())) }
}

/// `tessera_heap_trim(h, pad)`: 1 if memory went back to the OS.
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_trim(h: *mut Handle, pad: usize) -> c_int {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return 0;
    }
    let e = Errno::save();
    // SAFETY: a live handle (caller).
    let r = unsafe { with(h, |heap| heap.trim(pad)) };
    e.restore();
    c_int::from(r)
}

/// `tessera_heap_stats(h, out)`.
///
/// # Safety
/// `h` is a live handle; `out` is valid for a write.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_stats(h: *mut Handle, out: *mut TesseraStats) {
    if h.is_null() || out.is_null() {
        crate::errno::set(libc::EINVAL);
        return;
    }
    // SAFETY: a live handle, a writable `out` (caller).
    unsafe {
        let s = with(h, |heap| heap.stats());
        out.write(s.into());
    }
}

extern "C" {
    static mut stderr: *mut libc::FILE;
}

/// The C `stderr` stream.
pub fn stderr_stream() -> *mut libc::FILE {
    // SAFETY: reading libc's `stderr` pointer, set before any user code.
    unsafe { ptr::addr_of!(stderr).read() }
}

/// `tessera_heap_malloc_stats(h)`: like `malloc_stats`, for one heap.
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_malloc_stats(h: *mut Handle) {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return;
    }
    // SAFETY: a live handle (caller).
    let s = unsafe { with(h, |heap| heap.stats()) };
    let mut b = StackBuf::<512>::new();
    let _ = write!(
        b,
        "Heap {h:p}:\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\n\
         mmap regions     = {:>10}\nmmap bytes       = {:>10}\n",
        s.arena + s.hblkhd,
        s.uordblks + s.hblkhd,
        s.hblks,
        s.hblkhd
    );
    let e = Errno::save();
    // SAFETY: stderr is a valid stream; no allocator lock is held.
    unsafe { fwrite_all(stderr_stream(), b.as_bytes()) };
    e.restore();
}

/// `tessera_heap_footprint(h)`: bytes the heap has from the OS.
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_footprint(h: *mut Handle) -> usize {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return 0;
    }
    // SAFETY: a live handle (caller).
    unsafe { with(h, |heap| heap.footprint()) }
}

/// `tessera_heap_max_footprint(h)`.
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_max_footprint(h: *mut Handle) -> usize {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return 0;
    }
    // SAFETY: a live handle (caller).
    unsafe { with(h, |heap| heap.max_footprint()) }
}

/// `tessera_heap_footprint_limit(h)`: 0 = none.
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_footprint_limit(h: *mut Handle) -> usize {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return 0;
    }
    // SAFETY: a live handle (caller).
    unsafe { with(h, |heap| heap.footprint_limit()) }
}

/// `tessera_heap_set_footprint_limit(h, bytes)`: returns the limit in
/// effect (rounded up to pages; 0 = none).
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_set_footprint_limit(h: *mut Handle, bytes: usize) -> usize {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return 0;
    }
    // SAFETY: a live handle (caller).
    unsafe { with(h, |heap| heap.set_footprint_limit(bytes)) }
}

/// Prints a failed check as one line on stderr and sets errno to
/// `ENOTRECOVERABLE` (the heap is corrupted).
fn report_check(err: tessera_core::CheckError) {
    let mut line = StackBuf::<512>::new();
    let _ = writeln!(line, "tessera: {err}");
    crate::out::stderr_raw(line.as_bytes());
    crate::errno::set(libc::ENOTRECOVERABLE);
}

/// `tessera_heap_check(h)`: 0 if consistent, else -1 after a line on
/// stderr (errno `ENOTRECOVERABLE`; `EINVAL` for a NULL handle).
///
/// # Safety
/// `h` is a live handle.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_check(h: *mut Handle) -> c_int {
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return -1;
    }
    // SAFETY: a live handle (caller).
    match unsafe { with(h, |heap| heap.check()) } {
        Ok(()) => 0,
        Err(err) => {
            report_check(err);
            -1
        }
    }
}

/// Turns a C path into a `CStr`; None (and `EINVAL`) for NULL.
///
/// # Safety
/// `path` is null or NUL-terminated.
unsafe fn c_path<'a>(path: *const c_char) -> Option<&'a CStr> {
    if path.is_null() {
        crate::errno::set(libc::EINVAL);
        None
    } else {
        // SAFETY: NUL-terminated (caller).
        Some(unsafe { CStr::from_ptr(path) })
    }
}

/// `tessera_heap_write_snapshot(h, path, max_pages)`: writes the heap in
/// the snapshot format of `tessera::inspect`; 0, or -1 with errno.
///
/// # Safety
/// `h` is a live handle; `path` is null or NUL-terminated.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_heap_write_snapshot(
    h: *mut Handle,
    path: *const c_char,
    max_pages: usize,
) -> c_int {
    // SAFETY: forwarded to the caller.
    let Some(path) = (unsafe { c_path(path) }) else {
        return -1;
    };
    if h.is_null() {
        crate::errno::set(libc::EINVAL);
        return -1;
    }
    let ok = crate::out::write_file(path, |sink| {
        // SAFETY: a live handle (caller).
        unsafe { with(h, |heap| heap.write_snapshot(sink, max_pages)) }
    });
    if ok {
        0
    } else {
        -1
    }
}

/// `tessera_footprint()`: bytes the process-wide allocator has from the OS.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn tessera_footprint() -> usize {
    let _ = crate::runtime::mode();
    global::footprint()
}

/// `tessera_max_footprint()`.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn tessera_max_footprint() -> usize {
    let _ = crate::runtime::mode();
    global::max_footprint()
}

/// `tessera_footprint_limit()`: 0 = none.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn tessera_footprint_limit() -> usize {
    let _ = crate::runtime::mode();
    global::footprint_limit()
}

/// `tessera_set_footprint_limit(bytes)`: returns the limit in effect.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn tessera_set_footprint_limit(bytes: usize) -> usize {
    let _ = crate::runtime::mode();
    global::set_footprint_limit(bytes)
}

/// `tessera_stats(out)`: the process-wide statistics.
///
/// # Safety
/// `out` is valid for a write.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_stats(out: *mut TesseraStats) {
    if out.is_null() {
        crate::errno::set(libc::EINVAL);
        return;
    }
    let _ = crate::runtime::mode();
    // SAFETY: writable (caller).
    unsafe { out.write(global::stats().into()) };
}

/// `tessera_check()`: 0 if every arena is consistent, else -1 after a line
/// on stderr (errno `ENOTRECOVERABLE`).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn tessera_check() -> c_int {
    let _ = crate::runtime::mode();
    match global::check() {
        Ok(()) => 0,
        Err(err) => {
            report_check(err);
            -1
        }
    }
}

/// `tessera_write_snapshot(path, max_pages)`: the process-wide allocator
/// in the snapshot format; 0, or -1 with errno.
///
/// # Safety
/// `path` is null or NUL-terminated.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tessera_write_snapshot(path: *const c_char, max_pages: usize) -> c_int {
    let _ = crate::runtime::mode();
    // SAFETY: forwarded to the caller.
    let Some(path) = (unsafe { c_path(path) }) else {
        return -1;
    };
    if crate::out::write_file(path, |sink| {
        tessera_core::inspect::process::write_snapshot(sink, max_pages)
    }) {
        0
    } else {
        -1
    }
}

/// Registers [`fork_prepare`], [`fork_parent`] and [`fork_child`] with
/// `pthread_atfork` once, before the first heap exists (with no lock held:
/// glibc's `pthread_atfork` may allocate).
fn ensure_atfork() {
    static DONE: AtomicBool = AtomicBool::new(false);
    tessera_core::sys::fork::register_once(&DONE, fork_prepare, fork_parent, fork_child);
}

/// Whether the prepare handler now running took the locks.
static FORK_GATE: ForkGate = ForkGate::new();

/// Fork: stdio's list lock (see [`crate::fork`]), then the list, then
/// every heap on it; nothing while the process has one thread.
pub extern "C" fn fork_prepare() {
    if !FORK_GATE.enter() {
        return;
    }
    crate::fork::hold_stdio();
    LIST.lock.lock();
    // SAFETY: the list is locked; its handles are live.
    unsafe {
        let mut h = *LIST.head.get();
        while !h.is_null() {
            (*h).lock.lock();
            h = (*h).next;
        }
    }
}

/// Fork, parent side: unlock every heap, then the list.
pub extern "C" fn fork_parent() {
    if !FORK_GATE.leave() {
        return;
    }
    // SAFETY: this thread locked all of them in `fork_prepare`.
    unsafe {
        let mut h = *LIST.head.get();
        while !h.is_null() {
            (*h).lock.unlock();
            h = (*h).next;
        }
        LIST.lock.unlock();
    }
    crate::fork::release_stdio();
}

/// Fork, child side: the only thread holds every lock; reset them.
pub extern "C" fn fork_child() {
    if !FORK_GATE.leave() {
        return;
    }
    // SAFETY: the child has one thread, the one that locked everything.
    unsafe {
        let mut h = *LIST.head.get();
        while !h.is_null() {
            (*h).lock.reset();
            h = (*h).next;
        }
        LIST.lock.reset();
    }
    crate::fork::reset_stdio();
}
