//! The trust boundary: a pointer handed to `free` or `realloc` from
//! outside is validated and its owner found before anything is written
//! (dlmalloc: "trust the mstate, check the heap"). No byte is read
//! through the pointer before the registry has vouched for its address;
//! misuse ends in a one-line message naming it (see [`crate::sys::report`]).

use super::chunk::{tag_ok, tag_ok_keyed, Chunk, Head, CHECKS, MALLOC_ALIGNMENT, MIN_CHUNK_SIZE};
use super::mapping::MmapHeader;
use super::segment::Segment;
use crate::sys::registry;
use crate::sys::report::{fatal, fatal_with, Misuse};

/// What to call a pointer that is in no segment and no live mapping: a
/// recently unmapped direct chunk (a double free), or anything else.
pub(crate) fn unknown_pointer(p: *mut Chunk, for_realloc: bool) -> Misuse {
    if registry::was_direct_freed(p as usize) {
        if for_realloc {
            Misuse::ReallocFreed
        } else {
            Misuse::DoubleFree
        }
    } else {
        Misuse::InvalidPointer
    }
}

/// Names what is wrong with a pointer into segment `seg` whose chunk failed
/// validation (not in use, wrong tag, impossible size). Walks the segment
/// from its first chunk (this is the error path; the process is about to
/// stop) to learn whether `p` is a real chunk boundary:
/// - a boundary whose head is a genuine free chunk (or top): double free;
/// - a boundary whose head is garbage: the header was overwritten;
/// - inside a free chunk, with a stale head that still carries its own tag:
///   a chunk freed and merged into its predecessor, freed again;
/// - anywhere else: not a pointer malloc returned.
///
/// # Safety
/// `seg` must be a live segment and `p` inside its chunk range.
pub(crate) unsafe fn diagnose(seg: *mut Segment, p: *mut Chunk, for_realloc: bool) -> Misuse {
    let freed = if for_realloc {
        Misuse::ReallocFreed
    } else {
        Misuse::DoubleFree
    };
    // SAFETY: every head read lies before the fencepost of a live segment;
    // each step is bounds-checked before it is taken.
    unsafe {
        let fence = Segment::fencepost(seg);
        let mut q = Segment::first_chunk(seg);
        while q < fence {
            let h = Chunk::head(q);
            let size = h.size();
            let next = Chunk::plus_offset(q, size);
            // (The last chunk, top, may be as small as its 16-byte header.)
            let least = if next == fence { 16 } else { MIN_CHUNK_SIZE };
            if size < least || size % MALLOC_ALIGNMENT != 0 || next > fence {
                // The walk breaks at or before p: a header was overwritten.
                return if q <= p {
                    Misuse::CorruptHeader
                } else {
                    Misuse::InvalidPointer
                };
            }
            if q == p {
                if h.cinuse() && h.flag4() && tag_ok(p, h) {
                    // Parked on a quick list, or cached by a thread that
                    // is writing a snapshot: the program freed it before.
                    return freed;
                }
                let genuine_free = !h.cinuse()
                    && h.tag() == 0
                    && h.pinuse()
                    && (next == fence || (Chunk::prev_foot(next) == size && !Chunk::pinuse(next)));
                return if genuine_free {
                    freed
                } else {
                    Misuse::CorruptHeader
                };
            }
            if p < next {
                // p is inside q.
                // A chunk freed into its free predecessor q leaves its old
                // head behind with CINUSE cleared and the tag kept (see
                // `free_chunk`); the tag was made with CINUSE set.
                let ph = Chunk::head(p);
                if !h.cinuse() && ph.tag() != 0 && tag_ok(p, Head(ph.0 | Head::CINUSE)) {
                    return freed;
                }
                return Misuse::InvalidPointer;
            }
            q = next;
        }
    }
    Misuse::InvalidPointer
}

