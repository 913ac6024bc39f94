//! The page source: where a heap's memory comes from.
//!
//! The core never calls the kernel directly; it asks a [`PageSource`]. The
//! Linux implementation is [`Mmap`]; [`Faulty`] wraps any source and fails on
//! command, so tests can prove that every OS failure ends in a null return
//! and an intact heap.
//!
//! # Glossary
//! - **reserve**: take address space without access or commit charge
//!   (`PROT_NONE`). Segments are reserved whole and committed as they grow.
//! - **commit**: make reserved pages readable and writable. Fresh pages read
//!   as zero.
//! - **decommit**: give committed pages back; they read as zero if committed
//!   again, and are inaccessible until then.
//! - **map / unmap / remap**: plain anonymous mappings, for chunks mapped
//!   directly (large requests).
//! - **purge**: keep the pages mapped but let the kernel drop their
//!   contents (`MADV_DONTNEED`); they read as zero afterwards.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// A source of pages. All sizes and addresses are multiples of
/// [`PageSource::page_size`].
///
/// # Safety
/// Implementations must return memory that no one else uses, honour the
/// zero-fill promises below, and never hand out overlapping ranges.
pub unsafe trait PageSource {
    /// The page size, a power of two.
    fn page_size(&self) -> usize {
        4096
    }

    /// Reserves `size` bytes aligned to `align` (a power of two, at least a
    /// page), inaccessible. Returns null on failure.
    fn reserve(&self, size: usize, align: usize) -> *mut u8;

    /// Makes `[ptr, ptr + len)` of a reservation readable and writable.
    /// Pages never committed before, or decommitted since, read as zero.
    /// Returns false on failure, leaving the range as it was.
    ///
    /// # Safety
    /// The range must lie inside one live reservation of this source.
    unsafe fn commit(&self, ptr: *mut u8, len: usize) -> bool;

    /// Returns committed pages; they become inaccessible and read as zero
    /// when committed again. Returns false on failure (the pages then stay
    /// committed and keep their contents).
    ///
    /// # Safety
    /// The range must lie inside one live reservation, and nothing may use
    /// its contents afterwards.
    unsafe fn decommit(&self, ptr: *mut u8, len: usize) -> bool;

    /// Maps `size` fresh zeroed bytes, readable and writable. Null on failure.
    fn map(&self, size: usize) -> *mut u8;

    /// Unmaps a range obtained from `map` or `reserve` (whole or part).
    ///
    /// # Safety
    /// The range must be owned by the caller and unused afterwards.
    unsafe fn unmap(&self, ptr: *mut u8, size: usize);

    /// Resizes a mapping from `map`, in place or (when `may_move`) anywhere.
    /// Returns the new address, or null on failure with the mapping intact.
    /// Bytes past the old size read as zero.
    ///
    /// # Safety
    /// `[ptr, ptr + old)` must be a whole mapping obtained from `map`.
    unsafe fn remap(&self, ptr: *mut u8, old: usize, new: usize, may_move: bool) -> *mut u8;

    /// Lets the kernel drop the contents of committed pages, which stay
    /// accessible and read as zero afterwards. Advisory: failure is ignored.
    ///
    /// # Safety
    /// The range must be committed and its contents unneeded.
    unsafe fn purge(&self, ptr: *mut u8, len: usize);
}

/// The Linux page source: `mmap`, `mprotect`, `mremap`, `madvise`.
///
/// Each mapping of [`PageSource::map`] (a direct chunk's) is made one page
/// longer and that last page unmapped at once, so the page right after it
/// is a gap, not some other mapping of the allocator's. A program that
/// maps memory of its own with `MAP_FIXED` right after a large block (as
/// far as it knows, a page nobody uses) then lands in that gap instead of
/// on a segment's record or a heap's state, which the kernel would
/// otherwise often have placed there (issue 16, `tests/c/mapfixed.c`).
/// `remap` keeps the gap where it can.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mmap;

/// Page size assumed by [`Mmap`]; checked against the kernel's once in tests.
pub const PAGE_SIZE: usize = 4096;

