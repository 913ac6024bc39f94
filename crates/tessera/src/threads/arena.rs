//! Arenas: the process allocator's set of heaps, each behind its own lock,
//! as ptmalloc3 builds on dlmalloc's mspaces.
//!
//! # Glossary
//! - **arena**: one [`State`] (a whole heap) in the static slot table, with
//!   its `lock`, its `remote` free stack and its count of `attached` threads.
//! - **binding**: each thread uses one arena for its allocations (kept in a
//!   thread-local of this module, `BOUND`), chosen when the thread first
//!   needs one: an arena no thread is attached to (an exited thread's),
//!   else a new one while under the limit (default 2 x cores, or one per
//!   two threads once there are more; glibc's M_ARENA_MAX default is 8 x
//!   cores: see `limit` for why fewer), else the arena with the fewest
//!   threads, and of those the one locked least often so far. A thread that finds its arena locked waits for it; one
//!   that has waited for its shared arena many times moves to an arena,
//!   free right now, with fewer threads than its own (see
//!   `lock_contended` for why it moves so rarely).
//! - **owner**: the arena a chunk belongs to: the segment record at
//!   `chunk & !(SEGMENT_SIZE - 1)` names it (one mask, one load, no bytes
//!   per chunk), or the mapping header for a direct chunk.
//! - **remote free**: a chunk freed by a thread that cannot take its owner's
//!   lock *right now* is pushed on the owner's lock-free `remote` stack (one
//!   compare-exchange, through the chunk's first payload word); whoever
//!   locks the arena next frees the stacked chunks. So `free` never waits.
//!
//! # Fork
//! `fork_prepare` takes the config lock, then every arena lock;
//! `fork_parent` releases them; `fork_child` resets them. With one thread
//! in the process they take nothing (see [`crate::sys::fork`]): a signal
//! handler may fork while the code it interrupted holds an arena lock.
//!
//! The forking thread holds these locks while glibc's `fork` goes on to
//! take stdio's list lock, which a thread in `fflush(NULL)` may hold while
//! it waits for a stream's lock, which a thread inside `getline` may hold
//! while it calls malloc (glibc bug 19431 is this cycle). So no thread ever
//! waits for a lock the forker holds while `FORKING` is set: one that
//! cannot lock its arena takes another, creates one (reading the config
//! without a lock, and locking the new arena before publishing it, so the
//! forker cannot take it first), or maps a chunk owned by no arena
//! ([`crate::heap::mapping`]'s orphans); frees go to the remote stacks;
//! the config lock is taken only by writers of the config (`mallopt`),
//! never by a malloc. Arenas created during the fork window may be
//! half-updated in the child, which abandons them (never allocates from
//! them; frees into them are dropped). The C library goes further and
//! takes stdio's list lock itself before any of these (glibc's own order),
//! running these handlers from its own
//! ([`leave_fork_handlers_to_embedder`]).
//!
//! # Invariants
//! - slots `0..COUNT` are claimed; a claimed slot is null only while being
//!   created, or forever if creation failed. Arenas are never destroyed.
//! - `attached` counts threads bound to the arena (exited threads detach).

use crate::heap::chunk::{align_up, request2size, Chunk, MAX_REQUEST};
use crate::heap::classify::{next_head_fine, report_overflow, Classified};
use crate::heap::mapping::{orphan_alloc, orphan_free as unmap_orphan};
use crate::heap::mspace::Heap;
use crate::heap::quick::QuickLists;
use crate::heap::segment::{Segment, SEGMENT_HEADER};
use crate::heap::state::{Config, SharedFootprint, State};
use crate::sys::fork::{self, ForkGate};
use crate::sys::lock::RawLock;
use crate::sys::os::Mmap;
use crate::sys::registry;
use core::cell::{Cell, UnsafeCell};
use core::ptr;
use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Hard cap on arenas (the default limit, see [`limit`], is below this).
pub const MAX_ARENAS: usize = 128;
const _: () = assert!(MAX_ARENAS <= registry::MAX_ARENA_TAG as usize);

/// The registry tag of the arena in slot `n` (see `Heap::set_segment_tag`).
pub(crate) const fn tag_of_slot(n: usize) -> u8 {
    (n + 1) as u8
}

/// An arena's heap state.
pub(crate) type Arena = State<Mmap>;

static SLOTS: [AtomicPtr<Arena>; MAX_ARENAS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_ARENAS];
/// state, which must fit in front of the first chunk at a fixed offset.
struct QuickSlot(UnsafeCell<QuickLists>);
// SAFETY: each slot is used only by its arena, under that arena's lock.
unsafe impl Sync for QuickSlot {}
static QUICK: [QuickSlot; MAX_ARENAS] =
    [const { QuickSlot(UnsafeCell::new(QuickLists::EMPTY)) }; MAX_ARENAS];

