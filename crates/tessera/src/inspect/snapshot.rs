//! Looking inside a heap: a walk over every segment and chunk, the role of
//! every byte, and snapshots (owned copies with raw page bytes) in a
//! documented text format.
//!
//! # Glossary
//! - **item**: one thing the walk reports: the heap state, a segment, a
//!   chunk (with its [`ChunkKind`]), or a direct mapping.
//! - **role**: what a byte *is* in the allocator's layout ([`Role`]), for
//!   the byte grid: header words, links, tree fields, payload, top, ...
//! - **snapshot**: the walk's items plus the raw bytes of chosen pages,
//!   enough to redraw those pages byte by byte.
//!
//! The walk and the text writer allocate nothing, so the C library can
//! write a snapshot of a live heap from inside the allocator. Owned
//! snapshots and the parser need the `std` feature.
//!
//! # Snapshot text format, version 1
//! One record per line, fields separated by single spaces; addresses in
//! lower-case hex with `0x`, sizes in decimal.
//! ```text
//! tessera-snapshot 1
//! heap state=0x.. state_size=N footprint=N max_footprint=N top=0x.. topsize=N dv=0x.. dvsize=N smallmap=0x.. treemap=0x.. mmap_threshold=N direct=N
//! segment base=0x.. committed=N reserved=N first=0x.. state=0|1
//! chunk 0x<addr> <size> 0x<head> <kind>      kind: inuse cached parked small:<i> tree:<i> dv top fence direct
//! direct header=0x.. map_size=N chunk=0x..
//! page 0x<addr> <8192 hex digits: the page's 4096 bytes>
//! end
//! ```
//! `heap` comes first; each `segment` is followed by its chunks in address
//! order, its fencepost last; each `direct` by its chunk and fencepost.
//! `page` lines may come in any order after the items.

use crate::heap::chunk::{Chunk, Head, MIN_CHUNK_SIZE};
use crate::heap::mapping::{MmapHeader, MMAP_FOOT_SIZE};
use crate::heap::mspace::Heap;
use crate::heap::segment::{Segment, SEG_HOLDS_STATE};
use crate::heap::smallbins::{is_small, small_index};
use crate::heap::state::State;
use crate::heap::treebins::compute_tree_index;
use crate::sys::os::PageSource;
use crate::sys::report::write_hex;

/// Bytes per page in snapshots and grids.
pub const PAGE: usize = 4096;

/// What a chunk is, as the heap sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// Handed out to the program.
    InUse,
    /// In use as far as the heap knows, parked in a thread cache (FLAG4,
    /// set while the snapshot is written).
    Cached,
    /// In use as far as the heap knows, parked on its arena's quick list
    /// for the next thread-cache refill (FLAG4, kept while parked).
    Parked,
    /// Free, in small bin `i`.
    SmallBin(u8),
    /// Free, in tree bin `i`.
    TreeBin(u8),
    /// Free, the designated victim.
    Dv,
    /// The top chunk.
    Top,
    /// The pseudo chunk that ends a segment or a direct mapping.
    Fencepost,
    /// A chunk with its own mapping.
    Direct,
}

impl ChunkKind {
    /// Is the chunk free (in a bin, dv or top)?
    pub fn is_free(self) -> bool {
        matches!(
            self,
            ChunkKind::SmallBin(_) | ChunkKind::TreeBin(_) | ChunkKind::Dv | ChunkKind::Top
        )
    }

    fn write(self, out: &mut Line) {
        match self {
            ChunkKind::InUse => out.str("inuse"),
            ChunkKind::Cached => out.str("cached"),
            ChunkKind::Parked => out.str("parked"),
            ChunkKind::SmallBin(i) => {
                out.str("small:");
                out.dec(i as usize);
            }
            ChunkKind::TreeBin(i) => {
                out.str("tree:");
                out.dec(i as usize);
            }
            ChunkKind::Dv => out.str("dv"),
            ChunkKind::Top => out.str("top"),
            ChunkKind::Fencepost => out.str("fence"),
            ChunkKind::Direct => out.str("direct"),
        }
    }

