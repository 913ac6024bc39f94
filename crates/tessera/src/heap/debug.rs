//! Debug mode (`TESSERA_CHECK=2`, or [`crate::heap::Heap::set_debug`]): the expensive
//! tier of checks.
//!
//! - Every `period` public operations the whole heap is checked
//!   ([`crate::heap::check`]); a violation ends the process with one line naming
//!   the address and the invariant.
//! - Freed memory is filled with [`FREE_FILL`]. Whenever a free chunk enters
//!   a bin or becomes the dv, the bytes past its header and links are
//!   (re)filled; whenever one leaves (to be handed out, or merged into a
//!   neighbour), they are verified. A byte that changed is a write after
//!   free, reported with its address.
//!
//! Costs O(chunk size) per operation plus a full walk every `period`
//! operations: for debugging, not production. Purging free pages is off in
//! this mode (the kernel would zero the pattern). The process allocator
//! bypasses its thread caches in this mode (threads that cached before it
//! was switched on keep doing so; the C library switches it on before the
//! first allocation).

use super::chunk::{purgeable_bytes, Chunk, Head};
use super::smallbins::is_small;
use super::state::State;
use crate::sys::os::PageSource;
use crate::sys::report::{fatal_msg, fatal_with, Misuse};

/// The byte freed memory is filled with.
pub const FREE_FILL: u8 = 0xDF;

/// Bytes at the start of a free chunk that hold allocator data: header and
/// links (small: fd, bk; tree: fd, bk, child[2], parent, index; dv and top:
/// none).
fn metadata_len(size: usize, in_bin: bool) -> usize {
    if !in_bin {
        16
    } else if is_small(size) {
        32
    } else {
        64
    }
}

impl<S: PageSource> State<S> {
    /// Is the expensive tier on?
    #[inline(always)]
    pub(crate) fn debugging(&self) -> bool {
        self.debug.level >= 2
    }

    /// Counts an operation; runs the full check when the period is up.
    #[inline]
    pub(crate) fn debug_tick(&mut self) {
        if !self.debugging() || self.debug.period == 0 {
            return;
        }
        self.debug.counter += 1;
        if self.debug.counter >= self.debug.period {
            self.debug.counter = 0;
            if let Err(e) = self.check() {
                fatal_msg(e.what, e.addr);
            }
        }
    }

    /// Fills the free chunk `p` of `size` bytes past its metadata.
    ///
    /// # Safety
    /// `p` must be a free chunk of this heap.
    pub(crate) unsafe fn debug_fill(&self, p: *mut Chunk, size: usize, in_bin: bool) {
        let skip = metadata_len(size, in_bin);
        if size > skip {
            // SAFETY: the bytes lie inside the free chunk (caller).
            unsafe { p.cast::<u8>().add(skip).write_bytes(FREE_FILL, size - skip) };
        }
    }

    /// Verifies the fill of the free chunk `p` of `size` bytes; aborts with
    /// the address of the first byte written after the free.
    ///
    /// # Safety
    /// `p` must be a free chunk of this heap, filled by `debug_fill`.
    pub(crate) unsafe fn debug_verify(&self, p: *mut Chunk, size: usize, in_bin: bool) {
        let skip = metadata_len(size, in_bin);
        if size <= skip {
            return;
        }
        // SAFETY: the bytes lie inside the free chunk (caller).
        let bytes = unsafe { core::slice::from_raw_parts(p.cast::<u8>().add(skip), size - skip) };
        if let Some(i) = bytes.iter().position(|&b| b != FREE_FILL) {
            fatal_with(
                Misuse::UseAfterFree,
                Chunk::to_mem(p),
                "the byte written",
                bytes[i..].as_ptr() as usize,
            );
        }
    }
}

impl<S: PageSource> State<S> {
    /// Fills every free chunk in the bins and the dv.
    ///
    /// # Safety
    /// The heap must be consistent.
    pub(crate) unsafe fn debug_fill_all(&mut self) {
        let mut seg = self.segments;
        // SAFETY: walks a consistent heap.
        unsafe {
            while !seg.is_null() {
                let fence = crate::heap::segment::Segment::fencepost(seg);
                let mut p = crate::heap::segment::Segment::first_chunk(seg);
                while p < fence {
                    let head = Chunk::head(p);
                    let size = head.size();
                    if size == 0 {
                        break;
                    }
                    if !head.cinuse() && p != self.top {
                        if head.flag4() {
                            // Filling touches a purged chunk's pages: it is
                            // no longer purged.
                            Chunk::set_head(p, head.0 & !Head::FLAG4);
                            self.purged -= purgeable_bytes(p as usize, size);
                        }
                        self.debug_fill(p, size, p != self.dv);
                    }
                    p = Chunk::plus_offset(p, size);
                }
                seg = (*seg).next;
            }
        }
    }
}