/// Does the head of the chunk after the in-use chunk at `mem` of `size`
/// bytes, which the program is freeing, look real? PINUSE set (`mem` is in
/// use: the heap checker holds every head to this), and a tagged in-use
/// head (the next block, or one cached or parked), a free one (no tag) or
/// a fencepost. Anything else was written
/// by the program past the end of `mem`'s block (issue 16), unless another
/// thread is rewriting that head under its arena's lock right now (the
/// caller looks again under the lock before reporting). The head lies
/// before the segment's fencepost (or is it), so it is readable.
///
/// # Safety
/// `mem` must be a validated in-use chunk of a live segment, `size` its
/// size.
pub(crate) unsafe fn next_head_fine(mem: *mut u8, size: usize) -> bool {
    if !CHECKS {
        return true;
    }
    let next = Chunk::plus_offset(Chunk::from_mem(mem), size);
    // SAFETY: the successor of a validated in-use chunk lies in its segment
    // (caller).
    let h = unsafe { Chunk::head(next) };
    h.pinuse()
        && if h.cinuse() {
            h.is_fencepost() || tag_ok(next, h)
        } else {
            h.tag() == 0
        }
}

/// Reports a write past the end of the block at `mem` (`size` bytes of
/// chunk) into the head of the chunk after it, naming both.
#[cold]
pub(crate) fn report_overflow(mem: *mut u8, size: usize) -> ! {
    let next = Chunk::plus_offset(Chunk::from_mem(mem), size);
    fatal_with(
        Misuse::Overflow,
        mem,
        "the header of the chunk after it, at",
        Chunk::to_mem(next) as usize,
    )
}

/// A pointer from outside, validated by [`classify`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Classified {
    /// Its chunk.
    pub(crate) chunk: *mut Chunk,
    /// The heap state that owns it (null for an orphan direct chunk).
    pub(crate) owner: *mut (),
    /// A direct chunk (else an in-use chunk of a segment).
    pub(crate) direct: bool,
}

/// Validates a pointer received from outside (the trust boundary) and finds
/// its chunk and owner. No byte is read through `mem` before the registry
/// has vouched for its address. An in-segment chunk must lie in its
/// segment's chunk range, be in use, carry its keyed tag, and end inside
/// the segment before a chunk whose PINUSE is set; a direct chunk must have
/// an intact keyed mapping header. Anything else aborts with a one-line
/// message naming the misuse.
#[inline(always)]
pub(crate) fn classify(mem: *mut u8, for_realloc: bool) -> Classified {
    if mem as usize & (MALLOC_ALIGNMENT - 1) != 0 {
        fatal(Misuse::Misaligned, mem);
    }
    let p = Chunk::from_mem(mem);
    let seg = Segment::of(p.cast());
    if registry::in_segment(seg as usize) {
        // SAFETY: the registry vouches for the segment record; the chunk
        // address is checked against the committed range before use.
        unsafe {
            // (The key is loaded once, for the record and the tag.)
            let key = registry::key();
            if (*seg).check != key ^ (seg as usize) {
                fatal(Misuse::CorruptRecord, mem);
            }
            if !Segment::holds(seg, p.cast()) {
                fatal(Misuse::InvalidPointer, mem);
            }
            let head = Chunk::head(p);
            let size = head.size();
            let next = Chunk::plus_offset(p, size);
            // (Top and every free chunk have CINUSE clear; with the checks
            // on, the tag check covers that: only in-use heads carry tags.)
            // FLAG4 marks a chunk parked on a quick list (or, while its
            // thread writes a snapshot, in a thread cache): freed already.
            if (!CHECKS && !head.cinuse())
                || !tag_ok_keyed(mem, head, key)
                || (CHECKS && head.flag4())
                || size < MIN_CHUNK_SIZE
                || next > Segment::fencepost(seg)
                || !Chunk::pinuse(next)
            {
                fatal(diagnose(seg, p, for_realloc), mem);
            }
            Classified {
                chunk: p,
                owner: (*seg).owner,
                direct: false,
            }
        }
    } else if registry::is_direct(p as usize) {
        // SAFETY: the registry vouches for a live mapping in this page.
        unsafe {
            let h = MmapHeader::of_chunk(p);
            if h.is_null() {
                fatal(Misuse::CorruptHeader, mem);
            }
            if (*h).check != registry::key() ^ (h as usize) {
                fatal(Misuse::CorruptRecord, mem);
            }
            Classified {
                chunk: p,
                owner: (*h).owner,
                direct: true,
            }
        }
    } else {
        fatal(unknown_pointer(p, for_realloc), mem)
    }
}
