//! The full consistency checker (dlmalloc's `do_check_malloc_state` and
//! friends, always compiled in).
//!
//! It walks every segment chunk by chunk and every bin entry by entry, and
//! verifies every invariant stated in `chunk`, `smallbins`, `treebins`,
//! `segment`, `direct` and `heap`. It allocates nothing, so it can run
//! inside the allocator (TESSERA_CHECK=2). It returns the first violation
//! found, naming the address and the invariant.

use super::chunk::{Chunk, Head, TreeChunk, MALLOC_ALIGNMENT, MIN_CHUNK_SIZE};
use super::mapping::{MmapHeader, MMAP_FOOT_SIZE};
use super::segment::{Segment, SEGMENT_SIZE, TOP_FOOT_SIZE};
use super::smallbins::{is_small, small_index, small_index2size, NSMALLBINS};
use super::state::State;
use super::treebins::{compute_tree_index, key_bit, minsize_for_tree_index, NTREEBINS};
use crate::sys::os::PageSource;
use crate::sys::registry;
use core::fmt;

/// A violated invariant: where, and which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// The address of the chunk, record or bin entry at fault.
    pub addr: usize,
    /// The invariant, in words.
    pub what: &'static str,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "heap check failed at {:#x}: {}", self.addr, self.what)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CheckError {}

fn fail<T>(addr: impl Into<Addr>, what: &'static str) -> Result<T, CheckError> {
    Err(CheckError {
        addr: addr.into().0,
        what,
    })
}

/// Anything that names an address.
pub struct Addr(usize);
impl<T> From<*mut T> for Addr {
    fn from(p: *mut T) -> Self {
        Addr(p as usize)
    }
}
impl From<usize> for Addr {
    fn from(a: usize) -> Self {
        Addr(a)
    }
}

/// Longest small bin in which each free chunk of the walk is looked up
/// (exact membership); longer bins are checked by per-bin counts plus the
/// validation of every entry.
const EXACT_SCAN_LIMIT: usize = 64;
/// Bytes past the clean watermark that are verified to be zero.
const CLEAN_SCAN_LIMIT: usize = 1 << 20;

/// Counts gathered by the segment walk and compared with the bins.
struct Tally {
    /// Length of each small bin list (capped), measured before the walk.
    small_len: [usize; NSMALLBINS],
    small: [usize; NSMALLBINS],
    tree: [usize; NTREEBINS],
    committed: usize,
    saw_top: bool,
    saw_dv: bool,
    /// Chunks with FLAG4 set (parked on a quick list).
    parked: usize,
    /// Purgeable bytes of the purged free chunks.
    purged: usize,
    /// Bytes of the chunks in tree bins.
    tree_bytes: usize,
}