    /// Parses the text form written in snapshots.
    pub fn parse(s: &str) -> Option<ChunkKind> {
        Some(match s {
            "inuse" => ChunkKind::InUse,
            "cached" => ChunkKind::Cached,
            "parked" => ChunkKind::Parked,
            "dv" => ChunkKind::Dv,
            "top" => ChunkKind::Top,
            "fence" => ChunkKind::Fencepost,
            "direct" => ChunkKind::Direct,
            _ => {
                if let Some(i) = s.strip_prefix("small:") {
                    ChunkKind::SmallBin(i.parse().ok().filter(|&i: &u8| i < 32)?)
                } else if let Some(i) = s.strip_prefix("tree:") {
                    ChunkKind::TreeBin(i.parse().ok().filter(|&i: &u8| i < 32)?)
                } else {
                    return None;
                }
            }
        })
    }
}

/// One chunk of the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Address of the chunk (its prev_foot word).
    pub addr: usize,
    /// Bytes from `addr` to the next chunk (16 for fenceposts).
    pub size: usize,
    /// The raw head word.
    pub head: Head,
    /// What it is.
    pub kind: ChunkKind,
}

impl ChunkInfo {
    /// The user pointer.
    pub fn mem(&self) -> usize {
        self.addr + crate::heap::chunk::MEM_OFFSET
    }
}

/// One segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Base address (the segment record).
    pub base: usize,
    /// Readable bytes from the base.
    pub committed: usize,
    /// Reserved bytes from the base.
    pub reserved: usize,
    /// The first chunk.
    pub first_chunk: usize,
    /// Does it hold the heap state (between the record and the first chunk)?
    pub holds_state: bool,
}

/// One direct mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectInfo {
    /// The mapping header (start of the mapping).
    pub header: usize,
    /// Bytes mapped.
    pub map_size: usize,
    /// The chunk.
    pub chunk: usize,
}

/// The heap state's headline fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapInfo {
    /// Address of the state.
    pub state: usize,
    /// Bytes of the state.
    pub state_size: usize,
    /// Bytes obtained from the OS.
    pub footprint: usize,
    /// Peak footprint.
    pub max_footprint: usize,
    /// The top chunk.
    pub top: usize,
    /// Its size.
    pub topsize: usize,
    /// The designated victim (0 if none).
    pub dv: usize,
    /// Its size.
    pub dvsize: usize,
    /// Small bin bitmap.
    pub smallmap: u32,
    /// Tree bin bitmap.
    pub treemap: u32,
    /// Direct mapping threshold.
    pub mmap_threshold: usize,
    /// Number of direct chunks.
    pub direct: usize,
}

/// What the walk reports, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// First, once.
    Heap(HeapInfo),
    /// Before the segment's chunks.
    Segment(SegmentInfo),
    /// A chunk of the last segment or direct mapping reported.
    Chunk(ChunkInfo),
    /// Before the direct mapping's chunk.
    Direct(DirectInfo),
}

/// The role of a byte in the allocator's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A segment record (at a segment's base).
    SegmentRecord,
    /// The heap state (in the first segment, after the record).
    HeapState,
    /// A direct mapping's header.
    MmapHeader,
    /// First word of a chunk: the previous chunk's size if it is free, else
    /// the tail of its payload.
    PrevFoot,
    /// Second word: size and flags.
    Head,
    /// Payload of an in-use chunk (or of one parked in a thread cache).
    Payload,
    /// Forward link of a free chunk.
    Fd,
    /// Backward link of a free chunk.
    Bk,
    /// Left child of a tree chunk.
    Child0,
    /// Right child of a tree chunk.
    Child1,
    /// Parent of a tree chunk.
    Parent,
    /// Bin index of a tree chunk.
    Index,
    /// Unused bytes of a free chunk.
    Free,
    /// Whole pages of a purged free chunk: given back to the OS (they read
    /// as zero), the chunk kept.
    Purged,
    /// Bytes of the designated victim past its header.
    Dv,
    /// Bytes of top past its header.
    Top,
    /// A fencepost.
    Fencepost,
    /// Not part of any chunk we know (uncommitted, unmapped, alignment gap).
    Outside,
}

impl Role {
    /// Every role, in legend order.
    pub const ALL: [Role; 18] = [
        Role::SegmentRecord,
        Role::HeapState,
        Role::MmapHeader,
        Role::PrevFoot,
        Role::Head,
        Role::Payload,
        Role::Fd,
        Role::Bk,
        Role::Child0,
        Role::Child1,
        Role::Parent,
        Role::Index,
        Role::Free,
        Role::Purged,
        Role::Dv,
        Role::Top,
        Role::Fencepost,
        Role::Outside,
    ];

