//! Allocation: dlmalloc's `malloc` and the routines it picks from (an
//! exact small bin, the next non-empty small bin, the tree bins, the dv,
//! top, and the OS), plus the allocation variants built on it: `calloc`,
//! `memalign` and `independent_calloc`/`independent_comalloc`.
//!
//! Read [`State::malloc`] first: it is the whole decision in one page,
//! in dlmalloc's order.

use super::chunk::{
    align_up, request2size, Chunk, Head, TreeChunk, CHUNK_OVERHEAD, MALLOC_ALIGNMENT, MAX_REQUEST,
    MEM_OFFSET, MIN_CHUNK_SIZE,
};
use super::lists::is_small_class;
use super::segment::MAX_SEGMENT_CHUNK;
use super::smallbins::{is_small, small_index, small_index2size, MAX_SMALL_REQUEST};
use super::state::State;
use super::treebins::compute_tree_index;
use crate::sys::os::PageSource;
use crate::sys::report::{fatal, Misuse};
use core::ptr;

impl<S: PageSource> State<S> {
    // ----------------------------------------------------------------
    // malloc
    // ----------------------------------------------------------------

    /// Allocates at least `bytes` bytes (dlmalloc's `dlmalloc`). Null on
    /// failure. With M_PERTURB on (`config.perturb`), the block comes
    /// filled (see [`State::perturb_new`]).
    #[inline]
    pub(crate) fn malloc(&mut self, bytes: usize) -> *mut u8 {
        let mem = self.malloc_unfilled(bytes);
        if self.config.perturb.is_some() {
            self.perturb_new(mem, 0);
        }
        mem
    }

    /// M_PERTURB: fills the usable bytes of the new (or grown) block `mem`
    /// from offset `from` with the perturb byte's complement. Nothing for
    /// null.
    #[cold]
    pub(crate) fn perturb_new(&self, mem: *mut u8, from: usize) {
        let Some(b) = self.config.perturb else {
            return;
        };
        if mem.is_null() {
            return;
        }
        // SAFETY: a live block of this heap, usable up to its usable size.
        unsafe {
            let usable = Chunk::usable_size(Chunk::from_mem(mem));
            if usable > from {
                mem.add(from).write_bytes(!b, usable - from);
            }
        }
    }

    /// [`State::malloc`] without the perturb fill (calloc, which clears
    /// the block anyway and may skip clearing memory fresh from the OS).
    #[inline]
    pub(crate) fn malloc_unfilled(&mut self, bytes: usize) -> *mut u8 {
        if self.debug.level >= 2 {
            self.debug_tick();
        }
        // SAFETY: the state is consistent between public calls, and every
        // chunk the bins, dv and top name is a valid chunk of this heap.
        unsafe {
            let nb;
            if bytes <= MAX_SMALL_REQUEST {
                nb = request2size(bytes);
                let mut idx = small_index(nb);
                let smallbits = self.small.map >> idx;
                if smallbits & 0x3 != 0 {
                    // An exact fit, or one 16 bytes larger (too small to split).
                    idx += (!smallbits & 1) as usize;
                    return self.take_small(idx);
                }
                if nb > self.dvsize {
                    if smallbits != 0 {
                        // The next non-empty small bin; split it, remainder to dv.
                        let i = (smallbits & !1).trailing_zeros() as usize + idx;
                        return self.split_small(i, nb);
                    }
                    if self.tree.map != 0 {
                        return self.tmalloc_small(nb);
                    }
                }
            } else if bytes >= MAX_REQUEST {
                return ptr::null_mut();
            } else {
                nb = request2size(bytes);
                if self.tree.map != 0 {
                    let mem = self.tmalloc_large(nb);
                    if !mem.is_null() {
                        return mem;
                    }
                }
            }

            if nb <= self.dvsize {
                return self.take_from_dv(nb);
            }
            if nb < self.topsize {
                return self.carve_top(nb);
            }
            self.consolidate_or_sys_alloc(bytes, nb)
        }
    }

