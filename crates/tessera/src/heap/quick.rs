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
//! flushes never park, and an arena parks at most [`budget`] bytes (a
//! quarter of its footprint, at least [`MIN_BUDGET`]).
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
//! - `bytes` is the sum of the entries' sizes, at most
//!   `budget(max_footprint)` of the arena.
//! - no chunk outside a quick list has FLAG4 set, except a thread-cache
//!   entry while its thread writes a snapshot of the arena.

use super::chunk::{plausible_near, Chunk, Head, CHECKS, MIN_CHUNK_SIZE};
use super::lists::{demangle, key_word, mangle, EMPTY, NSMALL};
use crate::sys::registry;
use crate::sys::report::{fatal, Misuse};
use core::ptr;

/// The least an arena may park, over all classes, whatever its size (a
/// class may take all of it: a program often frees a run of one size that
/// it allocates again only later).
pub const MIN_BUDGET: usize = 1 << 20;

/// The most bytes an arena with `footprint` bytes from the OS parks: a
/// quarter of its footprint, at least [`MIN_BUDGET`]. Parked memory never
/// makes the heap grow (it is consolidated first), so the budget bounds
/// what waits unmerged, not the footprint. Measured: with a fixed 512 KiB
/// an sh6bench-shaped run (a ring of 20,000 small blocks, four fifths
/// freed in bulk at each wrap) sent most flushes through dlmalloc's full
/// free and most refills through its full malloc; 1 MiB already took its
/// instructions from 2.05 G to 1.42 G. (glibc's fastbins have no bound.)
#[inline(always)]
pub const fn budget(footprint: usize) -> usize {
    if footprint / 4 > MIN_BUDGET {
        footprint / 4
    } else {
        MIN_BUDGET
    }
}

/// The quick lists of one arena. See the module docs.
pub(crate) struct QuickLists {
    heads: [*mut u8; NSMALL],
    count: [usize; NSMALL],
    /// Bit c set ⟺ list c is non-empty.
    pub(crate) map: u64,
    /// Bytes in all entries.
    pub(crate) bytes: usize,
}

