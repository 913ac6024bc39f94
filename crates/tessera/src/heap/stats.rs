//! Heap statistics: footprint and the mallinfo fields.
//!
//! # Glossary (glibc's `struct mallinfo2`, in bytes unless noted)
//! - **arena**: bytes committed in segments (not counting direct mappings).
//! - **ordblks**: number of free chunks, top included (parked chunks
//!   excluded, as glibc excludes its fastbins).
//! - **smblks** / **fsmblks**: number / bytes of chunks parked on the
//!   arenas' quick lists (glibc: fastbin chunks). Free for the program,
//!   so counted in `fordblks`.
//! - **hblks** / **hblkhd**: number of direct chunks / bytes they map.
//! - **uordblks**: bytes in use: `arena - fordblks` (chunk sizes of in-use
//!   chunks plus the headers, records and fenceposts of the segments).
//! - **fordblks**: bytes in free chunks, top included, plus `fsmblks`.
//! - **keepcost**: size of top, the most that trimming could release.
//!
//! # Invariants
//! `arena == uordblks + fordblks` and `footprint == arena + hblkhd`.

use super::chunk::Chunk;
use super::segment::Segment;
use super::state::State;
use crate::sys::os::PageSource;

/// A heap's statistics. All sizes in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes committed in segments.
    pub arena: usize,
    /// Free chunks, top included.
    pub ordblks: usize,
    /// Chunks parked on quick lists.
    pub smblks: usize,
    /// Bytes in chunks parked on quick lists.
    pub fsmblks: usize,
    /// Direct chunks.
    pub hblks: usize,
    /// Bytes mapped for direct chunks.
    pub hblkhd: usize,
    /// Bytes in use within segments (`arena - fordblks`).
    pub uordblks: usize,
    /// Bytes free within segments, top included, parked chunks included.
    pub fordblks: usize,
    /// Size of top.
    pub keepcost: usize,
    /// Bytes obtained from the OS now.
    pub footprint: usize,
    /// The most bytes ever obtained at once.
    pub max_footprint: usize,
    /// The most direct chunks alive at once.
    pub max_hblks: usize,
    /// The most bytes mapped for direct chunks at once.
    pub max_hblkhd: usize,
    /// The most bytes committed in segments at once.
    pub max_arena: usize,
    /// In-use chunks in segments (excluding direct chunks).
    pub inuse_chunks: usize,
    /// Number of segments.
    pub segments: usize,
    /// Bytes of free chunks purged: given back to the OS while the chunks
    /// stay (part of `fordblks`; resident again once reused).
    pub purged: usize,
}

impl<S: PageSource> State<S> {
    /// Walks the segments and tallies the fields (dlmalloc's
    /// `internal_mallinfo`).
    pub(crate) fn stats(&self) -> Stats {
        let mut st = Stats {
            hblks: self.direct_count,
            hblkhd: self.direct_bytes,
            keepcost: self.topsize,
            footprint: self.footprint,
            max_footprint: self.max_footprint,
            max_hblks: self.max_direct_count,
            max_hblkhd: self.max_direct_bytes,
            max_arena: self.max_segment_bytes,
            purged: self.purged,
            ..Stats::default()
        };
        // SAFETY: the heap is consistent between public calls; every segment
        // is tiled by chunks up to its fencepost.
        unsafe {
            let mut seg = self.segments;
            while !seg.is_null() {
                st.segments += 1;
                st.arena += (*seg).committed;
                let fence = Segment::fencepost(seg);
                let mut p = Segment::first_chunk(seg);
                while p < fence {
                    let head = Chunk::head(p);
                    let size = head.size();
                    if size == 0 {
                        break;
                    }
                    // (FLAG4 marks a parked chunk: statistics are never
                    // taken while a snapshot marks thread-cache entries.)
                    if head.cinuse() && head.flag4() {
                        st.smblks += 1;
                        st.fsmblks += size;
                        st.fordblks += size;
                    } else if head.cinuse() {
                        st.inuse_chunks += 1;
                    } else {
                        st.ordblks += 1;
                        st.fordblks += size;
                    }
                    p = Chunk::plus_offset(p, size);
                }
                seg = (*seg).next;
            }
        }
        st.uordblks = st.arena - st.fordblks;
        st
    }
}
