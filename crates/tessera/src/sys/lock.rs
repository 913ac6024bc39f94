//! A futex lock that never allocates, usable from the first malloc of a
//! process (const-initialised) and resettable in a forked child.
//!
//! States: 0 = unlocked, 1 = locked, 2 = locked and someone may sleep on it.
//! The fast path is one compare-exchange to lock and one swap to unlock; a
//! contended lock spins briefly, then sleeps in the kernel (`FUTEX_WAIT`), so
//! it never burns the other core.

use core::sync::atomic::{AtomicU32, Ordering};

/// A mutual-exclusion lock without data (callers pair it with what it guards).
pub struct RawLock {
    state: AtomicU32,
}

impl RawLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        RawLock {
            state: AtomicU32::new(0),
        }
    }

    /// Takes the lock if it is free.
    #[inline(always)]
    pub fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, waiting as long as needed.
    #[inline(always)]
    pub fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        for _ in 0..100 {
            core::hint::spin_loop();
            if self.state.load(Ordering::Relaxed) == 0 && self.try_lock() {
                return;
            }
        }
        while self.state.swap(2, Ordering::Acquire) != 0 {
            futex_wait(&self.state, 2);
        }
    }

    /// Takes the lock, waiting at most about `ms` milliseconds. Returns
    /// whether it was taken.
    pub fn lock_timeout_ms(&self, ms: u32) -> bool {
        if self.try_lock() || self.state.swap(2, Ordering::Acquire) == 0 {
            return true;
        }
        let ts = libc::timespec {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT with a relative timeout reads the word atomically.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.state.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                2u32,
                &ts as *const libc::timespec,
            );
        }
        self.state.swap(2, Ordering::Acquire) == 0
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The caller must hold the lock.
    #[inline(always)]
    pub unsafe fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) == 2 {
            futex_wake(&self.state);
        }
    }

    /// Is the lock held by someone?
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }

    /// Marks the lock free without waking anyone: for the child after
    /// `fork`, where the only thread is the one that took it before forking.
    ///
    /// # Safety
    /// No other thread may exist that uses the lock.
    pub unsafe fn reset(&self) {
        self.state.store(0, Ordering::Relaxed);
    }
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the word atomically; a spurious wake-up is
    // handled by the caller's loop.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live word wakes at most one waiter.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_across_threads() {
        struct Shared {
            lock: RawLock,
            counter: core::cell::UnsafeCell<u64>,
        }
        // SAFETY: `counter` is only touched with `lock` held.
        unsafe impl Sync for Shared {}
        let s = Arc::new(Shared {
            lock: RawLock::new(),
            counter: core::cell::UnsafeCell::new(0),
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        s.lock.lock();
                        // SAFETY: lock held.
                        unsafe {
                            *s.counter.get() += 1;
                            s.lock.unlock();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(unsafe { *s.counter.get() }, 80_000);
        assert!(!s.lock.is_locked());
    }
}
