//! The per-thread cache: small chunks kept on thread-local singly linked
//! lists, so that most mallocs and frees take no lock at all (glibc's
//! tcache, with stronger link mangling).
//!
//! # Glossary
//! - **small class c**: chunk size `32 + 16 c`, for c in `0..64` (chunks of
//!   32 to 1040 bytes; requests up to 1032 bytes, as glibc's tcache). The
//!   lock-free fast paths of `malloc` and `free` serve these.
//! - **medium class c**: `MEDIUM_BASE + i` for i in `0..NMEDIUM`, chunk
//!   sizes from 1,152 to 65,536 bytes, eight per doubling (1152, 1280, ...,
//!   2048, 2304, ...). A medium request is rounded *up* to its class size
//!   (at most 12.5% more), so that the chunk it gets is reusable for every
//!   request of the class; a freed chunk goes to the largest class not above
//!   its size. Without them, every 1-64 KiB malloc and free would take an
//!   arena lock and walk dlmalloc's tree bins. Their entries are bounded in
//!   number per class and in bytes per thread ([`MEDIUM_BUDGET`] by default,
//!   `Tunable::MediumCache` / `TESSERA_TCACHE_MEDIUM`; 0 turns them off).
//! - **foreign class `FOREIGN_BASE + c`**, for the classes c below
//!   [`FOREIGN_CLASSES`] (chunks smaller than a 64-byte cache line):
//!   chunks of class c that this thread freed and that belong to an arena
//!   other than the one its cache refills from (its *home*, by registry
//!   tag). A few such frees are a block handed over by another thread:
//!   those are not handed out again here, which would put this thread's
//!   writes in a cache line that the owner's thread is using (passive
//!   false sharing: the cache-scratch shape; mimalloc's rule that a block
//!   returns to the heap it came from). Only blocks smaller than a line
//!   are held back: several of them share each line, so every write of
//!   the new user invalidates the old user's copy, where a larger block
//!   shares at most its two ends; larger blocks go to their class, reused
//!   at once (held back too, they cost larson a fifth of its speed, its
//!   threads freeing their predecessors' blocks). A stream of small ones
//!   is a thread that took over another's data (a consumer, a server's
//!   connection passed on): when a foreign list fills ([`FOREIGN_COUNT`]
//!   entries) it is *adopted*, spliced whole into class c, and its chunks
//!   are reused here as glibc, jemalloc and tcmalloc reuse every freed
//!   block; a full class c goes back to the owners as ever (runs parked
//!   on the owner's quick list).
//! - **entry**: a cached chunk. The heap sees it as in use; the program has
//!   freed it. Its first payload word holds the *mangled* link to the next
//!   entry, its second word the cache key.
//! - **mangling**: `stored = next ^ (slot >> 12) ^ secret`, where `slot` is
//!   the address the link is stored at and `secret` the process key
//!   (glibc's safe-linking plus a secret). A stray write into a freed chunk
//!   turns into a misaligned link (15 times in 16), caught before anything
//!   follows it, never into an allocation at an address of the attacker's
//!   choosing. The link becomes the list head when its entry is popped, and
//!   the next pop's test for an entry ([`EMPTY`] is misaligned) catches it.
//! - **key**: the process secret (`key_word`) in the second payload word
//!   marks a cached entry; `free` of a chunk carrying it scans the class
//!   list and aborts on a double free.
//!
//! # Invariants
//! - entries in class c + `room[c]` == `MAX_COUNT[c]` for a live cache,
//!   so a thread caches at most [`MAX_CACHED_BYTES`] bytes in small classes;
//!   `medium_bytes` is the sum of the class sizes of the medium entries and
//!   stays within [`MEDIUM_BUDGET`].
//! - `heads[c]` is [`EMPTY`] ⟺ the list is empty (the last entry's link
//!   demangles to it); every entry is 16-aligned and lies in a segment
//!   of some arena and has CINUSE set; a small entry has the size of class
//!   c or c + 1 (refills may hand out a chunk 16 bytes larger than asked,
//!   which dlmalloc does when a remainder would be too small), a medium
//!   entry a size from class c's up to (not including) class c + 1's.
//! - status: FRESH (never used; no room, so the first free takes the slow
//!   path, which registers the exit hook) → LIVE → DEAD (after the
//!   thread-exit flush; no room again and heads empty, so everything goes
//!   straight to the arenas). LIVE ⇄ BYPASS while M_PERTURB is on: empty
//!   and without room like DEAD, so that every block goes through an
//!   arena, which perturbs it; the fast paths do not test for it.

use super::arena::{self, Arena};
use super::decay;
use crate::heap::chunk::{
    plausible, plausible_near, request2size, tag_ok_keyed, Chunk, Head, CHECKS, CHUNK_OVERHEAD,
    MIN_CHUNK_SIZE,
};
use crate::heap::classify::classify;
use crate::heap::lists::{
    class_of, class_request, class_size, demangle, is_entry, key_word, mangle, EMPTY,
    MAX_CACHED_REQUEST, MAX_CACHED_SIZE, NSMALL,
};
use crate::heap::segment::Segment;
use crate::sys::errno;
use crate::sys::registry;
use crate::sys::report::{fatal, fatal_with, Misuse};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The first medium class.
pub const MEDIUM_BASE: usize = NSMALL;
/// Medium classes per doubling of the size, as a power of two.
const MEDIUM_STEPS_LOG: usize = 3;
/// Number of medium classes: eight per doubling from 1 KiB to 64 KiB.
pub const NMEDIUM: usize = 6 << MEDIUM_STEPS_LOG;
/// The first foreign class: `FOREIGN_BASE + c` holds other arenas'
/// chunks of small class c (see the glossary).
pub const FOREIGN_BASE: usize = MEDIUM_BASE + NMEDIUM;
/// The small classes that have a foreign class: chunks of 32 and 48
/// bytes, smaller than a 64-byte cache line.
pub const FOREIGN_CLASSES: usize = 2;
const _: () = assert!(MIN_CHUNK_SIZE + 16 * (FOREIGN_CLASSES - 1) < 64);
/// Size of the class arrays (a power of two, so that masking an index
/// proves it in bounds; the classes past the foreign ones stay empty).
pub const NCLASSES: usize = 128;
const _: () = assert!(FOREIGN_BASE + FOREIGN_CLASSES <= NCLASSES && NCLASSES.is_power_of_two());

/// The small class whose chunks list `l` holds: `l` itself for a small
/// class, `l - FOREIGN_BASE` for a foreign one; None for the others.
#[inline]
fn small_class_of_list(l: usize) -> Option<usize> {
    if l < NSMALL {
        Some(l)
    } else if (FOREIGN_BASE..FOREIGN_BASE + FOREIGN_CLASSES).contains(&l) {
        Some(l - FOREIGN_BASE)
    } else {
        None
    }
}
/// The smallest and the largest medium chunk sizes.
pub const MIN_MEDIUM_SIZE: usize = 1024 + (1024 >> MEDIUM_STEPS_LOG);
pub const MAX_MEDIUM_SIZE: usize = 65536;
/// The largest request served from a medium class.
pub const MAX_MEDIUM_REQUEST: usize = MAX_MEDIUM_SIZE - CHUNK_OVERHEAD;
/// The most bytes (by class size) one thread keeps in medium classes, by
/// default.
pub const MEDIUM_BUDGET: usize = 128 << 10;
/// The largest medium budget [`set_medium_budget`] accepts.
pub const MAX_MEDIUM_BUDGET: usize = 16 << 20;
/// The medium budget in effect ([`MEDIUM_BUDGET`] unless set; 0 turns the
/// medium classes off: no rounding up, no caching).
static MEDIUM_LIMIT: AtomicUsize = AtomicUsize::new(MEDIUM_BUDGET);

/// Sets the per-thread medium budget (0 turns the medium classes off);
/// false when above [`MAX_MEDIUM_BUDGET`]. Entries already cached stay
/// until their class is used or flushed.
pub(crate) fn set_medium_budget(bytes: usize) -> bool {
    if bytes > MAX_MEDIUM_BUDGET {
        return false;
    }
    MEDIUM_LIMIT.store(bytes, Ordering::Relaxed);
    true
}