    /// Short name, as dlmalloc's field names where there is one.
    pub fn name(self) -> &'static str {
        match self {
            Role::SegmentRecord => "segment record",
            Role::HeapState => "heap state",
            Role::MmapHeader => "mmap header",
            Role::PrevFoot => "prev_foot",
            Role::Head => "head",
            Role::Payload => "payload",
            Role::Fd => "fd",
            Role::Bk => "bk",
            Role::Child0 => "child[0]",
            Role::Child1 => "child[1]",
            Role::Parent => "parent",
            Role::Index => "index",
            Role::Free => "free",
            Role::Purged => "purged",
            Role::Dv => "dv",
            Role::Top => "top",
            Role::Fencepost => "fencepost",
            Role::Outside => "outside",
        }
    }
}

/// The role of the byte `offset` bytes into `chunk`.
pub fn role_in_chunk(chunk: &ChunkInfo, offset: usize) -> Role {
    match chunk.kind {
        ChunkKind::Fencepost => return Role::Fencepost,
        _ if offset < 8 => return Role::PrevFoot,
        _ if offset < 16 => return Role::Head,
        _ => {}
    }
    match chunk.kind {
        ChunkKind::InUse | ChunkKind::Cached | ChunkKind::Parked | ChunkKind::Direct => {
            Role::Payload
        }
        ChunkKind::Top => Role::Top,
        ChunkKind::Dv => Role::Dv,
        ChunkKind::SmallBin(_) => match offset {
            16..=23 => Role::Fd,
            24..=31 => Role::Bk,
            _ => Role::Free,
        },
        ChunkKind::TreeBin(_) => match offset {
            16..=23 => Role::Fd,
            24..=31 => Role::Bk,
            32..=39 => Role::Child0,
            40..=47 => Role::Child1,
            48..=55 => Role::Parent,
            56..=59 => Role::Index,
            _ if chunk.head.flag4() && {
                let (start, end) = crate::heap::chunk::purgeable(chunk.addr, chunk.size);
                (start..end).contains(&(chunk.addr + offset))
            } =>
            {
                Role::Purged
            }
            _ => Role::Free,
        },
        ChunkKind::Fencepost => Role::Fencepost,
    }
}

impl<S: PageSource> State<S> {
    fn kind_of(&self, p: *mut Chunk, head: Head) -> ChunkKind {
        let size = head.size();
        if p == self.top {
            ChunkKind::Top
        } else if head.is_fencepost() {
            ChunkKind::Fencepost
        } else if head.cinuse() {
            if head.flag4() && self.is_parked(p, size) {
                ChunkKind::Parked
            } else if head.flag4() {
                ChunkKind::Cached
            } else {
                ChunkKind::InUse
            }
        } else if p == self.dv {
            ChunkKind::Dv
        } else if is_small(size) {
            ChunkKind::SmallBin(small_index(size) as u8)
        } else {
            ChunkKind::TreeBin(compute_tree_index(size) as u8)
        }
    }

    pub(crate) fn info(&self) -> HeapInfo {
        HeapInfo {
            state: self.owner() as usize,
            state_size: core::mem::size_of::<Self>(),
            footprint: self.footprint,
            max_footprint: self.max_footprint,
            top: self.top as usize,
            topsize: self.topsize,
            dv: self.dv as usize,
            dvsize: self.dvsize,
            smallmap: self.small.map,
            treemap: self.tree.map,
            mmap_threshold: self.config.mmap_threshold,
            direct: self.direct_count,
        }
    }