    /// Nothing in the bins, dv or top serves `nb`: before asking the OS
    /// for more, merge the quick lists' chunks and try again if there are
    /// any (parked chunks must never be why the heap grows), unless the
    /// request gets a mapping of its own anyway.
    ///
    /// # Safety
    /// The heap must be consistent.
    #[cold]
    #[inline(never)]
    unsafe fn consolidate_or_sys_alloc(&mut self, bytes: usize, nb: usize) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        unsafe {
            if nb < self.config.mmap_threshold && self.quick_pending() {
                self.consolidate_quick();
                // (Unfilled: the caller, `malloc` or `calloc`, decides.)
                return self.malloc_unfilled(bytes);
            }
            self.sys_alloc(nb)
        }
    }

    /// Pops the first chunk of small bin `i` and hands it out whole.
    ///
    /// # Safety
    /// Bin `i` must be non-empty.
    #[inline(always)]
    unsafe fn take_small(&mut self, i: usize) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        unsafe {
            let (p, size) = self.pop_small_verified(i);
            Chunk::set_inuse_and_pinuse(p, size);
            Chunk::to_mem(p)
        }
    }

    /// Pops the first chunk of small bin `i`, its head verified before its
    /// links are followed (and its contents in debug mode), and returns it
    /// with its size.
    ///
    /// # Safety
    /// Bin `i` must be non-empty.
    #[inline(always)]
    unsafe fn pop_small_verified(&mut self, i: usize) -> (*mut Chunk, usize) {
        // SAFETY: bin members are free chunks of this heap (caller/invariant);
        // the head is verified before the links are followed.
        unsafe {
            let size = small_index2size(i);
            self.verify_free(self.small.heads[i], size);
            let p = self.small.pop(i);
            if p.is_null() {
                fatal(Misuse::CorruptLinks, Chunk::to_mem(self.small.heads[i]));
            }
            if self.debugging() {
                self.debug_verify(p, size, true);
            }
            (p, size)
        }
    }

    /// Pops a chunk of small bin `i` (larger than `nb`), splits off `nb`
    /// bytes and makes the remainder the dv.
    ///
    /// # Safety
    /// Bin `i` must be non-empty with `small_index2size(i) > nb`.
    #[cold]
    unsafe fn split_small(&mut self, i: usize, nb: usize) -> *mut u8 {
        // SAFETY: as in `take_small`; the split stays inside the chunk.
        unsafe {
            let (p, size) = self.pop_small_verified(i);
            self.split_into_dv(p, size, nb)
        }
    }

    /// Serves a small request from the smallest tree chunk (dlmalloc's
    /// `tmalloc_small`); the remainder becomes the dv.
    ///
    /// # Safety
    /// The tree map must be non-empty.
    unsafe fn tmalloc_small(&mut self, nb: usize) -> *mut u8 {
        // SAFETY: tree members are free chunks of this heap.
        unsafe {
            let v = self.tree.smallest();
            let vc = TreeChunk::as_chunk(v);
            let size = Chunk::size(vc);
            self.verify_free(vc, size);
            self.unlink_chunk(vc, size);
            self.split_into_dv(vc, size, nb)
        }
    }

    /// Hands out the first `nb` bytes of the unlinked free chunk `p` of
    /// `size` bytes; a remainder big enough to be a chunk becomes the dv,
    /// a smaller one stays with the block (dlmalloc's small-request split).
    ///
    /// # Safety
    /// `p` must be a free chunk of this heap, already out of every bin,
    /// with `size >= nb`.
    unsafe fn split_into_dv(&mut self, p: *mut Chunk, size: usize, nb: usize) -> *mut u8 {
        // SAFETY: the caller owns `p`; the remainder lies inside it.
        unsafe {
            let rsize = size - nb;
            if rsize < MIN_CHUNK_SIZE {
                Chunk::set_inuse_and_pinuse(p, size);
            } else {
                Chunk::set_size_and_pinuse_of_inuse(p, nb);
                let r = Chunk::plus_offset(p, nb);
                Chunk::set_free_with_pinuse_only(r, rsize);
                self.replace_dv(r, rsize);
            }
            Chunk::to_mem(p)
        }
    }

    /// Serves a large request from the best-fitting tree chunk, unless the
    /// dv fits better (dlmalloc's `tmalloc_large`). Null if neither bins nor
    /// dv can.
    ///
    /// # Safety
    /// The heap must be consistent.
    unsafe fn tmalloc_large(&mut self, nb: usize) -> *mut u8 {
        // SAFETY: tree members are free chunks of this heap.
        unsafe {
            let (v, rsize) = self.tree.best_fit(nb);
            if v.is_null() || rsize >= self.dvsize.wrapping_sub(nb) {
                return ptr::null_mut();
            }
            let vc = TreeChunk::as_chunk(v);
            let size = rsize + nb;
            self.verify_free(vc, size);
            self.unlink_chunk(vc, size);
            if rsize < MIN_CHUNK_SIZE {
                Chunk::set_inuse_and_pinuse(vc, size);
            } else {
                Chunk::set_size_and_pinuse_of_inuse(vc, nb);
                let r = Chunk::plus_offset(vc, nb);
                Chunk::set_free_with_pinuse_only(r, rsize);
                self.insert_chunk(r, rsize);
            }
            Chunk::to_mem(vc)
        }
    }

    /// Cuts `nb <= dvsize` bytes from the front of the dv.
    ///
    /// # Safety
    /// `nb <= dvsize`.
    #[inline(always)]
    unsafe fn take_from_dv(&mut self, nb: usize) -> *mut u8 {
        let p = self.dv;
        let rsize = self.dvsize - nb;
        // SAFETY: dv is a free chunk of dvsize bytes (invariant).
        unsafe {
            if self.debugging() {
                self.debug_verify(p, self.dvsize, false);
            }
            if rsize >= MIN_CHUNK_SIZE {
                let r = Chunk::plus_offset(p, nb);
                self.dv = r;
                self.dvsize = rsize;
                Chunk::set_free_with_pinuse_only(r, rsize);
                Chunk::set_size_and_pinuse_of_inuse(p, nb);
            } else {
                let whole = self.dvsize;
                self.dvsize = 0;
                self.dv = ptr::null_mut();
                Chunk::set_inuse_and_pinuse(p, whole);
            }
        }
        Chunk::to_mem(p)
    }

    /// Cuts `nb` bytes from the front of top (`nb < topsize`; as in
    /// dlmalloc, what is left of top may be as small as its 16-byte header).
    ///
    /// # Safety
    /// `nb < topsize`.
    #[inline(always)]
    pub(crate) unsafe fn carve_top(&mut self, nb: usize) -> *mut u8 {
        let p = self.top;
        let rsize = self.topsize - nb;
        let r = Chunk::plus_offset(p, nb);
        if p as usize + MEM_OFFSET >= self.top_clean {
            self.carved_clean = p;
        }
        let header_end = r as usize + MEM_OFFSET;
        if header_end > self.top_clean {
            self.top_clean = header_end;
        }
        self.top = r;
        self.topsize = rsize;
        // SAFETY: top is a free chunk of topsize bytes; r lies inside it.
        unsafe {
            Chunk::set_head(r, rsize | Head::PINUSE);
            Chunk::set_size_and_pinuse_of_inuse(p, nb);
        }
        Chunk::to_mem(p)
    }

    /// Gets memory from the OS for a chunk of `nb` bytes (dlmalloc's
    /// `sys_alloc`): a direct mapping for large chunks, else a longer top
    /// (grown in place, or a new segment). Null, with errno left to the
    /// caller, when everything fails.
    ///
    /// # Safety
    /// The heap must be consistent.
    #[cold]
    #[inline(never)]
    unsafe fn sys_alloc(&mut self, nb: usize) -> *mut u8 {
        let too_big = nb >= MAX_SEGMENT_CHUNK;
        let direct_ok = self.direct_count < self.config.mmap_max;
        // SAFETY: forwarded (heap consistent).
        unsafe {
            if too_big || (nb >= self.config.mmap_threshold && direct_ok) {
                let mem = self.direct_alloc(nb);
                if !mem.is_null() || too_big {
                    return mem;
                }
            }
            let need = nb + MIN_CHUNK_SIZE;
            if self.grow_top(need) || self.add_segment(need) {
                return self.carve_top(nb);
            }
            // No room for a segment: a mapping of its own may still fit.
            if direct_ok && nb < self.config.mmap_threshold {
                return self.direct_alloc(nb);
            }
        }
        ptr::null_mut()
    }

    // ----------------------------------------------------------------
    // Runs of chunks for a thread cache's refill
    // ----------------------------------------------------------------

    /// Up to `k` in-use chunks of exactly `nb` bytes (a small class's chunk
    /// size) for a thread cache's refill, handed to `sink` one by one;
    /// returns how many. Where they come from, in order:
    /// - the exact small bin for `nb` (dlmalloc's own first choice), one
    ///   chunk at a time;
    /// - then one chunk big enough for all the rest, taken by `malloc`
    ///   itself (best fit from the bins, else the dv, else top) if that can
    ///   be done without the heap growing, and cut into chunks of `nb`
    ///   bytes lying next to each other, handed out in ascending address
    ///   order (as `independent_calloc` cuts its block); the last may be 16
    ///   bytes larger, when the block came with a remainder too small to
    ///   split;
    /// - and if all that gave nothing, one ordinary `malloc` (which may
    ///   grow the heap).
    ///
    /// One bin search per refill instead of one per chunk, and the chunks
    /// of a refill sit together in memory, in the order the program gets
    /// them.
    pub(crate) fn malloc_run(
        &mut self,
        nb: usize,
        k: usize,
        mut sink: impl FnMut(*mut u8),
    ) -> usize {
        debug_assert!(is_small_class(nb));
        let mut got = 0;
        if is_small(nb) {
            let idx = small_index(nb);
            // SAFETY: the state is consistent between calls; bin `idx` is
            // non-empty whenever its map bit is set.
            while got < k && self.small.map & (1 << idx) != 0 {
                sink(unsafe { self.take_small(idx) });
                got += 1;
            }
        }
        let mut rest = k - got;
        while rest > 1 && !self.can_serve_without_growth(rest * nb) {
            rest /= 2;
        }
        if rest > 1 {
            let mem = self.malloc(rest * nb - CHUNK_OVERHEAD);
            if !mem.is_null() {
                // SAFETY: a fresh in-use segment chunk of at least rest * nb
                // bytes (its remainder was too small to split off); the
                // pieces tile it exactly, each in use behind an in-use one.
                unsafe {
                    let mut p = Chunk::from_mem(mem);
                    let mut left = Chunk::size(p);
                    for _ in 1..rest {
                        Chunk::set_size_and_pinuse_of_inuse(p, nb);
                        sink(Chunk::to_mem(p));
                        p = Chunk::plus_offset(p, nb);
                        left -= nb;
                    }
                    Chunk::set_size_and_pinuse_of_inuse(p, left);
                    sink(Chunk::to_mem(p));
                }
                got += rest;
            }
        }
        if got == 0 {
            let mem = self.malloc(nb - CHUNK_OVERHEAD);
            if !mem.is_null() {
                sink(mem);
                got = 1;
            }
        }
        got
    }

    /// Can `malloc` serve a chunk of `nb` bytes from the bins, the dv or
    /// top, without asking the OS? (Sure answers only: a tree bin above
    /// `nb`'s own, whose every chunk is larger; a small bin at or above.)
    fn can_serve_without_growth(&self, nb: usize) -> bool {
        if self.dvsize >= nb || self.topsize > nb {
            return true;
        }
        if is_small(nb) && self.small.map >> small_index(nb) != 0 {
            return true;
        }
        let i = compute_tree_index(nb);
        i + 1 < 32 && self.tree.map >> (i + 1) != 0
    }

    // ----------------------------------------------------------------
    // memalign, calloc, independent_calloc / independent_comalloc
    // ----------------------------------------------------------------

    /// Allocates `bytes` at an address that is a multiple of `alignment`
    /// (dlmalloc's `internal_memalign`): over-allocate, then give the
    /// leading and trailing slack back as free chunks (or, for direct
    /// chunks, unmap the slack pages).
    pub(crate) fn memalign(&mut self, alignment: usize, bytes: usize) -> *mut u8 {
        if self.debug.level >= 2 {
            self.debug_tick();
        }
        if alignment <= MALLOC_ALIGNMENT {
            return self.malloc(bytes);
        }
        let alignment = alignment.max(MIN_CHUNK_SIZE);
        let Some(alignment) = alignment.checked_next_power_of_two() else {
            return ptr::null_mut();
        };
        // (The alignment test first: `MAX_REQUEST - alignment` would
        // underflow for an alignment above MAX_REQUEST.)
        if alignment >= MAX_REQUEST / 2 || bytes >= MAX_REQUEST - alignment {
            return ptr::null_mut();
        }
        let nb = request2size(bytes);
        let req = nb + alignment + MIN_CHUNK_SIZE - CHUNK_OVERHEAD;
        let mem = self.malloc(req);
        if mem.is_null() {
            return mem;
        }
        let mut p = Chunk::from_mem(mem);
        // SAFETY: p is a fresh in-use chunk of req bytes; the aligned position
        // lies inside it with at least MIN_CHUNK_SIZE before it.
        unsafe {
            if mem as usize % alignment != 0 {
                let aligned_mem = align_up(mem as usize, alignment);
                let mut br = Chunk::from_mem(aligned_mem as *mut u8);
                if (br as usize) - (p as usize) < MIN_CHUNK_SIZE {
                    br = Chunk::plus_offset(br, alignment);
                }
                let leadsize = br as usize - p as usize;
                let newsize = Chunk::size(p) - leadsize;
                if Chunk::head(p).is_mmapped() {
                    Chunk::set_prev_foot(br, Chunk::prev_foot(p) + leadsize);
                    Chunk::set_head(br, newsize);
                } else {
                    Chunk::set_inuse(br, newsize);
                    Chunk::set_inuse(p, leadsize);
                    self.free_chunk(p, leadsize);
                }
                p = br;
            }
            if Chunk::head(p).is_mmapped() {
                self.direct_trim(p, nb);
            } else {
                let size = Chunk::size(p);
                if size > nb + MIN_CHUNK_SIZE {
                    let rsize = size - nb;
                    let r = Chunk::plus_offset(p, nb);
                    Chunk::set_inuse(p, nb);
                    Chunk::set_inuse(r, rsize);
                    self.free_chunk(r, rsize);
                }
            }
            Chunk::to_mem(p)
        }
    }

    /// Allocates `n * size` zeroed bytes; null on overflow or failure. Skips
    /// the clearing for memory fresh from the OS.
    pub(crate) fn calloc(&mut self, n: usize, size: usize) -> *mut u8 {
        let Some(bytes) = n.checked_mul(size) else {
            return ptr::null_mut();
        };
        self.carved_clean = ptr::null_mut();
        let mem = self.malloc_unfilled(bytes);
        if !mem.is_null() {
            let p = Chunk::from_mem(mem);
            // SAFETY: mem is a fresh allocation of at least `bytes` bytes.
            unsafe {
                if !Chunk::head(p).is_mmapped() && p != self.carved_clean {
                    ptr::write_bytes(mem, 0, bytes);
                }
            }
        }
        mem
    }

    /// Allocates `count` chunks carved from one block, so they sit next to
    /// each other (dlmalloc's `ialloc`). `size_of(i)` gives each request.
    /// Writes the pointers to `out[..count]`. All or nothing.
    pub(crate) fn ialloc(
        &mut self,
        count: usize,
        size_of: &dyn Fn(usize) -> usize,
        zero: bool,
        out: &mut [*mut u8],
    ) -> bool {
        if count == 0 || out.len() < count {
            return count == 0;
        }
        let mut total: usize = 0;
        for i in 0..count {
            let s = size_of(i);
            if s >= MAX_REQUEST {
                return false;
            }
            match total.checked_add(request2size(s)) {
                Some(t) if t < MAX_SEGMENT_CHUNK => total = t,
                _ => return false,
            }
        }
        // One chunk for all; it must come from a segment to be split, so
        // direct mapping is off for this call.
        let saved = self.config.mmap_max;
        self.config.mmap_max = 0;
        let saved_threshold = self.config.mmap_threshold;
        self.config.mmap_threshold = usize::MAX;
        let mem = self.malloc(total - CHUNK_OVERHEAD);
        self.config.mmap_max = saved;
        self.config.mmap_threshold = saved_threshold;
        if mem.is_null() {
            return false;
        }
        let mut p = Chunk::from_mem(mem);
        // SAFETY: p is a fresh in-use segment chunk of at least `total`
        // bytes; the pieces tile it exactly.
        unsafe {
            let mut remaining = Chunk::size(p);
            if zero {
                ptr::write_bytes(mem, 0, remaining - CHUNK_OVERHEAD);
            }
            for (i, slot) in out.iter_mut().enumerate().take(count) {
                *slot = Chunk::to_mem(p);
                if i + 1 < count {
                    let size = request2size(size_of(i));
                    Chunk::set_size_and_pinuse_of_inuse(p, size);
                    remaining -= size;
                    p = Chunk::plus_offset(p, size);
                } else {
                    Chunk::set_size_and_pinuse_of_inuse(p, remaining);
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::heap::chunk::{tag_ok, Chunk};
    use crate::Heap;
    use std::vec::Vec;

    /// Collects a run from `malloc_run`.
    fn run(heap: &mut Heap, nb: usize, k: usize) -> Vec<*mut u8> {
        let mut got = Vec::new();
        let n = heap.state_mut().malloc_run(nb, k, |m| got.push(m));
        assert_eq!(n, got.len());
        got
    }

    #[test]
    fn a_run_is_carved_in_ascending_order_next_to_each_other() {
        let mut heap = Heap::new();
        let blocks = run(&mut heap, 48, 16);
        assert_eq!(blocks.len(), 16);
        for w in blocks.windows(2) {
            assert_eq!(w[1] as usize - w[0] as usize, 48, "adjacent, ascending");
        }
        for &b in &blocks {
            let p = Chunk::from_mem(b);
            // SAFETY: live chunks the run just handed out.
            let h = unsafe { Chunk::head(p) };
            assert!(h.cinuse() && h.size() == 48 && tag_ok(p, h));
        }
        heap.check().unwrap();
        for &b in &blocks {
            // SAFETY: each live, freed once.
            unsafe { heap.free(b) };
        }
        heap.check().unwrap();
    }

    #[test]
    fn a_run_takes_the_exact_bin_first_and_never_grows_the_heap_for_the_rest() {
        let mut heap = Heap::new();
        // Three free 64-byte chunks in their small bin, kept apart by
        // in-use ones.
        let a: Vec<*mut u8> = (0..6).map(|_| heap.malloc(56)).collect();
        for &b in a.iter().step_by(2) {
            // SAFETY: live, freed once.
            unsafe { heap.free(b) };
        }
        let before = heap.footprint();
        let blocks = run(&mut heap, 64, 8);
        assert_eq!(blocks.len(), 8);
        let mut firsts = blocks[..3].to_vec();
        firsts.sort();
        assert_eq!(firsts, vec![a[0], a[2], a[4]], "the bin's chunks first");
        assert_eq!(heap.footprint(), before, "the rest fit in top");
        heap.check().unwrap();
        // A run larger than top can give without growing: top is cut down
        // to a few chunks first; the run then still comes back (the last
        // resort is one ordinary malloc), never empty.
        let big = heap.malloc(heap.stats().keepcost - 200);
        assert!(!big.is_null());
        let rest = run(&mut heap, 1040, 32);
        assert!(!rest.is_empty());
        heap.check().unwrap();
    }
}