/// The quick lists for the arena created in slot `i` (each slot is
/// created once).
fn quick_lists_for_slot(i: usize) -> *mut QuickLists {
    QUICK[i].0.get()
}

/// Slots claimed so far.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// M_ARENA_MAX; 0 = default.
static LIMIT: AtomicUsize = AtomicUsize::new(0);
/// Set between fork_prepare and fork_parent/fork_child.
pub(crate) static FORKING: AtomicBool = AtomicBool::new(false);
/// Slots that fork_prepare locked.
static PREPARED: AtomicUsize = AtomicUsize::new(0);
/// Debug level and period for every arena (see `debug`).
pub(crate) static DEBUG_LEVEL: AtomicUsize = AtomicUsize::new(0);
static DEBUG_PERIOD: AtomicUsize = AtomicUsize::new(0);

/// Sets the debug level of every arena, present and future.
pub(crate) fn set_debug(level: u8, period: u32) {
    DEBUG_LEVEL.store(level as usize, Ordering::Relaxed);
    DEBUG_PERIOD.store(period as usize, Ordering::Relaxed);
    for_each(&mut |_, a| {
        // SAFETY: a temporary handle over a locked arena, never dropped.
        let mut h = core::mem::ManuallyDrop::new(unsafe { Heap::from_raw(a) });
        h.set_debug(level, period);
    });
}

/// Footprint of all arenas together, with the process-wide limit.
pub(crate) static SHARED: SharedFootprint = SharedFootprint::new();

/// Tunables every new arena starts with, readable without a lock: a new
/// arena may be made by a thread that holds a stdio lock while another
/// thread forks, and nothing it waits for may be held by the forker (see
/// the module docs on fork). A sequence lock over plain words: writers
/// (`update_config`, rare) take `CONFIG_LOCK` and make `seq` odd while
/// they store; readers retry until they saw an even, unchanged `seq`.
/// `fork_prepare` takes `CONFIG_LOCK`, so no store is half done in a child.
struct SharedConfig {
    seq: AtomicUsize,
    words: [AtomicUsize; CONFIG_WORDS],
}

const CONFIG_WORDS: usize = 8;

/// `Config` as words (every field named, so a new field must be added).
fn config_words(c: &Config) -> [usize; CONFIG_WORDS] {
    let Config {
        mmap_threshold,
        trim_threshold,
        top_pad,
        granularity,
        mmap_max,
        dynamic_threshold,
        perturb,
        max_fast,
    } = *c;
    [
        mmap_threshold,
        trim_threshold,
        top_pad,
        granularity,
        mmap_max,
        usize::from(dynamic_threshold),
        perturb.map_or(0, |b| 0x100 | usize::from(b)),
        max_fast,
    ]
}

/// The inverse of [`config_words`].
fn config_from_words(w: &[usize; CONFIG_WORDS]) -> Config {
    Config {
        mmap_threshold: w[0],
        trim_threshold: w[1],
        top_pad: w[2],
        granularity: w[3],
        mmap_max: w[4],
        dynamic_threshold: w[5] != 0,
        perturb: if w[6] & 0x100 != 0 {
            Some(w[6] as u8)
        } else {
            None
        },
        max_fast: w[7],
    }
}

static CONFIG: SharedConfig = {
    let c = Config {
        dynamic_threshold: true,
        ..Config::DEFAULT
    };
    SharedConfig {
        seq: AtomicUsize::new(0),
        words: [
            AtomicUsize::new(c.mmap_threshold),
            AtomicUsize::new(c.trim_threshold),
            AtomicUsize::new(c.top_pad),
            AtomicUsize::new(c.granularity),
            AtomicUsize::new(c.mmap_max),
            AtomicUsize::new(1),
            AtomicUsize::new(0),
            AtomicUsize::new(c.max_fast),
        ],
    }
};
/// Held by writers of `CONFIG` (and by a forking thread), never by readers.
static CONFIG_LOCK: RawLock = RawLock::new();

