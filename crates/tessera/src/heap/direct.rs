//! Direct chunks: large requests served by a mapping of their own
//! (dlmalloc's `mmap_alloc`, `mmap_resize`), the heap's side: mapping,
//! listing, resizing (`mremap`), trimming for `memalign`, unmapping. The
//! mapping header and its layout are in `mapping`.

use super::chunk::{align_up, Chunk, MIN_CHUNK_SIZE, WORD};
use super::mapping::{write_foot, MmapHeader, MMAP_FOOT_SIZE, MMAP_HEADER_SIZE};
use super::segment::MAX_SEGMENT_CHUNK;
use super::smallbins::is_small;
use super::state::State;
use crate::sys::os::PageSource;
use crate::sys::registry;
use crate::sys::report::{fatal, fatal_msg, Misuse};
use core::ptr;

impl<S: PageSource> State<S> {
    /// Maps a chunk of at least `nb` bytes. Null on failure.
    ///
    /// # Safety
    /// The heap must be consistent.
    pub(crate) unsafe fn direct_alloc(&mut self, nb: usize) -> *mut u8 {
        let page = self.source.page_size();
        // A direct chunk's payload cannot borrow its successor's prev_foot
        // (usable = size - 16), so it needs one more word than `nb`.
        let Some(raw) = nb.checked_add(MMAP_HEADER_SIZE + WORD + MMAP_FOOT_SIZE + page) else {
            return ptr::null_mut();
        };
        let map_size = align_up(raw - page, page);
        if self.over_limit(map_size) {
            return ptr::null_mut();
        }
        let h: *mut MmapHeader = self.source.map(map_size).cast();
        if h.is_null() {
            return ptr::null_mut();
        }
        let p = MmapHeader::chunk(h, MMAP_HEADER_SIZE);
        if !registry::add_direct(p as usize) {
            // SAFETY: the mapping was just made and is unused.
            unsafe { self.source.unmap(h.cast(), map_size) };
            return ptr::null_mut();
        }
        let psize = map_size - MMAP_HEADER_SIZE - MMAP_FOOT_SIZE;
        // SAFETY: header, chunk and fencepost lie inside the fresh mapping.
        unsafe {
            h.write(MmapHeader {
                check: registry::key() ^ (h as usize),
                owner: self.owner(),
                next: self.direct,
                prev: ptr::null_mut(),
                map_size,
                chunk_offset: MMAP_HEADER_SIZE,
            });
            if !self.direct.is_null() {
                (*self.direct).prev = h;
            }
            self.direct = h;
            Chunk::set_prev_foot(p, MMAP_HEADER_SIZE);
            Chunk::set_head(p, psize);
            write_foot(p, psize);
        }
        self.direct_count += 1;
        self.direct_bytes += map_size;
        self.add_footprint(map_size);
        Chunk::to_mem(p)
    }