const _: () = assert!(NSMALL <= 64, "the quick map is a u64");

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
    /// if `budget` (see [`budget`]) has room; returns whether it did.
    ///
    /// # Safety
    /// The caller holds the arena's lock, and `mem` is an in-use chunk of
    /// this arena that nobody else holds (leaving a thread cache).
    #[inline]
    pub(crate) unsafe fn push(&mut self, c: usize, mem: *mut u8, budget: usize) -> bool {
        let c = c % NSMALL;
        if self.bytes + Self::size(c) > budget {
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

    /// Entries of class `c`'s size that still fit in `budget`.
    #[inline]
    pub(crate) fn room(&self, c: usize, budget: usize) -> usize {
        budget.saturating_sub(self.bytes) / Self::size(c % NSMALL)
    }

    /// Parks a whole run of `n` entries of class `c`, already linked
    /// `first` → ... → `last` with mangled links, each a chunk of exactly
    /// class c's size with FLAG4 set in its head and the key in its second
    /// word: one link written, however long the run (a thread cache hands
    /// over half a class this way). The caller checked [`room`](Self::room).
    ///
    /// # Safety
    /// The caller holds the arena's lock; the run is as described, its
    /// chunks belong to this arena and nobody else holds them.
    #[inline]
    pub(crate) unsafe fn push_run(&mut self, c: usize, first: *mut u8, last: *mut u8, n: usize) {
        let c = c % NSMALL;

        // SAFETY: `last` is an entry whose first payload word is its link.
        unsafe {
            last.cast::<usize>()
                .write(mangle(self.heads[c], last, registry::key_initialized()))
        };
        self.heads[c] = first;
        self.count[c] += n;
        self.map |= 1 << c;
        self.bytes += n * Self::size(c);
    }

    /// Takes up to `max` entries of class `c` off the list as a run and
    /// returns `(first, last, n)` (n = 0: the list is empty). Each entry's
    /// head is checked and its FLAG4 cleared, and each link is checked
    /// before it is followed, as in [`pop`](Self::pop); the entries keep
    /// the key (they go to a thread cache, whose entries carry it too), and
    /// `last`'s link still points into this list: the caller relinks it.
    ///
    /// # Safety
    /// The caller holds the arena's lock.
    pub(crate) unsafe fn take_run(&mut self, c: usize, max: usize) -> (*mut u8, *mut u8, usize) {
        let c = c % NSMALL;
        let n = max.min(self.count[c]);
        if n == 0 {
            return (ptr::null_mut(), ptr::null_mut(), 0);
        }
        let first = self.heads[c];
        let mut mem = first;
        let mut last = first;
        // SAFETY: as in `pop`: each entry was pushed (a chunk of this arena)
        // or is a link that passed `plausible_near` from the entry before.
        unsafe {
            for i in 0..n {
                if CHECKS && i > 0 && (mem == EMPTY || !plausible_near(mem, last)) {
                    fatal(Misuse::CorruptLinks, last);
                }
                let p = Chunk::from_mem(mem);
                let head = Chunk::head(p).0;
                if CHECKS
                    && head & (Head::SIZE_MASK | Head::CINUSE | Head::FLAG4) != Self::parked_head(c)
                {
                    fatal(Misuse::CorruptHeader, mem);
                }
                Chunk::set_head(p, head & !Head::FLAG4);
                last = mem;
                mem = demangle(mem.cast::<usize>().read(), mem);
            }
            self.count[c] -= n;
            if self.count[c] == 0 {
                if CHECKS && mem != EMPTY {
                    fatal(Misuse::CorruptLinks, last);
                }
                self.map &= !(1 << c);
            } else if CHECKS && (mem == EMPTY || !plausible_near(mem, last)) {
                fatal(Misuse::CorruptLinks, last);
            }
        }
        self.heads[c] = mem;
        self.bytes -= n * Self::size(c);
        (first, last, n)
    }

    /// Entries in class `c`.
    pub(crate) fn len(&self, c: usize) -> usize {
        self.count[c % NSMALL]
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
        let n = MIN_BUDGET / 1040 + 3;
        let blocks: Vec<*mut u8> = (0..n).map(|_| heap.malloc(1024)).collect();
        let budget = budget(heap.footprint());
        assert_eq!(budget, MIN_BUDGET, "a small heap parks the minimum");
        // SAFETY: live in-use chunks, each parked at most once.
        let parked = blocks
            .iter()
            .filter(|&&b| unsafe { heap.state_mut().park(Chunk::from_mem(b)) })
            .count();
        assert_eq!(parked, budget / 1040);
        // SAFETY: the heap's own lists.
        assert!(unsafe { (*heap.state().quick).bytes } <= budget);
        heap.check().unwrap();
    }

    #[test]
    fn a_flush_that_finds_the_budget_full_consolidates_first() {
        let mut heap = heap_with_lists();
        // The budget filled with 1040-byte chunks (a size nobody asks for
        // any more), then a flush of 48-byte chunks.
        let mut old: Vec<*mut u8> = (0..MIN_BUDGET / 1040 + 1)
            .map(|_| heap.malloc(1024))
            .collect();
        old.extend((0..8).map(|_| heap.malloc(40)));
        let _guard = heap.malloc(16);
        // SAFETY: live in-use chunks, each parked at most once.
        let parked = old
            .iter()
            .filter(|&&b| unsafe { heap.state_mut().park(Chunk::from_mem(b)) })
            .count();
        assert!(parked < old.len(), "the budget ran out");
        let c = crate::heap::lists::class_of(request2size_of(40));
        assert_eq!(heap.state().quick_room(c), 0, "the budget is full");
        let fresh: Vec<*mut u8> = (0..10).map(|_| heap.malloc(40)).collect();
        // SAFETY: the heap is the test's, consistent, not shared.
        let room = unsafe { heap.state_mut().quick_room_or_consolidate(c) };
        assert_eq!(room, budget(heap.footprint()) / 48);
        assert!(
            kinds(&heap).iter().all(|&(_, k)| k != ChunkKind::Parked),
            "every parked chunk was freed for good"
        );
        heap.check().unwrap();
        let (first, last) = as_parked_run(&fresh);
        // SAFETY: the run is as `park_run` wants it, within the room.
        unsafe { heap.state_mut().park_run(c, first, last, fresh.len()) };
        heap.check().unwrap();
        // With room to spare, nothing is consolidated.
        // SAFETY: as above.
        let room = unsafe { heap.state_mut().quick_room_or_consolidate(c) };
        assert!(room > 0);
        let parked = kinds(&heap)
            .iter()
            .filter(|&&(_, k)| k == ChunkKind::Parked)
            .count();
        assert_eq!(parked, fresh.len());
    }

    #[test]
    fn the_budget_is_a_quarter_of_the_footprint_at_least_the_minimum() {
        assert_eq!(budget(0), MIN_BUDGET);
        assert_eq!(budget(4 * MIN_BUDGET), MIN_BUDGET);
        assert_eq!(budget(64 << 20), 16 << 20);
    }

    /// Links `blocks` (in-use chunks of one small class) into a run as a
    /// thread cache's flush hands it over: mangled links, keys, FLAG4.
    fn as_parked_run(blocks: &[*mut u8]) -> (*mut u8, *mut u8) {
        let secret = registry::key_initialized();
        for (i, &b) in blocks.iter().enumerate() {
            let p = Chunk::from_mem(b);
            // SAFETY: live chunks of the test's own heap, held by the test.
            unsafe {
                Chunk::set_head(p, Chunk::head(p).0 | Head::FLAG4);
                b.cast::<usize>().add(1).write(key_word(secret));
                if let Some(&next) = blocks.get(i + 1) {
                    b.cast::<usize>().write(mangle(next, b, secret));
                }
            }
        }
        (blocks[0], *blocks.last().unwrap())
    }

    #[test]
    fn runs_are_parked_whole_and_taken_back_in_order_with_their_checks() {
        let mut heap = heap_with_lists();
        let blocks: Vec<*mut u8> = (0..10).map(|_| heap.malloc(40)).collect();
        let c = crate::heap::lists::class_of(request2size_of(40));
        let (first, last) = as_parked_run(&blocks);
        // SAFETY: the run is as `park_run` wants it; the heap is the test's.
        unsafe { heap.state_mut().park_run(c, first, last, blocks.len()) };
        heap.check().unwrap();
        let parked = kinds(&heap)
            .iter()
            .filter(|&&(_, k)| k == ChunkKind::Parked)
            .count();
        assert_eq!(parked, 10);
        // SAFETY: the heap's own lists.
        let (a, b, n) = unsafe { heap.state_mut().unpark_run(c, 4) };
        assert_eq!((a, b, n), (blocks[0], blocks[3], 4));
        for &x in &blocks[..4] {
            // SAFETY: live chunks.
            assert!(!unsafe { Chunk::head(Chunk::from_mem(x)) }.flag4());
        }
        // The taken chunks are ordinary in-use chunks again; the rest stay
        // parked and the list is intact.
        for &x in &blocks[..4] {
            // SAFETY: live, freed once.
            unsafe { heap.free(x) };
        }
        heap.check().unwrap();
        // SAFETY: the heap's own lists.
        let (a, _, n) = unsafe { heap.state_mut().unpark_run(c, 100) };
        assert_eq!((a, n), (blocks[4], 6));
        heap.check().unwrap();
    }

    #[test]
    fn taking_a_run_catches_a_damaged_head() {
        let mut heap = heap_with_lists();
        let blocks: Vec<*mut u8> = (0..3).map(|_| heap.malloc(40)).collect();
        let c = crate::heap::lists::class_of(request2size_of(40));
        let (first, last) = as_parked_run(&blocks);
        // SAFETY: as above.
        unsafe { heap.state_mut().park_run(c, first, last, 3) };
        // An overflow from the chunk before rewrites the second's size.
        // SAFETY: the test's own heap memory.
        unsafe {
            let p = Chunk::from_mem(blocks[1]);
            Chunk::set_head(p, Chunk::head(p).0 + 16);
        }
        assert!(heap.check().is_err(), "the checker sees it");
        // SAFETY: as above: put it back.
        unsafe {
            let p = Chunk::from_mem(blocks[1]);
            Chunk::set_head(p, Chunk::head(p).0 - 16);
        }
        heap.check().unwrap();
    }

    fn request2size_of(req: usize) -> usize {
        crate::heap::chunk::request2size(req)
    }
}