impl<S: PageSource> State<S> {
    /// Verifies every invariant of the heap. See the module docs.
    pub(crate) fn check(&self) -> Result<(), CheckError> {
        let me = self.owner();
        if self.check != registry::key() ^ (me as usize) {
            return fail(me as usize, "state check word is wrong");
        }
        if self.dv.is_null() != (self.dvsize == 0) {
            return fail(self.dv, "dv is null exactly when dvsize is 0");
        }
        if self.top.is_null() || self.topsize < 16 {
            return fail(self.top, "top exists with at least its 16-byte header");
        }
        let mut tally = Tally {
            small_len: [0; NSMALLBINS],
            small: [0; NSMALLBINS],
            tree: [0; NTREEBINS],
            committed: 0,
            saw_top: false,
            saw_dv: false,
            parked: 0,
            purged: 0,
            tree_bytes: 0,
        };
        // SAFETY: every segment in the list is validated (registry, check
        // word, owner) before its chunks are read, and each chunk's size is
        // bounds-checked before the next one is read.
        unsafe {
            for i in 0..NSMALLBINS {
                let mut p = self.small.heads[i];
                while !p.is_null() && tally.small_len[i] <= EXACT_SCAN_LIMIT {
                    if !self.in_my_segment(p) {
                        return fail(p, "small bin entry lies in a segment of this heap");
                    }
                    tally.small_len[i] += 1;
                    p = (*p).fd;
                }
            }
            let mut seg = self.segments;
            let mut prev_seg: *mut Segment = core::ptr::null_mut();
            let mut n = 0usize;
            let mut saw_spare = self.spare.is_null();
            while !seg.is_null() {
                saw_spare |= seg == self.spare;
                n += 1;
                if n > (1 << 21) {
                    return fail(seg, "segment list is cyclic");
                }
                if !Segment::is_live(seg) {
                    return fail(seg, "segment is registered and its check word matches");
                }
                if (*seg).owner != me {
                    return fail(seg, "segment is owned by this heap");
                }
                if (*seg).prev != prev_seg {
                    return fail(seg, "segment list back link");
                }
                self.check_segment(seg, &mut tally)?;
                prev_seg = seg;
                seg = (*seg).next;
            }
            if !tally.saw_top {
                return fail(self.top, "top lies in a segment of this heap");
            }
            if !saw_spare {
                return fail(self.spare, "the spare is null or a segment of this heap");
            }
            if !self.dv.is_null() && !tally.saw_dv {
                return fail(self.dv, "dv lies in a segment of this heap");
            }
            self.check_small_bins(&tally)?;
            self.check_tree_bins(&tally)?;
            self.check_quick(tally.parked)?;
            if tally.tree_bytes != self.tree_bytes {
                return fail(
                    self.tree_bytes,
                    "tree_bytes is the sum of the sizes of the tree-bin chunks",
                );
            }
            if tally.purged != self.purged {
                return fail(
                    self.purged,
                    "purged counts the purgeable bytes of the purged chunks",
                );
            }
            let direct = self.check_direct()?;
            if self.footprint != tally.committed + direct {
                return fail(
                    me as usize,
                    "footprint equals committed segment bytes plus direct mappings",
                );
            }
            if self.max_footprint < self.footprint {
                return fail(me as usize, "max_footprint >= footprint");
            }
            self.check_clean()?;
        }
        Ok(())
    }

