//! Freeing: dlmalloc's `free` (coalescing with free neighbours, then
//! top, the dv or a bin), the quick lists' side of the heap (parking a
//! chunk in use, taking it back, consolidating), and trimming.
//!
//! Read [`State::free_chunk`] first: boundary-tag coalescing, the heart
//! of dlmalloc.

use super::chunk::{align_up, tag_ok, Chunk, Head, TreeChunk, MEM_OFFSET, MIN_CHUNK_SIZE};
use super::classify::Classified;
use super::lists::{class_of, MAX_CACHED_SIZE};
use super::segment::{Emptied, Segment};
use super::state::{Owned, State};
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
            self.bin_unless_released(p, psize, Segment::of(p.cast()));
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
            match self.release_if_empty(dv, dvsize, Segment::of(dv.cast())) {
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
    /// purge of free chunks): trims top to `pad` bytes, unmaps empty
    /// segments, and lets the kernel drop the whole pages inside large free
    /// chunks. Returns whether anything was released.
    pub(crate) fn trim(&mut self, pad: usize) -> bool {
        // SAFETY: the heap is consistent between public calls.
        unsafe {
            self.consolidate_quick();
            let mut released = self.release_unused_segments();
            released += self.trim_top(pad);
            if !self.debugging() {
                released += self.purge_free_chunks();
            }
            released != 0
        }
    }

    /// `MADV_DONTNEED` on the whole pages inside every free chunk in the
    /// bins and the dv (not the header and links at the front, nor the
    /// boundary tag at the end). Returns the bytes purged.
    ///
    /// # Safety
    /// The heap must be consistent.
    unsafe fn purge_free_chunks(&mut self) -> usize {
        let page = self.source.page_size();
        let mut purged = 0;
        let mut seg = self.segments;
        // SAFETY: walks the segments chunk by chunk; all chunks are valid.
        unsafe {
            while !seg.is_null() {
                let fence = Segment::fencepost(seg);
                let mut p = Segment::first_chunk(seg);
                while p < fence && p != self.top {
                    let head = Chunk::head(p);
                    let size = head.size();
                    if size == 0 {
                        break;
                    }
                    if !head.cinuse() {
                        let start = align_up(p as usize + core::mem::size_of::<TreeChunk>(), page);
                        let end = (p as usize + size) & !(page - 1);
                        if end > start {
                            self.source.purge(start as *mut u8, end - start);
                            purged += end - start;
                        }
                    }
                    p = Chunk::plus_offset(p, size);
                }
                seg = (*seg).next;
            }
        }
        purged
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
        // SAFETY: forwarded to the caller; the lists are this arena's.
        unsafe { (*self.quick).push(class_of(size), Chunk::to_mem(p)) }
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