    /// Reports every item in order (see [`Item`]). Allocates nothing.
    pub(crate) fn walk(&self, f: &mut dyn FnMut(&Item)) {
        f(&Item::Heap(self.info()));
        // SAFETY: the heap is consistent between public calls; chunk sizes
        // are bounds-checked against the fencepost as the walk goes.
        unsafe {
            let mut seg = self.segments;
            while !seg.is_null() {
                let first = Segment::first_chunk(seg);
                f(&Item::Segment(SegmentInfo {
                    base: seg as usize,
                    committed: (*seg).committed,
                    reserved: (*seg).reserved,
                    first_chunk: first as usize,
                    holds_state: (*seg).flags & SEG_HOLDS_STATE != 0,
                }));
                let fence = Segment::fencepost(seg);
                let mut p = first;
                while p < fence {
                    let head = Chunk::head(p);
                    let size = head.size();
                    // (Top alone may be as small as its 16-byte header.)
                    let least = if p == self.top { 16 } else { MIN_CHUNK_SIZE };
                    if size < least || Chunk::plus_offset(p, size) > fence {
                        break; // corrupt; `check` says where
                    }
                    f(&Item::Chunk(ChunkInfo {
                        addr: p as usize,
                        size,
                        head,
                        kind: self.kind_of(p, head),
                    }));
                    p = Chunk::plus_offset(p, size);
                }
                f(&Item::Chunk(ChunkInfo {
                    addr: fence as usize,
                    size: crate::heap::segment::TOP_FOOT_SIZE,
                    head: Chunk::head(fence),
                    kind: ChunkKind::Fencepost,
                }));
                seg = (*seg).next;
            }
            let mut h = self.direct;
            while !h.is_null() {
                let p = MmapHeader::of_chunk_from_header(h);
                let head = Chunk::head(p);
                f(&Item::Direct(DirectInfo {
                    header: h as usize,
                    map_size: (*h).map_size,
                    chunk: p as usize,
                }));
                f(&Item::Chunk(ChunkInfo {
                    addr: p as usize,
                    size: head.size(),
                    head,
                    kind: ChunkKind::Direct,
                }));
                let fence = Chunk::plus_offset(p, head.size());
                f(&Item::Chunk(ChunkInfo {
                    addr: fence as usize,
                    size: MMAP_FOOT_SIZE,
                    head: Chunk::head(fence),
                    kind: ChunkKind::Fencepost,
                }));
                h = (*h).next;
            }
        }
    }

    /// Calls `f` with the address of each page a snapshot should carry, in
    /// priority order: the committed pages of each segment from its base,
    /// then the first and last page of each direct mapping.
    pub(crate) fn snapshot_pages(&self, f: &mut dyn FnMut(usize)) {
        // SAFETY: segment records and mapping headers of a consistent heap.
        unsafe {
            let mut seg = self.segments;
            while !seg.is_null() {
                let base = seg as usize;
                let mut a = base;
                while a < base + (*seg).committed {
                    f(a);
                    a += PAGE;
                }
                seg = (*seg).next;
            }
            let mut h = self.direct;
            while !h.is_null() {
                let start = h as usize;
                let last = start + (*h).map_size - PAGE;
                f(start);
                if last != start {
                    f(last);
                }
                h = (*h).next;
            }
        }
    }
}

/// Where snapshot text goes, without allocating (a file descriptor, a
/// `Vec`, ...).
pub trait Sink {
    /// Appends bytes. Errors are the sink's to remember.
    fn put(&mut self, bytes: &[u8]);
}

/// A line being assembled on the stack.
pub(crate) struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    // (shared with `trace`)
    pub(crate) fn new() -> Self {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }
    pub(crate) fn str(&mut self, s: &str) {
        let b = s.as_bytes();
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }
    pub(crate) fn hex(&mut self, x: usize) {
        self.str("0x");
        if self.len + 16 <= self.buf.len() {
            self.len += write_hex(&mut self.buf[self.len..], x);
        }
    }
    pub(crate) fn dec(&mut self, mut x: usize) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (x % 10) as u8;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        let n = tmp.len() - i;
        if self.len + n <= self.buf.len() {
            self.buf[self.len..self.len + n].copy_from_slice(&tmp[i..]);
            self.len += n;
        }
    }
    fn kv_hex(&mut self, k: &str, v: usize) {
        self.str(" ");
        self.str(k);
        self.str("=");
        self.hex(v);
    }
    fn kv_dec(&mut self, k: &str, v: usize) {
        self.str(" ");
        self.str(k);
        self.str("=");
        self.dec(v);
    }
    pub(crate) fn end(&mut self, sink: &mut dyn Sink) {
        self.str("\n");
        sink.put(&self.buf[..self.len]);
        self.len = 0;
    }
}

