//! The C library's order of locks around `fork`: stdio's list lock first,
//! then the library's own (glibc's order for its malloc).
//!
//! # Why
//! glibc's `fork` runs the `pthread_atfork` prepare handlers, *then* takes
//! stdio's list lock, then its own malloc locks. Taking our locks in a
//! prepare handler would put them before the list lock, and stdio makes a
//! cycle of that: a thread in `fflush(NULL)` holds the list lock and waits
//! for a stream's lock; a thread inside `getline` holds that stream's lock
//! and calls malloc; if malloc waited for a lock the forker took in
//! prepare, and the forker waits for the list lock, none of them moves
//! (glibc bug 19431; issue 16). So the first of our prepare handlers takes
//! the list lock itself ([`hold_stdio`], glibc's `_IO_list_lock`, a
//! recursive lock: `fork` takes it again without waiting), and only then
//! are our locks taken. No lock of ours is ever held by a thread that
//! waits for a stdio lock (the reports hand their text to stdio after
//! unlocking), so the one order, stdio's list lock before all of ours,
//! cannot cycle.
//!
//! The handlers of the library are the runtime's (the trace recorder and
//! the arenas) and, once the first separate heap exists, those of `heaps`
//! (registered later, so their prepare runs first). Each calls
//! [`hold_stdio`] before taking its locks and [`release_stdio`] or
//! [`reset_stdio`] after releasing them; the first takes the list lock and
//! the last lets it go, whatever their number.
//!
//! All of this only when the process has more than one thread: with one,
//! glibc takes none of these locks and neither do we (a signal handler
//! may fork; see `tessera_core::sys::fork`).

use core::sync::atomic::{AtomicUsize, Ordering};

#[cfg(target_env = "gnu")]
extern "C" {
    /// glibc's stdio list lock (recursive), as `fork` takes it.
    fn _IO_list_lock();
    /// Releases one level of it.
    fn _IO_list_unlock();
    /// Marks it free (for the child, whose only thread held it).
    fn _IO_list_resetlock();
}

/// Handlers of the current fork between [`hold_stdio`] and the release.
static HOLDERS: AtomicUsize = AtomicUsize::new(0);

/// In a prepare handler, before it takes any lock: takes stdio's list lock
/// if no handler of this fork has yet.
pub fn hold_stdio() {
    if HOLDERS.fetch_add(1, Ordering::AcqRel) == 0 {
        #[cfg(target_env = "gnu")]
        // SAFETY: a recursive lock of glibc's, taken by the thread that
        // forks and released by it in `release_stdio` or reset in the child.
        unsafe {
            _IO_list_lock()
        };
    }
}

/// In a parent handler, after it released its locks: the last one
/// releases stdio's list lock.
pub fn release_stdio() {
    if HOLDERS.fetch_sub(1, Ordering::AcqRel) == 1 {
        #[cfg(target_env = "gnu")]
        // SAFETY: taken in `hold_stdio` by this thread (fork released its
        // own level already).
        unsafe {
            _IO_list_unlock()
        };
    }
}

/// In a child handler, after it reset its locks: the last one resets
/// stdio's list lock (glibc's fork has reset it too; doing it twice is
/// harmless, leaving it held is not).
pub fn reset_stdio() {
    if HOLDERS.fetch_sub(1, Ordering::AcqRel) == 1 {
        #[cfg(target_env = "gnu")]
        // SAFETY: the child's only thread is the one that held it.
        unsafe {
            _IO_list_resetlock()
        };
    }
}