    /// Walks one segment's chunks.
    ///
    /// # Safety
    /// `seg` must be a live segment of this heap.
    unsafe fn check_segment(&self, seg: *mut Segment, tally: &mut Tally) -> Result<(), CheckError> {
        // SAFETY: see `check`.
        unsafe {
            let committed = (*seg).committed;
            if committed > (*seg).reserved
                || (*seg).reserved != SEGMENT_SIZE
                || committed % self.source.page_size() != 0
                || (*seg).first_offset + MIN_CHUNK_SIZE + TOP_FOOT_SIZE > committed
            {
                return fail(
                    seg,
                    "segment sizes: first chunk + fencepost <= committed <= reserved",
                );
            }
            tally.committed += committed;
            let fence = Segment::fencepost(seg);
            let mut p = Segment::first_chunk(seg);
            if p as usize % MALLOC_ALIGNMENT != 0 {
                return fail(p, "first chunk is 16-aligned");
            }
            let mut prev_inuse = true;
            while p < fence {
                let head = Chunk::head(p);
                let size = head.size();
                // (Top alone may be as small as its 16-byte header.)
                let least = if p == self.top { 16 } else { MIN_CHUNK_SIZE };
                if size < least || size % MALLOC_ALIGNMENT != 0 {
                    return fail(
                        p,
                        "chunk size is a multiple of 16 and at least 32 (top: 16)",
                    );
                }
                let next = Chunk::plus_offset(p, size);
                if next > fence {
                    return fail(p, "chunk ends at or before the fencepost");
                }
                if head.pinuse() != prev_inuse {
                    return fail(p, "PINUSE matches the previous chunk's CINUSE");
                }
                if head.is_mmapped() {
                    return fail(p, "segment chunks have PINUSE or CINUSE set");
                }
                if p == self.top {
                    tally.saw_top = true;
                    if seg != self.top_seg || next != fence {
                        return fail(p, "top is the last chunk of the top segment");
                    }
                    if size != self.topsize || head.cinuse() || head.flag4() {
                        return fail(p, "top is free, not purged, and its size is topsize");
                    }
                } else if !head.cinuse() {
                    if !prev_inuse {
                        return fail(p, "no two free chunks are adjacent");
                    }
                    if Chunk::prev_foot(next) != size {
                        return fail(p, "a free chunk's boundary tag equals its size");
                    }
                    if next != fence && (next == self.top || !Chunk::cinuse(next)) {
                        return fail(p, "no two free chunks are adjacent");
                    }
                    if head.tag() != 0 {
                        return fail(p, "free chunks carry no tag");
                    }
                    if head.flag4() {
                        // Purged: a tree-bin chunk (checked below) with
                        // whole pages past its links.
                        let bytes = crate::heap::chunk::purgeable_bytes(p as usize, size);
                        if p == self.dv || is_small(size) || bytes == 0 {
                            return fail(p, "a purged chunk is in a tree bin and has whole pages");
                        }
                        tally.purged += bytes;
                    }
                    if p == self.dv {
                        tally.saw_dv = true;
                        if size != self.dvsize {
                            return fail(p, "dv's size is dvsize");
                        }
                    } else if is_small(size) {
                        let i = small_index(size);
                        tally.small[i] += 1;
                        if tally.small_len[i] <= EXACT_SCAN_LIMIT && !self.in_small_bin(p, i) {
                            return fail(p, "free small chunk is in its small bin");
                        }
                    } else {
                        tally.tree[compute_tree_index(size)] += 1;
                        tally.tree_bytes += size;
                        self.find_in_tree(p, size)?;
                    }
                } else if p == self.dv {
                    return fail(p, "dv is free");
                } else if !crate::heap::chunk::tag_ok(p, head) {
                    return fail(p, "an in-use chunk's head carries its keyed tag");
                } else if head.flag4() {
                    self.check_parked(p, size)?;
                    tally.parked += 1;
                }
                prev_inuse = head.cinuse();
                p = next;
            }
            if p != fence {
                return fail(p, "chunks tile the segment up to the fencepost");
            }
            let fh = Chunk::head(fence);
            if !fh.is_fencepost() || fh.pinuse() != prev_inuse {
                return fail(
                    fence,
                    "fencepost head is 8|CINUSE with PINUSE of the last chunk",
                );
            }
            if seg == self.top_seg && !tally.saw_top {
                return fail(seg, "the top segment ends with top");
            }
        }
        Ok(())
    }

    /// A chunk with FLAG4 set, found by the segment walk, must be parked:
    /// of a quick-list size, in a heap that has quick lists. (That it is on
    /// its list follows from `check_quick`.)
    fn check_parked(&self, p: *mut Chunk, size: usize) -> Result<(), CheckError> {
        #[cfg(feature = "std")]
        if !self.quick.is_null() && size <= crate::heap::lists::MAX_CACHED_SIZE {
            return Ok(());
        }
        let _ = size;
        fail(p, "a chunk with FLAG4 set is on its quick list")
    }

    /// Every quick-list entry is a parked chunk of its class in this heap,
    /// each list ends after its count, and the lists hold as many entries
    /// as the walk found chunks with FLAG4 set (`parked`). A list that ends
    /// where its count says has no cycle, so its entries are distinct; all
    /// carry FLAG4 and a valid tag; so the entries are exactly those
    /// chunks.
    fn check_quick(&self, parked: usize) -> Result<(), CheckError> {
        #[cfg_attr(not(feature = "std"), allow(unused_mut))]
        let mut total = 0;
        #[cfg(feature = "std")]
        if !self.quick.is_null() {
            // SAFETY: the arena's own lists, read under its lock.
            let q = unsafe { &*self.quick };
            let mut bytes = 0;
            for c in 0..crate::heap::lists::NSMALL {
                let mut last = core::ptr::null_mut();
                let size = MIN_CHUNK_SIZE + 16 * c;
                if (q.map >> c & 1 != 0) != (q.len(c) != 0) {
                    return fail(c, "quick map bit c is set exactly when list c is non-empty");
                }
                for e in q.entries(c) {
                    let Ok(mem) = e else {
                        return fail(e.unwrap_err(), "quick-list links lie in a segment");
                    };
                    let p = Chunk::from_mem(mem);
                    if !self.in_my_segment(p) {
                        return fail(p, "quick-list entry lies in a segment of this heap");
                    }
                    // SAFETY: in a live segment of this heap.
                    let head = unsafe { Chunk::head(p) };
                    if head.size() != size
                        || !head.cinuse()
                        || !head.flag4()
                        || !crate::heap::chunk::tag_ok(p, head)
                    {
                        return fail(
                            p,
                            "quick-list entry is parked (CINUSE, FLAG4, tag) with its class's size",
                        );
                    }
                    bytes += size;
                    total += 1;
                    last = mem;
                }
                // SAFETY: `last`, when set, is an entry that passed the
                // checks above: its first payload word is readable.
                if !last.is_null()
                    && crate::heap::lists::demangle(unsafe { last.cast::<usize>().read() }, last)
                        != crate::heap::lists::EMPTY
                {
                    return fail(c, "quick list c ends after its count");
                }
            }
            if bytes != q.bytes || bytes > crate::heap::quick::budget(self.max_footprint) {
                return fail(
                    self.quick,
                    "quick-list bytes are the sum of the entries' sizes, within the budget",
                );
            }
        }
        if total != parked {
            return fail(
                self.owner(),
                "the quick lists hold exactly the chunks with FLAG4 set",
            );
        }
        Ok(())
    }

