//! Set-up at the first call, fork handlers, and the exit hook.
//!
//! # The mode word
//! Every exported allocation function starts with [`mode`]: one relaxed
//! load of [`MODE`] and a compare. Its bits:
//! - [`READY`]: set-up is done. Until then `mode` runs [`init_slow`].
//! - [`TRACING`]: `TESSERA_TRACE` is recording (see [`crate::trace`]).
//!
//! The common case is `mode() == READY`: nothing to do but allocate.
//! `malloc` and `free`, the calls that matter for speed, test [`ready`]
//! instead (the word equals READY: one compare and no call on the way) and
//! leave set-up and tracing to their cold paths, so that nothing of the
//! rarer cases costs them a saved register.
//!
//! # Set-up
//! The first call may come from the dynamic loader or from libc's own
//! start-up, before any constructor has run, and it may come *again* from
//! inside set-up (if `pthread_atfork` were to allocate). [`init_slow`]
//! therefore: claims set-up with a compare-exchange and notes the kernel
//! thread id; a re-entrant call from that thread allocates without waiting;
//! other threads yield until set-up is done. Set-up reads the environment
//! with `getenv` (no allocation), applies the tunables, opens the trace file
//! and registers the fork handlers. If libc has not yet published the
//! environment (`environ` still null), set-up is postponed to a later call
//! (at most [`MAX_DEFERRALS`] times).
//!
//! # Fork
//! The handlers take every lock in one order before `fork` and release
//! (parent) or reset (child) them after: stdio's list lock (see
//! [`crate::fork`]: glibc's own order, so that a thread inside `getline`
//! that needs malloc cannot deadlock a forking thread), then the separate
//! heaps (list, then each heap; `heaps` registers its own handlers when
//! the first heap is made, after these, so they run first), the trace
//! recorder, and the core's config and arenas (the core leaves its fork
//! handlers to this module). With one thread in the process nothing is
//! locked (a signal handler may fork; see `tessera_core::sys::fork`); the
//! child stops recording either way.
//!
//! # Exit
//! [`at_exit`] sits in `.fini_array`, so the dynamic linker's `_dl_fini`
//! runs it when the program calls `exit()` or returns from `main`, after
//! `atexit` handlers and the destructors of the program itself. It finishes
//! the trace, writes the exit snapshot and runs the exit check. A program
//! that ends with `_exit()` or a signal gets none of these.

use crate::env;
use crate::errno::Errno;
use crate::out::{stderr_raw, write_file, StackBuf};
use core::cell::UnsafeCell;
use core::ffi::c_char;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use tessera_core::global::{self, Tunable};
use tessera_core::inspect::trace::Event;
use tessera_core::sys::fork::ForkGate;

/// Set-up is done.
pub const READY: u8 = 1;
/// Calls are being recorded.
pub const TRACING: u8 = 2;

/// The mode bits (module docs).
pub static MODE: AtomicU8 = AtomicU8::new(0);

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(IDLE);
static INIT_TID: AtomicU32 = AtomicU32::new(0);
static DEFERRALS: AtomicU32 = AtomicU32::new(0);

/// How many calls may find `environ` null before set-up goes ahead anyway.
pub const MAX_DEFERRALS: u32 = 1000;

/// Default of `TESSERA_CHECK_PERIOD`: operations between full checks of an
/// arena when `TESSERA_CHECK=2`.
pub const DEFAULT_CHECK_PERIOD: u32 = 1000;

/// `TESSERA_CHECK`: 0 = off, 1 = full check at exit, 2 = the core's debug
/// tier as well (freed memory filled and verified on reuse, a full check
/// every `TESSERA_CHECK_PERIOD` operations per arena).
static CHECK_LEVEL: AtomicU8 = AtomicU8::new(0);

/// This process is a child made by `fork` (not by `exec`).
static FORKED: AtomicBool = AtomicBool::new(false);

/// Where the exit snapshot goes: the expanded path and the raw template
/// (re-expanded in a forked child when it has `%p`).
struct SnapshotTarget {
    path: StackBuf<{ env::PATH_MAX }>,
    template: StackBuf<{ env::PATH_MAX }>,
}
struct SnapshotCell(UnsafeCell<SnapshotTarget>);
// SAFETY: written only during set-up (claimed exclusively through INIT),
// before SNAPSHOT_ON is published; read only after that.
unsafe impl Sync for SnapshotCell {}
static SNAPSHOT: SnapshotCell = SnapshotCell(UnsafeCell::new(SnapshotTarget {
    path: StackBuf::new(),
    template: StackBuf::new(),
}));
static SNAPSHOT_ON: AtomicBool = AtomicBool::new(false);
static SNAPSHOT_PAGES: AtomicUsize = AtomicUsize::new(env::DEFAULT_SNAPSHOT_PAGES);

