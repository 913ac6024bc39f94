//! Freeing: dlmalloc's `free` (coalescing with free neighbours, then
//! top, the dv or a bin), the quick lists' side of the heap (parking a
//! chunk in use, taking it back, consolidating), and trimming.
//!
//! Read [`State::free_chunk`] first: boundary-tag coalescing, the heart
//! of dlmalloc.

use super::chunk::{
    purgeable, purgeable_bytes, tag_ok, Chunk, Head, TreeChunk, MEM_OFFSET, MIN_CHUNK_SIZE,
};
use super::classify::Classified;
use super::lists::{class_of, class_size, MAX_CACHED_SIZE};
use super::quick;
use super::segment::{Emptied, Segment};
use super::state::{Owned, State};
use super::treebins::{compute_tree_index, TreeNodeInfo, NTREEBINS};
use crate::sys::os::PageSource;
use crate::sys::report::{fatal, Misuse};
use core::ptr;

impl<S: PageSource> State<S> {
    // ----------------------------------------------------------------
    // free
    // ----------------------------------------------------------------

    /// Frees `mem` (dlmalloc's `dlfree`).
    ///
    /// # Safety
    /// `mem` must be null or a pointer this heap handed out and not yet
    /// freed; anything else is detected where cheaply possible and aborts.
    #[inline]
    pub(crate) unsafe fn free(&mut self, mem: *mut u8) {
        if mem.is_null() {
            return;
        }
        if self.debug.level >= 2 {
            self.debug_tick();
        }
        // SAFETY: `validate` vouches for the chunk.
        unsafe {
            match self.validate(mem, false) {
                Owned::Segment(p) => {
                    let size = Chunk::size(p);
                    self.perturb_freed(p, size);
                    self.free_chunk(p, size);
                    self.after_free();
                }
                Owned::Direct(p) => self.direct_free(p),
            }
        }
    }

    /// Frees a chunk that [`classify`] has just validated as this heap's
    /// (the arena path: no second validation).
    ///
    /// # Safety
    /// `c` must come from `classify` on a live pointer, with `c.owner` this
    /// heap, and nothing may have touched the chunk since.
    #[inline]
    pub(crate) unsafe fn free_classified(&mut self, c: Classified) {
        if self.debug.level >= 2 {
            self.debug_tick();
        }
        // SAFETY: forwarded to the caller.
        unsafe {
            if c.direct {
                self.direct_free(c.chunk);
            } else {
                let size = Chunk::size(c.chunk);
                self.perturb_freed(c.chunk, size);
                self.free_chunk(c.chunk, size);
                self.after_free();
            }
        }
    }

    /// M_PERTURB: fills the in-use chunk `p` of `size` bytes, which the
    /// program is freeing, with the perturb byte, from its payload up to
    /// its successor (whose `prev_foot` becomes the boundary tag).
    ///
    /// # Safety
    /// `p` must be a validated in-use segment chunk of this heap.
    #[inline(always)]
    pub(crate) unsafe fn perturb_freed(&self, p: *mut Chunk, size: usize) {
        if let Some(b) = self.config.perturb {
            // SAFETY: the payload of an in-use chunk ends where its
            // successor starts (caller).
            unsafe { Chunk::to_mem(p).write_bytes(b, size - MEM_OFFSET) };
        }
    }

    /// After a segment chunk was freed: if top grew past the trim
    /// threshold, the heap is emptying out, and the quick lists are
    /// consolidated first so that their chunks can merge into top too;
    /// then top is trimmed (dlmalloc's free tail). (glibc also
    /// consolidates its fastbins whenever a free leaves a chunk of 64 KiB
    /// or more; measured here, that emptied the lists so often that the
    /// trace workload got slower than with no lists at all.)
    ///
    /// # Safety
    /// The heap must be consistent.
    #[inline(always)]
    pub(crate) unsafe fn after_free(&mut self) {
        // SAFETY: forwarded to the caller.
        unsafe {
            if self.topsize > self.config.trim_threshold {
                if self.quick_pending() {
                    self.consolidate_quick();
                }
                self.trim_top(self.config.top_pad);
            }
        }
    }

