//! Process-wide registry of the memory every Tessera heap owns.
//!
//! `free` receives pointers from outside (the trust boundary). Before any
//! byte is read through such a pointer, the registry says whether the
//! address can be ours at all, without touching it:
//!
//! - **segments**: one byte per [`SEGMENT_SIZE`]-aligned slot of the 47-bit
//!   user address space (2^21 bytes = 2 MiB of zero-initialised statics, of
//!   which only the touched pages ever become resident: one page covers
//!   256 GiB of address space). Byte nonzero ⟺ a live segment of some heap
//!   starts at that slot; the byte is the heap's *tag* (an arena's slot
//!   number plus one, [`PLAIN`] for a standalone heap), so the free fast
//!   path learns with the one compare it makes whether a chunk is of the
//!   thread's own arena. [`UNMATCHED`] is never stored. (A byte rather
//!   than a bit: one compare, three instructions fewer than a bit test.)
//! - **direct chunks**: one bit per 4 KiB page, in a two-level table: 2^15
//!   first-level slots of 4 GiB each, pointing to 128 KiB leaf bitmaps mapped
//!   on first use and never freed (so a reader never sees a leaf vanish).
//!   Bit set ⟺ a live directly mapped chunk starts in that page. Two direct
//!   chunks never share a page, since each has its own mapping.
//!
//! Both are lock-free: segment bytes are stored (each slot has one owner at
//! a time), direct bits set and cleared with atomic read-modify-write
//! operations; leaves are published with a compare-exchange.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

/// Size and alignment of every segment reservation: 64 MiB, like glibc's
/// HEAP_MAX_SIZE for non-main arenas. The registry's unit, so it is
/// defined here; `heap::segment` lays segments out.
pub const SEGMENT_SIZE: usize = 64 << 20;

/// User-space virtual addresses on x86-64 Linux stay below 2^47 unless a
/// program asks for more with an explicit hint.
pub const ADDRESS_BITS: u32 = 47;
const SEGMENT_SHIFT: u32 = SEGMENT_SIZE.trailing_zeros();
const SEGMENT_SLOTS: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);

static SEGMENTS: [AtomicU8; SEGMENT_SLOTS] = [const { AtomicU8::new(0) }; SEGMENT_SLOTS];

const PAGE_SHIFT: u32 = 12;
const LEAF_SHIFT: u32 = 32; // each leaf covers 4 GiB
const LEAF_BITS: usize = 1 << (LEAF_SHIFT - PAGE_SHIFT);
const LEAF_WORDS: usize = LEAF_BITS / 64;
const LEAF_BYTES: usize = LEAF_WORDS * 8;
const LEAF_GAP: usize = 1 << PAGE_SHIFT;
const ROOT_SLOTS: usize = 1 << (ADDRESS_BITS - LEAF_SHIFT);

static DIRECT: [AtomicPtr<AtomicU64>; ROOT_SLOTS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; ROOT_SLOTS];

#[inline(always)]
fn in_range(addr: usize) -> bool {
    addr >> ADDRESS_BITS == 0
}

/// The segment tag of a heap that is not an arena of the process
/// allocator (a standalone `Heap`, an mspace).
pub const PLAIN: u8 = 0xFF;

/// A tag no slot ever holds: compared with [`segment_tag`], it matches no
/// address (a thread cache that has no arena yet holds it).
pub const UNMATCHED: u8 = 0xFE;

/// The largest tag an arena may have (its slot number plus one).
pub const MAX_ARENA_TAG: u8 = 0xFD;

/// Records a live segment starting at `base` (SEGMENT_SIZE-aligned), owned
/// by a heap whose tag is `tag` (1..=[`MAX_ARENA_TAG`], or [`PLAIN`]).
/// Returns false if the address lies outside the tracked range.
pub fn add_segment(base: usize, tag: u8) -> bool {
    debug_assert!(tag != 0 && tag != UNMATCHED);
    if !in_range(base) {
        return false;
    }
    SEGMENTS[base >> SEGMENT_SHIFT].store(tag, Ordering::Release);
    true
}

/// Gives the live segment at `base` the tag `tag` (as in [`add_segment`]):
/// a heap that becomes an arena after its first segment was recorded.
pub fn retag_segment(base: usize, tag: u8) {
    debug_assert!(tag != 0 && tag != UNMATCHED);
    if in_range(base) && SEGMENTS[base >> SEGMENT_SHIFT].load(Ordering::Relaxed) != 0 {
        SEGMENTS[base >> SEGMENT_SHIFT].store(tag, Ordering::Release);
    }
}