/// The tunables new arenas get. Never waits for a lock.
pub(crate) fn config() -> Config {
    loop {
        let before = CONFIG.seq.load(Ordering::Acquire);
        if before & 1 == 0 {
            let mut w = [0; CONFIG_WORDS];
            for (out, word) in w.iter_mut().zip(&CONFIG.words) {
                *out = word.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if CONFIG.seq.load(Ordering::Relaxed) == before {
                return config_from_words(&w);
            }
        }
        core::hint::spin_loop();
    }
}

/// Changes the tunables of every arena, present and future.
pub(crate) fn update_config(f: impl FnOnce(&mut Config)) {
    CONFIG_LOCK.lock();
    let mut c = config();
    f(&mut c);
    CONFIG.seq.fetch_add(1, Ordering::Relaxed);
    fence(Ordering::Release);
    for (word, value) in CONFIG.words.iter().zip(config_words(&c)) {
        word.store(value, Ordering::Relaxed);
    }
    CONFIG.seq.fetch_add(1, Ordering::Release);
    // SAFETY: taken above.
    unsafe { CONFIG_LOCK.unlock() };
    for_each(&mut |_, a| {
        // SAFETY: a temporary handle over a locked arena, never dropped.
        let mut h = core::mem::ManuallyDrop::new(unsafe { Heap::from_raw(a) });
        h.set_config(c);
    });
}

/// The arena limit in effect: M_ARENA_MAX if set, else 2 x cores, or one
/// arena per two threads once there are more than 4 x cores of them (at
/// most 8 x cores, glibc's limit), or M_ARENA_TEST, whichever is more
/// (glibc consults the number of cores only once more than M_ARENA_TEST
/// arenas exist; its M_ARENA_TEST defaults to 8, Tessera's to none, so
/// that the cores decide).
pub(crate) fn limit() -> usize {
    let l = LIMIT.load(Ordering::Relaxed);
    if l != 0 {
        return l.min(MAX_ARENAS);
    }
    // SAFETY: sysconf has no preconditions and does not allocate.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    // 2 x cores, not glibc's 8 x cores: every arena keeps its own free
    // memory, which other arenas cannot use, so fewer and fuller arenas
    // hold less. Measured (tessera-bench shapes and service, 2 cores, one
    // invocation, 6 Dec 2026): with 8 x cores the shapes' peak RSS was
    // 1.16 x glibc and the service workload kept 4.2 x its live bytes
    // between bursts; with 2 x cores 1.12 x and 2.8 x, at the same speed
    // (time geomean 0.90 against 0.92); with 1 x cores 1.03 x and 2.3 x,
    // but the 4-thread shapes ran up to 60% slower (threads waiting for
    // shared arenas).
    //
    // But more than two threads to an arena wait for each other more than
    // fuller arenas save: 16 threads on 2 cores (4 arenas) ran sh8 at 1.71
    // x glibc's time and sh6 at 0.78; one arena per two threads (8), 0.69
    // and 0.65, for peak RSS 1.10 -> 1.15 and 1.08 -> 1.10 x glibc
    // (`tessera-bench shapes --cores 8`, 7 Dec 2026). The service workload
    // (8 threads and the main one on 2 cores) keeps its 4 arenas.
    // (The threads bound, and the one asking.)
    let threads = threads_bound() + 1;
    let per_two_threads = (threads / 2).min(8 * cores);
    (2 * cores)
        .max(per_two_threads)
        .max(ARENA_TEST.load(Ordering::Relaxed))
        .min(MAX_ARENAS)
}

/// Threads bound to an arena now (exited threads are not).
fn threads_bound() -> usize {
    (0..count())
        .map(get)
        .filter(|a| !a.is_null())
        // SAFETY: arenas are never freed.
        .map(|a| unsafe { (*a).attached.load(Ordering::Relaxed) })
        .sum()
}

/// Sets M_ARENA_MAX (0 = default). Existing arenas stay.
pub(crate) fn set_limit(n: usize) {
    LIMIT.store(n, Ordering::Relaxed);
}

/// M_ARENA_TEST: arenas made before the number of cores limits them
/// (glibc's default on 64-bit is 8; here 0, unset: see `limit`).
static ARENA_TEST: AtomicUsize = AtomicUsize::new(0);

/// Sets M_ARENA_TEST (at least 1).
pub(crate) fn set_arena_test(n: usize) {
    ARENA_TEST.store(n.max(1), Ordering::Relaxed);
}

/// Number of arena slots claimed.
pub(crate) fn count() -> usize {
    COUNT.load(Ordering::Acquire).min(MAX_ARENAS)
}

/// The arena in slot `i` (null if none).
#[inline]
pub(crate) fn get(i: usize) -> *mut Arena {
    SLOTS[i].load(Ordering::Acquire)
}

/// Creates a new arena if under the limit (or if there is none at all);
/// returns it unlocked, or null.
#[cold]
pub(crate) fn create() -> *mut Arena {
    let a = create_locked();
    if !a.is_null() {
        // SAFETY: locked by `create_locked`.
        unsafe { unlock(a) };
    }
    a
}

/// [`create`], returning the new arena locked: it is locked before it is
/// published, so a thread that forks meanwhile cannot take its lock first
/// and leave the creator waiting (see the module docs on fork). Never waits
/// for a lock.
#[cold]
pub(crate) fn create_locked() -> *mut Arena {
    let config = config();
    // A new arena commits its first granules at once: refuse when that
    // would break the process-wide footprint limit. (Arenas check the limit
    // each under their own lock, so concurrent growth can overshoot it by
    // at most one growth step per arena.)
    let fp_limit = SHARED.limit.load(Ordering::Relaxed);
    let first = align_up(
        config.top_pad + (SEGMENT_HEADER + 4096),
        config.granularity.max(4096),
    );
    if fp_limit != 0 && SHARED.total.load(Ordering::Relaxed) + first > fp_limit {
        return ptr::null_mut();
    }
    let mut n = COUNT.load(Ordering::Relaxed);
    loop {
        if n >= MAX_ARENAS || (n > 0 && n >= self::limit()) {
            return ptr::null_mut();
        }
        match COUNT.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => n = now,
        }
    }
    let Some(mut heap) = Heap::with_config(Mmap, config) else {
        return ptr::null_mut();
    };
    heap.set_segment_tag(tag_of_slot(n));
    let level = DEBUG_LEVEL.load(Ordering::Relaxed);
    if level >= 2 {
        heap.set_debug(level as u8, DEBUG_PERIOD.load(Ordering::Relaxed) as u32);
    }
    let a = heap.as_raw();
    core::mem::forget(heap);
    // SAFETY: a fresh arena nobody else sees yet; its lock is free.
    unsafe {
        (*a).shared = &SHARED;
        (*a).quick = quick_lists_for_slot(n);
        let fp = (*a).footprint;
        let total = SHARED.total.fetch_add(fp, Ordering::Relaxed) + fp;
        SHARED.peak.fetch_max(total, Ordering::Relaxed);
        let locked = (*a).lock.try_lock();
        debug_assert!(locked);
    }
    SLOTS[n].store(a, Ordering::Release);
    a
}