    /// Is this address a chunk-aligned address inside a segment of this heap?
    fn in_my_segment(&self, p: *mut Chunk) -> bool {
        let seg = Segment::of(p.cast());
        // SAFETY: the record is read only after the registry vouches for it.
        Segment::is_live(seg)
            && unsafe { (*seg).owner == self.owner() && Segment::holds(seg, p.cast()) }
            && p as usize % MALLOC_ALIGNMENT == 0
    }

    /// Verifies a bin entry looks like a free chunk of `size` bytes.
    ///
    /// # Safety
    /// None beyond the heap's own: the entry is validated before it is read.
    unsafe fn check_bin_entry(&self, p: *mut Chunk, size: usize) -> Result<(), CheckError> {
        if !self.in_my_segment(p) {
            return fail(p, "bin entry lies in a segment of this heap");
        }
        if p == self.dv || p == self.top {
            return fail(p, "dv and top are in no bin");
        }
        // SAFETY: p lies in a live segment of this heap.
        unsafe {
            let head = Chunk::head(p);
            if head.cinuse() || head.size() != size {
                return fail(p, "bin entry is free and has its bin's size");
            }
            let next = Chunk::plus_offset(p, size);
            if !self.in_my_segment(next) && next != Segment::fencepost(Segment::of(p.cast())) {
                return fail(p, "bin entry's end lies in its segment");
            }
            if Chunk::prev_foot(next) != size || Chunk::pinuse(next) {
                return fail(
                    p,
                    "bin entry has a matching boundary tag and next PINUSE clear",
                );
            }
        }
        Ok(())
    }

    /// # Safety
    /// The heap's segments must have passed `check_segment`.
    unsafe fn check_small_bins(&self, tally: &Tally) -> Result<(), CheckError> {
        for i in 0..NSMALLBINS {
            let head = self.small.heads[i];
            if self.small.is_marked(i) == head.is_null() {
                return fail(
                    i,
                    "smallmap bit i is set exactly when small bin i is non-empty",
                );
            }
            let size = small_index2size(i);
            let mut p = head;
            let mut prev: *mut Chunk = core::ptr::null_mut();
            let mut count = 0usize;
            // SAFETY: each entry is validated before its links are followed.
            unsafe {
                while !p.is_null() {
                    self.check_bin_entry(p, size)?;
                    if (*p).bk != prev {
                        return fail(p, "small bin back link points at the previous entry");
                    }
                    count += 1;
                    if count > tally.small[i] {
                        return fail(p, "small bin holds exactly the free chunks of its size");
                    }
                    prev = p;
                    p = (*p).fd;
                }
            }
            if count != tally.small[i] {
                return fail(head, "small bin holds exactly the free chunks of its size");
            }
        }
        Ok(())
    }

