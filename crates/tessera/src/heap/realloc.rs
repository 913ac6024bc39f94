//! Resizing: dlmalloc's `realloc` and `realloc_in_place`. A chunk grows
//! into top, the dv or a free successor, shrinks by giving its tail back,
//! and moves (allocate, copy, free) only when it cannot stay.

use super::chunk::{request2size, Chunk, Head, MAX_REQUEST, MEM_OFFSET, MIN_CHUNK_SIZE};
use super::state::{Owned, State};
use crate::sys::os::PageSource;
use core::ptr;

impl<S: PageSource> State<S> {
    // ----------------------------------------------------------------
    // realloc, memalign, calloc
    // ----------------------------------------------------------------

    /// Resizes the chunk `p` to `nb` bytes without moving it, or with an
    /// `mremap` for direct chunks when `can_move` (dlmalloc's
    /// `try_realloc_chunk`). Returns the chunk (maybe moved) or null.
    ///
    /// # Safety
    /// `p` must be a validated in-use chunk of this heap.
    unsafe fn try_realloc_chunk(&mut self, p: *mut Chunk, nb: usize, can_move: bool) -> *mut Chunk {
        // SAFETY: p is validated; neighbours are chunks of its segment.
        unsafe {
            let head = Chunk::head(p);
            if head.is_mmapped() {
                return self.direct_resize(p, nb, can_move);
            }
            let oldsize = head.size();
            let next = Chunk::plus_offset(p, oldsize);
            if oldsize >= nb {
                // Shrink: give the tail back if it is worth a chunk.
                let rsize = oldsize - nb;
                if rsize >= MIN_CHUNK_SIZE {
                    let r = Chunk::plus_offset(p, nb);
                    Chunk::set_inuse(p, nb);
                    Chunk::set_inuse(r, rsize);
                    self.free_chunk(r, rsize);
                }
                return p;
            }
            if next == self.top {
                // In place if top leaves at least its header (dlmalloc's
                // `oldsize + topsize > nb`), after growing top in place
                // if it is too short (see docs/dlmalloc-map.md,
                // realloc-grows-top).
                if oldsize + self.topsize <= nb && !self.grow_top(nb + 16 - oldsize) {
                    return ptr::null_mut();
                }
                let newtopsize = oldsize + self.topsize - nb;
                let newtop = Chunk::plus_offset(p, nb);
                Chunk::set_inuse(p, nb);
                Chunk::set_head(newtop, newtopsize | Head::PINUSE);
                self.top = newtop;
                self.topsize = newtopsize;
                let header_end = newtop as usize + MEM_OFFSET;
                if header_end > self.top_clean {
                    self.top_clean = header_end;
                }
                return p;
            }
            if next == self.dv {
                let dvs = self.dvsize;
                if oldsize + dvs < nb {
                    return ptr::null_mut();
                }
                if self.debugging() {
                    self.debug_verify(next, dvs, false);
                }
                let dsize = oldsize + dvs - nb;
                if dsize >= MIN_CHUNK_SIZE {
                    let r = Chunk::plus_offset(p, nb);
                    let n = Chunk::plus_offset(r, dsize);
                    Chunk::set_inuse(p, nb);
                    Chunk::set_free_with_pinuse(r, dsize, n);
                    self.dv = r;
                    self.dvsize = dsize;
                } else {
                    Chunk::set_inuse(p, oldsize + dvs);
                    self.dv = ptr::null_mut();
                    self.dvsize = 0;
                }
                return p;
            }
            if !Chunk::cinuse(next) {
                let nextsize = Chunk::size(next);
                if oldsize + nextsize < nb {
                    return ptr::null_mut();
                }
                self.verify_free(next, nextsize);
                self.unlink_chunk(next, nextsize);
                let rsize = oldsize + nextsize - nb;
                if rsize < MIN_CHUNK_SIZE {
                    Chunk::set_inuse(p, oldsize + nextsize);
                } else {
                    let r = Chunk::plus_offset(p, nb);
                    Chunk::set_inuse(p, nb);
                    Chunk::set_inuse(r, rsize);
                    self.free_chunk(r, rsize);
                }
                return p;
            }
        }
        ptr::null_mut()
    }

    /// dlmalloc's `dlrealloc` without the `realloc(p, 0)` rule (the callers
    /// decide that): resize in place if possible, else allocate, copy, free.
    /// Null (and `mem` untouched) on failure.
    ///
    /// # Safety
    /// `mem` must be a live pointer of this heap.
    pub(crate) unsafe fn realloc(&mut self, mem: *mut u8, bytes: usize) -> *mut u8 {
        if bytes >= MAX_REQUEST {
            // Validate anyway: a bad pointer must not pass silently.
            self.validate(mem, true);
            return ptr::null_mut();
        }
        let nb = request2size(bytes);
        let p = match self.validate(mem, true) {
            Owned::Segment(p) | Owned::Direct(p) => p,
        };
        // SAFETY: p is validated.
        unsafe {
            let old_usable = Chunk::usable_size(p);
            let newp = self.try_realloc_chunk(p, nb, true);
            if !newp.is_null() {
                if self.config.perturb.is_some() {
                    // The bytes it grew by are new: perturbed as malloc's.
                    self.perturb_new(Chunk::to_mem(newp), old_usable);
                }
                return Chunk::to_mem(newp);
            }
            let new = self.malloc(bytes);
            if !new.is_null() {
                ptr::copy_nonoverlapping(mem, new, old_usable.min(bytes));
                self.free(mem);
            }
            new
        }
    }

    /// Resizes without moving (dlmalloc's `dlrealloc_in_place`). Returns
    /// whether it worked.
    ///
    /// # Safety
    /// `mem` must be a live pointer of this heap.
    pub(crate) unsafe fn realloc_in_place(&mut self, mem: *mut u8, bytes: usize) -> bool {
        let p = match self.validate(mem, true) {
            Owned::Segment(p) | Owned::Direct(p) => p,
        };
        if bytes >= MAX_REQUEST {
            return false;
        }
        // SAFETY: p is validated.
        unsafe {
            let old_usable = Chunk::usable_size(p);
            let newp = self.try_realloc_chunk(p, request2size(bytes), false);
            if newp.is_null() {
                return false;
            }
            if self.config.perturb.is_some() {
                self.perturb_new(mem, old_usable);
            }
            true
        }
    }
}