/// Picks an arena for a thread that has none, attaching it: one no thread
/// uses, else a new one, else the least loaded (see the glossary).
pub(crate) fn bind_new_thread() -> *mut Arena {
    let n = count();
    for i in 0..n {
        let a = get(i);
        // SAFETY: arenas are never freed.
        if !a.is_null()
            && unsafe { !(*a).abandoned }
            && unsafe { &(*a).attached }
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return a;
        }
    }
    let a = create();
    if !a.is_null() {
        // SAFETY: arenas are never freed.
        unsafe { (*a).attached.fetch_add(1, Ordering::Relaxed) };
        return a;
    }
    // Every arena has a thread: join the one with the fewest, and of those
    // the one locked least often so far, most likely an idle thread's (a
    // main thread waiting in `join`) rather than a busy one's. (Round robin
    // here, with threads that wait for their arena, put larson's two
    // workers on one arena in some generations, next to arenas whose
    // threads only wait in `join`: larson-4k 0.158 s against 0.124 with
    // this choice, larson 0.204 against 0.146, 7 alternating runs each.)
    let mut best: *mut Arena = ptr::null_mut();
    let mut best_key = (usize::MAX, usize::MAX);
    for i in 0..count() {
        let a = get(i);
        // SAFETY: arenas are never freed.
        if a.is_null() || unsafe { (*a).abandoned } {
            continue;
        }
        // SAFETY: as above.
        let key = unsafe {
            (
                (*a).attached.load(Ordering::Relaxed),
                (*a).uses.load(Ordering::Relaxed),
            )
        };
        if key < best_key {
            best = a;
            best_key = key;
        }
    }
    if !best.is_null() {
        // SAFETY: as above.
        unsafe { (*best).attached.fetch_add(1, Ordering::Relaxed) };
    }
    best
}

/// Moves a thread's attachment from `from` to `to`.
pub(crate) fn rebind(from: *mut Arena, to: *mut Arena) {
    // SAFETY: arenas are never freed.
    unsafe {
        if !from.is_null() {
            (*from).attached.fetch_sub(1, Ordering::Relaxed);
        }
        (*to).attached.fetch_add(1, Ordering::Relaxed);
    }
}

/// Detaches an exiting thread from its arena.
pub(crate) fn detach(a: *mut Arena) {
    if !a.is_null() {
        // SAFETY: arenas are never freed.
        unsafe { (*a).attached.fetch_sub(1, Ordering::Relaxed) };
    }
}

/// Frees every chunk stacked on `a`'s remote list.
///
/// # Safety
/// The caller holds `a`'s lock.
#[inline]
pub(crate) unsafe fn drain_remote(a: &mut Arena) {
    if a.remote.load(Ordering::Relaxed).is_null() {
        return;
    }
    let mut p = a.remote.swap(ptr::null_mut(), Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: each stacked chunk is in use in `a` and carries the link
        // to the next in its first payload word (written by `push_remote`).
        unsafe {
            let next = p.cast::<*mut u8>().read();
            a.free(p);
            p = next;
        }
    }
}

