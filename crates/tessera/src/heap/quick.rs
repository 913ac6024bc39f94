//! Quick lists: per-arena stacks of small chunks flushed from thread
//! caches, kept *in use* instead of being coalesced (ptmalloc's fastbins,
//! fed by the thread caches instead of by `free`).
//!
//! A thread cache that overflows gives half a class back to the arena, and
//! a cache that runs dry takes half a class from it. Without quick lists
//! each of those chunks goes through dlmalloc's full free (merge with free
//! neighbours, bin) and full malloc (bin search, unlink, split): the
//! densest code of the allocator, and the densest checks. With them, a
//! flushed chunk is pushed on its class's quick list as it is, and the
//! next refill of that class pops it back, two pointer moves each way.
//! The chunks are merged (**consolidated**) only when the arena would
//! otherwise ask the OS for memory, when a free leaves top above the trim
//! threshold (the heap is emptying out), when a thread that parked chunks
//! exits, and when `malloc_trim` runs: parked memory is never the reason
//! the heap grows, and does not outlive its thread's use of the arena.
//! Only a thread's own arena parks its flushes (its refills are the ones
//! that take them back; chunks of other arenas are freed for good), exit
//! flushes never park, and an arena parks at most [`BUDGET`] bytes.
//!
//! Measured (`check-cost.sh instr`, one thread): see `docs/ARCHITECTURE.md`,
//! "Quick lists".
//!
//! # Glossary
//! - **entry**: a chunk on a quick list. The heap sees it as in use (CINUSE
//!   set, its tag intact, its neighbours' PINUSE set), so nothing merges
//!   with it; FLAG4 in its head says "parked" (the arena owns the head,
//!   and only holders of its lock write it, so the flag can stay set,
//!   unlike a thread-cache entry's). Its first payload word holds the
//!   mangled link to the next entry (as in the thread cache), its second
//!   the thread cache's key, so that a double free of an entry takes the
//!   cache's slow path, which sees FLAG4 and reports it.
//! - **class c**: entries of chunk size `32 + 16 c` exactly (the thread
//!   cache's small classes).
//!
//! # Invariants (under the arena's lock)
//! - bit c of `map` ⟺ `count[c] > 0` ⟺ `heads[c] != EMPTY`.
//! - list c holds `count[c]` entries, each a chunk of its arena with head
//!   `32 + 16 c | CINUSE | FLAG4 | P` and a valid tag; the last entry's
//!   link demangles to the thread cache's `EMPTY`.
//! - `bytes` is the sum of the entries' sizes, at most [`BUDGET`].
//! - no chunk outside a quick list has FLAG4 set, except a thread-cache
//!   entry while its thread writes a snapshot of the arena.

use super::chunk::{plausible_near, Chunk, Head, CHECKS, MIN_CHUNK_SIZE};
use super::lists::{demangle, key_word, mangle, EMPTY, NSMALL};
use crate::sys::registry;
use crate::sys::report::{fatal, Misuse};
use core::ptr;

/// The most bytes one arena parks, over all classes (a class may take all
/// of it: a program often frees a run of one size that it allocates again
/// only later). Somewhat less than one thread cache may hold. The suite's
/// trace (at scale 1) ran 22% more instructions with 256 KiB, and no
/// fewer with 1 MiB.
pub const BUDGET: usize = 512 << 10;

/// The quick lists of one arena. See the module docs.
pub(crate) struct QuickLists {
    heads: [*mut u8; NSMALL],
    count: [u16; NSMALL],
    /// Bit c set ⟺ list c is non-empty.
    pub(crate) map: u64,
    /// Bytes in all entries.
    pub(crate) bytes: usize,
}

const _: () = assert!(NSMALL <= 64, "the quick map is a u64");
const _: () = assert!(
    BUDGET / MIN_CHUNK_SIZE <= u16::MAX as usize,
    "counts are u16"
);

impl QuickLists {
    pub(crate) const EMPTY: QuickLists = QuickLists {
        heads: [EMPTY; NSMALL],
        count: [0; NSMALL],
        map: 0,
        bytes: 0,
    };

    /// Chunk size of class `c`.
    #[inline(always)]
    const fn size(c: usize) -> usize {
        MIN_CHUNK_SIZE + 16 * c
    }

    /// The head word an entry of class `c` has, ignoring PINUSE and the tag.
    #[inline(always)]
    const fn parked_head(c: usize) -> usize {
        Self::size(c) | Head::CINUSE | Head::FLAG4
    }