    /// Is `p` in small bin `i` (a list of at most EXACT_SCAN_LIMIT entries,
    /// each already checked to lie in this heap)?
    ///
    /// # Safety
    /// The bin's entries must be readable.
    unsafe fn in_small_bin(&self, p: *mut Chunk, i: usize) -> bool {
        let mut q = self.small.heads[i];
        let mut n = 0;
        // SAFETY: entries were validated when the lengths were measured.
        unsafe {
            while !q.is_null() && n <= EXACT_SCAN_LIMIT {
                if q == p {
                    return true;
                }
                q = (*q).fd;
                n += 1;
            }
        }
        false
    }

    /// Finds free chunk `p` of `size` bytes in its tree by descending along
    /// its key.
    ///
    /// # Safety
    /// The tree's nodes must be readable (validated as they are visited).
    unsafe fn find_in_tree(&self, p: *mut Chunk, size: usize) -> Result<(), CheckError> {
        let i = compute_tree_index(size);
        let mut t = self.tree.roots[i];
        let mut depth = 0u32;
        // SAFETY: nodes are validated before being followed.
        unsafe {
            while !t.is_null() {
                if !self.in_my_segment(TreeChunk::as_chunk(t)) {
                    return fail(t, "tree node lies in a segment of this heap");
                }
                if TreeChunk::size(t) == size {
                    let mut r = t;
                    let mut guard = 0usize;
                    loop {
                        if TreeChunk::as_chunk(r) == p {
                            return Ok(());
                        }
                        r = TreeChunk::fd(r);
                        guard += 1;
                        if r == t || r.is_null() || guard > (1 << 30) {
                            break;
                        }
                    }
                    return fail(p, "free large chunk is in its tree bin");
                }
                if depth >= 64 {
                    break;
                }
                t = (*t).child[key_bit(size, i, depth) as usize];
                depth += 1;
            }
        }
        fail(p, "free large chunk is in its tree bin")
    }

    /// # Safety
    /// The heap's segments must have passed `check_segment`.
    unsafe fn check_tree_bins(&self, tally: &Tally) -> Result<(), CheckError> {
        for i in 0..NTREEBINS {
            let root = self.tree.roots[i];
            if self.tree.map & (1 << i) != 0 && root.is_null()
                || self.tree.map & (1 << i) == 0 && !root.is_null()
            {
                return fail(
                    i,
                    "treemap bit i is set exactly when tree bin i is non-empty",
                );
            }
            let mut count = 0usize;
            let mut err: Option<CheckError> = None;
            let lo = minsize_for_tree_index(i);
            let hi = if i + 1 < NTREEBINS {
                minsize_for_tree_index(i + 1)
            } else {
                usize::MAX
            };
            let marker = self.tree.root_marker(i);
            let mut visit = |t: *mut TreeChunk,
                             info: crate::heap::treebins::TreeNodeInfo|
             -> bool {
                let c = TreeChunk::as_chunk(t);
                let mut bad = |what| {
                    err = Some(CheckError {
                        addr: t as usize,
                        what,
                    });
                    false
                };
                if !self.in_my_segment(c) {
                    return bad("tree entry lies in a segment of this heap");
                }
                // SAFETY: t lies in a live segment of this heap.
                unsafe {
                    let size = TreeChunk::size(t);
                    if self.check_bin_entry(c, size).is_err() {
                        return bad("tree entry is a free chunk with a matching boundary tag");
                    }
                    if size < lo || size >= hi {
                        return bad("tree entry's size lies in its bin's range");
                    }
                    if TreeChunk::bk(TreeChunk::fd(t)) != t || TreeChunk::fd(TreeChunk::bk(t)) != t
                    {
                        return bad("tree ring links are mutual");
                    }
                    if info.is_node {
                        if (*t).index as usize != i {
                            return bad("tree node's index is its bin");
                        }
                        if info.depth == 0 && (*t).parent != marker {
                            return bad("root's parent is its bin slot");
                        }
                        for d in 0..info.depth {
                            if key_bit(size, i, d) != (info.path >> d) & 1 {
                                return bad("tree node hangs on the path of its key bits");
                            }
                        }
                        for dir in 0..2 {
                            let c = (*t).child[dir];
                            if !c.is_null() && (*c).parent != t {
                                return bad("child's parent link points back");
                            }
                        }
                    } else if !(*t).parent.is_null() {
                        return bad("ring members that are not the node have a null parent");
                    }
                    let mut r = TreeChunk::fd(t);
                    let mut guard = 0;
                    while r != t && guard < 3 {
                        if TreeChunk::size(r) != size {
                            return bad("ring members have equal sizes");
                        }
                        r = TreeChunk::fd(r);
                        guard += 1;
                    }
                }
                count += 1;
                count <= tally.tree[i]
            };
            // SAFETY: every visited node is validated by `visit` before the
            // walk follows its links.
            let completed = unsafe { self.tree.for_each_in_bin(i, &mut visit) };
            if let Some(e) = err {
                return Err(e);
            }
            if !completed || count != tally.tree[i] {
                return fail(root, "tree bin holds exactly the free chunks of its range");
            }
        }
        Ok(())
    }

