//! Segments: the large regions a heap carves its chunks from, the top chunk
//! at the end of the newest one, and the fencepost that closes each.
//!
//! # Glossary
//! - **segment**: a [`SEGMENT_SIZE`]-aligned reservation of [`SEGMENT_SIZE`]
//!   bytes. Its first `committed` bytes are readable and writable; the rest
//!   is address space held for growth.
//! - **segment record**: the 64-byte [`Segment`] header at the segment's
//!   base. The first segment of a heap also holds the heap's state right
//!   after the record (dlmalloc's mspace layout).
//! - **top**: the free chunk at the end of the *top segment*, from which new
//!   chunks are split when no bin serves. It is never in a bin.
//! - **fencepost**: the 16-byte pseudo chunk at `base + committed - 16`, head
//!   `8 | CINUSE` (plus PINUSE when the chunk before it is in use). Nothing
//!   coalesces across it.
//!
//! ```text
//!  base (64 MiB aligned)                                 base + committed
//!  | record | [heap state] | chunk | chunk | ... | top ...   | fencepost |  reserved, no access ...
//!  ^ 64 B                   ^ first chunk                    ^ end - 16
//! ```
//!
//! # Invariants
//! - `base % SEGMENT_SIZE == 0`, `committed % page == 0`,
//!   `committed <= reserved == SEGMENT_SIZE`.
//! - `record.check == key ^ base` and the registry bit of `base` is set
//!   while the segment lives.
//! - the chunks from `first_chunk` tile `[first_chunk, end - 16)` exactly.
//! - in the top segment the last chunk is top and `topsize >= 16` (its
//!   header; as in dlmalloc, a split may leave top that small).
//!
//! # How this differs from dlmalloc
//! dlmalloc puts the segment record in a chunk at the *end* of a segment when
//! a new one is added, and merges a fresh mapping with a neighbour when the
//! kernel happens to place it adjacent. Tessera reserves each segment at a
//! fixed alignment and puts the record at its *base*, so that the owner of
//! any chunk is one mask and one load away (`ptr & !(SEGMENT_SIZE - 1)`),
//! which the arenas need for cross-thread frees. A segment grows in place by
//! committing more of its own reservation; it never merges with another
//! (each slot must start with its record), and requests too large for a
//! segment (`>= SEGMENT_SIZE / 2`) are always mapped directly.

use super::chunk::{Chunk, Head};
use crate::sys::registry;
use core::ptr;

/// Size and alignment of every segment reservation (defined with the
/// registry, whose unit it is).
pub use crate::sys::registry::SEGMENT_SIZE;
/// Bytes of the segment record at each segment's base.
pub const SEGMENT_HEADER: usize = 64;
/// Bytes at the end of the committed part that belong to the fencepost
/// (dlmalloc's TOP_FOOT_SIZE, much smaller here since the record is at the base).
pub const TOP_FOOT_SIZE: usize = 16;
/// No chunk smaller than this can span a whole segment: every segment
/// commits at least one page-rounded granule (>= 4 KiB), of which the
/// record, the state and the fencepost take less than 2 KiB.
pub(crate) const MIN_SEGMENT_SPAN: usize = 2048;

/// Chunk sizes from here up are always mapped directly: a segment could not
/// hold them next to its record, state and top.
pub const MAX_SEGMENT_CHUNK: usize = SEGMENT_SIZE / 2;

const _: () = assert!(SEGMENT_SIZE.is_power_of_two());
const _: () = assert!(core::mem::size_of::<Segment>() == SEGMENT_HEADER);

/// The record at the base of every segment (dlmalloc's `struct
/// malloc_segment`, moved to the front; see the module docs).
#[repr(C)]
pub struct Segment {
    /// `registry::key() ^ base`: proves the record is ours and intact.
    pub check: usize,
    /// The heap state that owns this segment.
    pub owner: *mut (),
    /// Readable and writable bytes from `base`.
    pub committed: usize,
    /// Reserved bytes from `base` (always SEGMENT_SIZE).
    pub reserved: usize,
    /// Next segment of the same heap (null at the end).
    pub next: *mut Segment,
    /// Previous segment of the same heap (null for the first).
    pub prev: *mut Segment,
    /// Offset from `base` to the first chunk.
    pub first_offset: usize,
    /// Bit 0: this segment holds the heap state (it is released last).
    pub flags: usize,
}

/// `Segment::flags`: the segment holds the heap's state.
pub const SEG_HOLDS_STATE: usize = 1;

impl Segment {
    /// The segment whose slot contains `addr` (pure arithmetic).
    #[inline(always)]
    pub fn of(addr: *const u8) -> *mut Segment {
        addr.cast_mut()
            .wrapping_sub(addr as usize & (SEGMENT_SIZE - 1))
            .cast()
    }

    /// The segment's base address.
    #[inline(always)]
    pub fn base(s: *mut Segment) -> *mut u8 {
        s.cast()
    }