/// Writes one item as a snapshot line.
pub fn write_item(item: &Item, sink: &mut dyn Sink) {
    let mut l = Line::new();
    match *item {
        Item::Heap(h) => {
            l.str("heap");
            l.kv_hex("state", h.state);
            l.kv_dec("state_size", h.state_size);
            l.kv_dec("footprint", h.footprint);
            l.kv_dec("max_footprint", h.max_footprint);
            l.kv_hex("top", h.top);
            l.kv_dec("topsize", h.topsize);
            l.kv_hex("dv", h.dv);
            l.kv_dec("dvsize", h.dvsize);
            l.kv_hex("smallmap", h.smallmap as usize);
            l.kv_hex("treemap", h.treemap as usize);
            l.kv_dec("mmap_threshold", h.mmap_threshold);
            l.kv_dec("direct", h.direct);
        }
        Item::Segment(s) => {
            l.str("segment");
            l.kv_hex("base", s.base);
            l.kv_dec("committed", s.committed);
            l.kv_dec("reserved", s.reserved);
            l.kv_hex("first", s.first_chunk);
            l.kv_dec("state", s.holds_state as usize);
        }
        Item::Chunk(c) => {
            l.str("chunk ");
            l.hex(c.addr);
            l.str(" ");
            l.dec(c.size);
            l.str(" ");
            l.hex(c.head.0);
            l.str(" ");
            c.kind.write(&mut l);
        }
        Item::Direct(d) => {
            l.str("direct");
            l.kv_hex("header", d.header);
            l.kv_dec("map_size", d.map_size);
            l.kv_hex("chunk", d.chunk);
        }
    }
    l.end(sink);
}