    /// Unlinks header `h` from the list of direct chunks.
    ///
    /// # Safety
    /// `h` must be in this heap's list.
    unsafe fn direct_unlink(&mut self, h: *mut MmapHeader) {
        // SAFETY: list members are live headers (caller).
        unsafe {
            let (prev, next) = ((*h).prev, (*h).next);
            if prev.is_null() {
                self.direct = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }

    /// Points the list at header `new`, which replaced `old` (moved by
    /// mremap or memalign): fixes the neighbours' links.
    ///
    /// # Safety
    /// `new` must be a live header holding `old`'s links.
    unsafe fn direct_relink(&mut self, old: *mut MmapHeader, new: *mut MmapHeader) {
        if old == new {
            return;
        }
        // SAFETY: the neighbours are live headers (caller).
        unsafe {
            (*new).check = registry::key() ^ (new as usize);
            let (prev, next) = ((*new).prev, (*new).next);
            if prev.is_null() {
                debug_assert_eq!(self.direct, old);
                self.direct = new;
            } else {
                (*prev).next = new;
            }
            if !next.is_null() {
                (*next).prev = new;
            }
        }
    }

    /// Unmaps the validated direct chunk `p`.
    ///
    /// # Safety
    /// `p` must be a live direct chunk of this heap.
    pub(crate) unsafe fn direct_free(&mut self, p: *mut Chunk) {
        // SAFETY: `validate` checked the header.
        unsafe {
            let h = MmapHeader::of_chunk(p);
            let map_size = (*h).map_size;
            let size = Chunk::size(p);
            self.direct_unlink(h);
            registry::remove_direct(p as usize);
            registry::note_direct_freed(p as usize);
            (*h).check = 0;
            self.source.unmap(h.cast(), map_size);
            self.direct_count -= 1;
            self.direct_bytes -= map_size;
            self.sub_footprint(map_size);
            if self.config.dynamic_threshold
                && size > self.config.mmap_threshold
                && size <= MAX_SEGMENT_CHUNK
            {
                self.config.mmap_threshold = size;
                self.config.trim_threshold = 2 * size;
            }
        }
    }

    /// Resizes a direct chunk to hold `nb` bytes with `mremap` (dlmalloc's
    /// `mmap_resize`). Returns the (maybe moved) chunk or null, leaving the
    /// chunk intact.
    ///
    /// # Safety
    /// `p` must be a live direct chunk of this heap.
    pub(crate) unsafe fn direct_resize(
        &mut self,
        p: *mut Chunk,
        nb: usize,
        can_move: bool,
    ) -> *mut Chunk {
        if is_small(nb) {
            // Too small to deserve a mapping: the caller moves it to a bin chunk.
            return ptr::null_mut();
        }
        let page = self.source.page_size();
        // SAFETY: p is a validated direct chunk; the header precedes it.
        unsafe {
            let oldsize = Chunk::size(p);
            if oldsize >= nb + WORD && oldsize - nb <= 2 * self.config.granularity {
                return p;
            }
            let h = MmapHeader::of_chunk(p);
            let offset = Chunk::prev_foot(p);
            let old_map = (*h).map_size;
            let Some(raw) = nb.checked_add(offset + WORD + MMAP_FOOT_SIZE + page) else {
                return ptr::null_mut();
            };
            let new_map = align_up(raw - page, page);
            if new_map > old_map && self.over_limit(new_map - old_map) {
                return ptr::null_mut();
            }
            let nh: *mut MmapHeader = self
                .source
                .remap(h.cast(), old_map, new_map, can_move)
                .cast();
            if nh.is_null() {
                return ptr::null_mut();
            }
            let np = MmapHeader::chunk(nh, offset);
            if nh != h {
                move_direct(p, np);
                self.direct_relink(h, nh);
            }
            (*nh).map_size = new_map;
            let psize = new_map - offset - MMAP_FOOT_SIZE;
            Chunk::set_head(np, psize);
            write_foot(np, psize);
            self.direct_bytes = self.direct_bytes - old_map + new_map;
            self.sub_footprint(old_map);
            self.add_footprint(new_map);
            np
        }
    }

    /// After memalign moved direct chunk `p` into its mapping: unmaps the
    /// whole pages before it (moving the header up) and those past `nb`
    /// bytes, so no slack is left mapped.
    ///
    /// # Safety
    /// `p` must be a direct chunk of this heap whose prev_foot may exceed the
    /// usual bound (memalign just moved it) but still leads to its header.
    pub(crate) unsafe fn direct_trim(&mut self, p: *mut Chunk, nb: usize) {
        let page = self.source.page_size();
        // SAFETY: header and chunk lie in one live mapping of this heap.
        unsafe {
            let offset = Chunk::prev_foot(p);
            let h: *mut MmapHeader = p.cast::<u8>().wrapping_sub(offset).cast();
            if (*h).check != registry::key() ^ (h as usize) {
                fatal(Misuse::CorruptRecord, Chunk::to_mem(p));
            }
            let old_chunk = MmapHeader::chunk(h, MMAP_HEADER_SIZE);
            let mut map_start = h as usize;
            let mut map_end = map_start + (*h).map_size;
            let new_start = (p as usize - MMAP_HEADER_SIZE) & !(page - 1);
            let mut header = h;
            let mut released = 0;
            if new_start > map_start {
                let nh = new_start as *mut MmapHeader;
                ptr::copy_nonoverlapping(h, nh, 1);
                self.direct_relink(h, nh);
                (*h).check = 0;
                self.source
                    .unmap(map_start as *mut u8, new_start - map_start);
                released += new_start - map_start;
                map_start = new_start;
                header = nh;
            }
            let want_end = align_up(p as usize + nb + WORD + MMAP_FOOT_SIZE, page);
            if want_end < map_end {
                self.source.unmap(want_end as *mut u8, map_end - want_end);
                released += map_end - want_end;
                map_end = want_end;
            }
            (*header).map_size = map_end - map_start;
            (*header).chunk_offset = p as usize - map_start;
            Chunk::set_prev_foot(p, p as usize - map_start);
            let psize = map_end - MMAP_FOOT_SIZE - p as usize;
            debug_assert!(psize >= nb + WORD && psize >= MIN_CHUNK_SIZE);
            Chunk::set_head(p, psize);
            write_foot(p, psize);
            if old_chunk != p {
                move_direct(old_chunk, p);
            }
            self.direct_bytes -= released;
            self.sub_footprint(released);
        }
    }

    /// Unmaps every direct chunk (the heap is being destroyed).
    ///
    /// # Safety
    /// Nothing may use the heap's direct chunks afterwards.
    pub(crate) unsafe fn release_all_direct(&mut self) {
        let mut h = self.direct;
        // SAFETY: list members are live headers of this heap.
        unsafe {
            while !h.is_null() {
                let next = (*h).next;
                let p = MmapHeader::of_chunk_from_header(h);
                registry::remove_direct(p as usize);
                (*h).check = 0;
                self.source.unmap(h.cast(), (*h).map_size);
                h = next;
            }
        }
        self.direct = ptr::null_mut();
        self.sub_footprint(self.direct_bytes);
        self.direct_bytes = 0;
        self.direct_count = 0;
    }
}

/// A direct chunk moved from `from` to `to` (a remap or an aligned trim):
/// the registry's page bit follows it. The registry maps its leaf pages on
/// first use; failing that, the chunk could not be freed again: fatal.
fn move_direct(from: *mut Chunk, to: *mut Chunk) {
    registry::remove_direct(from as usize);
    if !registry::add_direct(to as usize) {
        fatal_msg(
            "could not map a page of the direct-chunk registry",
            to as usize,
        );
    }
}