/// Chunk size of medium class `MEDIUM_BASE + i`: `2^k + j 2^(k-3)` for
/// the doubling `2^k` (from 1024) and eighth `j` in 1..=8.
pub const fn medium_size(i: usize) -> usize {
    let k = 10 + (i >> MEDIUM_STEPS_LOG);
    let j = (i & ((1 << MEDIUM_STEPS_LOG) - 1)) + 1;
    (1 << k) + j * (1 << (k - MEDIUM_STEPS_LOG))
}

/// Entries allowed per class: about 16 KiB worth, between 32 and 256 (far
/// more than glibc's 7: a random mix of sizes then rarely empties or
/// overfills a class, which would cost a trip to the arena, and a program
/// that frees a run of hundreds of blocks of one size and allocates them
/// again keeps most of them here; refills start small and double, so a
/// class fills only as far as the program frees into it). Measured against
/// 8 KiB worth between 16 and 64 (`tessera-bench shapes --reps 5`, side by
/// side, 7 Dec 2026): time sh6 0.66 -> 0.61 x glibc, sh8 0.77 -> 0.71,
/// xmalloc 0.69 -> 0.59, geomean 0.82 -> 0.79; peak RSS sh8 1.31 -> 1.37,
/// larson-4k 1.01 -> 1.07, python 1.11 -> 1.14, geomean 1.04 -> 1.05. 32
/// KiB worth (up to 512) was faster still (sh6 0.55, xmalloc 0.56) but
/// held up to 2.1 MiB per thread, which every idle thread keeps, and took
/// the in-process suite's xmalloc x4 peak from 1.7 to 2.4 x glibc.
///
/// Medium classes: about 64 KiB worth, between 2 and 8 (and all of them
/// together within [`MEDIUM_BUDGET`]).
///
/// Foreign classes: [`FOREIGN_COUNT`].
pub const MAX_COUNT: [u16; NCLASSES] = {
    let mut m = [0u16; NCLASSES];
    let mut c = 0;
    while c < NSMALL {
        let size = MIN_CHUNK_SIZE + 16 * c;
        let mut n = 16384 / size;
        if n < 32 {
            n = 32;
        }
        if n > 256 {
            n = 256;
        }
        m[c] = n as u16;
        c += 1;
    }
    let mut i = 0;
    while i < NMEDIUM {
        let mut n = (64 << 10) / medium_size(i);
        if n < 2 {
            n = 2;
        }
        if n > 8 {
            n = 8;
        }
        m[MEDIUM_BASE + i] = n as u16;
        i += 1;
    }
    let mut c = 0;
    while c < FOREIGN_CLASSES {
        m[FOREIGN_BASE + c] = FOREIGN_COUNT;
        c += 1;
    }
    m
};

/// Entries a foreign class holds before it is adopted (see the glossary):
/// fewer frees of another arena's blocks of one class than this are a
/// hand-over, and those blocks are not reused by this thread.
pub const FOREIGN_COUNT: u16 = 8;

/// The most bytes one thread's cache can hold in its small and foreign
/// classes (entries may be one class larger than their list, hence the
/// `+ 16`).
pub const MAX_CACHED_BYTES: usize = {
    let mut total = 0;
    let mut c = 0;
    while c < NSMALL {
        let mut n = MAX_COUNT[c] as usize;
        if c < FOREIGN_CLASSES {
            n += MAX_COUNT[FOREIGN_BASE + c] as usize;
        }
        total += n * (MIN_CHUNK_SIZE + 16 * c + 16);
        c += 1;
    }
    total
};

const _: () = assert!(MAX_CACHED_BYTES < 3 << 19);

/// After `fork` only the forking thread exists: [`LIVE_CACHES`] counts
/// its cache alone (or none), so a single-threaded child does not start a
/// background thread because its parent had several. Registered once, on
/// the first refill.
fn register_fork_child() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Relaxed) || DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    extern "C" fn child() {
        // SAFETY: the child's only thread reads its own cache's status.
        let live = unsafe { (*real()).status } == LIVE;
        LIVE_CACHES.store(usize::from(live), Ordering::Relaxed);
    }
    // SAFETY: registers a plain function that lives as long as the process.
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

/// Chunks a class's first refill takes (see `ThreadCache::refill`).
const FIRST_BATCH: u16 = 4;

/// Threads whose caches are live (for `decay::maybe_start`).
static LIVE_CACHES: AtomicUsize = AtomicUsize::new(0);

const FRESH: u8 = 0;
const LIVE: u8 = 1;
const DEAD: u8 = 2;
/// Holds nothing and takes nothing while M_PERTURB is on (see
/// [`ThreadCache::reconsider`]); live again when it is off.
const BYPASS: u8 = 3;

/// M_PERTURB is on: caches stand aside, so that every block goes through
/// an arena, which perturbs it (see `heap::state::Config::perturb`).
static PERTURBING: AtomicBool = AtomicBool::new(false);

/// Turns the caches' standing aside for M_PERTURB on or off. Each thread's
/// cache notices at its next trip to an arena (a refill, a full class);
/// the calling thread should [`reconsider_current`].
pub(crate) fn set_perturbing(on: bool) {
    PERTURBING.store(on, Ordering::Relaxed);
}

fn perturbing() -> bool {
    PERTURBING.load(Ordering::Relaxed)
}

/// One thread's cache. See the module docs.
///
/// `repr(C)`, in this order, so that the three arrays the fast paths touch
/// for one class (`heads`, `room`, `last`) do not lie a multiple of 4 KiB
/// apart: a load that follows a store at such a distance is taken for
/// dependent on it by the processor and waits (4K aliasing), which cost
/// the pop a stall when `room` sat 4096 bytes after `heads`.
#[repr(C)]
pub(crate) struct ThreadCache {
    heads: [*mut u8; NCLASSES],
    /// Room left in each class: `MAX_COUNT[c] - entries` while live, 0
    /// while fresh or dead (so pushes take the slow path). Counting down
    /// lets the fast path compare with zero instead of loading a limit.
    room: [usize; NCLASSES],
    status: u8,
    /// The registry tag of the arena the small classes were last refilled
    /// from ([`registry::UNMATCHED`] before the first refill): a freed
    /// chunk whose segment has another tag goes to a foreign class.
    home: u8,
    /// Sum of the class sizes of the medium entries.
    medium_bytes: usize,
    /// The entry popped last from each class: whose link a head that
    /// demangled to garbage came from, named when that is reported. For a
    /// foreign class (never popped): its oldest entry, the tail, whose link
    /// adoption rewrites (meaningless while the list is empty).
    last: [*mut u8; NCLASSES],
    /// Chunks the next refill of each class takes (see `refill`).
    batch: [u16; NCLASSES],
}

const _: () = {
    use core::mem::offset_of;
    let heads = offset_of!(ThreadCache, heads);
    assert!((offset_of!(ThreadCache, room) - heads) % 4096 != 0);
    assert!((offset_of!(ThreadCache, last) - heads) % 4096 != 0);
    assert!((offset_of!(ThreadCache, last) - offset_of!(ThreadCache, room)) % 4096 != 0);
};

impl ThreadCache {
    const NEW: ThreadCache = ThreadCache {
        heads: [EMPTY; NCLASSES],
        last: [ptr::null_mut(); NCLASSES],
        room: [0; NCLASSES],
        status: FRESH,
        home: registry::UNMATCHED,
        medium_bytes: 0,
        batch: [FIRST_BATCH; NCLASSES],
    };
}

std::thread_local! {
    static CACHE: UnsafeCell<ThreadCache> = const { UnsafeCell::new(ThreadCache::NEW) };
}

/// A cache with nothing in it and no room, which every thread's cache slot
/// names until the thread's first slow path (see [`slot`]): `pop` finds
/// every class empty and `try_push` finds no room, so both leave it
/// untouched and take their slow paths, which install the thread's own
/// cache (`real`). Never written: it lives in read-only memory, so a write
/// would fault.
struct Unused(ThreadCache);
// SAFETY: never written, so sharing it between threads is sound.
unsafe impl Sync for Unused {}
static UNUSED: Unused = Unused(ThreadCache::NEW);