    /// Frees the in-use chunk `p` of `psize` bytes (not direct): merges it
    /// with free neighbours, then puts the result into top, the dv or a bin,
    /// or unmaps its segment if the segment became empty (dlmalloc's free
    /// body and `dispose_chunk`).
    ///
    /// # Safety
    /// `p` must be a validated in-use chunk of this heap with `psize` its
    /// size; it may have CINUSE set or clear (callers splitting chunks pass
    /// pieces with any flags), only its PINUSE bit is read.
    pub(crate) unsafe fn free_chunk(&mut self, mut p: *mut Chunk, mut psize: usize) {
        // SAFETY: p is a chunk of this heap; every neighbour reached through
        // a size or tag is validated before it is written.
        unsafe {
            let next = Chunk::plus_offset(p, psize);
            if !Chunk::pinuse(p) {
                // p is merged into its predecessor, and its old head stays
                // behind inside the free chunk: clear CINUSE there (the tag
                // stays), so a second free of p is reported as the double
                // free it is. (Only here: p's head, read by whoever frees
                // the chunk before p, must never be seen half changed, in
                // use but tagless or free but tagged; when p stays a chunk
                // its head goes from in use to free in one store below.)
                let h = Chunk::head(p);
                Chunk::set_head(p, h.0 & !Head::CINUSE);
                let prevsize = Chunk::prev_foot(p);
                let prev = Chunk::minus_offset(p, prevsize);
                let seg = Segment::of(p.cast());
                let ph = if Segment::holds(seg, prev.cast()) && prevsize >= MIN_CHUNK_SIZE {
                    Chunk::head(prev)
                } else {
                    Head(usize::MAX)
                };
                if ph.size() != prevsize || ph.cinuse() {
                    fatal(Misuse::CorruptHeader, Chunk::to_mem(p));
                }
                psize += prevsize;
                p = prev;
                if p != self.dv {
                    self.unlink_chunk(p, prevsize);
                } else if Chunk::head(next).0 & Head::INUSE_BITS == Head::INUSE_BITS {
                    if self.debugging() {
                        self.debug_verify(p, prevsize, false);
                    }
                    self.dvsize = psize;
                    Chunk::set_free_with_pinuse(p, psize, next);
                    if self.debugging() {
                        self.debug_fill(p, psize, false);
                    }
                    return;
                }
            }
            let nh = Chunk::head(next);
            if nh.cinuse() && !nh.is_fencepost() && !tag_ok(next, nh) {
                // The chunk after p lost its tag: p's payload overflowed.
                fatal(Misuse::CorruptHeader, Chunk::to_mem(next));
            }
            if !nh.cinuse() {
                if next == self.top {
                    self.topsize += psize;
                    let tsize = self.topsize;
                    self.top = p;
                    Chunk::set_head(p, tsize | Head::PINUSE);
                    if p == self.dv {
                        self.dv = ptr::null_mut();
                        self.dvsize = 0;
                    }
                    return;
                }
                if next == self.dv {
                    if self.debugging() {
                        self.debug_verify(next, self.dvsize, false);
                    }
                    self.dvsize += psize;
                    let dsize = self.dvsize;
                    self.dv = p;
                    Chunk::set_free_with_pinuse_only(p, dsize);
                    if self.debugging() {
                        self.debug_fill(p, dsize, false);
                    }
                    self.release_dv_if_empty();
                    return;
                }
                let nsize = Chunk::size(next);
                self.verify_free(next, nsize);
                psize += nsize;
                self.unlink_chunk(next, nsize);
                Chunk::set_free_with_pinuse_only(p, psize);
                if p == self.dv {
                    self.dvsize = psize;
                    if self.debugging() {
                        self.debug_fill(p, psize, false);
                    }
                    self.release_dv_if_empty();
                    return;
                }
            } else {
                Chunk::set_free_with_pinuse(p, psize, next);
            }
            self.bin_unless_released(p, psize, Segment::of(p.cast()), true);
        }
    }

    /// If the dv now spans a whole (non-top) segment, unmaps that segment.
    ///
    /// # Safety
    /// The dv must be valid.
    unsafe fn release_dv_if_empty(&mut self) {
        let (dv, dvsize) = (self.dv, self.dvsize);
        // SAFETY: the dv is a free chunk in no bin.
        unsafe {
            match self.release_if_empty(dv, dvsize, Segment::of(dv.cast()), true) {
                Emptied::No => {}
                Emptied::Released => {
                    self.dv = ptr::null_mut();
                    self.dvsize = 0;
                }
                Emptied::Shrunk(n) => self.dvsize = n,
            }
        }
    }

    // ----------------------------------------------------------------
    // trim
    // ----------------------------------------------------------------

    /// Gives memory back to the OS (dlmalloc's `malloc_trim` plus glibc's
    /// purge of free chunks): consolidates the quick lists, unmaps empty
    /// segments, trims top to `pad` bytes, and purges every free chunk (see
    /// [`purge`](Self::purge)). Returns whether anything was released.
    pub(crate) fn trim(&mut self, pad: usize) -> bool {
        // SAFETY: the heap is consistent between public calls.
        unsafe {
            self.consolidate_quick();
            let mut released = self.release_unused_segments();
            released += self.trim_top(pad);
            released += self.purge(usize::MAX, 0);
            released != 0
        }
    }