/// Pushes `mem` (an in-use chunk of `a`) on `a`'s remote stack.
///
/// # Safety
/// `mem` must be a live allocation of `a`, given up by the caller.
pub(crate) unsafe fn push_remote(a: &Arena, mem: *mut u8) {
    let mut head = a.remote.load(Ordering::Relaxed);
    loop {
        // SAFETY: the payload now belongs to the allocator.
        unsafe { mem.cast::<*mut u8>().write(head) };
        match a
            .remote
            .compare_exchange_weak(head, mem, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

/// Counts a use of `a` (see `State::uses`; the caller holds the lock, so a
/// plain load and store suffice).
#[inline(always)]
fn note_use(a: &Arena) {
    a.uses.store(
        a.uses.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Tries to lock `a` for housekeeping (see `decay`): drains its remote
/// stack but does not count as a use.
///
/// # Safety
/// `a` must be an arena.
pub(crate) unsafe fn try_lock_quietly(a: *mut Arena) -> bool {
    // SAFETY: arenas are never freed.
    unsafe {
        if (*a).lock.try_lock() {
            drain_remote(&mut *a);
            true
        } else {
            false
        }
    }
}

/// Tries to lock `a` (and drain its remote stack).
///
/// # Safety
/// `a` must be an arena.
#[inline]
pub(crate) unsafe fn try_lock(a: *mut Arena) -> bool {
    // SAFETY: arenas are never freed.
    unsafe {
        if (*a).lock.try_lock() {
            note_use(&*a);
            drain_remote(&mut *a);
            true
        } else {
            false
        }
    }
}

/// Unlocks `a`.
///
/// # Safety
/// The caller holds `a`'s lock.
#[inline]
pub(crate) unsafe fn unlock(a: *mut Arena) {
    // SAFETY: forwarded to the caller.
    unsafe {
        if PURGE_AT_UNLOCK.load(Ordering::Relaxed) {
            purge_at_unlock(&mut *a);
        }
        (*a).lock.unlock()
    };
}

/// Unpurged free bytes in an arena's tree bins below which decay does not
/// walk them (the walk is not free, and so little is not worth it).
pub const DIRTY_FLOOR: usize = 1 << 20;

/// Set while the decay delay is 0 (`threads::decay::set_delay_ms`).
static PURGE_AT_UNLOCK: AtomicBool = AtomicBool::new(false);

/// Turns [`purge_at_unlock`] on or off.
pub(crate) fn set_purge_at_unlock(on: bool) {
    PURGE_AT_UNLOCK.store(on, Ordering::Relaxed);
}

/// With a decay delay of 0 (as jemalloc's `dirty_decay_ms:0`), free pages
/// do not wait for the decay thread: once the arena's unpurged tree-bin
/// bytes have grown by more than [`DIRTY_FLOOR`] since its last purge,
/// every free page of its tree bins is purged before the lock is let go.
/// The floor keeps the walk over the tree bins to one per MiB freed; what
/// stays resident is at most that MiB per arena, the partial pages at the
/// ends of free chunks, the small bins, the quick lists and the thread
/// caches. The price is a page fault for every page reused afterwards
/// (docs/benchmarks.md, "Trading time for memory"). Off, `unlock` pays one
/// relaxed load and a branch.
///
/// # Safety
/// The caller holds `a`'s lock.
#[cold]
#[inline(never)]
unsafe fn purge_at_unlock(a: &mut Arena) {
    let dirty = a.tree_bytes.saturating_sub(a.purged);
    if dirty < a.dirty_mark {
        a.dirty_mark = dirty;
    }
    if dirty > a.dirty_mark + DIRTY_FLOOR {
        // SAFETY: the caller holds the lock.
        unsafe { a.purge(usize::MAX, 0) };
        a.dirty_mark = a.tree_bytes.saturating_sub(a.purged);
    }
}

std::thread_local! {
    /// The arena the calling thread allocates from (null until it first
    /// needs one). A plain value with no destructor, so reading it is one
    /// thread-pointer-relative load and it stays readable while the
    /// thread's exit hooks run.
    static BOUND: Cell<*mut Arena> = const { Cell::new(ptr::null_mut()) };
    /// Times this thread has waited for its shared arena since it started
    /// or last moved (see `lock_contended`).
    static WAITS: Cell<u32> = const { Cell::new(0) };
}

/// Waits for its shared arena after which a thread may move to a less
/// loaded one (see `lock_contended`): contention that lasts, not a
/// moment's.
const MOVE_AFTER: u32 = 256;

/// The calling thread's arena (null if it has none yet).
#[inline]
pub(crate) fn current() -> *mut Arena {
    BOUND.with(Cell::get)
}

/// Binds the calling thread to an arena if it has none, then registers the
/// fork handlers if nobody has yet: here no arena lock is held and no
/// thread cache is borrowed, so a `malloc` from inside `pthread_atfork`
/// finds everything consistent.
#[cold]
fn bind_current() {
    BOUND.with(|b| {
        if b.get().is_null() {
            b.set(bind_new_thread());
        }
    });
    ensure_atfork();
}

/// Locks the calling thread's arena (binding one first if it has none),
/// waiting for it if it is locked, or moving the binding as
/// `lock_contended` allows. Null only while another
/// thread forks and every arena is taken: the caller then falls back to an
/// orphan mapping.
pub(crate) fn lock_current() -> *mut Arena {
    if current().is_null() {
        bind_current();
    }
    BOUND.with(|b| {
        let mut bound = b.get();
        let a = lock_for_thread(&mut bound);
        b.set(bound);
        a
    })
}

/// Detaches the calling thread (which is exiting) from its arena.
pub(crate) fn detach_current() {
    BOUND.with(|b| {
        detach(b.get());
        b.set(ptr::null_mut());
    });
}

/// Runs `f` on the calling thread's arena, locked; on a null result (that
/// arena is out of memory) tries the others once, then a new one. `None`
/// only while another thread forks and every arena is taken.
#[inline]
pub(crate) fn with_current(f: impl Fn(&mut Arena) -> *mut u8) -> Option<*mut u8> {
    let a = lock_current();
    if a.is_null() {
        return None;
    }
    // SAFETY: locked by lock_current; unlocked right after.
    let p = unsafe {
        let p = f(&mut *a);
        unlock(a);
        p
    };
    if !p.is_null() {
        return Some(p);
    }
    Some(retry_elsewhere(a, &f))
}

#[cold]
fn retry_elsewhere(tried: *mut Arena, f: &dyn Fn(&mut Arena) -> *mut u8) -> *mut u8 {
    for i in 0..count() {
        let b = get(i);
        // SAFETY: arenas are never freed.
        if b.is_null() || b == tried || unsafe { (*b).abandoned } {
            continue;
        }
        // SAFETY: as above; unlocked right after.
        unsafe {
            if try_lock(b) {
                let p = f(&mut *b);
                unlock(b);
                if !p.is_null() {
                    return p;
                }
            }
        }
    }
    let b = create_locked();
    if b.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a fresh arena, locked by `create_locked`; unlocked right after.
    unsafe {
        let p = f(&mut *b);
        unlock(b);
        p
    }
}

/// Locks an arena for a thread bound to `*bound` (binding one if null),
/// waiting for it if it is locked, or moving the binding as
/// `lock_contended` allows. Null only while another thread forks and every
/// arena is taken.
fn lock_for_thread(bound: &mut *mut Arena) -> *mut Arena {
    if bound.is_null() {
        *bound = bind_new_thread();
        if bound.is_null() {
            return ptr::null_mut();
        }
    }
    let a = *bound;
    // SAFETY: arenas are never freed.
    unsafe {
        if !(*a).abandoned && try_lock(a) {
            return a;
        }
    }
    lock_contended(bound)
}

#[cold]
#[inline(never)]
fn lock_contended(bound: &mut *mut Arena) -> *mut Arena {
    let a = *bound;
    // A thread waits for its own arena. Only a thread that has waited for
    // its shared arena [`MOVE_AFTER`] times since it last moved may move,
    // and only to an arena that is free right now and has fewer threads
    // than its own. Until 7 Dec 2026 a thread that found a shared arena
    // locked moved to whichever arena was free at that moment; that spread
    // each thread's memory over every arena it ever found busy, and with
    // more threads than arenas kept them hopping, each hop making the
    // thread's older blocks another arena's. 16 threads on 2 cores (4
    // arenas), child runs side by side: sh6 0.44 s moving, 0.23 never
    // moving (glibc 0.31), peak RSS 19.2 -> 15.1 MiB; sh8 0.58 -> 0.47 s
    // (glibc 0.54), 34.4 -> 26.8 MiB. Never moving (waiting like glibc's
    // threads) left a thread that shared a busy arena next to one whose
    // thread only waits in `join` (the in-process suite's churn x4: 1.02 to
    // 1.17 x glibc's time in three runs, against 0.91-0.96 moving); moving
    // at once to a less loaded arena fixed that (0.93-0.96) but cost the
    // service workload memory (8 threads and the main one on 4 arenas, so
    // threads moved to even a load that cannot be even: 3.01-3.17 x its live
    // bytes between bursts against 2.83-2.98 never moving); moving after
    // 256 waits keeps both (churn x4 0.93-0.95, service 2.83). A thread
    // alone on its arena always waits: the holder is a visitor (another
    // thread's cache flushing chunks home, the decay pass); xmalloc's
    // producers, which used to move then, moved 119 times in a run and
    // grew four arenas instead of two.
    // SAFETY: arenas are never freed.
    if unsafe { !(*a).abandoned } && !FORKING.load(Ordering::Acquire) {
        // SAFETY: as above.
        let mine = unsafe { (*a).attached.load(Ordering::Relaxed) };
        let waits = WAITS.with(Cell::get);
        if mine > 1 && waits >= MOVE_AFTER {
            // SAFETY: arenas are never freed.
            let fewer = |b: *mut Arena| unsafe { (*b).attached.load(Ordering::Relaxed) } < mine;
            if let Some(b) = move_to_free_arena(bound, fewer) {
                WAITS.with(|w| w.set(0));
                return b;
            }
        }
        if mine > 1 {
            WAITS.with(|w| w.set(waits.saturating_add(1)));
        }
        return wait_for(a);
    }
    // A fork is under way (no thread may wait for a lock the forker holds:
    // see the module docs) or the arena was abandoned by one: another
    // arena that is free right now, else a new one.
    if let Some(b) = move_to_free_arena(bound, |_| true) {
        return b;
    }
    // (A new arena is locked before anyone else sees it.)
    let b = create_locked();
    if !b.is_null() {
        rebind(a, b);
        *bound = b;
        return b;
    }
    // SAFETY: arenas are never freed.
    if unsafe { (*a).abandoned } {
        let b = bind_new_thread();
        detach(a);
        *bound = b;
        if b.is_null() {
            return b;
        }
        return lock_for_thread(bound);
    }
    wait_for(a)
}

/// Moves the binding `*bound` to another arena that `accept`s, is not
/// abandoned and whose lock is free right now (taken here), looking from
/// the arena after the current one; returns it locked, or `None`.
fn move_to_free_arena(
    bound: &mut *mut Arena,
    accept: impl Fn(*mut Arena) -> bool,
) -> Option<*mut Arena> {
    let a = *bound;
    let n = count();
    let start = (0..n).position(|i| get(i) == a).unwrap_or(0);
    for k in 1..=n {
        let b = get((start + k) % n);
        // SAFETY: arenas are never freed.
        if !b.is_null()
            && b != a
            && unsafe { !(*b).abandoned }
            && accept(b)
            && unsafe { try_lock(b) }
        {
            rebind(a, b);
            *bound = b;
            return Some(b);
        }
    }
    None
}

/// Locks the thread's own arena `a`, waiting, unless a fork needs every
/// lock (then null).
fn wait_for(a: *mut Arena) -> *mut Arena {
    loop {
        // SAFETY: arenas are never freed.
        unsafe {
            if try_lock(a) {
                return a;
            }
        }
        if FORKING.load(Ordering::Acquire) {
            return ptr::null_mut();
        }
        // SAFETY: arenas are never freed.
        if unsafe { (*a).lock.lock_timeout_ms(1) } {
            // SAFETY: we hold the lock now.
            unsafe {
                note_use(&*a);
                drain_remote(&mut *a);
            }
            return a;
        }
    }
}

/// Locks arena `a` (not the caller's own: the owner of a chunk being
/// resized), waiting unless a fork is under way. Returns whether it did.
///
/// # Safety
/// `a` must be an arena.
pub(crate) unsafe fn try_lock_or_wait(a: *mut Arena) -> bool {
    loop {
        // SAFETY: forwarded to the caller.
        unsafe {
            if try_lock(a) {
                return true;
            }
            if FORKING.load(Ordering::Acquire) {
                return false;
            }
            if (*a).lock.lock_timeout_ms(1) {
                drain_remote(&mut *a);
                return true;
            }
        }
    }
}

/// Frees `mem`, validated by `classify` as `c`, without waiting: directly
/// if its arena's lock is free, else through the remote stack (whose
/// drain validates again, since time has passed).
///
/// # Safety
/// `c` must come from `classify(mem)` just now, with a non-null owner.
#[inline(always)]
pub(crate) unsafe fn free_to_owner(c: Classified, mem: *mut u8) {
    let owner: *mut Arena = c.owner.cast();
    // SAFETY: arenas are never freed; `c` validates `mem` in `owner` (caller).
    unsafe {
        if (*owner).abandoned {
            return; // see the module docs on fork
        }
        if try_lock(owner) {
            (*owner).free_classified(c);
            unlock(owner);
        } else {
            push_remote(&*owner, mem);
        }
    }
}

/// The head after the in-use chunk `mem` (of `size` bytes, which the
/// caller is freeing) failed a quick test (`Head::looks_real` or the fast
/// path's `mark_agrees`): looks at it in full, and if it still looks
/// wrong, once more with its arena locked (a head is only rewritten under
/// that lock, so then it is settled), and reports the overflow. Skipped
/// for an abandoned arena, and while a fork holds every arena (nothing may
/// wait for the forker then).
///
/// # Safety
/// `mem` must be a validated in-use segment chunk of `size` bytes, given
/// up by the caller.
#[cold]
#[inline(never)]
pub(crate) unsafe fn check_next_of(mem: *mut u8, size: usize) {
    // SAFETY: forwarded to the caller; arenas are never freed, and the
    // segment of a validated chunk is live.
    unsafe {
        if next_head_fine(mem, size) {
            return;
        }
        let owner: *mut Arena = (*Segment::of(mem)).owner.cast();
        if owner.is_null() || (*owner).abandoned || !try_lock_or_wait(owner) {
            return;
        }
        let fine = next_head_fine(mem, size);
        unlock(owner);
        if !fine {
            report_overflow(mem, size);
        }
    }
}

/// Calls `f(index, arena)` with each live arena locked in turn. (Looking
/// is not using: the locks taken here do not count as uses of the arenas,
/// so statistics and snapshots do not keep an idle arena from giving its
/// memory back; see `decay`.)
pub(crate) fn for_each(f: &mut dyn FnMut(usize, *mut Arena)) {
    for i in 0..count() {
        let a = get(i);
        // SAFETY: arenas are never freed.
        if a.is_null() || unsafe { (*a).abandoned } {
            continue;
        }
        // SAFETY: as above; unlocked right after.
        unsafe {
            (*a).lock.lock();
            drain_remote(&mut *a);
            f(i, a);
            unlock(a);
        }
    }
}

/// Whether the `prepare` now running took the locks (see
/// [`crate::sys::fork`]: skipped while the process has one thread, and
/// taken once when the handlers run nested).
static FORK_GATE: ForkGate = ForkGate::new();
static ATFORK: AtomicBool = AtomicBool::new(false);

/// Registers the fork handlers once (outside every allocator lock and
/// thread-cache borrow: glibc's `pthread_atfork` may call malloc).
#[inline]
fn ensure_atfork() {
    if ATFORK.load(Ordering::Relaxed) {
        return;
    }
    register_atfork();
}

#[cold]
fn register_atfork() {
    fork::register_once(&ATFORK, fork_prepare, fork_parent, fork_child);
}

/// An embedder that runs [`fork_prepare`], [`fork_parent`] and
/// [`fork_child`] from fork handlers of its own (the C library, which must
/// order them after stdio's lock) keeps the allocator from registering
/// its own. Returns false if they were registered already.
pub(crate) fn leave_fork_handlers_to_embedder() -> bool {
    ATFORK
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// Before `fork`: takes the config lock (only writers of the config wait
/// for it), then every arena lock, unless the process has one thread.
pub(crate) extern "C" fn fork_prepare() {
    if !FORK_GATE.enter() {
        return;
    }
    CONFIG_LOCK.lock();
    FORKING.store(true, Ordering::Release);
    let n = count();
    for i in 0..n {
        // A slot being created right now: wait for it (creation never blocks).
        let mut spins = 0;
        while get(i).is_null() && spins < 1_000_000 && COUNT.load(Ordering::Acquire) > i {
            core::hint::spin_loop();
            spins += 1;
        }
        let a = get(i);
        if !a.is_null() {
            // SAFETY: arenas are never freed; holders never wait on us.
            unsafe { (*a).lock.lock() };
        }
    }
    PREPARED.store(n, Ordering::Release);
}

/// After `fork`, in the parent: releases what `fork_prepare` took.
pub(crate) extern "C" fn fork_parent() {
    if !FORK_GATE.leave() {
        return;
    }
    let n = PREPARED.load(Ordering::Acquire);
    for i in 0..n {
        let a = get(i);
        if !a.is_null() {
            // SAFETY: locked by this thread in fork_prepare.
            unsafe { (*a).lock.unlock() };
        }
    }
    FORKING.store(false, Ordering::Release);
    // SAFETY: taken in fork_prepare.
    unsafe { CONFIG_LOCK.unlock() };
}

/// After `fork`, in the child (one thread, the forker): resets the locks,
/// abandons arenas born during the fork, and clears the attachments of
/// threads that do not exist here. Nothing when `fork_prepare` took no
/// locks (a process with one thread: whatever lock the interrupted code of
/// a forking signal handler holds, it releases itself).
pub(crate) extern "C" fn fork_child() {
    let mine = current();
    if !FORK_GATE.leave() {
        return;
    }
    let n = PREPARED.load(Ordering::Acquire);
    for i in 0..count() {
        let a = get(i);
        if a.is_null() {
            continue;
        }
        // SAFETY: the child has one thread; nothing else touches the arenas.
        unsafe {
            if i < n {
                (*a).lock.reset();
            } else {
                (*a).abandoned = true;
            }
            (*a).attached
                .store(usize::from(a == mine), Ordering::Relaxed);
        }
    }
    FORKING.store(false, Ordering::Release);
    // SAFETY: one thread; taken in fork_prepare.
    unsafe { CONFIG_LOCK.reset() };
}

/// Maps an orphan chunk for a request of `size` bytes (see the module docs).
pub(crate) fn orphan_malloc(size: usize) -> *mut u8 {
    if size >= MAX_REQUEST {
        return ptr::null_mut();
    }
    orphan_alloc(request2size(size))
}

/// Unmaps an orphan chunk.
///
/// # Safety
/// `p` must be a validated live orphan chunk.
pub(crate) unsafe fn orphan_free(p: *mut Chunk) {
    // SAFETY: forwarded to the caller.
    unsafe { unmap_orphan(p) }
}
