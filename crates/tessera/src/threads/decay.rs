//! Giving memory back over time: purging free pages while the program
//! runs, and everything an arena holds once it has been idle for a while.
//!
//! dlmalloc gives memory back when a free leaves top above the trim
//! threshold and when a segment empties. A long-running threaded program
//! does neither: it frees in the middle of its segments, between blocks
//! that live on, and its arenas keep every page they ever touched (the
//! classic complaint about glibc's malloc). Two rules fix that:
//!
//! - **Decay** (while an arena is in use): every free chunk of a tree bin
//!   that has stayed free for [`delay_ms`] (default one second) is purged
//!   (`State::purge`: its whole pages go back to the OS, the chunk stays).
//!   A chunk entering a tree bin is stamped with the arena's clock
//!   (`TreeChunk::freed_at`, in ticks of [`TICK_MS`]), so a chunk the
//!   program frees and reuses within the delay is never purged: churn does
//!   not become a storm of madvise calls and page faults (the first
//!   version purged the largest chunks whenever a quarter of the heap lay
//!   free, and made a Python run fault in 12 MB more than glibc did).
//!   This is jemalloc's rule: dirty pages older than the decay time go.
//! - **Idle return**: an arena nobody has locked for [`delay_ms`] is
//!   emptied of what it holds for later: its quick lists are consolidated,
//!   empty segments unmapped, top trimmed to its pad, and every free page
//!   purged, whatever its age. Threads' caches are not touched (only their
//!   own thread may: see `tcache`); each holds at most
//!   `tcache::MAX_CACHED_BYTES` plus its medium budget.
//!
//! Who runs them: a **background thread**, started lazily the first time a
//! second thread of the process uses the allocator (so single-threaded
//! programs never get one: a second thread would turn off glibc's
//! single-thread shortcuts in stdio and elsewhere), waking every
//! [`TICK_MS`]. It blocks every signal, allocates nothing, takes each
//! arena's lock only with `try_lock` (a busy arena is simply in use), and
//! is started again after `fork` when the child needs it. Without it (one
//! thread, `TESSERA_BACKGROUND=0`, or `pthread_create` refused), decay
//! runs on the slow paths instead: a refill, at most once per [`TICK_MS`]
//! per thread, purges its own arena; an idle single-threaded program gets
//! nothing back until it calls malloc again or `malloc_trim`.
//! Nothing of this is on the fast paths.

use crate::sys::lock::RawLock;
use crate::threads::arena::{self, Arena, DIRTY_FLOOR, MAX_ARENAS};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// How often the background thread looks at the arenas, and the least time
/// between two decay passes over one arena from the slow paths.
pub const TICK_MS: u64 = 100;
/// Idle time after which an arena gives back everything it holds, by
/// default.
pub const DEFAULT_DELAY_MS: usize = 1000;

static DELAY_MS: AtomicUsize = AtomicUsize::new(DEFAULT_DELAY_MS);

/// The idle time after which an arena gives everything back (ms).
pub fn delay_ms() -> usize {
    DELAY_MS.load(Ordering::Relaxed)
}

/// Sets [`delay_ms`] (0: purge at once, see `arena::unlock`, and give
/// back at the next tick an arena is seen idle).
pub(crate) fn set_delay_ms(ms: usize) {
    DELAY_MS.store(ms, Ordering::Relaxed);
    arena::set_purge_at_unlock(ms == 0);
}

/// When the background thread may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Background {
    /// Never: decay runs on the slow paths only.
    Off,
    /// Once a second thread uses the allocator (the default).
    Auto,
    /// With the first thread.
    On,
}

static POLICY: AtomicU8 = AtomicU8::new(1);

/// Sets the background thread's policy (before it has started; a running
/// thread keeps running).
pub(crate) fn set_background(b: Background) {
    POLICY.store(b as u8, Ordering::Relaxed);
}

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const FAILED: u8 = 3;
static THREAD: AtomicU8 = AtomicU8::new(NOT_STARTED);

/// Is the background thread running?
pub fn background_running() -> bool {
    THREAD.load(Ordering::Acquire) == RUNNING
}

/// Called on a slow path (outside every lock and thread-cache borrow) with
/// the number of threads whose caches are live: starts the background
/// thread if the policy says it is time.
#[inline]
pub(crate) fn maybe_start(threads: usize) {
    if THREAD.load(Ordering::Relaxed) != NOT_STARTED {
        return;
    }
    let policy = POLICY.load(Ordering::Relaxed);
    let wanted = match policy {
        0 => false,
        2 => true,
        _ => threads >= 2,
    };
    if wanted {
        start();
    }
}

#[cold]
fn start() {
    if THREAD
        .compare_exchange(NOT_STARTED, STARTING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    register_fork_handler();
    // SAFETY: plain libc calls on local, initialised values; the new thread
    // runs `background` with a null argument and never returns.
    let ok = unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        // The thread inherits this mask: no signal is ever delivered to it.
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 64 << 10);
        let mut t: libc::pthread_t = 0;
        let r = libc::pthread_create(&mut t, &attr, background, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        r == 0
    };
    THREAD.store(if ok { RUNNING } else { FAILED }, Ordering::Release);
}