    /// Verifies the list of direct chunks; returns the bytes they map.
    ///
    /// # Safety
    /// Headers are validated through the registry before they are read.
    unsafe fn check_direct(&self) -> Result<usize, CheckError> {
        let mut h = self.direct;
        let mut prev: *mut MmapHeader = core::ptr::null_mut();
        let mut count = 0;
        let mut bytes = 0;
        // SAFETY: each header's chunk page is vouched for by the registry
        // before the header is read beyond its link fields.
        unsafe {
            while !h.is_null() {
                if (*h).check != registry::key() ^ (h as usize) {
                    return fail(h, "mapping header check word matches");
                }
                if (*h).owner != self.owner() || (*h).prev != prev {
                    return fail(h, "mapping header owner and back link");
                }
                let p = MmapHeader::of_chunk_from_header(h);
                if !registry::is_direct(p as usize) {
                    return fail(p, "direct chunk is registered");
                }
                let head = Chunk::head(p);
                let offset = Chunk::prev_foot(p);
                if !head.is_mmapped()
                    || offset != (*h).chunk_offset
                    || MmapHeader::of_chunk(p) != h
                    || offset + head.size() + MMAP_FOOT_SIZE != (*h).map_size
                    || (p as usize + crate::heap::chunk::MEM_OFFSET) % MALLOC_ALIGNMENT != 0
                {
                    return fail(
                        p,
                        "direct chunk: no inuse bits, offset and size fill the mapping",
                    );
                }
                if Chunk::head(Chunk::plus_offset(p, head.size())).0 != Head::FENCEPOST {
                    return fail(p, "direct chunk is followed by a fencepost");
                }
                count += 1;
                bytes += (*h).map_size;
                if count > self.direct_count {
                    break;
                }
                prev = h;
                h = (*h).next;
            }
        }
        if count != self.direct_count || bytes != self.direct_bytes {
            return fail(self.direct, "direct_count and direct_bytes match the list");
        }
        Ok(bytes)
    }

    /// Verifies that the fresh part of top really is zero (up to a limit).
    ///
    /// # Safety
    /// Top must have passed `check_segment`.
    unsafe fn check_clean(&self) -> Result<(), CheckError> {
        let start = self
            .top_clean
            .max(self.top as usize + crate::heap::chunk::MEM_OFFSET);
        // SAFETY: top is a valid chunk of the top segment.
        let fence = unsafe { Segment::fencepost(self.top_seg) } as usize;
        let end = fence.min(start.saturating_add(CLEAN_SCAN_LIMIT));
        if end <= start {
            return Ok(());
        }
        // Both ends are 16-aligned (chunk headers and the fencepost are), so
        // the range is whole words: scan it a word at a time.
        debug_assert!(start % 8 == 0 && end % 8 == 0);
        // SAFETY: [start, end) lies inside top, which is committed, and is
        // 8-aligned; nothing writes it while the checker runs.
        let words = unsafe { core::slice::from_raw_parts(start as *const u64, (end - start) / 8) };
        if let Some(i) = words.iter().position(|&w| w != 0) {
            let byte = words[i]
                .to_le_bytes()
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(0);
            return fail(
                start + 8 * i + byte,
                "memory past the clean watermark of top is zero",
            );
        }
        Ok(())
    }
}