/// The thread's cache slot: a thread-local pointer read in one instruction
/// even from inside `libtessera.so`.
///
/// Rust's `thread_local!` in a shared library uses the general-dynamic TLS
/// model: every access calls `__tls_get_addr` (about a dozen instructions
/// and a call), which was 5% of a `malloc`/`free`-heavy benchmark's
/// instructions under `LD_PRELOAD` (two calls per pair). Stable Rust has
/// no attribute for another model, so the slot is declared in assembly, in
/// the thread-local data, and read with the initial-exec model: the slot's
/// offset from the thread pointer is loaded from the GOT (the linker turns
/// that into a constant in an executable), and the slot read through
/// `%fs`. The linker marks the library `STATIC_TLS`, which a preloaded
/// library (or any library linked at start-up) gets anyway; a library
/// `dlopen`ed later takes 8 bytes of glibc's static TLS surplus. The
/// slot's initial value, in every thread, is [`UNUSED`]'s address, so the
/// fast paths need no null test. Other targets use a `thread_local!` cell
/// (and pay the null test).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod slot {
    use super::{ThreadCache, UNUSED};

    // The slot: a global symbol so that code inlined into other codegen
    // units (and crates) links to it, hidden so that it is never exported
    // or interposed. Its initial value is a relocated address, which the
    // dynamic linker fixes in the TLS image before any thread copies it.
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl __tessera_tcache_slot_v1",
        ".hidden __tessera_tcache_slot_v1",
        ".type __tessera_tcache_slot_v1,@object",
        ".size __tessera_tcache_slot_v1,8",
        "__tessera_tcache_slot_v1:",
        ".quad {unused}",
        ".popsection",
        unused = sym UNUSED,
    );

    /// The calling thread's slot.
    #[inline(always)]
    pub(super) fn load() -> *mut ThreadCache {
        let p: *mut ThreadCache;
        // SAFETY: reads the calling thread's copy of the slot: the GOT
        // entry holds the slot's offset from the thread pointer.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + __tessera_tcache_slot_v1@GOTTPOFF]",
                "mov {p}, qword ptr fs:[{p}]",
                p = out(reg) p,
                options(nostack, readonly, preserves_flags)
            );
        }
        p
    }

    /// Sets the calling thread's slot.
    #[inline(always)]
    pub(super) fn store(p: *mut ThreadCache) {
        // SAFETY: writes the calling thread's copy of the slot (see `load`).
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + __tessera_tcache_slot_v1@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {p}",
                t = out(reg) _,
                p = in(reg) p,
                options(nostack, preserves_flags)
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod slot {
    use super::{ThreadCache, UNUSED};
    use core::cell::Cell;

    std::thread_local! {
        static SLOT: Cell<*mut ThreadCache> = const { Cell::new(core::ptr::null_mut()) };
    }

    /// The calling thread's slot.
    #[inline(always)]
    pub(super) fn load() -> *mut ThreadCache {
        let p = SLOT.with(Cell::get);
        if p.is_null() {
            (&UNUSED.0 as *const ThreadCache).cast_mut()
        } else {
            p
        }
    }

    /// Sets the calling thread's slot.
    #[inline(always)]
    pub(super) fn store(p: *mut ThreadCache) {
        SLOT.with(|s| s.set(p))
    }
}

/// The cache the fast paths use: this thread's, or [`UNUSED`] before the
/// thread's first slow path. Only `pop` and `try_push` may be called on
/// it (they leave `UNUSED` alone); everything else goes through [`real`].
#[inline(always)]
pub(crate) fn cache() -> *mut ThreadCache {
    slot::load()
}

/// This thread's own cache, installed in its slot on first use.
#[inline(always)]
fn real() -> *mut ThreadCache {
    let p = slot::load();
    if p != (&UNUSED.0 as *const ThreadCache).cast_mut() {
        return p;
    }
    install()
}

#[cold]
#[inline(never)]
fn install() -> *mut ThreadCache {
    let p = CACHE.with(|c| c.get());
    slot::store(p);
    p
}

/// Runs `f` on this thread's cache.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&mut ThreadCache) -> R) -> R {
    // SAFETY: the cache is thread-local and never borrowed twice: no
    // function called with it re-enters `with` (arena calls do not allocate).
    f(unsafe { &mut *real() })
}

impl ThreadCache {
    /// Pops an entry of class `c`, or null.
    ///
    /// The link of the entry popped is not checked here: it becomes the
    /// head, and the next pop checks it before following it (a garbage
    /// link is never dereferenced or handed out, it is reported one pop
    /// later). That check is the emptiness test itself, so it is free.
    #[inline(always)]
    pub(crate) fn pop(&mut self, c: usize) -> *mut u8 {
        // SAFETY: a live `&mut self` is a valid cache to pop from.
        unsafe { Self::pop_raw(self, c) }
    }

    /// [`pop`](Self::pop) through a raw pointer, for the fast path, whose
    /// cache may be [`UNUSED`]: an empty class is seen before anything is
    /// written, so that one is only read.
    ///
    /// # Safety
    /// `this` is this thread's cache or [`UNUSED`].
    #[inline(always)]
    pub(crate) unsafe fn pop_raw(this: *mut Self, c: usize) -> *mut u8 {
        // SAFETY: as the caller promises.
        unsafe {
            let p = Self::pop_entry(this, c);
            if p.is_null() {
                let c = c & (NCLASSES - 1);
                return empty_or_corrupt((*this).heads[c], (*this).last[c]);
            }
            p
        }
    }

    /// [`pop_raw`](Self::pop_raw) without the report: null when the head
    /// is no entry, empty or garbage alike (the caller's cold path tells
    /// the two apart with [`empty_or_corrupt`]), so that the fast path
    /// calls nothing.
    ///
    /// # Safety
    /// As for `pop_raw`.
    #[inline(always)]
    unsafe fn pop_entry(this: *mut Self, c: usize) -> *mut u8 {
        let c = c & (NCLASSES - 1);
        // SAFETY: `this` is readable (caller); writes happen only past the
        // entry test, which `UNUSED`'s empty lists never pass.
        unsafe {
            let mem = (*this).heads[c];
            if !is_entry(mem) {
                return ptr::null_mut();
            }
            // Entries are cached chunks whose first two payload words
            // belong to the cache.
            let next = demangle(mem.cast::<usize>().read(), mem);
            (*this).heads[c] = next;
            (*this).room[c] += 1;
            if CHECKS {
                (*this).last[c] = mem;
            }
            mem.cast::<usize>().add(1).write(0);
            mem
        }
    }

    /// The free fast path: caches `mem` (a validated in-use chunk of list
    /// `c`'s class) and returns true if list c has room and `mem` does not
    /// carry the cache key; else returns false and leaves everything to
    /// [`push`](Self::push). `foreign`: c is a foreign class (see
    /// [`link_entry`](Self::link_entry)); a constant where inlined. Calls
    /// nothing, so the inlined fast path needs no saved registers.
    /// `secret` is `registry::key_initialized()`.
    ///
    /// # Safety
    /// `this` is this thread's cache or [`UNUSED`].
    #[inline(always)]
    pub(crate) unsafe fn try_push(
        this: *mut Self,
        c: usize,
        mem: *mut u8,
        secret: usize,
        foreign: bool,
    ) -> bool {
        let c = c & (NCLASSES - 1);
        // SAFETY: `this` is readable (caller); with room, it is this
        // thread's own cache (`UNUSED` has none), borrowed nowhere else.
        // The program gave `mem` up; its payload is readable.
        unsafe {
            if (*this).room[c] == 0
                || (CHECKS && mem.cast::<usize>().add(1).read() == key_word(secret))
            {
                return false;
            }
            // (`link` itself where not foreign: written as one call with
            // `foreign` folded, the compiler kept `room` in a register,
            // two instructions more per free.)
            if foreign {
                (*this).link_entry(c, mem, secret, true);
            } else {
                (*this).link(c, mem, secret);
            }
        }
        true
    }

    /// [`link`](Self::link), and for a foreign class (`foreign`) the entry
    /// that starts an empty list is remembered as its tail, whose link
    /// adoption rewrites (see [`adopt`](Self::adopt)).
    #[inline(always)]
    fn link_entry(&mut self, c: usize, mem: *mut u8, secret: usize, foreign: bool) {
        if foreign && self.heads[c] == EMPTY {
            self.last[c] = mem;
        }
        self.link(c, mem, secret);
    }

