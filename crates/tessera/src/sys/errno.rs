//! errno kept intact across the allocator's slow paths.
//!
//! A `malloc` or `free` that succeeds must leave the caller's errno as it
//! was (programs read errno after calls that do not fail), yet the slow
//! paths make system calls that may fail harmlessly: a futex wait that
//! times out, an `mremap` that cannot grow in place before a moving one
//! succeeds, an `madvise` that is only advice. Saving and restoring errno
//! costs a call to `__errno_location` and two memory accesses, too much
//! for the fast paths, which make no system call; so each *slow* path of
//! the process allocator (a refill, a flush, a free to an arena) holds a
//! [`Saved`] for its duration, and the fast paths touch errno not at all.

use core::ffi::c_int;

/// The calling thread's errno as it was when this was made; put back when
/// it is dropped, if it changed.
pub struct Saved {
    loc: *mut c_int,
    value: c_int,
}

impl Saved {
    /// Remembers the current errno.
    #[inline(always)]
    pub fn now() -> Saved {
        // SAFETY: `__errno_location` returns the calling thread's errno
        // slot, valid for the whole life of the thread.
        unsafe {
            let loc = libc::__errno_location();
            Saved { loc, value: *loc }
        }
    }
}

impl Drop for Saved {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: `loc` is this thread's errno slot (see `now`).
        unsafe {
            if *self.loc != self.value {
                *self.loc = self.value;
            }
        }
    }
}

/// Sets the calling thread's errno (after any [`Saved`] of the path has
/// been dropped, or it would be put back).
#[inline]
pub fn set(value: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}