    // ----------------------------------------------------------------
    // Purging: free pages given back to the OS, chunks kept
    // ----------------------------------------------------------------
    //
    // dlmalloc gives memory back only from the end of a segment (top) and
    // by unmapping whole segments. Free chunks between live ones keep their
    // pages for ever. Purging gives the *pages* of a large free chunk back
    // (`MADV_DONTNEED`; they read as zero when touched again) and keeps the
    // chunk: its header and links at the front and its boundary tag at the
    // end stay, so the bins and coalescing work as before. The chunk is
    // marked purged (FLAG4 in its free head) and its purged bytes counted
    // in `State::purged`, so the heap, the checker and snapshots know which
    // ranges are back with the OS. A purged chunk that leaves its bin (to
    // be allocated or merged) stops being purged: `unlink_chunk` takes it
    // off the count, and whatever head is written next has FLAG4 clear.
    // When to purge is the process allocator's decision (a delay, so that
    // churn does not turn into a storm of madvise calls); `malloc_trim`
    // purges everything at once. Off in debug mode, whose fill pattern the
    // zero pages would break.

    /// Purges free chunks of the tree bins that have whole pages inside,
    /// are not purged yet and entered their bin at least `min_age` ticks
    /// ago (`State::epoch`; 0: any), largest bins first, until at least
    /// `limit` bytes were purged (`usize::MAX`: all). A dv with such pages
    /// is put into its bin first when every chunk qualifies (`min_age`
    /// 0; the next split makes a new one). Returns the bytes purged.
    ///
    /// # Safety
    /// The heap must be consistent.
    pub(crate) unsafe fn purge(&mut self, limit: usize, min_age: u32) -> usize {
        if self.debugging() {
            return 0;
        }
        if min_age == 0 && self.dvsize != 0 && purgeable_bytes(self.dv as usize, self.dvsize) != 0 {
            let (dv, dvsize) = (self.dv, self.dvsize);
            self.dv = ptr::null_mut();
            self.dvsize = 0;
            // SAFETY: the dv is a free chunk in no bin.
            unsafe { self.insert_chunk(dv, dvsize) };
        }
        let mut done = 0;
        // Chunks below 4 KiB have no whole page past their links.
        let first_bin = compute_tree_index(4096);
        for i in (first_bin..NTREEBINS).rev() {
            if done >= limit {
                break;
            }
            if self.tree.map & (1 << i) == 0 {
                continue;
            }
            let source = &self.source;
            let purged = &mut self.purged;
            let epoch = self.epoch;
            let mut visit = |t: *mut TreeChunk, _: TreeNodeInfo| {
                let p = TreeChunk::as_chunk(t);
                // SAFETY: bin members are free chunks of this heap; only
                // the purgeable range (past the links, before the tag) is
                // handed to the OS, and the head gets FLAG4.
                unsafe {
                    let head = Chunk::head(p);
                    if !head.flag4() && epoch.wrapping_sub((*t).freed_at) >= min_age {
                        let (start, end) = purgeable(p as usize, head.size());
                        if end > start {
                            source.purge(start as *mut u8, end - start);
                            Chunk::set_head(p, head.0 | Head::FLAG4);
                            *purged += end - start;
                            done += end - start;
                        }
                    }
                }
                done < limit
            };
            // SAFETY: the heap is consistent (caller); the walk reads only
            // bin members.
            unsafe { self.tree.for_each_in_bin(i, &mut visit) };
        }
        done
    }

    // ----------------------------------------------------------------
    // The quick lists (see `quick`): parking, taking back, consolidating
    // ----------------------------------------------------------------

    /// Does any quick list hold a chunk?
    #[inline(always)]
    pub(crate) fn quick_pending(&self) -> bool {
        // SAFETY: a non-null `quick` is this arena's, used under its lock.
        !self.quick.is_null() && unsafe { (*self.quick).map != 0 }
    }

    /// Parks the in-use chunk `p` (leaving a thread cache) on its quick
    /// list instead of freeing it, if it has a quick-list size (at most
    /// `config.max_fast`) and the budget has room (never in debug mode);
    /// returns whether it did.
    ///
    /// # Safety
    /// `p` must be a validated in-use segment chunk of this heap that
    /// nobody holds; for an arena, the caller holds its lock.
    #[inline]
    pub(crate) unsafe fn park(&mut self, p: *mut Chunk) -> bool {
        // SAFETY: `p` is validated (caller).
        let size = unsafe { Chunk::size(p) };
        if self.quick.is_null() || size > self.config.max_fast || self.debug.level >= 2 {
            return false;
        }
        let budget = quick::budget(self.footprint);
        // SAFETY: forwarded to the caller; the lists are this arena's.
        unsafe { (*self.quick).push(class_of(size), Chunk::to_mem(p), budget) }
    }