    /// Puts `mem` at the head of class `c` (which has room).
    #[inline(always)]
    fn link(&mut self, c: usize, mem: *mut u8, secret: usize) {
        // SAFETY: `mem` is an in-use chunk nobody else holds (freed by the
        // program, or fresh from a refill): its first two payload words are
        // ours while it is cached.
        unsafe {
            let words = mem.cast::<usize>();
            words.write(mangle(self.heads[c], mem, secret));
            words.add(1).write(key_word(secret));
        }
        self.heads[c] = mem;
        self.room[c] -= 1;
    }

    /// Pushes `mem` (a validated in-use chunk of class `c`) if there is room,
    /// making room or checking for a double free first when needed.
    /// Returns false when the chunk must go to its arena instead.
    pub(crate) fn push(&mut self, c: usize, mem: *mut u8) -> bool {
        let c = c & (NCLASSES - 1);
        if self.room[c] == 0 {
            return self.push_slow(c, mem);
        }
        let secret = registry::key_initialized();
        // SAFETY: as in `try_push`.
        if CHECKS && unsafe { mem.cast::<usize>().add(1).read() } == key_word(secret) {
            self.check_double_free(c, mem);
        }
        self.link_entry(c, mem, secret, c >= FOREIGN_BASE);
        true
    }

    #[cold]
    #[inline(never)]
    fn push_slow(&mut self, c: usize, mem: *mut u8) -> bool {
        if self.status != LIVE || perturbing() {
            self.reconsider();
            return self.status == LIVE && self.push(c, mem);
        }
        if c >= FOREIGN_BASE {
            self.adopt(c);
        } else {
            self.flush_class(c, (MAX_COUNT[c] / 2) as usize);
        }
        self.push(c, mem)
    }

    /// Foreign class `l` is full: splices its entries, whole, in front of
    /// its small class's (making room there first as an overflow would), so
    /// that this thread reuses them (see the glossary). Entries keep their
    /// links: a link is mangled with the address it is stored at, not with
    /// its list, so only the tail's link is rewritten, and adoption costs
    /// the same for any count. (A link damaged meanwhile is caught when
    /// the pop that reaches it tests for an entry, as in any class.)
    #[cold]
    fn adopt(&mut self, l: usize) {
        let c = l - FOREIGN_BASE;
        let n = (MAX_COUNT[l] as usize) - self.room[l];
        if self.room[c] < n {
            self.flush_class(c, (MAX_COUNT[c] / 2) as usize);
            if self.room[c] < n {
                // (Entries of class c that could not go home.)
                self.flush_class(l, n);
                return;
            }
        }
        let tail = self.last[l];
        let secret = registry::key_initialized();
        // SAFETY: `tail`, the list's oldest entry, is a chunk of this
        // thread's cache (the list is full, so not empty); its first
        // payload word is its link.
        unsafe {
            tail.cast::<usize>()
                .write(mangle(self.heads[c], tail, secret));
        }
        self.heads[c] = self.heads[l];
        self.room[c] -= n;
        self.heads[l] = EMPTY;
        self.room[l] = MAX_COUNT[l] as usize;
    }

    /// Moves between the states at a trip to the arena: a fresh cache
    /// activates; a live one empties itself and stands aside while
    /// M_PERTURB is on (BYPASS: no room, no entries, so both fast paths
    /// fall through to the arenas); a bypassing one comes back when it is
    /// off.
    #[cold]
    fn reconsider(&mut self) {
        match self.status {
            FRESH => self.activate(),
            LIVE if perturbing() => {
                self.flush_all();
                LIVE_CACHES.fetch_sub(1, Ordering::Relaxed);
                self.status = BYPASS;
                self.room = [0; NCLASSES];
                self.medium_bytes = 0;
            }
            BYPASS if !perturbing() => {
                self.status = FRESH;
                self.activate();
            }
            _ => {}
        }
    }

    /// A chunk carrying the cache key is being freed: abort if it is
    /// already in this thread's list (a double free), else carry on (the
    /// key was a coincidence, or the chunk sits in another thread's cache,
    /// which only that thread may walk).
    #[cold]
    #[inline(never)]
    fn check_double_free(&self, c: usize, mem: *mut u8) {
        if self.holds(c, mem) || parked(mem) {
            fatal(Misuse::DoubleFree, mem);
        }
    }

    /// Is `mem`, a chunk whose size is of the class list `l` holds, an
    /// entry of this thread's cache? (Entries of class c - 1 may have class
    /// c's size; a small chunk may sit in its class or in the foreign one.)
    fn holds(&self, l: usize, mem: *mut u8) -> bool {
        let in_list = |l: usize| self.entries(l).any(|e| e == mem);
        let in_lists = |c: usize| (c.saturating_sub(1)..=c).any(in_list);
        match small_class_of_list(l) {
            Some(c) => {
                in_lists(c)
                    || (c.saturating_sub(1)..=c)
                        .filter(|&f| f < FOREIGN_CLASSES)
                        .any(|f| in_list(FOREIGN_BASE + f))
            }
            None => in_lists(l),
        }
    }

    /// The entries of class `c`, head first, for the walks that do not pop
    /// (the double-free scan, snapshot marking). A garbage link ends the
    /// walk (the pop that reaches it reports it), and so does the class's
    /// capacity, in case a corrupted link closed a cycle.
    fn entries(&self, c: usize) -> Entries {
        Entries {
            next: self.heads[c],
            left: MAX_COUNT[c],
        }
    }

    /// First use by this thread: registers the exit hook, empties the lists.
    #[cold]
    fn activate(&mut self) {
        if self.status != FRESH {
            return;
        }
        if arena::DEBUG_LEVEL.load(Ordering::Relaxed) >= 2 {
            // Debug mode: every operation goes to the arenas.
            self.status = DEAD;
            return;
        }
        register_exit_hook();
        if perturbing() {
            self.status = BYPASS;
            return;
        }
        for (room, &max) in self.room.iter_mut().zip(&MAX_COUNT) {
            *room = max as usize;
        }
        LIVE_CACHES.fetch_add(1, Ordering::Relaxed);
        self.status = LIVE;
    }

    /// Is the cache usable (live)? Activates a fresh one, and moves in or
    /// out of BYPASS (see [`Self::reconsider`]).
    #[inline]
    pub(crate) fn usable(&mut self) -> bool {
        if self.status != LIVE || perturbing() {
            self.reconsider();
        }
        self.status == LIVE
    }

    /// Pops an entry of any class, keeping the medium byte count.
    pub(crate) fn take(&mut self, c: usize) -> *mut u8 {
        let mem = self.pop(c);
        if !mem.is_null() && (MEDIUM_BASE..MEDIUM_BASE + NMEDIUM).contains(&c) {
            self.medium_bytes -= medium_size(c - MEDIUM_BASE);
        }
        mem
    }

    /// Caches `mem`, a validated in-use chunk of medium class `c`, if the
    /// class and the medium budget have room (making room in the class if
    /// needed). Returns false when it must go to its arena instead.
    pub(crate) fn push_medium(&mut self, c: usize, mem: *mut u8) -> bool {
        let size = medium_size(c - MEDIUM_BASE);
        if self.medium_bytes + size > MEDIUM_LIMIT.load(Ordering::Relaxed) || !self.push(c, mem) {
            return false;
        }
        self.medium_bytes += size;
        true
    }

    /// Gives `n` entries of class `c` back to their arenas: runs of
    /// entries of one arena parked whole on that arena's quick list for the
    /// class, as far as they can go there, the others one by one.
    #[cold]
    pub(crate) fn flush_class(&mut self, c: usize, n: usize) {
        let n = n.min(MAX_COUNT[c] as usize - self.room[c]);
        let mut batch = Batch::new(arena::current());
        let mut done = 0;
        while done < n {
            let k = if let Some(small) = small_class_of_list(c) {
                // (A lock the batch holds would make the run's owner look
                // busy: let it go first.)
                batch.finish();
                self.park_run(c, small, n - done)
            } else {
                0
            };
            if k > 0 {
                done += k;
                continue;
            }
            let mem = self.take(c);
            if mem.is_null() {
                break;
            }
            batch.free(mem);
            done += 1;
        }
        batch.finish();
    }