/// Forgets the segment at `base`.
pub fn remove_segment(base: usize) {
    if in_range(base) {
        SEGMENTS[base >> SEGMENT_SHIFT].store(0, Ordering::Release);
    }
}

/// Is `mem` 16-aligned, below 2^47, and in a slot where a live segment
/// starts? One mask test and one byte compare; touches no heap memory.
#[inline(always)]
pub fn aligned_in_segment(mem: usize) -> bool {
    segment_tag(mem) != 0
}

/// Is `mem` 16-aligned and below 2^47, where the registry can say
/// whether it is ours ([`slot_tag`])? One mask test.
#[inline(always)]
pub fn trackable(mem: usize) -> bool {
    const BAD: usize = !((1usize << ADDRESS_BITS) - 1) | 15;
    mem & BAD == 0
}

/// The tag of the segment whose slot holds `mem` (0 if no live segment
/// starts there), for a [`trackable`] `mem` (for any other, the tag of
/// some slot: meaningless but harmless). One byte load; touches no heap
/// memory. The free fast path compares it with its arena's tag.
#[inline(always)]
pub fn slot_tag(mem: usize) -> u8 {
    SEGMENTS[(mem >> SEGMENT_SHIFT) & (SEGMENT_SLOTS - 1)].load(Ordering::Relaxed)
}

/// The tag of the segment `mem` lies in if `mem` is [`trackable`] and in
/// a slot where a live segment starts; else 0.
#[inline(always)]
pub fn segment_tag(mem: usize) -> u8 {
    if trackable(mem) {
        slot_tag(mem)
    } else {
        0
    }
}

/// Does `addr` lie in a slot where a live segment starts? Touches no heap
/// memory.
#[inline(always)]
pub fn in_segment(addr: usize) -> bool {
    if !in_range(addr) {
        return false;
    }
    SEGMENTS[addr >> SEGMENT_SHIFT].load(Ordering::Acquire) != 0
}