    /// How many chunks of small class `c` this arena would park now (0 for
    /// a heap without quick lists, in debug mode, and for classes above
    /// M_MXFAST, `config.max_fast`).
    #[inline]
    pub(crate) fn quick_room(&self, c: usize) -> usize {
        if self.quick.is_null() || self.debug.level >= 2 || class_size(c) > self.config.max_fast {
            return 0;
        }
        // SAFETY: a non-null `quick` is this arena's, used under its lock.
        unsafe { (*self.quick).room(c, quick::budget(self.footprint)) }
    }

    /// [`quick_room`](Self::quick_room), making room when the budget is
    /// what is short: the parked chunks are consolidated, all of them.
    /// What fills the budget is chunks of sizes the threads stopped asking
    /// for (those they ask for are taken back by their refills); left
    /// there, they sent every later flush through dlmalloc's free and
    /// every refill through its malloc (a Python run parked a budget's
    /// worth early on and then freed for good a fifth of its instructions'
    /// worth of chunks), and they are memory that nothing can reuse.
    ///
    /// # Safety
    /// The heap must be consistent; for an arena, the caller holds its lock.
    pub(crate) unsafe fn quick_room_or_consolidate(&mut self, c: usize) -> usize {
        let room = self.quick_room(c);
        if room == 0 && self.quick_pending() && class_size(c) <= self.config.max_fast {
            // SAFETY: forwarded to the caller.
            unsafe { self.consolidate_quick() };
            return self.quick_room(c);
        }
        room
    }

    /// Parks a run of `n` chunks of small class `c` (see
    /// `QuickLists::push_run`), at most [`quick_room`](Self::quick_room).
    ///
    /// # Safety
    /// As for `QuickLists::push_run`; the caller holds the arena's lock.
    #[inline]
    pub(crate) unsafe fn park_run(&mut self, c: usize, first: *mut u8, last: *mut u8, n: usize) {
        // SAFETY: forwarded to the caller; room was checked (non-null lists).
        unsafe { (*self.quick).push_run(c, first, last, n) }
    }

    /// Up to `max` parked chunks of small class `c` as a run (see
    /// `QuickLists::take_run`).
    ///
    /// # Safety
    /// The caller holds the arena's lock.
    #[inline]
    pub(crate) unsafe fn unpark_run(&mut self, c: usize, max: usize) -> (*mut u8, *mut u8, usize) {
        if self.quick.is_null() {
            return (ptr::null_mut(), ptr::null_mut(), 0);
        }
        // SAFETY: forwarded to the caller; the lists are this arena's.
        unsafe { (*self.quick).take_run(c, max) }
    }

    /// An in-use chunk of exactly small class `c`'s size from its quick
    /// list, or null.
    ///
    /// # Safety
    /// For an arena, the caller holds its lock.
    #[inline(always)]
    pub(crate) unsafe fn unpark(&mut self, c: usize) -> *mut u8 {
        if self.quick.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: forwarded to the caller; the lists are this arena's.
        unsafe { (*self.quick).pop(c) }
    }

    /// Is the chunk `p` of `size` bytes on its quick list? (For snapshots,
    /// which must tell parked chunks from thread-cache entries marked with
    /// FLAG4 for the occasion: a walk of one list.)
    pub(crate) fn is_parked(&self, p: *mut Chunk, size: usize) -> bool {
        if self.quick.is_null() || size > MAX_CACHED_SIZE {
            return false;
        }
        // SAFETY: the arena's own lists, read under its lock.
        let q = unsafe { &*self.quick };
        q.entries(class_of(size)).any(|e| e == Ok(Chunk::to_mem(p)))
    }

    /// Consolidates the quick lists and trims top if that grew it past the
    /// trim threshold (a thread that parked here is leaving).
    ///
    /// # Safety
    /// The caller holds the arena's lock.
    pub(crate) unsafe fn release_parked(&mut self) {
        // SAFETY: forwarded to the caller.
        unsafe {
            self.consolidate_quick();
            self.after_free();
        }
    }

    /// Frees every parked chunk (merging it with its free neighbours).
    ///
    /// # Safety
    /// The heap must be consistent; for an arena, the caller holds its lock.
    #[cold]
    pub(crate) unsafe fn consolidate_quick(&mut self) {
        let q = self.quick;
        if q.is_null() {
            return;
        }
        // SAFETY: the lists are this arena's (caller holds the lock); each
        // popped entry is a validated in-use chunk of its class's size.
        unsafe {
            while (*q).map != 0 {
                let c = (*q).map.trailing_zeros() as usize;
                let mem = (*q).pop(c);
                let p = Chunk::from_mem(mem);
                self.free_chunk(p, Chunk::size(p));
            }
        }
    }
}
