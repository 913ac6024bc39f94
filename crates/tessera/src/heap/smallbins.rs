//! The 32 small bins: exact-fit free lists for chunks under 256 bytes.
//!
//! # Glossary
//! - **small chunk**: a free chunk with `size < MIN_LARGE_SIZE` (256).
//! - **bin i**: the list of free chunks of size `i * 8`. Because sizes are
//!   multiples of 16 and at least 32, only even bins 4, 6, ... 30 are ever
//!   used (sizes 32, 48, ... 240), exactly as in dlmalloc on x86-64.
//! - **smallmap**: a 32-bit map, bit i set when bin i is non-empty.
//!
//! # Invariants
//! - bit i of `map` ⟺ `heads[i]` is non-null.
//! - every chunk in bin i is free (CINUSE clear) and has size `i << 3`.
//! - links: `c.fd.bk == c` when `c.fd` is non-null; `c.bk.fd == c` when
//!   `c.bk` is non-null; `c.bk` is null exactly for the head of the bin.
//!
//! dlmalloc makes each bin a circular list whose head is a fake chunk laid
//! over the bin array. Tessera uses null-terminated lists with a plain head
//! pointer instead: no fake chunk overlaps the state, the list ends are
//! explicit, and the viewer shows `fd = 0` for the last chunk.

use super::chunk::{plausible_near, Chunk, MALLOC_ALIGNMENT, MIN_CHUNK_SIZE};
use core::ptr;

/// Number of small bins (dlmalloc's NSMALLBINS).
pub const NSMALLBINS: usize = 32;
/// log2 of the spacing between small bin sizes (dlmalloc's SMALLBIN_SHIFT).
pub const SMALLBIN_SHIFT: u32 = 3;
/// The smallest size kept in a tree bin (dlmalloc's MIN_LARGE_SIZE).
pub const MIN_LARGE_SIZE: usize = 1 << 8;
/// The largest small chunk size.
pub const MAX_SMALL_SIZE: usize = MIN_LARGE_SIZE - 1;
/// The largest request served from the small bins (dlmalloc's
/// MAX_SMALL_REQUEST): 232 bytes on x86-64.
pub const MAX_SMALL_REQUEST: usize =
    MAX_SMALL_SIZE - (MALLOC_ALIGNMENT - 1) - crate::heap::chunk::CHUNK_OVERHEAD;

const _: () = assert!(NSMALLBINS == 32, "the small map is a u32");
const _: () = assert!(MAX_SMALL_REQUEST == 232);

/// Is a chunk of this size kept in a small bin (dlmalloc's `is_small`)?
#[inline(always)]
pub const fn is_small(size: usize) -> bool {
    size >> SMALLBIN_SHIFT < NSMALLBINS
}

/// The small bin of a chunk size (dlmalloc's `small_index`).
#[inline(always)]
pub const fn small_index(size: usize) -> usize {
    size >> SMALLBIN_SHIFT
}

/// The chunk size of small bin `i` (dlmalloc's `small_index2size`).
#[inline(always)]
pub const fn small_index2size(i: usize) -> usize {
    i << SMALLBIN_SHIFT
}

/// The small bins of one heap.
pub struct SmallBins {
    /// Bit i set ⟺ bin i non-empty.
    pub map: u32,
    /// First chunk of each bin, or null.
    pub heads: [*mut Chunk; NSMALLBINS],
}

impl SmallBins {
    /// All bins empty.
    pub const EMPTY: SmallBins = SmallBins {
        map: 0,
        heads: [ptr::null_mut(); NSMALLBINS],
    };

    /// Is bin `i` non-empty?
    #[inline(always)]
    pub fn is_marked(&self, i: usize) -> bool {
        self.map & (1 << i) != 0
    }

    /// Pushes the free chunk `p` of `size` bytes on the front of its bin
    /// (dlmalloc's `insert_small_chunk`; LIFO like dlmalloc).
    ///
    /// # Safety
    /// `p` must be a writable free chunk of `size` bytes, `size` small and at
    /// least [`MIN_CHUNK_SIZE`], and not already in a bin.
    #[inline(always)]
    pub unsafe fn insert(&mut self, p: *mut Chunk, size: usize) {
        debug_assert!(is_small(size) && size >= MIN_CHUNK_SIZE);
        let i = small_index(size);
        let first = self.heads[i];
        // SAFETY: `p` is writable (caller); `first`, when non-null, is a
        // chunk of this bin, and bin members are valid free chunks.
        unsafe {
            (*p).fd = first;
            (*p).bk = ptr::null_mut();
            if !first.is_null() {
                (*first).bk = p;
            }
        }
        self.heads[i] = p;
        self.map |= 1 << i;
    }

