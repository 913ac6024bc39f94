//! Growing and shrinking a heap: the footprint and its limit, top grown
//! in place or moved to a new segment, empty segments given back, and top
//! trimmed (dlmalloc's `sys_alloc` and `sys_trim`, segment side).
//!
//! Every byte a heap takes from the OS or gives back passes here (direct
//! mappings aside: see `direct`), so the footprint counters are kept here
//! too.

use super::chunk::{align_up, Chunk, Head, MEM_OFFSET, MIN_CHUNK_SIZE};
use super::segment::{
    init_record, Emptied, Segment, MIN_SEGMENT_SPAN, SEGMENT_HEADER, SEGMENT_SIZE, SEG_HOLDS_STATE,
    TOP_FOOT_SIZE,
};
use super::state::State;
use crate::sys::os::PageSource;
use crate::sys::registry;
use core::ptr;
use core::sync::atomic::Ordering;

impl<S: PageSource> State<S> {
    /// The heap's granularity rounded to whole pages.
    fn grain(&self) -> usize {
        align_up(self.config.granularity.max(1), self.source.page_size())
    }

    /// Would adding `bytes` to the footprint break the footprint limit (this
    /// heap's, or the limit shared by all arenas)?
    #[inline]
    pub(crate) fn over_limit(&self, bytes: usize) -> bool {
        let over =
            |fp: usize, limit: usize| limit != 0 && fp.checked_add(bytes).is_none_or(|t| t > limit);
        if over(self.footprint, self.footprint_limit) {
            return true;
        }
        // SAFETY: `shared` is null or points to a static.
        match unsafe { self.shared.as_ref() } {
            Some(sh) => over(
                sh.total.load(Ordering::Relaxed),
                sh.limit.load(Ordering::Relaxed),
            ),
            None => false,
        }
    }

    pub(crate) fn add_footprint(&mut self, bytes: usize) {
        self.footprint += bytes;
        if self.footprint > self.max_footprint {
            self.max_footprint = self.footprint;
        }
        self.max_direct_count = self.max_direct_count.max(self.direct_count);
        self.max_direct_bytes = self.max_direct_bytes.max(self.direct_bytes);
        let segment_bytes = self.footprint - self.direct_bytes;
        self.max_segment_bytes = self.max_segment_bytes.max(segment_bytes);
        // SAFETY: `shared` is null or points to a static.
        if let Some(sh) = unsafe { self.shared.as_ref() } {
            let total = sh.total.fetch_add(bytes, Ordering::Relaxed) + bytes;
            sh.peak.fetch_max(total, Ordering::Relaxed);
        }
    }