extern "C" {
    /// libc's environment block (null until libc publishes it).
    static environ: *const *const c_char;
}

fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Is set-up done and nothing more to do than allocate (no tracing)? One
/// load and one compare, for the fast paths of `malloc` and `free`; when
/// false, they call [`mode`] on their cold paths.
#[inline(always)]
pub fn ready() -> bool {
    MODE.load(Ordering::Relaxed) == READY
}

/// The mode bits, running set-up first if it has not happened.
#[inline(always)]
pub fn mode() -> u8 {
    let m = MODE.load(Ordering::Relaxed);
    if m & READY != 0 {
        m
    } else {
        init_slow()
    }
}

/// Set-up, claimed by one thread (module docs). Returns the mode to use
/// for the current call.
#[cold]
#[inline(never)]
pub fn init_slow() -> u8 {
    loop {
        match INIT.compare_exchange(IDLE, RUNNING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                INIT_TID.store(gettid(), Ordering::Relaxed);
                let e = Errno::save();
                let done = initialise();
                e.restore();
                INIT.store(if done { DONE } else { IDLE }, Ordering::Release);
                return MODE.load(Ordering::Acquire);
            }
            Err(DONE) => return MODE.load(Ordering::Acquire),
            Err(_) => {
                if INIT_TID.load(Ordering::Relaxed) == gettid() {
                    // Re-entered from inside set-up: allocate plainly.
                    return 0;
                }
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
}

/// Reads the environment and sets everything up. Returns false when set-up
/// must wait for libc to publish the environment.
fn initialise() -> bool {
    // The core's fork handlers run from ours, after stdio's lock. (If an
    // allocation already registered them, theirs run after ours and find
    // the work done: the core's gate sees a nested prepare.)
    global::leave_fork_handlers_to_embedder();
    // SAFETY: reading a pointer-sized global of libc.
    let env_ready = unsafe { !core::ptr::addr_of!(environ).read().is_null() };
    if !env_ready && DEFERRALS.fetch_add(1, Ordering::Relaxed) < MAX_DEFERRALS {
        return false;
    }
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() } as u32;

    // The debug tier goes first: before any arena hands out memory.
    let check = env::check_level();
    CHECK_LEVEL.store(check, Ordering::Relaxed);
    if check >= 2 {
        let period = env::count_var(c"TESSERA_CHECK_PERIOD")
            .map_or(DEFAULT_CHECK_PERIOD, |p| p.min(u32::MAX as usize) as u32);
        global::set_check_level(check, period);
    }

    let name = c"TESSERA_MMAP_THRESHOLD";
    if let Some(v) = env::size_var(name) {
        if !global::set_tunable(Tunable::MmapThreshold, v) {
            env::warn(name, env::get(name).unwrap_or(b""), "a size up to 32M");
        }
    }
    if let Some(v) = env::size_var(c"TESSERA_TRIM_THRESHOLD") {
        global::set_tunable(Tunable::TrimThreshold, v);
    }
    if let Some(v) = env::count_var(c"TESSERA_ARENA_MAX") {
        global::set_tunable(Tunable::ArenaMax, v);
    }
    if let Some(b) = env::perturb_var() {
        global::set_tunable(Tunable::Perturb, usize::from(b));
    }
    let name = c"TESSERA_TCACHE_MEDIUM";
    if let Some(v) = env::size_var(name) {
        if !global::set_tunable(Tunable::MediumCache, v) {
            env::warn(name, env::get(name).unwrap_or(b""), "a size up to 16M");
        }
    }
    let name = c"TESSERA_DECAY_MS";
    if let Some(v) = env::count_var(name) {
        if !global::set_tunable(Tunable::DecayMs, v) {
            env::warn(
                name,
                env::get(name).unwrap_or(b""),
                "milliseconds up to 3600000",
            );
        }
    }
    let name = c"TESSERA_BACKGROUND";
    if let Some(v) = env::count_var(name) {
        if !global::set_tunable(Tunable::Background, v) {
            env::warn(name, env::get(name).unwrap_or(b""), "0, 1 or 2");
        }
    }
    let mut mode = READY;

    let mut path = StackBuf::<{ env::PATH_MAX }>::new();
    if env::path_var(c"TESSERA_TRACE", pid, &mut path) {
        if let Some(p) = path.as_cstr() {
            if crate::trace::start(p) {
                mode |= TRACING;
            }
        }
    }

    // SAFETY: set-up is claimed by this thread (INIT == RUNNING) and the
    // target is published only by the SNAPSHOT_ON store below.
    let target = unsafe { &mut *SNAPSHOT.0.get() };
    if env::path_var(c"TESSERA_SNAPSHOT", pid, &mut target.path) {
        if let Some(t) = env::get(c"TESSERA_SNAPSHOT") {
            target.template.push(t);
        }
        if let Some(n) = env::count_var(c"TESSERA_SNAPSHOT_PAGES") {
            SNAPSHOT_PAGES.store(n, Ordering::Relaxed);
        }
        SNAPSHOT_ON.store(true, Ordering::Release);
    }

    // SAFETY: the handlers are plain functions that live as long as the
    // library; glibc keeps its first handlers in static storage.
    unsafe {
        libc::pthread_atfork(
            Some(atfork_prepare),
            Some(atfork_parent),
            Some(atfork_child),
        );
    }
    MODE.store(mode, Ordering::Release);
    true
}

/// After an allocation returned (tracing).
#[cold]
#[inline(never)]
pub fn after(mode: u8, event: Event) {
    if mode & TRACING != 0 {
        crate::trace::record(event);
    }
}

/// Before a block is freed (tracing).
#[cold]
#[inline(never)]
pub fn before_free(mode: u8, event: Event) {
    if mode & TRACING != 0 {
        crate::trace::record(event);
    }
}

/// Runs the full checker over every arena; on failure prints one line and
/// ends the program (as M_CHECK_ACTION says: by default `abort()`).
#[cold]
pub fn check_or_die() {
    if let Err(err) = global::check() {
        let mut line = StackBuf::<512>::new();
        let _ = writeln!(line, "tessera: TESSERA_CHECK: {err}");
        tessera_core::sys::report::stop(line.as_bytes());
    }
}

/// Whether the prepare handler now running took the locks.
static FORK_GATE: ForkGate = ForkGate::new();

extern "C" fn atfork_prepare() {
    if !FORK_GATE.enter() {
        return;
    }
    crate::fork::hold_stdio();
    crate::trace::fork_prepare();
    global::fork_prepare();
}

extern "C" fn atfork_parent() {
    if FORK_GATE.leave() {
        global::fork_parent();
        crate::trace::fork_parent();
        crate::fork::release_stdio();
    }
}

extern "C" fn atfork_child() {
    let locked = FORK_GATE.leave();
    if locked {
        global::fork_child();
    }
    crate::trace::fork_child(locked);
    if locked {
        crate::fork::reset_stdio();
    }
    FORKED.store(true, Ordering::Relaxed);
    MODE.fetch_and(!TRACING, Ordering::Relaxed);
}

/// The exit snapshot (`TESSERA_SNAPSHOT`).
fn write_exit_snapshot() {
    if !SNAPSHOT_ON.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: published by SNAPSHOT_ON, never written again.
    let target = unsafe { &*SNAPSHOT.0.get() };
    let mut path = StackBuf::<{ env::PATH_MAX }>::new();
    if FORKED.load(Ordering::Relaxed) {
        // A forked child would overwrite its parent's file, unless the
        // name tells them apart.
        if !env::has_pid(target.template.as_bytes()) {
            return;
        }
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() } as u32;
        env::expand_pid(target.template.as_bytes(), pid, &mut path);
    } else {
        path.push(target.path.as_bytes());
    }
    let Some(p) = path.as_cstr() else {
        return;
    };
    let pages = SNAPSHOT_PAGES.load(Ordering::Relaxed);
    if !write_file(p, |sink| {
        tessera_core::inspect::process::write_snapshot(sink, pages)
    }) {
        let mut line = StackBuf::<600>::new();
        line.push(b"tessera: TESSERA_SNAPSHOT: cannot write ");
        line.push(&p.to_bytes()[..p.to_bytes().len().min(400)]);
        line.push(b"\n");
        stderr_raw(line.as_bytes());
    }
}

/// The exit hook (module docs).
pub extern "C" fn at_exit() {
    let _ = mode();
    let e = Errno::save();
    if !FORKED.load(Ordering::Relaxed) {
        crate::trace::finish();
    }
    write_exit_snapshot();
    if CHECK_LEVEL.load(Ordering::Relaxed) >= 1 {
        check_or_die();
    }
    e.restore();
}

/// Registers [`at_exit`] with the dynamic linker: `_dl_fini` calls every
/// `.fini_array` entry of a library when the process exits normally.
#[cfg(not(test))]
#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;