    /// Removes `p`, a chunk of bin `small_index(size)`, from its bin
    /// (dlmalloc's `unlink_small_chunk`). Returns `false`, changing nothing,
    /// when the neighbours' links do not point back at `p`: the heap is
    /// corrupt, and the caller reports it.
    ///
    /// # Safety
    /// `p` must be a readable chunk header, and every chunk reachable from the
    /// bin must be readable and writable.
    #[inline(always)]
    #[must_use]
    pub unsafe fn unlink(&mut self, p: *mut Chunk, size: usize) -> bool {
        let i = small_index(size);
        // SAFETY: `p` is readable (caller); its links, when non-null, are
        // checked to lie in a live segment before they are followed.
        unsafe {
            let fd = (*p).fd;
            let bk = (*p).bk;
            if !(fd.is_null() || plausible_near(fd, p)) || !(bk.is_null() || plausible_near(bk, p))
            {
                return false;
            }
            let fd_ok = fd.is_null() || (*fd).bk == p;
            let bk_ok = if bk.is_null() {
                self.heads[i] == p
            } else {
                (*bk).fd == p
            };
            if !(fd_ok && bk_ok) {
                return false;
            }
            if !fd.is_null() {
                (*fd).bk = bk;
            }
            if bk.is_null() {
                self.heads[i] = fd;
                if fd.is_null() {
                    self.map &= !(1 << i);
                }
            } else {
                (*bk).fd = fd;
            }
        }
        true
    }

    /// Pops the first chunk of the non-empty bin `i` (dlmalloc's
    /// `unlink_first_small_chunk`). Returns null when the head's successor
    /// lies outside every segment or does not link back (corruption).
    ///
    /// # Safety
    /// Bin `i` must be non-empty and its chunks readable and writable.
    #[inline(always)]
    pub unsafe fn pop(&mut self, i: usize) -> *mut Chunk {
        let p = self.heads[i];
        debug_assert!(!p.is_null());
        // SAFETY: `p` is the head of a non-empty bin (caller); its successor,
        // when non-null, is a chunk of the same bin.
        unsafe {
            let fd = (*p).fd;
            if !fd.is_null() {
                if !plausible_near(fd, p) || (*fd).bk != p {
                    return ptr::null_mut();
                }
                (*fd).bk = ptr::null_mut();
            } else {
                self.map &= !(1 << i);
            }
            self.heads[i] = fd;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_math_matches_naive_for_every_small_size() {
        for size in 0..MIN_LARGE_SIZE * 2 {
            let naive_small = size < 256;
            assert_eq!(is_small(size), naive_small, "size {size}");
            if naive_small {
                assert_eq!(small_index(size), size / 8);
                if size % 8 == 0 {
                    assert_eq!(small_index2size(small_index(size)), size);
                }
            }
        }
        // Every request served from the small bins maps to a chunk below 256.
        for req in 0..=MAX_SMALL_REQUEST {
            assert!(is_small(crate::heap::chunk::request2size(req)), "req {req}");
        }
        assert!(!is_small(crate::heap::chunk::request2size(
            MAX_SMALL_REQUEST + 1
        )));
    }

    #[test]
    fn insert_unlink_pop_keep_map_in_sync() {
        // Six 32-byte chunks in a registered segment (links are only
        // followed into live segments).
        let seg = crate::heap::segment::TestSegment::new(4096);
        let chunks: [*mut Chunk; 6] = core::array::from_fn(|k| seg.at(32 * k).cast());
        let mut bins = SmallBins::EMPTY;
        // SAFETY: every chunk pointer is a distinct 32-byte slot of `seg`.
        unsafe {
            for &c in &chunks[..3] {
                bins.insert(c, 32);
            }
            bins.insert(chunks[3], 48);
            assert_eq!(bins.map, (1 << 4) | (1 << 6));
            assert_eq!(bins.heads[4], chunks[2], "LIFO");
            assert!(bins.unlink(chunks[1], 32), "middle");
            assert!(bins.unlink(chunks[2], 32), "head");
            assert_eq!(bins.heads[4], chunks[0]);
            assert_eq!(bins.pop(4), chunks[0]);
            assert_eq!(bins.map, 1 << 6);
            assert!(bins.unlink(chunks[3], 48));
            assert_eq!(bins.map, 0);
            // A chunk whose links lie is refused.
            bins.insert(chunks[4], 32);
            bins.insert(chunks[5], 32);
            (*chunks[4]).bk = chunks[0];
            assert!(!bins.unlink(chunks[4], 32));
            // A link pointing outside every segment is refused unread.
            (*chunks[4]).bk = 0x4141_4141_4140 as *mut Chunk;
            assert!(!bins.unlink(chunks[4], 32));
        }
    }
}