/// Writes a `page` line for the 4096 bytes at `addr`.
pub fn write_page(addr: usize, bytes: &[u8; PAGE], sink: &mut dyn Sink) {
    let mut l = Line::new();
    l.str("page ");
    l.hex(addr);
    l.str(" ");
    sink.put(&l.buf[..l.len]);
    let mut hex = [0u8; 512];
    for chunk in bytes.chunks(256) {
        for (i, b) in chunk.iter().enumerate() {
            hex[2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
            hex[2 * i + 1] = b"0123456789abcdef"[(b & 15) as usize];
        }
        sink.put(&hex[..chunk.len() * 2]);
    }
    sink.put(b"\n");
}

/// Names the field of the heap state at `offset` bytes from the state's
/// start (as `HeapInfo::state` gives it), for viewers: `("small bin head",
/// Some(4))`, `("tree bin root", Some(0))`, `("top", None)`, ... None past
/// the fields viewers care about.
pub fn state_field(offset: usize) -> Option<(&'static str, Option<usize>)> {
    type St = State<crate::sys::os::Mmap>;
    use core::mem::{offset_of, size_of};
    let small = offset_of!(St, small);
    let tree = offset_of!(St, tree);
    let heads = small + offset_of!(crate::heap::smallbins::SmallBins, heads);
    let roots = tree + offset_of!(crate::heap::treebins::TreeBins, roots);
    let word = size_of::<usize>();
    let fields: [(usize, usize, &'static str); 12] = [
        (offset_of!(St, check), word, "check word"),
        (
            small + offset_of!(crate::heap::smallbins::SmallBins, map),
            4,
            "smallmap",
        ),
        (heads, 32 * word, "small bin head"),
        (
            tree + offset_of!(crate::heap::treebins::TreeBins, map),
            4,
            "treemap",
        ),
        (roots, 32 * word, "tree bin root"),
        (offset_of!(St, dvsize), word, "dvsize"),
        (offset_of!(St, topsize), word, "topsize"),
        (offset_of!(St, dv), word, "dv"),
        (offset_of!(St, top), word, "top"),
        (offset_of!(St, top_seg), word, "top segment"),
        (offset_of!(St, segments), word, "segment list"),
        (offset_of!(St, footprint), word, "footprint"),
    ];
    for (start, len, name) in fields {
        if offset >= start && offset < start + len {
            let index = match name {
                "small bin head" => Some((offset - heads) / word),
                "tree bin root" => Some((offset - roots) / word),
                _ => None,
            };
            return Some((name, index));
        }
    }
    None
}

/// The first line of every snapshot.
pub const SNAPSHOT_MAGIC: &str = "tessera-snapshot 1";

impl<S: PageSource> Heap<S> {
    /// Reports every segment, chunk and direct mapping in address order
    /// within each (see [`Item`]). Allocates nothing.
    pub fn walk(&self, f: &mut dyn FnMut(&Item)) {
        self.state().walk(f)
    }

    /// The role of every chunk-level structure, for one address: which chunk
    /// holds it (None if none does).
    pub fn chunk_at(&self, addr: usize) -> Option<ChunkInfo> {
        let mut found = None;
        self.walk(&mut |item| {
            if let Item::Chunk(c) = item {
                if addr >= c.addr && addr < c.addr + c.size {
                    found = Some(*c);
                }
            }
        });
        found
    }

    /// A copy of the 4 KiB page at `page` (page-aligned), if it lies in a
    /// committed part of a segment or in a direct mapping of this heap.
    pub fn read_page(&self, page: usize) -> Option<[u8; PAGE]> {
        if page % PAGE != 0 {
            return None;
        }
        let mut readable = false;
        self.walk(&mut |item| match *item {
            Item::Segment(s) if page >= s.base && page + PAGE <= s.base + s.committed => {
                readable = true
            }
            Item::Direct(d) if page >= d.header && page + PAGE <= d.header + d.map_size => {
                readable = true
            }
            _ => {}
        });
        // SAFETY: the page lies in memory this heap has mapped readable.
        readable.then(|| unsafe { *(page as *const [u8; PAGE]) })
    }

    /// Writes a snapshot of this heap in the text format (module docs) with
    /// at most `max_pages` pages of raw bytes. Allocates nothing.
    pub fn write_snapshot(&self, sink: &mut dyn Sink, max_pages: usize) {
        let st = self.state();
        sink.put(SNAPSHOT_MAGIC.as_bytes());
        sink.put(b"\n");
        st.walk(&mut |item| write_item(item, sink));
        let mut left = max_pages;
        st.snapshot_pages(&mut |addr| {
            if left > 0 {
                left -= 1;
                // SAFETY: every page `snapshot_pages` names is committed.
                let bytes = unsafe { &*(addr as *const [u8; PAGE]) };
                write_page(addr, bytes, sink);
            }
        });
        sink.put(b"end\n");
    }
}

#[cfg(feature = "std")]
pub use owned::*;

#[cfg(feature = "std")]
mod owned {
    use super::*;
    use crate::heap::segment::SEGMENT_HEADER;
    use std::collections::BTreeMap;
    use std::string::String;
    use std::vec::Vec;

    /// An owned copy of a heap's layout and of some of its pages.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Snapshot {
        /// The state's headline fields.
        pub heap: HeapInfo,
        /// Every segment.
        pub segments: Vec<SegmentInfo>,
        /// Every direct mapping.
        pub directs: Vec<DirectInfo>,
        /// Every chunk (fenceposts and direct chunks included), sorted by address.
        pub chunks: Vec<ChunkInfo>,
        /// Raw bytes of the captured pages, by page address.
        pub pages: BTreeMap<usize, Box<[u8; PAGE]>>,
    }

    /// A snapshot that could not be parsed: the line and what is wrong.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ParseError {
        /// 1-based line number.
        pub line: usize,
        /// What is wrong.
        pub msg: String,
    }

    impl std::fmt::Display for ParseError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "line {}: {}", self.line, self.msg)
        }
    }

    impl std::error::Error for ParseError {}

    /// A `Sink` into a growable buffer.
    impl Sink for Vec<u8> {
        fn put(&mut self, bytes: &[u8]) {
            self.extend_from_slice(bytes);
        }
    }

    impl<S: PageSource> Heap<S> {
        /// An owned snapshot of this heap with the raw bytes of up to
        /// `max_pages` pages (see [`Snapshot::capture`]).
        pub fn snapshot(&self, max_pages: usize) -> Snapshot {
            Snapshot::capture(self, max_pages)
        }
    }

    impl Snapshot {
        /// Captures `heap` with up to `max_pages` pages of bytes.
        pub fn capture<S: PageSource>(heap: &Heap<S>, max_pages: usize) -> Snapshot {
            let mut snap = Snapshot::default();
            heap.walk(&mut |item| snap.push(*item));
            let mut left = max_pages;
            heap.state().snapshot_pages(&mut |addr| {
                if left > 0 {
                    left -= 1;
                    // SAFETY: every page `snapshot_pages` names is committed.
                    let bytes = unsafe { *(addr as *const [u8; PAGE]) };
                    snap.pages.insert(addr, Box::new(bytes));
                }
            });
            snap.chunks.sort_by_key(|c| c.addr);
            snap
        }

        fn push(&mut self, item: Item) {
            match item {
                Item::Heap(h) => self.heap = h,
                Item::Segment(s) => self.segments.push(s),
                Item::Direct(d) => self.directs.push(d),
                Item::Chunk(c) => self.chunks.push(c),
            }
        }

        /// The chunk whose bytes include `addr`.
        pub fn chunk_at(&self, addr: usize) -> Option<&ChunkInfo> {
            let i = self.chunks.partition_point(|c| c.addr <= addr);
            let c = self.chunks.get(i.checked_sub(1)?)?;
            (addr < c.addr + c.size).then_some(c)
        }

        /// The chunks that overlap the page at `page` (page-aligned).
        pub fn chunks_on_page(&self, page: usize) -> &[ChunkInfo] {
            let lo = self.chunks.partition_point(|c| c.addr + c.size <= page);
            let hi = self.chunks.partition_point(|c| c.addr < page + PAGE);
            &self.chunks[lo..hi.max(lo)]
        }

        /// The role of the byte at `addr`.
        pub fn role_at(&self, addr: usize) -> Role {
            if let Some(c) = self.chunk_at(addr) {
                return role_in_chunk(c, addr - c.addr);
            }
            for s in &self.segments {
                if addr >= s.base && addr < s.first_chunk {
                    return if addr < s.base + SEGMENT_HEADER {
                        Role::SegmentRecord
                    } else if s.holds_state {
                        Role::HeapState
                    } else {
                        Role::Outside
                    };
                }
            }
            for d in &self.directs {
                if addr >= d.header && addr < d.chunk {
                    return if addr < d.header + core::mem::size_of::<MmapHeader>() {
                        Role::MmapHeader
                    } else {
                        Role::Outside
                    };
                }
            }
            Role::Outside
        }

        /// The captured bytes of the page at `page` (page-aligned).
        pub fn page(&self, page: usize) -> Option<&[u8; PAGE]> {
            self.pages.get(&page).map(|b| &**b)
        }

        /// The 8-byte word at `addr` (8-aligned), if its page was captured.
        pub fn word(&self, addr: usize) -> Option<usize> {
            let page = self.page(addr & !(PAGE - 1))?;
            let off = addr & (PAGE - 1);
            let bytes: [u8; 8] = page.get(off..off + 8)?.try_into().ok()?;
            Some(usize::from_le_bytes(bytes))
        }

        /// The snapshot in the text format.
        pub fn to_text(&self) -> String {
            let mut out: Vec<u8> = Vec::new();
            out.extend_from_slice(SNAPSHOT_MAGIC.as_bytes());
            out.push(b'\n');
            write_item(&Item::Heap(self.heap), &mut out);
            for s in &self.segments {
                write_item(&Item::Segment(*s), &mut out);
                let end = s.base + s.committed;
                for c in self
                    .chunks
                    .iter()
                    .filter(|c| c.addr >= s.base && c.addr < end)
                {
                    write_item(&Item::Chunk(*c), &mut out);
                }
            }
            for d in &self.directs {
                write_item(&Item::Direct(*d), &mut out);
                let end = d.header + d.map_size;
                for c in self
                    .chunks
                    .iter()
                    .filter(|c| c.addr >= d.header && c.addr < end)
                {
                    write_item(&Item::Chunk(*c), &mut out);
                }
            }
            for (&addr, bytes) in &self.pages {
                write_page(addr, bytes, &mut out);
            }
            out.extend_from_slice(b"end\n");
            String::from_utf8(out).expect("snapshot text is ASCII")
        }

        /// Parses the text format. Errors name the line and the problem.
        pub fn parse(text: &str) -> Result<Snapshot, ParseError> {
            let mut snap = Snapshot::default();
            let mut lines = text.lines().enumerate();
            let err = |line: usize, msg: String| ParseError {
                line: line + 1,
                msg,
            };
            match lines.next() {
                Some((_, l)) if l.trim_end() == SNAPSHOT_MAGIC => {}
                Some((n, l)) => {
                    return Err(err(
                        n,
                        format!("expected `{SNAPSHOT_MAGIC}`, found `{}`", clip(l)),
                    ))
                }
                None => return Err(err(0, "empty file: expected a snapshot".into())),
            }
            let mut saw_heap = false;
            let mut ended = false;
            for (n, line) in lines {
                let line = line.trim_end();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if ended {
                    return Err(err(n, "text after `end`".into()));
                }
                let mut words = line.split(' ');
                let tag = words.next().unwrap_or("");
                let rest: Vec<&str> = words.collect();
                let r = match tag {
                    "heap" => parse_heap(&rest).map(|h| {
                        saw_heap = true;
                        snap.heap = h
                    }),
                    "segment" => parse_segment(&rest).map(|s| snap.segments.push(s)),
                    "direct" => parse_direct(&rest).map(|d| snap.directs.push(d)),
                    "chunk" => parse_chunk(&rest).map(|c| snap.chunks.push(c)),
                    "page" => parse_page(&rest).map(|(a, b)| {
                        snap.pages.insert(a, b);
                    }),
                    "end" => {
                        ended = true;
                        Ok(())
                    }
                    other => Err(format!("unknown record `{}`", clip(other))),
                };
                r.map_err(|m| err(n, m))?;
            }
            if !saw_heap {
                return Err(err(0, "no `heap` line".into()));
            }
            if !ended {
                return Err(err(
                    text.lines().count().saturating_sub(1),
                    "missing `end` (truncated file?)".into(),
                ));
            }
            snap.chunks.sort_by_key(|c| c.addr);
            for w in snap.chunks.windows(2) {
                if w[0].addr + w[0].size > w[1].addr {
                    return Err(err(
                        0,
                        format!("chunks at {:#x} and {:#x} overlap", w[0].addr, w[1].addr),
                    ));
                }
            }
            Ok(snap)
        }
    }

    fn clip(s: &str) -> &str {
        match s.char_indices().nth(40) {
            Some((i, _)) => &s[..i],
            None => s,
        }
    }

    fn num(s: &str) -> Result<usize, String> {
        let r = if let Some(h) = s.strip_prefix("0x") {
            usize::from_str_radix(h, 16)
        } else {
            s.parse()
        };
        r.map_err(|_| format!("`{}` is not a number", clip(s)))
    }

    /// Reads `key=value` fields into a lookup function.
    fn fields<'a>(rest: &'a [&'a str]) -> impl Fn(&str) -> Result<usize, String> + 'a {
        move |key: &str| {
            for f in rest {
                if let Some((k, v)) = f.split_once('=') {
                    if k == key {
                        return num(v);
                    }
                }
            }
            Err(format!("missing field `{key}`"))
        }
    }

    fn parse_heap(rest: &[&str]) -> Result<HeapInfo, String> {
        let f = fields(rest);
        Ok(HeapInfo {
            state: f("state")?,
            state_size: f("state_size")?,
            footprint: f("footprint")?,
            max_footprint: f("max_footprint")?,
            top: f("top")?,
            topsize: f("topsize")?,
            dv: f("dv")?,
            dvsize: f("dvsize")?,
            smallmap: f("smallmap")? as u32,
            treemap: f("treemap")? as u32,
            mmap_threshold: f("mmap_threshold")?,
            direct: f("direct")?,
        })
    }

    fn parse_segment(rest: &[&str]) -> Result<SegmentInfo, String> {
        let f = fields(rest);
        Ok(SegmentInfo {
            base: f("base")?,
            committed: f("committed")?,
            reserved: f("reserved")?,
            first_chunk: f("first")?,
            holds_state: f("state")? != 0,
        })
    }

    fn parse_direct(rest: &[&str]) -> Result<DirectInfo, String> {
        let f = fields(rest);
        Ok(DirectInfo {
            header: f("header")?,
            map_size: f("map_size")?,
            chunk: f("chunk")?,
        })
    }

    fn parse_chunk(rest: &[&str]) -> Result<ChunkInfo, String> {
        let [addr, size, head, kind] = rest else {
            return Err("a chunk line has 4 fields: address size head kind".into());
        };
        let c = ChunkInfo {
            addr: num(addr)?,
            size: num(size)?,
            head: Head(num(head)?),
            kind: ChunkKind::parse(kind)
                .ok_or_else(|| format!("unknown chunk kind `{}`", clip(kind)))?,
        };
        if c.size == 0 || c.addr % 16 != 0 {
            return Err(format!("chunk {:#x}: size 0 or misaligned", c.addr));
        }
        Ok(c)
    }

    fn parse_page(rest: &[&str]) -> Result<(usize, Box<[u8; PAGE]>), String> {
        let [addr, hex] = rest else {
            return Err("a page line has 2 fields: address and hex bytes".into());
        };
        let addr = num(addr)?;
        if addr % PAGE != 0 {
            return Err(format!("page address {addr:#x} is not page-aligned"));
        }
        if hex.len() != 2 * PAGE {
            return Err(format!(
                "page {addr:#x} has {} hex digits, expected {}",
                hex.len(),
                2 * PAGE
            ));
        }
        let mut bytes = Box::new([0u8; PAGE]);
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(format!(
                "page {addr:#x}: `{}` is not a hex digit",
                c as char
            )),
        };
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            bytes[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok((addr, bytes))
    }
}