    /// The first chunk.
    ///
    /// # Safety
    /// `s` must be a live segment record.
    #[inline(always)]
    pub unsafe fn first_chunk(s: *mut Segment) -> *mut Chunk {
        // SAFETY: the caller guarantees `s` is readable.
        Chunk::plus_offset(s.cast(), unsafe { (*s).first_offset })
    }

    /// One past the last committed byte.
    ///
    /// # Safety
    /// `s` must be a live segment record.
    #[inline(always)]
    pub unsafe fn end(s: *mut Segment) -> *mut u8 {
        // SAFETY: the caller guarantees `s` is readable.
        Self::base(s).wrapping_add(unsafe { (*s).committed })
    }

    /// The fencepost pseudo chunk.
    ///
    /// # Safety
    /// `s` must be a live segment record.
    #[inline(always)]
    pub unsafe fn fencepost(s: *mut Segment) -> *mut Chunk {
        // SAFETY: forwarded to the caller.
        unsafe { Self::end(s) }.wrapping_sub(TOP_FOOT_SIZE).cast()
    }

    /// Writes the fencepost head; `pinuse` tells whether the chunk before it
    /// is in use.
    ///
    /// # Safety
    /// `s` must be a live segment record with at least one committed page.
    #[inline(always)]
    pub unsafe fn write_fencepost(s: *mut Segment, pinuse: bool) {
        // SAFETY: the fencepost lies in the committed part (caller).
        unsafe {
            let f = Self::fencepost(s);
            Chunk::set_prev_foot(f, 0);
            let p = if pinuse { Head::PINUSE } else { 0 };
            Chunk::set_head(f, (Head::FENCEPOST & !Head::PINUSE) | p);
        }
    }

    /// Does `addr` lie between the first chunk and the fencepost?
    ///
    /// # Safety
    /// `s` must be a live segment record.
    #[inline(always)]
    pub unsafe fn holds(s: *mut Segment, addr: *const u8) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe {
            addr >= Self::first_chunk(s).cast_const().cast()
                && addr < Self::fencepost(s).cast_const().cast()
        }
    }

    /// Is `s` a live, intact segment record? Checks the registry before
    /// reading a byte, then the keyed check word. Safe for any address:
    /// nothing is read unless the registry vouches for the slot.
    #[inline(always)]
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // guarded by the registry
    pub fn is_live(s: *mut Segment) -> bool {
        if !registry::in_segment(s as usize) {
            return false;
        }
        // SAFETY: the registry says a live segment starts here, so its record
        // is committed and readable.
        unsafe { (*s).check == registry::key() ^ (s as usize) }
    }
}

/// Starts a segment at `base` (already reserved, with `committed` bytes
/// committed): writes the record and registers it. The caller lays out the
/// chunks and the fencepost.
///
/// # Safety
/// `base` must be a fresh SEGMENT_SIZE-aligned reservation whose first
/// `committed` bytes are committed.
pub(crate) unsafe fn init_record(
    base: *mut u8,
    owner: *mut (),
    committed: usize,
    first_offset: usize,
    flags: usize,
) -> *mut Segment {
    let s: *mut Segment = base.cast();
    // SAFETY: the record lies in the committed part (caller).
    unsafe {
        s.write(Segment {
            check: registry::key() ^ (base as usize),
            owner,
            committed,
            reserved: SEGMENT_SIZE,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            first_offset,
            flags,
        });
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Emptied {
    /// The chunk does not span its segment (or it is the top segment).
    No,
    /// The segment was unmapped; the chunk is gone.
    Released,
    /// The state's segment was decommitted down; the chunk now has this size.
    Shrunk(usize),
}

/// A registered, committed segment-sized region for unit tests of code that
/// validates pointers against the registry.
#[cfg(test)]
pub(crate) struct TestSegment {
    base: *mut u8,
}

#[cfg(test)]
impl TestSegment {
    /// Reserves a segment, commits `bytes` and registers it.
    pub(crate) fn new(bytes: usize) -> Self {
        use crate::heap::chunk::align_up;
        use crate::sys::os::{Mmap, PageSource};
        let base = Mmap.reserve(SEGMENT_SIZE, SEGMENT_SIZE);
        assert!(!base.is_null());
        // SAFETY: a fresh reservation.
        assert!(unsafe { Mmap.commit(base, align_up(bytes, 4096)) });
        assert!(registry::add_segment(base as usize, registry::PLAIN));
        crate::sys::registry::key();
        TestSegment { base }
    }

    /// An address `offset` bytes past the segment's record.
    pub(crate) fn at(&self, offset: usize) -> *mut u8 {
        self.base.wrapping_add(SEGMENT_HEADER + offset)
    }
}

#[cfg(test)]
impl Drop for TestSegment {
    fn drop(&mut self) {
        use crate::sys::os::Mmap;
        use crate::sys::os::PageSource;
        registry::remove_segment(self.base as usize);
        // SAFETY: our own reservation.
        unsafe { Mmap.unmap(self.base, SEGMENT_SIZE) };
    }
}
