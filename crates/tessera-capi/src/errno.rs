//! errno, the C way: through `__errno_location()`.
//!
//! The core sets errno only in `malloc` (ENOMEM, from its slow paths, so
//! that the C `malloc` is one tail call; `tessera_core::sys::errno`). The
//! C layer sets `ENOMEM`/`EINVAL` everywhere else the C standard and glibc
//! do, and keeps the caller's errno intact on success:
//! an allocation may make a system call that fails (an `mremap` that cannot
//! grow in place before a moving one succeeds, an `madvise` that is only
//! advice) without the program seeing it. [`Errno::save`] at entry,
//! [`Errno::restore`] or [`Errno::fail`] on the way out.

use core::ffi::c_int;

/// The calling thread's errno as it was at entry.
pub struct Errno {
    loc: *mut c_int,
    saved: c_int,
}

impl Errno {
    /// Remembers the current errno.
    #[inline(always)]
    pub fn save() -> Errno {
        // SAFETY: `__errno_location` returns the calling thread's errno slot,
        // valid for the whole life of the thread.
        unsafe {
            let loc = libc::__errno_location();
            Errno { loc, saved: *loc }
        }
    }

    /// Puts back the errno seen at entry (if a failed system call changed it).
    #[inline(always)]
    pub fn restore(&self) {
        // SAFETY: `loc` is this thread's errno slot (see `save`).
        unsafe {
            if *self.loc != self.saved {
                *self.loc = self.saved;
            }
        }
    }

    /// Sets errno to `code`.
    #[inline(always)]
    pub fn fail(&self, code: c_int) {
        // SAFETY: `loc` is this thread's errno slot (see `save`).
        unsafe { *self.loc = code };
    }

    /// The usual ending of an allocation: `ENOMEM` for null, else errno as
    /// it was.
    #[inline(always)]
    pub fn finish(&self, p: *mut u8) -> *mut core::ffi::c_void {
        if p.is_null() {
            self.fail(libc::ENOMEM);
        } else {
            self.restore();
        }
        p.cast()
    }
}

/// Sets errno (the core's, which its `malloc` uses too).
pub use tessera_core::sys::errno::set;