    /// Moves up to `n` entries from the head of list `l` (small class `c`,
    /// or its foreign class) to the
    /// quick list for the class of the arena that owns the first of them,
    /// in one piece (see `heap::quick`): the entries are already linked,
    /// mangled and keyed as the quick list wants them, so each costs a
    /// check of its head (exactly the class's size, in use, that arena's)
    /// and FLAG4 set, and the whole run one link. The owner's next refill
    /// of the class takes them back, so a consumer thread's frees of a
    /// producer's blocks go straight back to the producer, unmerged
    /// (tcmalloc's transfer caches play this part). Stops at the first
    /// entry that does not qualify (another arena's, 16 bytes larger, a
    /// damaged head or link, the budget reached) and parks nothing if the
    /// owner's lock is taken: the per-chunk path takes those, reports
    /// damage, and frees to a busy arena through its remote stack. Every
    /// link is checked (`plausible_near`) before it is followed. Returns how
    /// many were parked.
    fn park_run(&mut self, l: usize, c: usize, n: usize) -> usize {
        let first = self.heads[l];
        if !is_entry(first) || !plausible(first) {
            return 0;
        }
        // SAFETY: arenas are never freed; the lock is held from try_lock to
        // unlock, and only lock holders write chunk heads. Entries are
        // validated in-use chunks whose segments therefore stay mapped.
        unsafe {
            let home: *mut Arena = (*Segment::of(Chunk::from_mem(first).cast())).owner.cast();
            if home.is_null() || (*home).abandoned || !arena::try_lock(home) {
                return 0;
            }
            let n = n.min((*home).quick_room_or_consolidate(c));
            let want = class_size(c) | Head::CINUSE;
            let owner: *mut () = home.cast();
            let mut mem = first;
            let mut last = ptr::null_mut();
            let mut k = 0;
            while k < n && (k == 0 || (is_entry(mem) && plausible_near(mem, last))) {
                let p = Chunk::from_mem(mem);
                let head = Chunk::head(p).0;
                if head & (Head::SIZE_MASK | Head::CINUSE | Head::FLAG4) != want
                    || (*Segment::of(p.cast())).owner != owner
                {
                    break;
                }
                Chunk::set_head(p, head | Head::FLAG4);
                last = mem;
                mem = demangle(mem.cast::<usize>().read(), mem);
                k += 1;
            }
            if k > 0 {
                self.heads[l] = mem;
                self.room[l] += k;
                (*home).park_run(c, first, last, k);
            }
            arena::unlock(home);
            k
        }
    }

    /// Gives every entry back, freed for good (the thread is leaving, or
    /// memory is being trimmed: nothing is parked for a refill).
    pub(crate) fn flush_all(&mut self) {
        let mut batch = Batch::new(ptr::null_mut());
        for c in 0..NCLASSES {
            loop {
                let mem = self.take(c);
                if mem.is_null() {
                    break;
                }
                batch.free(mem);
            }
        }
        batch.finish();
    }

    /// Refills class `c` from `a` (locked by the caller) with up to half its
    /// capacity and returns one chunk for the caller (null if the arena has
    /// no memory): parked chunks of the class first, taken as one run, then
    /// fresh ones carved next to each other (`State::malloc_run`), linked
    /// after them in ascending address order; the caller gets the first of
    /// the run and the cache the rest, in order, spliced in with one link.
    ///
    /// # Safety
    /// The caller holds `a`'s lock.
    pub(crate) unsafe fn refill(&mut self, a: &mut Arena, c: usize) -> *mut u8 {
        if self.status != LIVE {
            // SAFETY: the caller holds `a`'s lock.
            let p = unsafe { a.unpark(c) };
            return if p.is_null() {
                a.malloc(class_request(c))
            } else {
                p
            };
        }
        // The arena this cache's chunks come from: frees of other arenas'
        // small chunks go to the foreign classes.
        self.home = a.segment_tag;
        // Slow start: a class's first refill takes a few chunks, each later
        // one twice as many, up to half the class's capacity. A program
        // that touches a size once (start-up: bash, Python) then gets a
        // few chunks of it, not a run of dozens it never uses, each of
        // them written (its link) and so faulted in.
        let want = (self.batch[c] as usize).min(self.room[c] + 1);
        self.batch[c] = (self.batch[c] * 2).min(MAX_COUNT[c] / 2).max(FIRST_BATCH);
        let secret = registry::key_initialized();
        // SAFETY: the caller holds `a`'s lock.
        let (first, last, n) = unsafe { a.unpark_run(c, want) };
        let mut run = Run { first, last, n };
        if n < want {
            a.malloc_run(class_size(c), want - n, |mem| run.append(mem, secret));
        }
        if run.n == 0 {
            return ptr::null_mut();
        }
        let mem = run.first;
        // SAFETY: the run's entries are in-use chunks nobody else holds;
        // their first two payload words are the cache's (link, key).
        unsafe {
            if run.n > 1 {
                let second = demangle(mem.cast::<usize>().read(), mem);
                run.last
                    .cast::<usize>()
                    .write(mangle(self.heads[c], run.last, secret));
                self.heads[c] = second;
                self.room[c] -= run.n - 1;
            }
            // The caller's chunk is no longer free: no key.
            mem.cast::<usize>().add(1).write(0);
        }
        mem
    }

    /// The thread is exiting: flush everything, detach from the arena and
    /// stop caching.
    fn shut_down(&mut self) {
        if self.status == LIVE {
            LIVE_CACHES.fetch_sub(1, Ordering::Relaxed);
            self.flush_all();
            // What this thread parked in its arena would otherwise wait
            // for the arena's next consolidation, which may never come if
            // no thread uses it again.
            let a = arena::current();
            // SAFETY: arenas are never freed; unlocked right after.
            unsafe {
                if !a.is_null() && (*a).quick_pending() && !(*a).abandoned && arena::try_lock(a) {
                    (*a).release_parked();
                    arena::unlock(a);
                }
            }
        }
        self.status = DEAD;
        self.room = [0; NCLASSES];
        self.medium_bytes = 0;
        arena::detach_current();
    }
}

/// A run of in-use chunks linked as a list's entries, being built by a
/// refill: `first` → ... → `last`, `n` of them; `last`'s link is not set.
struct Run {
    first: *mut u8,
    last: *mut u8,
    n: usize,
}

impl Run {
    /// Links `mem` (an in-use chunk nobody else holds) after `last`, with
    /// the key in its second word.
    #[inline(always)]
    fn append(&mut self, mem: *mut u8, secret: usize) {
        // SAFETY: `mem` and `last` are in-use chunks held by the refill;
        // their first two payload words are the cache's.
        unsafe {
            mem.cast::<usize>().add(1).write(key_word(secret));
            if self.n == 0 {
                self.first = mem;
            } else {
                self.last
                    .cast::<usize>()
                    .write(mangle(mem, self.last, secret));
            }
        }
        self.last = mem;
        self.n += 1;
    }
}

/// See [`ThreadCache::entries`].
struct Entries {
    next: *mut u8,
    left: u16,
}

impl Iterator for Entries {
    type Item = *mut u8;

    fn next(&mut self) -> Option<*mut u8> {
        let e = self.next;
        if self.left == 0 || !is_entry(e) || e.is_null() {
            return None;
        }
        self.left -= 1;
        // SAFETY: an aligned, non-null link of this thread's list: an
        // entry, whose first payload word is its link.
        self.next = demangle(unsafe { e.cast::<usize>().read() }, e);
        Some(e)
    }
}

/// Is the validated in-use chunk at `mem` parked on its arena's quick list
/// (FLAG4 in its head; see `crate::heap::quick`)? Read without the arena's lock:
/// the flag is set while the chunk sits there, and the program, which
/// freed it, has no business with it either way.
#[cold]
fn parked(mem: *mut u8) -> bool {
    // SAFETY: `mem` was validated as an in-use chunk by the caller's caller.
    unsafe { Chunk::head(Chunk::from_mem(mem)).flag4() }
}