    pub(crate) fn sub_footprint(&mut self, bytes: usize) {
        self.footprint -= bytes;
        // SAFETY: `shared` is null or points to a static.
        if let Some(sh) = unsafe { self.shared.as_ref() } {
            sh.total.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Makes top at least `need` bytes long by committing more of the top
    /// segment's reservation. Returns false if the reservation, the OS or the
    /// footprint limit says no; the heap is unchanged then.
    ///
    /// # Safety
    /// The heap must be consistent.
    pub(crate) unsafe fn grow_top(&mut self, need: usize) -> bool {
        if self.topsize >= need {
            return true;
        }
        let seg = self.top_seg;
        // SAFETY: `top_seg` is a live segment of this heap.
        unsafe {
            let room = (*seg).reserved - (*seg).committed;
            let want = align_up(need - self.topsize + self.config.top_pad, self.grain());
            let mut grow = want.min(room);
            if self.topsize + grow < need {
                return false;
            }
            if self.over_limit(grow) {
                // Commit only what is needed, if that fits the limit.
                grow = align_up(need - self.topsize, self.source.page_size()).min(room);
                if self.topsize + grow < need || self.over_limit(grow) {
                    return false;
                }
            }
            let old_end = Segment::end(seg);
            if !self.source.commit(old_end, grow) {
                return false;
            }
            // The old fencepost becomes part of top: wipe it so the region
            // beyond the clean watermark stays all zero.
            let old_fence = Segment::fencepost(seg).cast::<u8>();
            if old_fence as usize >= self.top_clean {
                old_fence.write_bytes(0, TOP_FOOT_SIZE);
            }
            (*seg).committed += grow;
            self.topsize += grow;
            Chunk::set_head(self.top, self.topsize | Head::PINUSE);
            Segment::write_fencepost(seg, false);
            self.add_footprint(grow);
        }
        true
    }

    /// Reserves a new segment whose top holds at least `need` bytes, makes it
    /// the top segment, and frees the old top into the bins. Returns false,
    /// with the heap unchanged, when the OS or the limit refuses.
    ///
    /// # Safety
    /// The heap must be consistent.
    pub(crate) unsafe fn add_segment(&mut self, need: usize) -> bool {
        let page = self.source.page_size();
        let Some(min_commit) = need.checked_add(SEGMENT_HEADER + TOP_FOOT_SIZE) else {
            return false;
        };
        if min_commit > SEGMENT_SIZE {
            return false;
        }
        let mut commit = align_up(min_commit + self.config.top_pad, self.grain()).min(SEGMENT_SIZE);
        if self.over_limit(commit) {
            commit = align_up(min_commit, page);
            if self.over_limit(commit) {
                return false;
            }
        }
        let base = self.source.reserve(SEGMENT_SIZE, SEGMENT_SIZE);
        if base.is_null() {
            return false;
        }
        // SAFETY: `base` is a fresh reservation of SEGMENT_SIZE bytes.
        unsafe {
            if !self.source.commit(base, commit)
                || !registry::add_segment(base as usize, self.segment_tag)
            {
                self.source.unmap(base, SEGMENT_SIZE);
                return false;
            }
            let owner = (self as *mut Self).cast();
            let seg = init_record(base, owner, commit, SEGMENT_HEADER, 0);
            // Link at the front of the segment list (after the state's own).
            (*seg).next = self.segments;
            if !self.segments.is_null() {
                (*self.segments).prev = seg;
            }
            self.segments = seg;
            self.add_footprint(commit);

            // Retire the old top: it becomes an ordinary free chunk, closed
            // by its segment's fencepost (whose PINUSE is already clear).
            let old_top = self.top;
            let old_size = self.topsize;
            let old_seg = self.top_seg;

            let top = Segment::first_chunk(seg);
            self.top = top;
            self.topsize = commit - SEGMENT_HEADER - TOP_FOOT_SIZE;
            self.top_seg = seg;
            self.top_clean = top as usize + MEM_OFFSET;
            Chunk::set_head(top, self.topsize | Head::PINUSE);
            Segment::write_fencepost(seg, false);

            Chunk::set_free_with_pinuse_only(old_top, old_size);
            self.bin_unless_released(old_top, old_size, old_seg, true);
        }
        true
    }

    /// If the free chunk `p` of `size` bytes spans all of segment `seg`
    /// (not the top segment): unmaps the segment, or, for the segment that
    /// holds the state and so must stay, decommits all but its first
    /// granule. The chunk must not be in a bin; the caller bins what is left.
    ///
    /// With `keep` (a free, not a sweep) in an arena of the process
    /// allocator, the segment is kept as it is, the heap's
    /// [`spare`](State::spare), unless the spare it has is still empty (so
    /// one empty segment at a time waits for reuse): a program that frees
    /// the last block of a segment and then allocates as much again (large
    /// blocks replaced one by one) would otherwise unmap the segment and
    /// fault a new one in at every turn (dlmalloc itself looks for empty
    /// segments only every 4095 frees). Measured on the `large` shape: 92.5
    /// k page faults -> 76.8 k, time -15 to -20%, peak RSS 181 -> 161 MB.
    /// Keeping every empty segment within the trim threshold, or one while
    /// no other segment is empty (found by a walk), faulted less (68.8 k)
    /// but peaked at 204 MB. A kept segment goes back with the rest: decay
    /// purges its pages like any free chunk's, and the sweeps
    /// (`release_unused_segments`: idle return, `malloc_trim`) unmap it. A
    /// standalone heap has no decay to do that later, so it keeps none.
    ///
    /// # Safety
    /// `p` must be a free chunk of `seg` that is in no bin.
    #[inline(never)]
    pub(crate) unsafe fn release_if_empty(
        &mut self,
        p: *mut Chunk,
        size: usize,
        seg: *mut Segment,
        keep: bool,
    ) -> Emptied {
        if size < MIN_SEGMENT_SPAN {
            return Emptied::No;
        }
        // SAFETY: `seg` is a live segment of this heap (caller).
        unsafe {
            if seg == self.top_seg
                || p != Segment::first_chunk(seg)
                || Chunk::plus_offset(p, size) != Segment::fencepost(seg)
            {
                return Emptied::No;
            }
            if (*seg).flags & SEG_HOLDS_STATE != 0 {
                return self.shrink_empty_segment(p, seg);
            }
            if keep && self.is_arena() && !self.spare_is_empty() {
                self.spare = seg;
                return Emptied::No;
            }
            if seg == self.spare {
                self.spare = ptr::null_mut();
            }
            self.unlink_segment(seg);
            let committed = (*seg).committed;
            registry::remove_segment(seg as usize);
            (*seg).check = 0;
            self.source.unmap(Segment::base(seg), (*seg).reserved);
            self.sub_footprint(committed);
        }
        Emptied::Released
    }

    /// Is this heap an arena of the process allocator (not a standalone
    /// heap)? Arenas share a footprint count; standalone heaps have none.
    #[inline]
    pub(crate) fn is_arena(&self) -> bool {
        !self.shared.is_null()
    }

    /// Is [`spare`](State::spare) a segment that is still empty (one free
    /// chunk from its first chunk to its fencepost)?
    fn spare_is_empty(&self) -> bool {
        let seg = self.spare;
        if seg.is_null() || seg == self.top_seg {
            return false;
        }
        // SAFETY: the spare is a live segment of this heap (it is cleared
        // before its segment is unmapped), tiled by chunks.
        unsafe {
            let p = Segment::first_chunk(seg);
            let head = Chunk::head(p);
            !head.cinuse() && Chunk::plus_offset(p, head.size()) == Segment::fencepost(seg)
        }
    }

    /// Decommits an empty segment down to one granule, leaving one free
    /// chunk `p` (not in a bin) before a new fencepost.
    ///
    /// # Safety
    /// `p` must be the only chunk of `seg`, free and in no bin.
    unsafe fn shrink_empty_segment(&mut self, p: *mut Chunk, seg: *mut Segment) -> Emptied {
        // SAFETY: the segment is live and holds only `p`.
        unsafe {
            let keep = align_up(
                (*seg).first_offset + MIN_CHUNK_SIZE + TOP_FOOT_SIZE,
                self.grain(),
            );
            let committed = (*seg).committed;
            if keep < committed {
                let cut = Segment::base(seg).wrapping_add(keep);
                if self.source.decommit(cut, committed - keep) {
                    (*seg).committed = keep;
                    self.sub_footprint(committed - keep);
                    Segment::write_fencepost(seg, false);
                }
            }
            let size = Segment::fencepost(seg) as usize - p as usize;
            Chunk::set_free_with_pinuse_only(p, size);
            Emptied::Shrunk(size)
        }
    }

    /// Removes `seg` from the segment list.
    ///
    /// # Safety
    /// `seg` must be in this heap's list.
    unsafe fn unlink_segment(&mut self, seg: *mut Segment) {
        // SAFETY: list members are live records (caller).
        unsafe {
            let (prev, next) = ((*seg).prev, (*seg).next);
            if prev.is_null() {
                self.segments = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }

    /// Gives the top segment's unused tail back to the OS, keeping `pad`
    /// bytes (plus a minimum chunk) in top (dlmalloc's `sys_trim`). Returns
    /// the bytes released.
    ///
    /// # Safety
    /// The heap must be consistent.
    pub(crate) unsafe fn trim_top(&mut self, pad: usize) -> usize {
        let seg = self.top_seg;
        let grain = self.grain();
        // SAFETY: `top_seg` is live and `top` lies in it.
        unsafe {
            let base = Segment::base(seg) as usize;
            let keep = (self.top as usize - base)
                .saturating_add(MIN_CHUNK_SIZE)
                .saturating_add(pad)
                .saturating_add(TOP_FOOT_SIZE);
            let new_committed = align_up(keep.min(SEGMENT_SIZE), grain).min(SEGMENT_SIZE);
            let old_committed = (*seg).committed;
            if new_committed >= old_committed {
                return 0;
            }
            let release = old_committed - new_committed;
            let cut = (base + new_committed) as *mut u8;
            if !self.source.decommit(cut, release) {
                return 0;
            }
            (*seg).committed = new_committed;
            self.topsize -= release;
            Chunk::set_head(self.top, self.topsize | Head::PINUSE);
            Segment::write_fencepost(seg, false);
            // Pages committed again later read as zero.
            let fence = Segment::fencepost(seg) as usize;
            if self.top_clean > fence {
                self.top_clean = fence;
            }
            self.sub_footprint(release);
            release
        }
    }

    /// Puts free chunk `p` (in no bin) into its bin, unless it spans a whole
    /// segment, which is released or shrunk instead (or kept, with `keep`:
    /// see [`release_if_empty`](Self::release_if_empty)).
    ///
    /// # Safety
    /// `p` must be a free chunk of `seg` that is in no bin and is not dv.
    #[inline]
    pub(crate) unsafe fn bin_unless_released(
        &mut self,
        p: *mut Chunk,
        size: usize,
        seg: *mut Segment,
        keep: bool,
    ) {
        // SAFETY: forwarded to the caller.
        unsafe {
            match self.release_if_empty(p, size, seg, keep) {
                Emptied::No => self.insert_chunk(p, size),
                Emptied::Shrunk(n) => self.insert_chunk(p, n),
                Emptied::Released => {}
            }
        }
    }

    /// Releases or shrinks every segment (other than the top one) that is
    /// one free chunk from end to end (dlmalloc's `release_unused_segments`).
    /// `free` does this eagerly; this sweep catches the rest. Returns the
    /// bytes given back.
    ///
    /// # Safety
    /// The heap must be consistent.
    pub(crate) unsafe fn release_unused_segments(&mut self) -> usize {
        let before = self.footprint;
        let mut seg = self.segments;
        // SAFETY: list members are live segments of this heap.
        unsafe {
            while !seg.is_null() {
                let next = (*seg).next;
                let p = Segment::first_chunk(seg);
                let head = Chunk::head(p);
                let size = head.size();
                if seg != self.top_seg
                    && !head.cinuse()
                    && Chunk::plus_offset(p, size) == Segment::fencepost(seg)
                {
                    let was_dv = p == self.dv;
                    if was_dv {
                        self.dv = ptr::null_mut();
                        self.dvsize = 0;
                    } else {
                        self.unlink_chunk(p, size);
                    }
                    self.bin_unless_released(p, size, seg, false);
                }
                seg = next;
            }
        }
        before - self.footprint
    }
}