/// After `fork` the child has no background thread: it may start one
/// again. (Registered once, before the first start.)
fn register_fork_handler() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    extern "C" fn child() {
        if THREAD.load(Ordering::Relaxed) == RUNNING {
            THREAD.store(NOT_STARTED, Ordering::Relaxed);
        }
        // SAFETY: one thread in the child; whoever held it is gone.
        unsafe { PASS.reset() };
    }
    // SAFETY: registers a plain function that lives as long as the process.
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

extern "C" fn background(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: naming the calling thread with a NUL-terminated literal.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), c"tessera-decay".as_ptr()) };
    let tick = libc::timespec {
        tv_sec: 0,
        tv_nsec: (TICK_MS * 1_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: sleeping; an interrupted sleep just ends the tick early.
        unsafe { libc::nanosleep(&tick, core::ptr::null_mut()) };
        pass(now_ms());
    }
}

/// Milliseconds of a monotonic clock (coarse: a few ms of resolution is
/// plenty, and it costs no system call).
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// One pass at a time (the background thread, or a test).
static PASS: RawLock = RawLock::new();

/// What the passes remember of each arena slot (touched only under
/// [`PASS`]): its use count when last seen, when that changed, and whether
/// it has given everything back since.
struct Seen {
    uses: AtomicUsize,
    active_at: AtomicU64,
    returned: AtomicBool,
}

static SEEN: [Seen; MAX_ARENAS] = [const {
    Seen {
        uses: AtomicUsize::new(0),
        active_at: AtomicU64::new(0),
        returned: AtomicBool::new(true),
    }
}; MAX_ARENAS];

/// One pass over every arena at time `now` (ms): decay for arenas in use,
/// idle return for arenas unused for [`delay_ms`]. Returns the bytes
/// purged or trimmed.
pub fn pass(now: u64) -> usize {
    if !PASS.try_lock() {
        return 0;
    }
    let delay = delay_ms() as u64;
    let mut given = 0;
    for (i, seen) in SEEN.iter().enumerate().take(arena::count()) {
        let a = arena::get(i);
        // SAFETY: arenas are never freed.
        if a.is_null() || unsafe { (*a).abandoned } {
            continue;
        }
        // SAFETY: as above; `uses` is an atomic.
        let uses = unsafe { (*a).uses.load(Ordering::Relaxed) };
        let active = uses != seen.uses.load(Ordering::Relaxed);
        if active {
            seen.uses.store(uses, Ordering::Relaxed);
            seen.active_at.store(now, Ordering::Relaxed);
            seen.returned.store(false, Ordering::Relaxed);
        }
        let idle_for = now.saturating_sub(seen.active_at.load(Ordering::Relaxed));
        let give_all = !active && !seen.returned.load(Ordering::Relaxed) && idle_for >= delay;
        // SAFETY: locked for housekeeping (not counted as a use), unlocked
        // right after; a busy arena is left for the next tick.
        unsafe {
            if arena::try_lock_quietly(a) {
                given += if give_all {
                    seen.returned.store(true, Ordering::Relaxed);
                    (*a).epoch = (now / TICK_MS) as u32;
                    return_all(&mut *a)
                } else {
                    decay(&mut *a, now)
                };
                arena::unlock(a);
            }
        }
    }
    // SAFETY: taken above.
    unsafe { PASS.unlock() };
    given
}

/// Decay on a slow path that holds `a`'s lock: at most once per
/// [`TICK_MS`] per arena, and only while no background thread does the
/// work.
///
/// # Safety
/// The caller holds `a`'s lock.
pub(crate) unsafe fn on_slow_path(a: &mut Arena) {
    if background_running() {
        return;
    }
    let now = now_ms();
    if now.wrapping_sub(a.decayed_at) < TICK_MS {
        return;
    }
    a.decayed_at = now;
    // SAFETY: forwarded to the caller.
    unsafe { decay(a, now) };
}

/// Advances the arena's clock to `now` and purges the free chunks of its
/// tree bins that have been free for [`delay_ms`] (if the unpurged bytes
/// there are worth the walk). Returns the bytes purged.
///
/// # Safety
/// The caller holds `a`'s lock.
unsafe fn decay(a: &mut Arena, now: u64) -> usize {
    a.epoch = (now / TICK_MS) as u32;
    if a.tree_bytes.saturating_sub(a.purged) <= DIRTY_FLOOR {
        return 0;
    }
    let age = (delay_ms() as u64 / TICK_MS).min(u32::MAX as u64) as u32;
    // SAFETY: forwarded to the caller.
    unsafe { a.purge(usize::MAX, age) }
}

/// Everything the arena holds for later goes back: quick lists
/// consolidated, empty segments unmapped, top trimmed to its pad, every
/// free page purged. Returns the bytes given back.
///
/// # Safety
/// The caller holds `a`'s lock.
unsafe fn return_all(a: &mut Arena) -> usize {
    // SAFETY: forwarded to the caller.
    unsafe {
        a.consolidate_quick();
        let mut given = a.release_unused_segments();
        given += a.trim_top(a.config.top_pad);
        given += a.purge(usize::MAX, 0);
        given
    }
}