/// `realloc` of `mem`, validated by `classify` (which refuses parked
/// chunks): aborts if it carries the cache key and is an entry of this
/// thread's cache (a freed pointer). A chunk in another thread's cache is
/// not seen (only its thread may walk it), as for a double free.
pub(crate) fn check_realloc(mem: *mut u8) {
    if !CHECKS {
        return;
    }
    // SAFETY: a validated in-use chunk: its payload is readable.
    let word = unsafe { mem.cast::<usize>().add(1).read() };
    if word != key_word(registry::key_initialized()) {
        return;
    }
    // SAFETY: as above.
    let size = unsafe { Chunk::size(Chunk::from_mem(mem)) };
    let class = if size <= MAX_CACHED_SIZE {
        Some(class_of(size))
    } else {
        medium_class_of_chunk(size)
    };
    if class.is_some_and(|c| with(|tc| tc.holds(c, mem))) {
        fatal(Misuse::ReallocFreed, mem);
    }
}

/// `pop` found no entry at the head: null if the list is empty, else the
/// head is a link that demangled to garbage, which is reported, naming
/// the entry popped before (`last`), whose link it was: a block handed out
/// since, into which the program wrote after freeing it, or which a write
/// past the end of the block before it reached.
#[cold]
#[inline(never)]
fn empty_or_corrupt(head: *mut u8, last: *mut u8) -> *mut u8 {
    if head != EMPTY {
        if last.is_null() {
            // (Without the checks, which keep `last`.)
            fatal(Misuse::CorruptLinks, head);
        }
        fatal_with(
            Misuse::CorruptLinks,
            last,
            "its link, read as",
            head as usize,
        );
    }
    ptr::null_mut()
}

/// Frees a run of chunks to their owners, locking each owner once per run
/// of chunks with the same owner. Small chunks of arena `home` (the
/// thread's own, whose refills would take them back) go to its quick
/// lists while those have room (see `crate::heap::quick`); chunks of other
/// arenas are freed for good.
struct Batch {
    owner: *mut Arena,
    locked: bool,
    home: *mut Arena,
}

impl Batch {
    /// `home`: the arena to park in; null parks nothing.
    fn new(home: *mut Arena) -> Self {
        Batch {
            owner: ptr::null_mut(),
            locked: false,
            home,
        }
    }

    fn free(&mut self, mem: *mut u8) {
        // The chunk leaves the cache: wipe its key, or a program that gets
        // this address back and never writes that word would send its next
        // free down the slow double-free scan.
        // SAFETY: a cached entry's first two payload words are ours.
        unsafe { mem.cast::<usize>().add(1).write(0) };
        // Validated when it entered the cache; its header is checked again
        // here, since an overflow may have reached it while cached.
        let c = classify(mem, false);
        let owner: *mut Arena = c.owner.cast();
        if owner != self.owner {
            self.finish();
            self.owner = owner;
            // SAFETY: arenas are never freed.
            self.locked = unsafe { !(*owner).abandoned && arena::try_lock(owner) };
        }
        // SAFETY: `c` validates `mem` as an in-use chunk of `owner`.
        unsafe {
            if self.locked {
                // A small chunk waits on its arena's quick list for the
                // next refill, unmerged (see `crate::heap::quick`).
                if owner == self.home && !c.direct && (*owner).park(c.chunk) {
                    return;
                }
                (*owner).free_classified(c);
            } else {
                arena::free_to_owner(c, mem);
            }
        }
    }

    fn finish(&mut self) {
        if self.locked {
            // SAFETY: locked in `free`.
            unsafe { arena::unlock(self.owner) };
        }
        self.locked = false;
        self.owner = ptr::null_mut();
    }
}

/// The pthread key whose destructor flushes a thread's cache at exit.
/// (A `thread_local!` with a destructor would register it through
/// `__cxa_thread_atexit_impl`, which calls calloc: re-entry while the
/// thread's state is half built. The first 32 pthread keys never allocate.)
static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);
const KEY_NONE: usize = 0;
const KEY_BUSY: usize = 1;

fn register_exit_hook() {
    let mut k = EXIT_KEY.load(Ordering::Acquire);
    if k == KEY_NONE
        && EXIT_KEY
            .compare_exchange(KEY_NONE, KEY_BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: creates a key with our destructor; does not allocate.
        let r = unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) };
        k = if r == 0 { key as usize + 2 } else { KEY_NONE };
        EXIT_KEY.store(k, Ordering::Release);
    }
    while k == KEY_BUSY {
        core::hint::spin_loop();
        k = EXIT_KEY.load(Ordering::Acquire);
    }
    if k >= 2 {
        // SAFETY: a valid key; any non-null value makes the destructor run.
        unsafe {
            libc::pthread_setspecific(
                (k - 2) as libc::pthread_key_t,
                ptr::dangling::<libc::c_void>(),
            )
        };
    }
}

extern "C" fn thread_exit(_: *mut libc::c_void) {
    with(|tc| tc.shut_down());
}

/// Sets (`on`) or clears FLAG4 in the heads of the calling thread's cached
/// chunks that belong to arena `owner`, so that a snapshot of that arena
/// shows them as cached rather than in use.
///
/// # Safety
/// The caller holds `owner`'s lock and clears the marks before releasing
/// it. (Only holders of an arena's lock write the heads of its chunks, so
/// the marks race with no other write; the thread cache never writes
/// heads.)
pub(crate) unsafe fn mark_entries_of(owner: *mut Arena, on: bool) {
    with(|tc| {
        for c in 0..NCLASSES {
            for mem in tc.entries(c) {
                let p = Chunk::from_mem(mem);
                // SAFETY: entries are in-use chunks in live segments, and
                // `owner` is locked (caller).
                unsafe {
                    if (*Segment::of(p.cast())).owner == owner.cast() {
                        let h = Chunk::head(p).0;
                        let flag = Head::FLAG4;
                        Chunk::set_head(p, if on { h | flag } else { h & !flag });
                    }
                }
            }
        }
    });
}

/// Lets the calling thread's cache notice a change of M_PERTURB now (see
/// [`ThreadCache::reconsider`]).
pub(crate) fn reconsider_current() {
    with(|tc| tc.reconsider());
}

/// Flushes the calling thread's cache (malloc_trim, tests).
pub(crate) fn flush_current() {
    with(|tc| {
        if tc.status == LIVE {
            tc.flush_all();
        }
    });
}

/// The medium class for a request of `size` bytes: the smallest whose
/// chunk size holds it. None outside the medium range.
#[inline]
pub(crate) fn medium_class(size: usize) -> Option<usize> {
    if size <= MAX_CACHED_REQUEST
        || size > MAX_MEDIUM_REQUEST
        || MEDIUM_LIMIT.load(Ordering::Relaxed) == 0
    {
        return None;
    }
    // The largest class not above the chunk size (the first class for
    // chunks below it), then one up unless the chunk fits exactly.
    let nb = request2size(size);
    let c = medium_class_of_chunk(nb).unwrap_or(MEDIUM_BASE);
    Some(if medium_size(c - MEDIUM_BASE) < nb {
        c + 1
    } else {
        c
    })
}

/// The medium class a freed chunk of `size` bytes goes to: the largest
/// whose size it covers. None for chunks smaller than the first medium
/// class or as large as a whole doubling past the last.
#[inline]
pub(crate) fn medium_class_of_chunk(size: usize) -> Option<usize> {
    if !(MIN_MEDIUM_SIZE..2 * MAX_MEDIUM_SIZE).contains(&size) {
        return None;
    }
    let k = (usize::BITS - 1 - size.leading_zeros()) as usize;
    let j = (size - (1 << k)) >> (k - MEDIUM_STEPS_LOG);
    Some((MEDIUM_BASE + ((k - 10) << MEDIUM_STEPS_LOG) + j - 1).min(MEDIUM_BASE + NMEDIUM - 1))
}

/// The request that gets a chunk of exactly medium class `c`'s size.
#[inline]
pub(crate) fn medium_request(c: usize) -> usize {
    medium_size(c - MEDIUM_BASE) - CHUNK_OVERHEAD
}

/// The class a request of `size` bytes uses, if cacheable:
/// `class_of(request2size(size))`, computed directly (requests of 0..=24
/// bytes get class 0, then one class per 16 bytes). Written as
/// `(size + 7) / 16 - 1`, plus one back for the requests of 0..=8 bytes
/// that it would put in class -1: a compare and an add-with-carry, where
/// `(size - 9) / 16` saturating at 0 needs a zero in a register.
#[inline(always)]
pub(crate) fn cached_class(size: usize) -> Option<usize> {
    if size <= MAX_CACHED_REQUEST {
        let c = ((size + 7) >> 4) + usize::from(size < 9) - 1;
        // SAFETY: size <= 1032 gives (1032 + 7) / 16 - 1 = 63 at most
        // (`classes_cover_glibc_tcache_range` checks every size); said
        // here so that the compiler need not mask the class as an index.
        unsafe { core::hint::assert_unchecked(c < NSMALL) };
        Some(c)
    } else {
        None
    }
}

