//! Direct mappings: the header at the start of each mapping that holds one
//! large chunk, and the orphans (direct chunks no heap owns). The heap's
//! side (mapping, resizing and unmapping its own) is in `direct`.
//!
//! # Layout
//! ```text
//!  mapping start (page aligned)
//!  +-------------------------+---------------------------------+-----------+
//!  | MmapHeader (48 bytes)   | chunk: prev_foot = offset back  | fencepost |
//!  | check, owner, next,     |        head = size (P = C = 0)  | 16 bytes  |
//!  | prev, map_size          | payload ...                     |           |
//!  +-------------------------+---------------------------------+-----------+
//! ```
//! dlmalloc keeps no list of its mapped chunks; Tessera links them through a
//! small header at the start of each mapping so that a heap can report them,
//! check them and unmap them when it is dropped, and keys the header so a
//! forged one is caught.
//!
//! # Invariants
//! - `chunk.prev_foot` (the offset from header to chunk) is a multiple of 16
//!   in `[48, 48 + page)`: `memalign` moves the header up to the page that
//!   precedes the chunk, unmapping the pages in between.
//! - `header.check == key ^ header`, `header.map_size == offset + size + 16`.
//! - the registry's direct bit is set for the chunk's page while it lives.

use super::chunk::{align_up, Chunk, Head, WORD};
use crate::sys::os::{Mmap, PageSource, PAGE_SIZE};
use crate::sys::registry;
use core::ptr;

/// The header at the start of every direct mapping.
#[repr(C)]
pub struct MmapHeader {
    /// `registry::key() ^ address of this header`.
    pub check: usize,
    /// The heap state that owns the chunk.
    pub owner: *mut (),
    /// Next direct chunk of the same heap.
    pub next: *mut MmapHeader,
    /// Previous direct chunk of the same heap.
    pub prev: *mut MmapHeader,
    /// Bytes in the mapping, from this header.
    pub map_size: usize,
    /// Offset from this header to its chunk (equal to the chunk's prev_foot).
    pub chunk_offset: usize,
}

/// Bytes from the start of a mapping to its chunk (unless memalign moved it).
pub const MMAP_HEADER_SIZE: usize = 48;
/// Bytes of the fencepost after a direct chunk.
pub const MMAP_FOOT_SIZE: usize = 16;

const _: () = assert!(core::mem::size_of::<MmapHeader>() == MMAP_HEADER_SIZE);
const _: () = assert!(MMAP_HEADER_SIZE % 16 == 0);

impl MmapHeader {
    /// The header of direct chunk `p`, or null if `p`'s offset is out of
    /// the range the invariants allow.
    ///
    /// # Safety
    /// `p` must be a readable chunk header (the registry vouched for it).
    #[inline]
    pub unsafe fn of_chunk(p: *mut Chunk) -> *mut MmapHeader {
        // SAFETY: forwarded to the caller.
        let offset = unsafe { Chunk::prev_foot(p) };
        if !(MMAP_HEADER_SIZE..MMAP_HEADER_SIZE + PAGE_SIZE).contains(&offset) || offset % 16 != 0 {
            return ptr::null_mut();
        }
        p.cast::<u8>().wrapping_sub(offset).cast()
    }

    /// The chunk behind header `h`, given its offset.
    pub(crate) fn chunk(h: *mut MmapHeader, offset: usize) -> *mut Chunk {
        h.cast::<u8>().wrapping_add(offset).cast()
    }
}

impl MmapHeader {
    /// The chunk of a live header.
    ///
    /// # Safety
    /// `h` must be a live header.
    pub unsafe fn of_chunk_from_header(h: *mut MmapHeader) -> *mut Chunk {
        // SAFETY: forwarded to the caller.
        MmapHeader::chunk(h, unsafe { (*h).chunk_offset })
    }
}

/// Writes the fencepost after a direct chunk of `psize` bytes.
///
/// # Safety
/// `p + psize + 16` must lie inside the chunk's mapping.
pub(crate) unsafe fn write_foot(p: *mut Chunk, psize: usize) {
    let f = Chunk::plus_offset(p, psize);
    // SAFETY: forwarded to the caller.
    unsafe {
        Chunk::set_prev_foot(f, 0);
        Chunk::set_head(f, Head::FENCEPOST);
    }
}

/// Maps a direct chunk of at least `nb` bytes that no heap owns (header
/// owner null, in no list). Used only when every arena is held by a thread
/// that is forking, so that malloc never waits for a fork to finish (see
/// `arena`). Freed by [`orphan_free`]. Null on failure.
pub(crate) fn orphan_alloc(nb: usize) -> *mut u8 {
    let source = Mmap;
    let page = source.page_size();
    let Some(raw) = nb.checked_add(MMAP_HEADER_SIZE + WORD + MMAP_FOOT_SIZE + page) else {
        return ptr::null_mut();
    };
    let map_size = align_up(raw - page, page);
    let h: *mut MmapHeader = source.map(map_size).cast();
    if h.is_null() {
        return ptr::null_mut();
    }
    let p = MmapHeader::chunk(h, MMAP_HEADER_SIZE);
    if !registry::add_direct(p as usize) {
        // SAFETY: the mapping was just made and is unused.
        unsafe { source.unmap(h.cast(), map_size) };
        return ptr::null_mut();
    }
    let psize = map_size - MMAP_HEADER_SIZE - MMAP_FOOT_SIZE;
    // SAFETY: header, chunk and fencepost lie inside the fresh mapping.
    unsafe {
        h.write(MmapHeader {
            check: registry::key() ^ (h as usize),
            owner: ptr::null_mut(),
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            map_size,
            chunk_offset: MMAP_HEADER_SIZE,
        });
        Chunk::set_prev_foot(p, MMAP_HEADER_SIZE);
        Chunk::set_head(p, psize);
        write_foot(p, psize);
    }
    Chunk::to_mem(p)
}

/// Unmaps an orphan direct chunk.
///
/// # Safety
/// `p` must be a live orphan chunk (validated header, null owner).
pub(crate) unsafe fn orphan_free(p: *mut Chunk) {
    // SAFETY: forwarded to the caller.
    unsafe {
        let h = MmapHeader::of_chunk(p);
        registry::remove_direct(p as usize);
        registry::note_direct_freed(p as usize);
        (*h).check = 0;
        Mmap.unmap(h.cast(), (*h).map_size);
    }
}
