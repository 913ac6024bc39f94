//! What every set of fork handlers needs: to know whether the process has
//! other threads, and to know, in `parent` and `child`, whether the
//! `prepare` they close took its locks.
//!
//! # Why a gate
//! Locks are taken before `fork` so that no other thread is half-way
//! through an update when the address space is copied. With one thread
//! there is nobody to wait for, and taking locks would be wrong: a signal
//! handler may fork while the interrupted code is inside `malloc` or inside
//! `fork`'s own handlers, holding the very locks the handler's `fork` would
//! take (glibc skips its malloc locks in that case for the same reason). So
//! [`ForkGate::enter`], called first by a `prepare` handler, answers
//! whether to lock: only when the process has other threads and no outer
//! `prepare` of the same gate is running (re-entry). [`ForkGate::leave`],
//! called by `parent` and `child`, answers whether the matching `prepare`
//! locked, so that exactly those locks are released or reset.
//!
//! # Invariants
//! - `depth` counts the `prepare` calls of this gate not yet closed by a
//!   `parent` or `child` call (more than one only when a handler is
//!   re-entered or registered twice).
//! - `locked_at` is the depth at which the locks were taken, 0 if none
//!   are held; it is 0 or 1.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(target_env = "gnu")]
extern "C" {
    /// glibc (2.32 and later): nonzero while the process has one thread.
    /// Cleared by `pthread_create` before the new thread exists, so a
    /// single thread that reads it set cannot race with a second one.
    /// glibc's own `fork` reads it to decide whether to take its locks.
    static __libc_single_threaded: core::ffi::c_char;
}

/// Does the process have a single thread? Threads that libc creates for
/// itself (timers, asynchronous I/O) count, as every thread made with
/// `pthread_create` does; without glibc's flag the answer is always no
/// (the handlers then always lock, as before).
#[inline]
pub fn single_threaded() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: a byte-sized global of libc, written only by the thread
        // that creates the second thread (before that thread exists).
        unsafe { core::ptr::addr_of!(__libc_single_threaded).read_volatile() != 0 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// The state of one set of fork handlers (module docs).
#[derive(Debug)]
pub struct ForkGate {
    depth: AtomicUsize,
    locked_at: AtomicUsize,
}

impl ForkGate {
    /// No fork in progress.
    pub const fn new() -> Self {
        ForkGate {
            depth: AtomicUsize::new(0),
            locked_at: AtomicUsize::new(0),
        }
    }

    /// First thing in `prepare`: should this call take the locks? Yes when
    /// the process has other threads and this is the outermost `prepare`
    /// of the gate.
    pub fn enter(&self) -> bool {
        let d = self.depth.fetch_add(1, Ordering::AcqRel) + 1;
        if d == 1 && !single_threaded() {
            self.locked_at.store(1, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// Last thing in `parent` and in `child`: did the `prepare` this call
    /// closes take the locks (which must now be released or reset)?
    pub fn leave(&self) -> bool {
        let d = self.depth.fetch_sub(1, Ordering::AcqRel);
        if d != 0 && self.locked_at.load(Ordering::Acquire) == d {
            self.locked_at.store(0, Ordering::Release);
            true
        } else {
            if d == 0 {
                // A `parent` or `child` without its `prepare` (handlers
                // registered between the two): nothing to close.
                self.depth.store(0, Ordering::Release);
            }
            false
        }
    }
}

impl Default for ForkGate {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `prepare`, `parent` and `child` with `pthread_atfork` unless
/// `done` is set already (by an earlier call, or by an embedder that runs
/// them from handlers of its own); sets it. Call it with no allocator lock
/// held: glibc's `pthread_atfork` may allocate.
pub fn register_once(
    done: &AtomicBool,
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) {
    if done
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: registers plain functions that live as long as the program.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_prepares_lock_once_and_unbalanced_leaves_are_harmless() {
        let g = ForkGate::new();
        // Once a second thread has existed, glibc counts the process as
        // threaded for good.
        std::thread::spawn(|| {}).join().unwrap();
        assert!(!single_threaded());
        assert!(g.enter(), "the outermost prepare locks");
        assert!(!g.enter(), "a nested one does not");
        assert!(!g.leave(), "the nested one closes without releasing");
        assert!(g.leave(), "the outer one releases");
        assert!(!g.leave(), "a stray leave releases nothing");
        assert!(g.enter(), "and the gate works again");
        assert!(g.leave());
    }
}