// ---------------------------------------------------------------------
// The paths of `malloc` and `free` through the cache. `global` calls
// these; they go down to the arenas (`arena`) on a miss and never back up.
// ---------------------------------------------------------------------

/// `malloc`: a cached chunk of the request's small class if there is one
/// (no lock), else a refill of the class from the thread's arena, else the
/// medium classes and the arena itself. Null and errno `ENOMEM` on
/// failure (set by the slow paths, so that the fast path's calls are all
/// tail calls and it saves no register).
#[inline(always)]
pub(crate) fn malloc(size: usize) -> *mut u8 {
    if let Some(c) = cached_class(size) {
        // SAFETY: this thread's cache (not borrowed elsewhere) or `UNUSED`.
        let p = unsafe { ThreadCache::pop_entry(cache(), c) };
        if !p.is_null() {
            return p;
        }
        return malloc_refill(size, c);
    }
    malloc_slow(size)
}

/// errno `ENOMEM` if `p` is null (a failed `malloc`); `p`.
#[inline(always)]
fn out_of_memory_if_null(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        errno::set(libc::ENOMEM);
    }
    p
}

/// Small class `c` has no entry at its head: reports a garbage head, else
/// refills the class from the thread's arena, under one lock, and returns
/// one of the chunks.
#[cold]
#[inline(never)]
extern "C" fn malloc_refill(size: usize, c: usize) -> *mut u8 {
    // SAFETY: this thread's cache or `UNUSED`, only read here.
    unsafe {
        let tc = cache();
        empty_or_corrupt((*tc).heads[c], (*tc).last[c]);
    }
    let p = refill_or_slow(size, c);
    out_of_memory_if_null(p)
}

/// See [`malloc_refill`]: everything but the errno of a failure.
#[inline(always)]
fn refill_or_slow(size: usize, c: usize) -> *mut u8 {
    let _errno = errno::Saved::now();
    if with(|tc| tc.usable()) {
        // Outside every lock and cache borrow: may start a thread, and
        // `pthread_atfork` may allocate.
        register_fork_child();
        decay::maybe_start(LIVE_CACHES.load(Ordering::Relaxed));
        // The arena is locked before the cache is borrowed: binding a
        // thread may register the fork handlers, and `pthread_atfork` may
        // call malloc.
        let a = arena::lock_current();
        if !a.is_null() {
            // SAFETY: `a` is locked until the unlock below.
            let p = unsafe {
                let p = with(|tc| tc.refill(&mut *a, c));
                decay::on_slow_path(&mut *a);
                arena::unlock(a);
                p
            };
            if !p.is_null() {
                return p;
            }
        }
    }
    medium_or_arena(size)
}

/// Not served by a small class: a medium class's entry, else the arena,
/// asked for the whole class size so that the chunk can serve the class
/// again; an orphan mapping while a fork holds every arena.
#[cold]
#[inline(never)]
extern "C" fn malloc_slow(size: usize) -> *mut u8 {
    out_of_memory_if_null(medium_or_arena(size))
}

/// See [`malloc_slow`]: everything but the errno of a failure.
fn medium_or_arena(size: usize) -> *mut u8 {
    let _errno = errno::Saved::now();
    let size = match medium_class(size) {
        Some(c) => {
            let p = with(|tc| tc.take(c));
            if !p.is_null() {
                return p;
            }
            medium_request(c)
        }
        None => size,
    };
    arena::with_current(|a| a.malloc(size)).unwrap_or_else(|| arena::orphan_malloc(size))
}

/// `free`. Null is ignored; misuse is detected where cheaply possible and
/// aborts with a one-line message.
///
/// A chunk of the arena the thread's cache refills from (the registry's tag
/// for its segment, which the test for a segment loads anyway, equals the
/// cache's `home`) goes to its class; a chunk of another arena to its
/// foreign class ([`free_elsewhere`]), so that it is never handed out again
/// by this thread.
///
/// # Safety
/// `ptr` must be null or live, from this allocator.
#[inline(always)]
pub(crate) unsafe fn free(ptr: *mut u8) {
    if !registry::trackable(ptr as usize) {
        // SAFETY: forwarded to the caller.
        return unsafe { free_slow(ptr) };
    }
    let tc = cache();
    // (mem and its chunk share a segment slot: chunks start past the record.)
    let tag = registry::slot_tag(ptr as usize);
    // SAFETY: `tc` is this thread's cache or `UNUSED`, both readable;
    // `UNUSED`'s home matches no tag.
    if tag == unsafe { (*tc).home } {
        // SAFETY: the registry vouches for the segment holding `ptr`; `tc`
        // is this thread's cache or `UNUSED`.
        if unsafe { free_small(ptr, tc, false) } {
            return;
        }
        // SAFETY: forwarded to the caller.
        return unsafe { free_slow(ptr) };
    }
    // SAFETY: forwarded to the caller.
    unsafe { free_elsewhere(ptr, tag) }
}

/// `free` of a chunk that is not of the thread's home arena (`tag` is its
/// segment's registry tag, 0 if it is in none): a small one goes to its
/// foreign class if it has one, else to its class; the rest to
/// [`free_slow`].
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe extern "C" fn free_elsewhere(ptr: *mut u8, tag: u8) {
    // SAFETY: a nonzero tag: the registry vouches for the segment holding
    // `ptr`; the cache is this thread's or `UNUSED`.
    if tag != 0 && unsafe { free_small(ptr, cache(), true) } {
        return;
    }
    // SAFETY: forwarded to the caller.
    unsafe { free_slow(ptr) }
}

/// The checks and the caching of the free fast path, for `ptr` in a live
/// segment: if it is a small chunk in use whose keyed tag is right, it is
/// cached in the list for its class c, its foreign class if `foreign` and
/// c has one (or handed to the slow paths that check it further), and the
/// result is true; else false, nothing done.
///
/// # Safety
/// `ptr` lies in a live segment (its tag is nonzero); `tc` is this thread's
/// cache or `UNUSED`.
#[inline(always)]
unsafe fn free_small(ptr: *mut u8, tc: *mut ThreadCache, foreign: bool) -> bool {
    let p = Chunk::from_mem(ptr);
    // SAFETY: the registry vouches for the segment holding `p` (caller).
    let head = unsafe { Chunk::head(p) };
    // The size plus CINUSE (2, which does not change the class).
    let tagged = head.0 & Head::TAGGED;
    let secret = registry::key_initialized();
    // A cacheable size, in use and its keyed tag right (the tag covers
    // CINUSE and the size, so it also vouches for bit 3 being clear: a
    // whole multiple of 16); without the checks, the flag bits tested
    // directly. (Larger chunks have their tag checked once, in
    // `free_slow`.)
    if tagged.wrapping_sub(MIN_CHUNK_SIZE | Head::CINUSE) > MAX_CACHED_SIZE - MIN_CHUNK_SIZE
        || !(if CHECKS {
            tag_ok_keyed(ptr, head, secret)
        } else {
            head.0 & 0b1010 == 0b0010
        })
    {
        return false;
    }
    let c = class_of(tagged);
    let foreign = foreign && c < FOREIGN_CLASSES;
    let l = if foreign { FOREIGN_BASE + c } else { c };
    // The head after this chunk: a write past the end of the block that
    // reached it shows here (see `Head::mark_agrees`), while its victim may
    // sit unchecked in a cache or a quick list.
    // SAFETY: the successor of a validated in-use chunk (of `tagged -
    // CINUSE` bytes) lies in its segment.
    let next = unsafe { Chunk::head(Chunk::plus_offset(p, tagged - Head::CINUSE)) };
    // SAFETY (all three): `ptr` is a validated in-use chunk of list `l`'s
    // class; `tc` as the caller promises.
    unsafe {
        if CHECKS && !next.mark_agrees() {
            free_next_suspect(l, ptr);
        } else if !ThreadCache::try_push(tc, l, ptr, secret, foreign) {
            free_cacheable(l, ptr);
        }
    }
    true
}