fn leaf(addr: usize, create: bool) -> *mut AtomicU64 {
    let root = &DIRECT[addr >> LEAF_SHIFT];
    let leaf = root.load(Ordering::Acquire);
    if !leaf.is_null() || !create {
        return leaf;
    }
    // SAFETY: a fresh anonymous mapping; zero bytes are valid AtomicU64s.
    let fresh = unsafe {
        libc::mmap(
            ptr::null_mut(),
            LEAF_BYTES + LEAF_GAP,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if fresh == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    // The page after a leaf is left unmapped, like the page after a direct
    // chunk (see `os::Mmap`): a leaf is mapped just after the first direct
    // chunk of its range, so the kernel often puts it right below that
    // chunk, where a program may map a page of its own over it.
    // SAFETY: the last page of the mapping just made, unused.
    unsafe { libc::munmap(fresh.cast::<u8>().add(LEAF_BYTES).cast(), LEAF_GAP) };
    let fresh = fresh.cast::<AtomicU64>();
    match root.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => fresh,
        Err(winner) => {
            // SAFETY: `fresh` was never published; nobody else can see it.
            unsafe { libc::munmap(fresh.cast(), LEAF_BYTES) };
            winner
        }
    }
}

/// Records a live direct chunk whose header lies at `addr`. Returns false
/// when the address is out of range or the leaf cannot be mapped.
pub fn add_direct(addr: usize) -> bool {
    if !in_range(addr) {
        return false;
    }
    let leaf = leaf(addr, true);
    if leaf.is_null() {
        return false;
    }
    let bit = (addr >> PAGE_SHIFT) % LEAF_BITS;
    // SAFETY: `bit / 64 < LEAF_WORDS`, inside the live leaf mapping.
    unsafe { (*leaf.add(bit / 64)).fetch_or(1 << (bit % 64), Ordering::Release) };
    true
}

/// Forgets the direct chunk at `addr`.
pub fn remove_direct(addr: usize) {
    if !in_range(addr) {
        return;
    }
    let leaf = leaf(addr, false);
    if leaf.is_null() {
        return;
    }
    let bit = (addr >> PAGE_SHIFT) % LEAF_BITS;
    // SAFETY: as in `add_direct`.
    unsafe { (*leaf.add(bit / 64)).fetch_and(!(1 << (bit % 64)), Ordering::Release) };
}

/// Does a live direct chunk start in the page of `addr`? Touches no heap
/// memory.
#[inline]
pub fn is_direct(addr: usize) -> bool {
    if !in_range(addr) {
        return false;
    }
    let leaf = leaf(addr, false);
    if leaf.is_null() {
        return false;
    }
    let bit = (addr >> PAGE_SHIFT) % LEAF_BITS;
    // SAFETY: as in `add_direct`.
    unsafe { (*leaf.add(bit / 64)).load(Ordering::Acquire) & (1 << (bit % 64)) != 0 }
}

/// Chunk addresses of the last direct chunks unmapped, so that a second
/// free of one is named a double free rather than an unknown pointer.
static RECENT_DIRECT: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
static RECENT_POS: AtomicU64 = AtomicU64::new(0);

/// Remembers that the direct chunk at `addr` was just unmapped.
pub fn note_direct_freed(addr: usize) {
    let i = RECENT_POS.fetch_add(1, Ordering::Relaxed) as usize % RECENT_DIRECT.len();
    RECENT_DIRECT[i].store(addr as u64, Ordering::Relaxed);
}

/// Was `addr` one of the last 64 direct chunks unmapped? (Error paths only.)
pub fn was_direct_freed(addr: usize) -> bool {
    RECENT_DIRECT
        .iter()
        .any(|a| a.load(Ordering::Relaxed) == addr as u64)
}

/// The secret that keys check words in segment records and mapping headers,
/// so that a stray write or a forged header cannot pass for ours. Drawn from
/// the kernel on first use.
static KEY: AtomicU64 = AtomicU64::new(0);

/// The key made of the random bits `r`: odd, because it is also the
/// multiplier of the chunk tags (`chunk::tag_for`), and an odd multiplier
/// is invertible (distinct inputs, distinct products).
#[inline]
pub(crate) const fn compose_key(r: u64) -> u64 {
    r | 1
}

/// The process key (odd, so never zero).
#[inline(always)]
pub fn key() -> usize {
    let k = KEY.load(Ordering::Relaxed);
    if k != 0 {
        return k as usize;
    }
    init_key()
}

/// The process key, known to be initialised already: every chunk comes
/// from a segment or mapping whose creation called [`key`], so code that
/// holds a chunk may skip the check.
#[inline(always)]
pub fn key_initialized() -> usize {
    KEY.load(Ordering::Relaxed) as usize
}

#[cold]
fn init_key() -> usize {
    let mut k: u64 = 0;
    // SAFETY: getrandom writes at most 8 bytes into `k`.
    let n = unsafe { libc::getrandom(ptr::addr_of_mut!(k).cast(), 8, libc::GRND_NONBLOCK) };
    if n != 8 {
        // No entropy yet (very early boot): fall back to address-space
        // randomisation and the clock.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into `ts`.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        k = (ptr::addr_of!(ts) as u64).rotate_left(29)
            ^ (ts.tv_nsec as u64)
            ^ (init_key as fn() -> usize as usize as u64);
    }
    k = compose_key(k);
    match KEY.compare_exchange(0, k, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => k as usize,
        Err(other) => other as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_bits_set_and_clear() {
        let base = 0x7000_0000_0000usize & !(SEGMENT_SIZE - 1);
        assert!(!in_segment(base + 123));
        assert!(add_segment(base, 7));
        assert!(in_segment(base + SEGMENT_SIZE - 1));
        assert!(!in_segment(base + SEGMENT_SIZE));
        assert_eq!(segment_tag(base + 64), 7);
        assert_eq!(segment_tag(base + 72), 0, "misaligned");
        assert_eq!(segment_tag(base + SEGMENT_SIZE + 64), 0);
        retag_segment(base, PLAIN);
        assert_eq!(segment_tag(base + SEGMENT_SIZE - 16), PLAIN);
        remove_segment(base);
        assert!(!in_segment(base));
        assert_eq!(segment_tag(base + 64), 0);
        retag_segment(base, 3);
        assert!(!in_segment(base), "retagging records nothing");
        assert!(!add_segment(1 << 50, 1));
        assert!(!in_segment(usize::MAX));
    }

    #[test]
    fn direct_bits_are_per_page() {
        let addr = 0x6543_2100_0000usize;
        assert!(!is_direct(addr));
        assert!(add_direct(addr + 48));
        assert!(is_direct(addr + 4095));
        assert!(!is_direct(addr + 4096));
        assert!(!is_direct(addr - 1));
        remove_direct(addr);
        assert!(!is_direct(addr));
    }

    #[test]
    fn key_is_stable_and_nonzero() {
        assert_ne!(key(), 0);
        assert_eq!(key(), key());
    }
}