    /// Parks `mem`, a validated in-use chunk of exactly class `c`'s size,
    /// if the arena's [`BUDGET`] has room; returns whether it did.
    ///
    /// # Safety
    /// The caller holds the arena's lock, and `mem` is an in-use chunk of
    /// this arena that nobody else holds (leaving a thread cache).
    #[inline]
    pub(crate) unsafe fn push(&mut self, c: usize, mem: *mut u8) -> bool {
        let c = c % NSMALL;
        if self.bytes + Self::size(c) > BUDGET {
            return false;
        }
        let p = Chunk::from_mem(mem);
        let secret = registry::key_initialized();
        // SAFETY: `mem` is an in-use chunk of this arena whose head only
        // lock holders write (caller), and its payload is the allocator's.
        unsafe {
            Chunk::set_head(p, Chunk::head(p).0 | Head::FLAG4);
            let words = mem.cast::<usize>();
            words.write(mangle(self.heads[c], mem, secret));
            words.add(1).write(key_word(secret));
        }
        self.heads[c] = mem;
        self.count[c] += 1;
        self.map |= 1 << c;
        self.bytes += Self::size(c);
        true
    }

    /// Takes the first entry of class `c` (null if the list is empty), with
    /// FLAG4 cleared: an in-use chunk again. Its link and head are checked
    /// before anything follows them: a link that left the heap or a head
    /// that is not a parked chunk of the class (a write after free, an
    /// overflow from the chunk before) aborts.
    ///
    /// # Safety
    /// The caller holds the arena's lock.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self, c: usize) -> *mut u8 {
        let c = c % NSMALL;
        if self.count[c] == 0 {
            return ptr::null_mut();
        }
        let mem = self.heads[c];
        let p = Chunk::from_mem(mem);
        // SAFETY: `mem` was pushed (a chunk of this arena), or it is a link
        // that passed `plausible_near` (in a live segment, 16-aligned) when
        // the entry before it was popped.
        unsafe {
            let head = Chunk::head(p).0;
            if CHECKS
                && head & (Head::SIZE_MASK | Head::CINUSE | Head::FLAG4) != Self::parked_head(c)
            {
                fatal(Misuse::CorruptHeader, mem);
            }
            let next = demangle(mem.cast::<usize>().read(), mem);
            self.count[c] -= 1;
            if self.count[c] == 0 {
                if CHECKS && next != EMPTY {
                    fatal(Misuse::CorruptLinks, mem);
                }
                self.map &= !(1 << c);
            } else if CHECKS && (next == EMPTY || !plausible_near(next, mem)) {
                fatal(Misuse::CorruptLinks, mem);
            }
            self.heads[c] = next;
            self.bytes -= Self::size(c);
            Chunk::set_head(p, head & !Head::FLAG4);
            // The key goes: the chunk is no longer free.
            mem.cast::<usize>().add(1).write(0);
        }
        mem
    }

    /// Entries in class `c`.
    pub(crate) fn len(&self, c: usize) -> usize {
        self.count[c % NSMALL] as usize
    }

    /// The entries of class `c`, head first, without changing anything
    /// (for the consistency checker): `Err(entry)` for the first entry
    /// whose link is not a plausible chunk, which ends the walk.
    pub(crate) fn entries(&self, c: usize) -> impl Iterator<Item = Result<*mut u8, *mut u8>> + '_ {
        let mut next = self.heads[c % NSMALL];
        let mut left = self.len(c);
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let mem = next;
            if !crate::heap::chunk::plausible(Chunk::from_mem(mem)) {
                left = 0;
                return Some(Err(mem));
            }
            // SAFETY: a plausible entry: a 16-aligned address in a live
            // segment, whose first payload word is readable.
            next = demangle(unsafe { mem.cast::<usize>().read() }, mem);
            Some(Ok(mem))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::ChunkKind;
    use crate::inspect::Item;
    use crate::Heap;
    use std::boxed::Box;
    use std::vec::Vec;

    /// A standalone heap given quick lists of its own (only arenas have
    /// them otherwise; leaked, as an arena's live forever).
    fn heap_with_lists() -> Heap {
        let mut heap = Heap::new();
        heap.state_mut().quick = Box::into_raw(Box::new(QuickLists::EMPTY));
        heap
    }

    fn kinds(heap: &Heap) -> Vec<(usize, ChunkKind)> {
        let mut v = Vec::new();
        heap.walk(&mut |item| {
            if let Item::Chunk(c) = item {
                v.push((c.addr + 16, c.kind));
            }
        });
        v
    }

    #[test]
    fn parked_chunks_come_back_last_in_first_out_and_the_checker_follows() {
        let mut heap = heap_with_lists();
        // 64-byte requests: 80-byte chunks, class 3.
        let blocks: Vec<*mut u8> = (0..10).map(|_| heap.malloc(64)).collect();
        let _guard = heap.malloc(64);
        // SAFETY: live in-use chunks of this heap, parked once each.
        unsafe {
            for &b in &blocks {
                assert!(heap.state_mut().park(Chunk::from_mem(b)));
            }
        }
        assert!(heap.state().quick_pending());
        heap.check().expect("the checker accepts parked chunks");
        let parked: Vec<usize> = kinds(&heap)
            .into_iter()
            .filter(|&(_, k)| k == ChunkKind::Parked)
            .map(|(a, _)| a)
            .collect();
        assert_eq!(parked.len(), 10);
        assert!(parked.iter().all(|a| blocks.contains(&(*a as *mut u8))));
        // SAFETY: the heap's own lists.
        unsafe {
            assert!(heap.state_mut().unpark(2).is_null(), "another class");
            for &b in blocks.iter().rev() {
                assert_eq!(heap.state_mut().unpark(3), b, "LIFO");
                let head = Chunk::head(Chunk::from_mem(b));
                assert!(!head.flag4() && head.cinuse() && head.size() == 80);
                assert_eq!(b.cast::<usize>().add(1).read(), 0, "the key is wiped");
            }
            assert!(heap.state_mut().unpark(3).is_null());
        }
        assert!(!heap.state().quick_pending());
        heap.check().unwrap();
        // Handed out again: ordinary in-use chunks.
        // SAFETY: live, freed once.
        unsafe {
            for &b in &blocks {
                heap.free(b);
            }
        }
        heap.check().unwrap();
    }

    #[test]
    fn the_checker_rejects_a_stray_flag4() {
        let mut heap = heap_with_lists();
        let a = heap.malloc(64);
        let _guard = heap.malloc(64);
        let p = Chunk::from_mem(a);
        // SAFETY: an in-use chunk of this heap; only FLAG4 is flipped.
        unsafe { Chunk::set_head(p, Chunk::head(p).0 | Head::FLAG4) };
        let e = heap.check().unwrap_err();
        assert_eq!(
            e.what,
            "the quick lists hold exactly the chunks with FLAG4 set"
        );
        // On a heap without quick lists, the chunk itself is the error.
        let mut plain = Heap::new();
        let b = plain.malloc(64);
        let _guard = plain.malloc(64);
        let q = Chunk::from_mem(b);
        // SAFETY: as above.
        unsafe { Chunk::set_head(q, Chunk::head(q).0 | Head::FLAG4) };
        let e = plain.check().unwrap_err();
        assert_eq!(e.what, "a chunk with FLAG4 set is on its quick list");
        assert_eq!(e.addr, q as usize);
    }

    #[test]
    fn the_checker_rejects_a_cycle_in_a_quick_list() {
        let mut heap = heap_with_lists();
        let blocks: Vec<*mut u8> = (0..3).map(|_| heap.malloc(64)).collect();
        // SAFETY: live in-use chunks, parked once each; then the head's
        // link is pointed back at the head, as a write after free might.
        unsafe {
            for &b in &blocks {
                assert!(heap.state_mut().park(Chunk::from_mem(b)));
            }
            heap.check().unwrap();
            let head = blocks[2];
            let secret = registry::key_initialized();
            head.cast::<usize>().write(mangle(head, head, secret));
        }
        let e = heap.check().unwrap_err();
        assert_eq!(e.what, "quick list c ends after its count");
        assert_eq!(e.addr, 3);
    }

    #[test]
    fn the_heap_consolidates_before_it_grows_and_on_trim() {
        let mut heap = heap_with_lists();
        // Fill the first segment's top with 80-byte chunks, all parked.
        let mut blocks = Vec::new();
        while heap.state().topsize > 1024 {
            blocks.push(heap.malloc(64));
        }
        let footprint = heap.footprint();
        // SAFETY: live in-use chunks, parked once each.
        unsafe {
            for &b in &blocks {
                assert!(heap.state_mut().park(Chunk::from_mem(b)));
            }
        }
        // No bin, dv or top can serve 16 KiB; the parked chunks merged can.
        let big = heap.malloc(16 << 10);
        assert!(!big.is_null());
        assert!(!heap.state().quick_pending(), "consolidated");
        assert_eq!(heap.footprint(), footprint, "the heap did not grow");
        assert_eq!(big, blocks[0], "the merged run starts at the first chunk");
        heap.check().unwrap();
        // SAFETY: live, freed once.
        unsafe { heap.free(big) };
        // Parked again, then trimmed: nothing stays parked.
        let again: Vec<*mut u8> = (0..50).map(|_| heap.malloc(64)).collect();
        // SAFETY: live in-use chunks, parked once each.
        unsafe {
            for &b in &again {
                assert!(heap.state_mut().park(Chunk::from_mem(b)));
            }
        }
        heap.trim(0);
        assert!(!heap.state().quick_pending());
        assert!(kinds(&heap).iter().all(|&(_, k)| k != ChunkKind::Parked));
        heap.check().unwrap();
    }

    #[test]
    fn an_arena_parks_at_most_its_budget() {
        let mut heap = heap_with_lists();
        // 1024-byte requests: 1040-byte chunks, the largest class.
        let n = BUDGET / 1040 + 3;
        let blocks: Vec<*mut u8> = (0..n).map(|_| heap.malloc(1024)).collect();
        // SAFETY: live in-use chunks, each parked at most once.
        let parked = blocks
            .iter()
            .filter(|&&b| unsafe { heap.state_mut().park(Chunk::from_mem(b)) })
            .count();
        assert_eq!(parked, BUDGET / 1040);
        // SAFETY: the heap's own lists.
        assert!(unsafe { (*heap.state().quick).bytes } <= BUDGET);
        heap.check().unwrap();
    }
}