/// The fast path found the head after the chunk `ptr` of list `c` odd:
/// a fencepost (the chunk ends its segment), or the program wrote past the
/// end of the block, which [`arena::check_next_of`] reports.
///
/// # Safety
/// As for [`free_cacheable`].
#[cold]
#[inline(never)]
unsafe extern "C" fn free_next_suspect(c: usize, ptr: *mut u8) {
    // SAFETY: a validated in-use chunk (caller); its head gives its size.
    unsafe {
        arena::check_next_of(ptr, Chunk::size(Chunk::from_mem(ptr)));
        free_cacheable(c, ptr);
    }
}

/// A validated chunk of cache list `c` (a small or a foreign class) that
/// the fast path could not cache (the list is full, the cache is not live
/// yet, or it carries the cache key): the cache's slow path, then the
/// arena. The head after it gets a
/// wider look ([`check_next`]) than the fast path's.
///
/// # Safety
/// `ptr` is a validated in-use chunk of class `c`, freed by the caller.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_cacheable(c: usize, ptr: *mut u8) {
    let _errno = errno::Saved::now();
    // SAFETY: as the caller promises.
    unsafe { check_next(ptr, Chunk::size(Chunk::from_mem(ptr)), true) };
    // SAFETY: this thread's cache; `ptr` as the caller promises.
    if !unsafe { (*real()).push(c, ptr) } {
        // SAFETY: forwarded.
        unsafe { free_slow(ptr) }
    }
}

/// A quick look at the head after the chunk `mem` of `size` bytes that
/// the program is freeing (`Head::looks_real` where `wide`, wider than the
/// fast path's test; else the fast path's, for the medium blocks, whose
/// frees are frequent); anything odd goes to [`arena::check_next_of`].
///
/// # Safety
/// `mem` must be a validated in-use segment chunk of `size` bytes.
#[inline(always)]
unsafe fn check_next(mem: *mut u8, size: usize, wide: bool) {
    // SAFETY: the successor of a validated in-use chunk lies in its
    // segment (caller).
    let next = unsafe { Chunk::head(Chunk::plus_offset(Chunk::from_mem(mem), size)) };
    let odd = if wide {
        !next.looks_real()
    } else {
        !next.mark_agrees()
    };
    if CHECKS && odd {
        // SAFETY: forwarded.
        unsafe { arena::check_next_of(mem, size) };
    }
}

/// Everything the fast path does not take: validated and classified (see
/// `heap::classify`), then an orphan unmapped, a medium chunk cached, or
/// the chunk freed to its owner.
///
/// # Safety
/// `ptr` must be null or live, from this allocator.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_slow(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    let _errno = errno::Saved::now();
    let c = classify(ptr, false);
    if c.owner.is_null() {
        // SAFETY: a validated orphan direct chunk.
        unsafe { arena::orphan_free(c.chunk) }
        return;
    }
    if !c.direct {
        // SAFETY: validated as an in-use segment chunk.
        let size = unsafe { Chunk::size(c.chunk) };
        // SAFETY: as above.
        unsafe { check_next(ptr, size, false) };
        if let Some(m) = medium_class_of_chunk(size) {
            if with(|tc| tc.push_medium(m, ptr)) {
                return;
            }
        }
    }
    // SAFETY: validated, live in its owner (caller).
    unsafe { arena::free_to_owner(c, ptr) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::chunk::request2size;

    #[test]
    fn classes_cover_glibc_tcache_range() {
        assert_eq!(MAX_CACHED_REQUEST, 1032);
        assert_eq!(cached_class(0), Some(0));
        assert_eq!(cached_class(24), Some(0));
        assert_eq!(cached_class(25), Some(1));
        assert_eq!(cached_class(1032), Some(63));
        assert_eq!(cached_class(1033), None);
        for size in 0..=MAX_CACHED_REQUEST {
            let c = cached_class(size).unwrap();
            assert_eq!(MIN_CHUNK_SIZE + 16 * c, request2size(size), "size {size}");
            assert_eq!(c, class_of(request2size(size)));
        }
        assert!(MAX_COUNT[..NSMALL].iter().all(|&n| (32..=256).contains(&n)));
    }

    #[test]
    fn foreign_classes_mirror_the_small_ones() {
        for c in 0..NSMALL {
            assert_eq!(small_class_of_list(c), Some(c));
        }
        for c in 0..FOREIGN_CLASSES {
            assert_eq!(small_class_of_list(FOREIGN_BASE + c), Some(c));
            assert_eq!(MAX_COUNT[FOREIGN_BASE + c], FOREIGN_COUNT);
            assert!(MAX_COUNT[FOREIGN_BASE + c] <= MAX_COUNT[c] / 2);
            assert!(class_size(c) < 64, "smaller than a cache line");
        }
        assert!(class_size(FOREIGN_CLASSES) >= 64);
        for l in (NSMALL..FOREIGN_BASE).chain(FOREIGN_BASE + FOREIGN_CLASSES..NCLASSES) {
            assert_eq!(small_class_of_list(l), None, "list {l}");
        }
        let own: usize = (0..NSMALL)
            .map(|c| MAX_COUNT[c] as usize * (class_size(c) + 16))
            .sum();
        let foreign: usize = (0..FOREIGN_CLASSES)
            .map(|c| FOREIGN_COUNT as usize * (class_size(c) + 16))
            .sum();
        assert_eq!(MAX_CACHED_BYTES, own + foreign);
    }

    #[test]
    fn medium_classes_round_up_by_at_most_an_eighth() {
        assert_eq!(medium_size(0), MIN_MEDIUM_SIZE);
        assert_eq!(medium_size(NMEDIUM - 1), MAX_MEDIUM_SIZE);
        assert_eq!(medium_class(MAX_CACHED_REQUEST), None);
        assert_eq!(medium_class(MAX_CACHED_REQUEST + 1), Some(MEDIUM_BASE));
        assert_eq!(
            medium_class(MAX_MEDIUM_REQUEST),
            Some(MEDIUM_BASE + NMEDIUM - 1)
        );
        assert_eq!(medium_class(MAX_MEDIUM_REQUEST + 1), None);
        for i in 1..NMEDIUM {
            assert!(medium_size(i) > medium_size(i - 1));
            assert_eq!(medium_size(i) % 128, 0);
        }
        for size in MAX_CACHED_REQUEST + 1..=MAX_MEDIUM_REQUEST {
            let c = medium_class(size).unwrap();
            let nb = request2size(size);
            let got = medium_size(c - MEDIUM_BASE);
            assert!(got >= nb, "size {size}: class {c} holds {got}");
            assert!(
                got <= nb + nb / 8,
                "size {size}: class {c} wastes {}",
                got - nb
            );
            if c > MEDIUM_BASE {
                assert!(
                    medium_size(c - MEDIUM_BASE - 1) < nb,
                    "size {size}: not the smallest"
                );
            }
            // A chunk of exactly the class size goes back to the class.
            assert_eq!(medium_class_of_chunk(got), Some(c));
            assert_eq!(request2size(medium_request(c)), got);
        }
        for size in (0..4 * MAX_MEDIUM_SIZE).step_by(16) {
            match medium_class_of_chunk(size) {
                None => assert!(!(MIN_MEDIUM_SIZE..2 * MAX_MEDIUM_SIZE).contains(&size)),
                Some(c) => {
                    let i = c - MEDIUM_BASE;
                    assert!(medium_size(i) <= size, "chunk {size} in class {c}");
                    assert!(
                        i == NMEDIUM - 1 || medium_size(i + 1) > size,
                        "chunk {size}"
                    );
                }
            }
        }
        let medium_max: usize = (0..NMEDIUM)
            .map(|i| MAX_COUNT[MEDIUM_BASE + i] as usize * medium_size(i))
            .sum();
        assert!(medium_max > MEDIUM_BUDGET, "the budget binds: {medium_max}");
        assert!(MAX_COUNT[MEDIUM_BASE..MEDIUM_BASE + NMEDIUM]
            .iter()
            .all(|&n| (2..=8).contains(&n)));
        assert!(MAX_COUNT[FOREIGN_BASE + FOREIGN_CLASSES..]
            .iter()
            .all(|&n| n == 0));
    }
}