// SAFETY: every range comes from the kernel's anonymous private mappings,
// which are zero-filled and never overlap live mappings.
unsafe impl PageSource for Mmap {
    fn reserve(&self, size: usize, align: usize) -> *mut u8 {
        let Some(span) = size.checked_add(align - PAGE_SIZE) else {
            return ptr::null_mut();
        };
        // SAFETY: an anonymous PROT_NONE mapping at an address of the
        // kernel's choosing touches no existing memory.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                span,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return ptr::null_mut();
        }
        let raw = raw.cast::<u8>();
        let lead = raw.align_offset(align);
        let trail = span - lead - size;
        // SAFETY: both trimmed ranges are parts of the mapping just made.
        unsafe {
            if lead > 0 {
                libc::munmap(raw.cast(), lead);
            }
            if trail > 0 {
                libc::munmap(raw.add(lead + size).cast(), trail);
            }
        }
        raw.wrapping_add(lead)
    }

    unsafe fn commit(&self, ptr: *mut u8, len: usize) -> bool {
        // SAFETY: the caller owns the reserved range.
        unsafe { libc::mprotect(ptr.cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
    }

    unsafe fn decommit(&self, ptr: *mut u8, len: usize) -> bool {
        // A fresh PROT_NONE mapping over the range drops the pages and their
        // commit charge in one call.
        // SAFETY: the caller owns the range and gives up its contents.
        let r = unsafe {
            libc::mmap(
                ptr.cast(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        r != libc::MAP_FAILED
    }

    fn map(&self, size: usize) -> *mut u8 {
        let Some(span) = size.checked_add(PAGE_SIZE) else {
            return ptr::null_mut();
        };
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return ptr::null_mut();
        }
        let raw = raw.cast::<u8>();
        // The gap above (see `Mmap`).
        // SAFETY: the last page of the mapping just made, unused.
        unsafe { libc::munmap(raw.add(size).cast(), PAGE_SIZE) };
        raw
    }

    unsafe fn unmap(&self, ptr: *mut u8, size: usize) {
        // SAFETY: the caller owns the range.
        unsafe { libc::munmap(ptr.cast(), size) };
    }

    unsafe fn remap(&self, ptr: *mut u8, old: usize, new: usize, may_move: bool) -> *mut u8 {
        let flags = if may_move { libc::MREMAP_MAYMOVE } else { 0 };
        // One page more, given back at once: the gap above (see `Mmap`).
        // Where that page is taken, the plain size is tried too.
        for (span, gap) in [(new.saturating_add(PAGE_SIZE), true), (new, false)] {
            // SAFETY: the caller owns the whole mapping.
            let r = unsafe { libc::mremap(ptr.cast(), old, span, flags) };
            if r != libc::MAP_FAILED {
                let r = r.cast::<u8>();
                if gap {
                    // SAFETY: the last page of the mapping, unused.
                    unsafe { libc::munmap(r.add(new).cast(), PAGE_SIZE) };
                }
                return r;
            }
        }
        ptr::null_mut()
    }

    unsafe fn purge(&self, ptr: *mut u8, len: usize) {
        // SAFETY: the caller owns the committed range and gives up its contents.
        unsafe { libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED) };
    }
}

/// A page source that fails on command: after a countdown, every n-th call,
/// pseudo-randomly, or always. Failures apply to the calls that can fail
/// (`reserve`, `commit`, `map`, `remap`, `decommit`); the rest pass through.
#[derive(Debug, Default)]
pub struct Faulty<S: PageSource = Mmap> {
    inner: S,
    /// Calls left before failures start; 0 = not counting down.
    countdown: AtomicUsize,
    /// Fail every call while set.
    always: AtomicBool,
    /// Fail each call with probability `rate / 2^16` (0 = never).
    rate: AtomicUsize,
    rng: AtomicU64,
    /// Calls that could fail, and failures injected.
    calls: AtomicUsize,
    failures: AtomicUsize,
}

impl<S: PageSource> Faulty<S> {
    /// Wraps `inner`, failing nothing until told to.
    pub fn new(inner: S) -> Self {
        Faulty {
            inner,
            countdown: AtomicUsize::new(0),
            always: AtomicBool::new(false),
            rate: AtomicUsize::new(0),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            calls: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
        }
    }

    /// Fail every call from now on (or stop failing).
    pub fn fail_always(&self, on: bool) {
        self.always.store(on, Ordering::Relaxed);
    }

    /// Let `n` more calls succeed, then fail all until reset.
    pub fn fail_after(&self, n: usize) {
        self.countdown.store(n + 1, Ordering::Relaxed);
    }

    /// Fail each call with probability `per_65536 / 65536`, from a
    /// deterministic sequence seeded with `seed`.
    pub fn fail_randomly(&self, per_65536: usize, seed: u64) {
        self.rng.store(seed | 1, Ordering::Relaxed);
        self.rate.store(per_65536, Ordering::Relaxed);
    }

    /// Stop injecting failures.
    pub fn reset(&self) {
        self.always.store(false, Ordering::Relaxed);
        self.countdown.store(0, Ordering::Relaxed);
        self.rate.store(0, Ordering::Relaxed);
    }

    /// Calls that could have failed so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Failures injected so far.
    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::Relaxed)
    }

    fn should_fail(&self) -> bool {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut fail = self.always.load(Ordering::Relaxed);
        let c = self.countdown.load(Ordering::Relaxed);
        if c == 1 {
            fail = true;
        } else if c > 1 {
            self.countdown.store(c - 1, Ordering::Relaxed);
        }
        let rate = self.rate.load(Ordering::Relaxed);
        if rate > 0 {
            // xorshift64: deterministic for a given seed and call sequence.
            let mut x = self.rng.load(Ordering::Relaxed);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.rng.store(x, Ordering::Relaxed);
            if (x >> 48) as usize % 65536 < rate {
                fail = true;
            }
        }
        if fail {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }
}

// SAFETY: forwards to `inner` or fails without touching memory.
unsafe impl<S: PageSource> PageSource for Faulty<S> {
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }
    fn reserve(&self, size: usize, align: usize) -> *mut u8 {
        if self.should_fail() {
            return ptr::null_mut();
        }
        self.inner.reserve(size, align)
    }
    unsafe fn commit(&self, ptr: *mut u8, len: usize) -> bool {
        // SAFETY: forwarded to the caller.
        !self.should_fail() && unsafe { self.inner.commit(ptr, len) }
    }
    unsafe fn decommit(&self, ptr: *mut u8, len: usize) -> bool {
        // SAFETY: forwarded to the caller.
        !self.should_fail() && unsafe { self.inner.decommit(ptr, len) }
    }
    fn map(&self, size: usize) -> *mut u8 {
        if self.should_fail() {
            return ptr::null_mut();
        }
        self.inner.map(size)
    }
    unsafe fn unmap(&self, ptr: *mut u8, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.unmap(ptr, size) }
    }
    unsafe fn remap(&self, ptr: *mut u8, old: usize, new: usize, may_move: bool) -> *mut u8 {
        if self.should_fail() {
            return ptr::null_mut();
        }
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.remap(ptr, old, new, may_move) }
    }
    unsafe fn purge(&self, ptr: *mut u8, len: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.purge(ptr, len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_matches_the_kernel() {
        // SAFETY: sysconf has no preconditions.
        let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        assert_eq!(ps, PAGE_SIZE);
    }

    #[test]
    fn reserve_commit_decommit_cycle() {
        let os = Mmap;
        let align = 1 << 22;
        let p = os.reserve(1 << 22, align);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        // SAFETY: all ranges lie inside the reservation.
        unsafe {
            assert!(os.commit(p, 8192));
            p.write_bytes(0xAB, 8192);
            assert!(os.decommit(p.add(4096), 4096));
            assert!(os.commit(p.add(4096), 4096));
            assert_eq!(*p, 0xAB);
            assert_eq!(*p.add(4096), 0, "recommitted page reads zero");
            os.unmap(p, 1 << 22);
        }
    }

    #[test]
    fn remap_grows_and_keeps_contents() {
        let os = Mmap;
        let p = os.map(4096);
        assert!(!p.is_null());
        // SAFETY: p is a fresh 4 KiB mapping; q is its resized successor.
        unsafe {
            p.write_bytes(7, 4096);
            let q = os.remap(p, 4096, 1 << 20, true);
            assert!(!q.is_null());
            assert_eq!(*q.add(4095), 7);
            assert_eq!(*q.add(4096), 0);
            os.unmap(q, 1 << 20);
        }
    }

    /// Is the page at `p` mapped at all? (`mincore` says ENOMEM for a
    /// page no mapping covers.)
    fn mapped(p: *mut u8) -> bool {
        let mut v = 0u8;
        // SAFETY: mincore writes one byte for one page; `p` is page aligned.
        unsafe { libc::mincore(p.cast(), PAGE_SIZE, &mut v) == 0 }
    }

    #[test]
    fn maps_leave_the_page_after_them_unmapped() {
        let os = Mmap;
        for size in [PAGE_SIZE, 5 * PAGE_SIZE, 1 << 20] {
            let p = os.map(size);
            assert!(!p.is_null());
            // SAFETY: p's mapping is `size` bytes; the page after it is
            // only asked about.
            unsafe {
                assert!(mapped(p) && mapped(p.add(size - PAGE_SIZE)));
                assert!(!mapped(p.add(size)), "a gap after {size} bytes");
                // Grown (in place or moved) and shrunk: the gap follows.
                let q = os.remap(p, size, size + 3 * PAGE_SIZE, true);
                assert!(!q.is_null());
                assert!(mapped(q.add(size + 2 * PAGE_SIZE)));
                assert!(!mapped(q.add(size + 3 * PAGE_SIZE)), "a gap after growing");
                let r = os.remap(q, size + 3 * PAGE_SIZE, PAGE_SIZE, true);
                assert_eq!(r, q, "shrinking stays in place");
                assert!(!mapped(r.add(PAGE_SIZE)), "a gap after shrinking");
                os.unmap(r, PAGE_SIZE);
            }
        }
    }

    #[test]
    fn faulty_counts_down_and_resets() {
        let f = Faulty::new(Mmap);
        f.fail_after(1);
        let a = f.map(4096);
        assert!(!a.is_null());
        assert!(f.map(4096).is_null());
        assert!(f.map(4096).is_null());
        f.reset();
        let b = f.map(4096);
        assert!(!b.is_null());
        assert_eq!(f.failures(), 2);
        // SAFETY: a and b are live mappings from this source.
        unsafe {
            f.unmap(a, 4096);
            f.unmap(b, 4096);
        }
        f.fail_randomly(32768, 42);
        let fails = (0..1000).filter(|_| f.should_fail()).count();
        assert!((300..700).contains(&fails), "{fails}");
    }
}
