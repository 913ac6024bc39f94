//! Routing free chunks into and out of the bins (dlmalloc's
//! `insert_chunk`, `unlink_chunk`, `replace_dv`), with the checks every
//! chunk leaving a bin goes through.
//!
//! Everything that puts a free chunk somewhere or takes one out passes
//! here: the small bins (exact sizes below 256 bytes) and the tree bins
//! (the rest) are below this file, `malloc` and `free` above it.

use super::chunk::{purgeable_bytes, Chunk, Head, TreeChunk, CHECKS};
use super::smallbins::is_small;
use super::state::State;
use super::treebins::Unlinked;
use crate::sys::os::PageSource;
use crate::sys::report::{fatal, Misuse};

impl<S: PageSource> State<S> {
    // ----------------------------------------------------------------
    // Bins: routing a free chunk to the right structure.
    // ----------------------------------------------------------------

    /// Puts a free chunk into its small bin or tree bin (dlmalloc's
    /// `insert_chunk`).
    ///
    /// # Safety
    /// `p` must be a free chunk of `size` bytes in no bin.
    #[inline(always)]
    pub(crate) unsafe fn insert_chunk(&mut self, p: *mut Chunk, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe {
            if is_small(size) {
                self.small.insert(p, size);
            } else {
                let t = TreeChunk::from_chunk(p);
                self.tree.insert(t, size);
                (*t).freed_at = self.epoch;
                self.tree_bytes += size;
            }
            if self.debugging() {
                self.debug_fill(p, size, true);
            }
        }
    }

    /// Takes a free chunk out of its bin (dlmalloc's `unlink_chunk`); a link
    /// that does not point back is reported as corruption.
    ///
    /// # Safety
    /// `p` must be a free chunk of `size` bytes in a bin.
    #[inline(always)]
    pub(crate) unsafe fn unlink_chunk(&mut self, p: *mut Chunk, size: usize) {
        if self.debugging() {
            // SAFETY: forwarded to the caller.
            unsafe { self.debug_verify(p, size, true) };
        }
        // SAFETY: forwarded to the caller.
        let ok = unsafe {
            if is_small(size) {
                self.small.unlink(p, size)
            } else {
                if Chunk::head(p).flag4() {
                    // A purged chunk leaves its bin: its pages are the
                    // heap's to use (and dirty) again.
                    self.purged -= purgeable_bytes(p as usize, size);
                }
                self.tree_bytes -= size;
                self.tree.unlink(TreeChunk::from_chunk(p)) == Unlinked::Ok
            }
        };
        if !ok {
            fatal(Misuse::CorruptLinks, Chunk::to_mem(p));
        }
    }

    /// Makes `r` (free, `rsize` bytes) the new dv, binning the old one
    /// (dlmalloc's `replace_dv`).
    ///
    /// # Safety
    /// `r` must be a free chunk in no bin.
    #[inline(always)]
    pub(crate) unsafe fn replace_dv(&mut self, r: *mut Chunk, rsize: usize) {
        if self.dvsize != 0 {
            // SAFETY: the old dv is a free chunk in no bin (invariant).
            unsafe { self.insert_chunk(self.dv, self.dvsize) };
        }
        self.dv = r;
        self.dvsize = rsize;
        if self.debugging() {
            // SAFETY: r is a free chunk of rsize bytes (caller).
            unsafe { self.debug_fill(r, rsize, false) };
        }
    }

    /// Checks that a chunk taken from a bin looks free and is closed by a
    /// correct boundary tag; aborts otherwise.
    ///
    /// # Safety
    /// `p` must be a readable chunk of this heap.
    #[inline(always)]
    pub(crate) unsafe fn verify_free(&self, p: *mut Chunk, size: usize) {
        if !CHECKS {
            return;
        }
        // SAFETY: p and its successor are chunks of this heap (caller).
        unsafe {
            let head = Chunk::head(p);
            let next = Chunk::plus_offset(p, size);
            // One compare: the size right, CINUSE clear, no tag.
            if head.0 & !(Head::PINUSE | Head::FLAG4) != size {
                fatal(Misuse::CorruptHeader, Chunk::to_mem(p));
            }
            if Chunk::prev_foot(next) != size || Chunk::pinuse(next) {
                fatal(Misuse::CorruptHeader, Chunk::to_mem(next));
            }
        }
    }
}
