//! The one model the three walkers report into: chunks with a kind, a raw
//! head and their link words, the bins they make, and the page bytes seen
//! at each step. `crate::film` turns it into the grid's page views
//! ([`tessera_viz::PageView`]), so one renderer draws all three heaps.
//!
//! # Glossary
//! - **base**: where a heap's chunks start, the origin of *offsets*:
//!   Tessera's first chunk (after its segment record and state), the
//!   dlmalloc segment's first chunk, and in glibc the chunk after the
//!   `tcache_perthread_struct` (the first one a program gets).
//! - **picture**: one heap after one step: its chunks, bins and notes,
//!   and the bytes of the pages the step could have changed.
//! - **free to the program**: every chunk the program has given back,
//!   whether the allocator merged it (a bin, dv, top) or keeps it as it
//!   was (glibc's tcache and fastbins, Tessera's thread caches).

use crate::core::{ChunkKind, Head, PAGE};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::rc::Rc;
use tessera_viz::page::{Drawn, Field, Label};
use tessera_viz::ByteRole;

/// The three allocators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    /// Tessera's own `Heap`.
    Tessera,
    /// dlmalloc 2.8.6 through the `dlmalloc` crate.
    Dlmalloc,
    /// glibc's malloc (ptmalloc2), in a child process.
    Glibc,
}

impl Who {
    /// All three, in panel order.
    pub const ALL: [Who; 3] = [Who::Tessera, Who::Dlmalloc, Who::Glibc];

    /// The panel title.
    pub fn name(self) -> &'static str {
        match self {
            Who::Tessera => "Tessera",
            Who::Dlmalloc => "dlmalloc 2.8.6",
            Who::Glibc => "glibc",
        }
    }
}

/// What a chunk is, in any of the three heaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Handed out to the program.
    InUse,
    /// dlmalloc/Tessera: free in small bin `i` (size `8 i`).
    SmallBin(u8),
    /// dlmalloc/Tessera: free in tree bin `i`.
    TreeBin(u8),
    /// dlmalloc/Tessera: the designated victim.
    Dv,
    /// The top chunk.
    Top,
    /// Fencepost words closing a segment or mapping.
    Fencepost,
    /// dlmalloc: the `TOP_FOOT_SIZE` bytes after top, room for a segment
    /// record (only their head word, the value 80, is written).
    TopFoot,
    /// dlmalloc: the in-use chunk holding an older segment's record.
    SegmentRecord,
    /// Tessera: a chunk with its own mapping.
    Direct,
    /// Tessera: in a thread cache.
    Cached,
    /// Tessera: on an arena's quick list.
    Parked,
    /// glibc: the `tcache_perthread_struct`.
    TcacheStruct,
    /// glibc: in tcache bin `i` (chunk size `32 + 16 i`).
    Tcache(u8),
    /// glibc: in fastbin `i` (chunk size `32 + 16 i`).
    Fastbin(u8),
    /// glibc: in the unsorted bin.
    Unsorted,
    /// glibc: in small bin `i` (2..=63; chunk size `16 i`).
    GlibcSmall(u8),
    /// glibc: in large bin `i` (64..=126).
    GlibcLarge(u8),
    /// glibc: a chunk with its own mapping (IS_MMAPPED).
    Mmapped,
}

impl Kind {
    /// Free from the program's point of view.
    pub fn free(self) -> bool {
        matches!(
            self,
            Kind::SmallBin(_)
                | Kind::TreeBin(_)
                | Kind::Dv
                | Kind::Top
                | Kind::Cached
                | Kind::Parked
                | Kind::Tcache(_)
                | Kind::Fastbin(_)
                | Kind::Unsorted
                | Kind::GlibcSmall(_)
                | Kind::GlibcLarge(_)
        )
    }

    /// A free chunk merged with its free neighbours (bins, dv, top),
    /// rather than kept as the program freed it (caches, fastbins).
    pub fn merged(self) -> bool {
        matches!(
            self,
            Kind::SmallBin(_)
                | Kind::TreeBin(_)
                | Kind::Dv
                | Kind::Top
                | Kind::Unsorted
                | Kind::GlibcSmall(_)
                | Kind::GlibcLarge(_)
        )
    }

    /// Bookkeeping rather than a block: fenceposts, feet, records, the
    /// tcache struct.
    pub fn bookkeeping(self) -> bool {
        matches!(
            self,
            Kind::Fencepost | Kind::TopFoot | Kind::SegmentRecord | Kind::TcacheStruct
        )
    }

    /// Where the chunk is kept, in words.
    pub fn text(self) -> String {
        match self {
            Kind::InUse => "in use".into(),
            Kind::SmallBin(i) => format!("small bin {i}"),
            Kind::TreeBin(i) => tessera_viz::page::kind_text(ChunkKind::TreeBin(i)),
            Kind::Dv => "dv".into(),
            Kind::Top => "top".into(),
            Kind::Fencepost => "fencepost".into(),
            Kind::TopFoot => "top foot (TOP_FOOT_SIZE)".into(),
            Kind::SegmentRecord => "segment record".into(),
            Kind::Direct => "direct (mmapped)".into(),
            Kind::Cached => "cached (in a thread cache)".into(),
            Kind::Parked => "parked (on the arena's quick list)".into(),
            Kind::TcacheStruct => "tcache_perthread_struct".into(),
            Kind::Tcache(i) => format!("tcache bin {i} ({} B)", 32 + 16 * i as usize),
            Kind::Fastbin(i) => format!("fastbin {i} ({} B)", 32 + 16 * i as usize),
            Kind::Unsorted => "unsorted bin".into(),
            Kind::GlibcSmall(i) => format!("small bin {i} ({} B)", 16 * i as usize),
            Kind::GlibcLarge(i) => format!("large bin {i}"),
            Kind::Mmapped => "mmapped".into(),
        }
    }

    /// The bin a bins panel counts the chunk in (None: not a bin).
    pub fn bin(self) -> Option<(u32, String)> {
        // The number orders the panel's rows.
        Some(match self {
            Kind::Tcache(i) => (i as u32, format!("tcache {i}")),
            Kind::Fastbin(i) => (100 + i as u32, format!("fastbin {i}")),
            Kind::Unsorted => (200, "unsorted".into()),
            Kind::SmallBin(i) => (300 + i as u32, format!("small {i}")),
            Kind::GlibcSmall(i) => (300 + i as u32, format!("small {i}")),
            Kind::TreeBin(i) => (400 + i as u32, format!("tree {i}")),
            Kind::GlibcLarge(i) => (400 + i as u32, format!("large {i}")),
            Kind::Dv => (500, "dv".into()),
            Kind::Cached => (600, "thread cache".into()),
            Kind::Parked => (601, "quick lists".into()),
            Kind::Top => (700, "top".into()),
            _ => return None,
        })
    }

    /// The nearest Tessera kind (for the parts of the grid that need one).
    pub fn core(self) -> ChunkKind {
        match self {
            Kind::SmallBin(i) => ChunkKind::SmallBin(i),
            Kind::TreeBin(i) => ChunkKind::TreeBin(i),
            Kind::Dv => ChunkKind::Dv,
            Kind::Top => ChunkKind::Top,
            Kind::Fencepost | Kind::TopFoot => ChunkKind::Fencepost,
            Kind::Direct | Kind::Mmapped => ChunkKind::Direct,
            Kind::Cached | Kind::Tcache(_) => ChunkKind::Cached,
            Kind::Parked | Kind::Fastbin(_) => ChunkKind::Parked,
            Kind::Unsorted | Kind::GlibcSmall(_) => ChunkKind::SmallBin(0),
            Kind::GlibcLarge(_) => ChunkKind::TreeBin(0),
            Kind::InUse | Kind::SegmentRecord | Kind::TcacheStruct => ChunkKind::InUse,
        }
    }

    /// The role of the chunk's bytes past its header and links.
    pub fn body(self) -> ByteRole {
        use crate::core::Role;
        match self {
            Kind::InUse | Kind::Direct | Kind::Mmapped | Kind::Cached | Kind::Parked => {
                ByteRole::Core(Role::Payload)
            }
            Kind::SegmentRecord => ByteRole::Core(Role::SegmentRecord),
            Kind::TcacheStruct => ByteRole::Tcache,
            Kind::Dv => ByteRole::Core(Role::Dv),
            Kind::Top => ByteRole::Core(Role::Top),
            Kind::Fencepost | Kind::TopFoot => ByteRole::Core(Role::Fencepost),
            _ => ByteRole::Core(Role::Free),
        }
    }
}

/// A word a chunk keeps past its header (links, tree fields, tcache key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The field's name as its allocator spells it.
    pub name: &'static str,
    /// Offset from the chunk.
    pub offset: usize,
    /// Bytes (8, or 4 for a tree chunk's index).
    pub len: usize,
    /// The value, demangled where the allocator mangles it (glibc's
    /// safe-linking).
    pub value: usize,
}

impl Link {
    /// The role of the link's bytes on the grid.
    pub fn role(&self) -> ByteRole {
        use crate::core::Role;
        match self.name {
            "fd" | "next" => ByteRole::Core(Role::Fd),
            "bk" => ByteRole::Core(Role::Bk),
            "child[0]" => ByteRole::Core(Role::Child0),
            "child[1]" => ByteRole::Core(Role::Child1),
            "parent" => ByteRole::Core(Role::Parent),
            "index" => ByteRole::Core(Role::Index),
            "key" => ByteRole::Key,
            "fd_nextsize" => ByteRole::FdNextsize,
            "bk_nextsize" => ByteRole::BkNextsize,
            _ => ByteRole::Core(Role::Free),
        }
    }
}

/// One chunk of a walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Its address (the prev_foot / prev_size word).
    pub addr: usize,
    /// Bytes to the next chunk.
    pub size: usize,
    /// The raw head word.
    pub head: usize,
    /// What it is.
    pub kind: Kind,
    /// Its link words.
    pub links: Vec<Link>,
}

impl Chunk {
    /// The user pointer.
    pub fn mem(&self) -> usize {
        self.addr + 16
    }

    /// One past its last byte.
    pub fn end(&self) -> usize {
        self.addr + self.size
    }
}

/// How an allocator's head word encodes its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flags {
    /// Tessera: dlmalloc's bits plus a tag in bits 48..63.
    Tessera,
    /// dlmalloc: PINUSE (1), CINUSE (2), FLAG4 (4).
    Dlmalloc,
    /// glibc: PREV_INUSE (1), IS_MMAPPED (2), NON_MAIN_ARENA (4).
    Glibc,
}

/// `0x31 = 48 | PREV_INUSE`: a head word decoded.
pub fn head_text(head: usize, flags: Flags) -> String {
    match flags {
        Flags::Tessera => tessera_viz::page::head_text(Head(head)),
        Flags::Dlmalloc => {
            let mut s = format!("{head:#x} = {}", head & !7);
            for (bit, name) in [(1, "P"), (2, "C"), (4, "4")] {
                if head & bit != 0 {
                    let _ = write!(s, " | {name}");
                }
            }
            s
        }
        Flags::Glibc => {
            let mut s = format!("{head:#x} = {}", head & !7);
            for (bit, name) in [(1, "PREV_INUSE"), (2, "IS_MMAPPED"), (4, "NON_MAIN_ARENA")] {
                if head & bit != 0 {
                    let _ = write!(s, " | {name}");
                }
            }
            s
        }
    }
}

/// One non-empty bin in a bins panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinRow {
    /// `tcache 1`, `small 6`, `tree 0`, `dv`, `top`, ...
    pub name: String,
    /// The chunk sizes it holds (`48 B`, `256..383`).
    pub sizes: String,
    /// Chunks in it.
    pub count: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// The bins panel of a chunk list: every bin that holds a chunk, in
/// panel order (thread caches, fastbins, unsorted, small, large/tree, dv,
/// top).
pub fn bins_of(chunks: &[Chunk]) -> Vec<BinRow> {
    let mut rows: BTreeMap<u32, BinRow> = BTreeMap::new();
    for c in chunks {
        let Some((order, name)) = c.kind.bin() else {
            continue;
        };
        let sizes = match c.kind {
            Kind::TreeBin(i) => {
                let (lo, hi) = tessera_viz::page::tree_bin_range(i);
                if hi == usize::MAX {
                    format!("{lo}..")
                } else {
                    format!("{lo}..{hi}")
                }
            }
            Kind::GlibcLarge(_) => "large".into(),
            Kind::Dv | Kind::Top | Kind::Cached | Kind::Parked | Kind::Unsorted => "any".into(),
            _ => format!("{} B", c.size),
        };
        let row = rows.entry(order).or_insert(BinRow {
            name,
            sizes,
            count: 0,
            bytes: 0,
        });
        row.count += 1;
        row.bytes += c.size;
    }
    rows.into_values().collect()
}

/// One heap after one step.
#[derive(Clone, Debug)]
pub struct Picture {
    /// Whose heap.
    pub who: Who,
    /// Every chunk, by address.
    pub chunks: Vec<Chunk>,
    /// The origin of offsets (see the module docs).
    pub base: usize,
    /// The allocator's own bookkeeping that links point into (the heap
    /// state, `main_arena`), and its name.
    pub state: (usize, usize, &'static str),
    /// Bytes outside every chunk that have a role (segment record, heap
    /// state): `(start, end, role)`.
    pub areas: Vec<(usize, usize, ByteRole)>,
    /// What the walker could not read and inferred instead, and other
    /// remarks on this heap.
    pub notes: Vec<String>,
    /// The page bytes as of this step (shared with earlier pictures where
    /// unchanged).
    pub pages: BTreeMap<usize, Rc<[u8; PAGE]>>,
    /// Pages whose bytes changed at this step.
    pub changed: BTreeSet<usize>,
}

impl Picture {
    /// The chunk holding `addr`.
    pub fn chunk_at(&self, addr: usize) -> Option<&Chunk> {
        let i = self.chunks.partition_point(|c| c.addr <= addr);
        let c = self.chunks.get(i.checked_sub(1)?)?;
        (addr < c.end()).then_some(c)
    }

    /// How the allocator encodes head flags.
    pub fn flags(&self) -> Flags {
        match self.who {
            Who::Tessera => Flags::Tessera,
            Who::Dlmalloc => Flags::Dlmalloc,
            Who::Glibc => Flags::Glibc,
        }
    }

    /// The role of a byte no chunk covers.
    pub fn outside_role(&self, addr: usize) -> ByteRole {
        for &(lo, hi, r) in &self.areas {
            if addr >= lo && addr < hi {
                return r;
            }
        }
        ByteRole::Core(crate::core::Role::Outside)
    }

    /// The chunks as the grid draws them, with the program's requests
    /// (user pointer -> bytes asked) and notes on differences by chunk
    /// address.
    pub fn drawn(
        &self,
        requests: &BTreeMap<usize, usize>,
        notes: &BTreeMap<usize, String>,
    ) -> Vec<Drawn> {
        let flags = self.flags();
        self.chunks
            .iter()
            .map(|c| {
                let whole =
                    matches!(c.kind, Kind::Fencepost | Kind::TopFoot).then(|| c.kind.body());
                Drawn {
                    info: crate::core::ChunkInfo {
                        addr: c.addr,
                        size: c.size,
                        head: Head(c.head),
                        kind: c.kind.core(),
                    },
                    label: Label {
                        kind: c.kind.text(),
                        head: head_text(c.head, flags),
                        free: c.kind.free(),
                        note: notes.get(&c.addr).cloned(),
                    },
                    roles: c
                        .links
                        .iter()
                        .map(|l| (l.offset, l.len, l.role()))
                        .collect(),
                    body: c.kind.body(),
                    whole,
                    fields: c
                        .links
                        .iter()
                        .map(|l| Field {
                            name: l.name,
                            offset: l.offset,
                            value: l.value,
                        })
                        .collect(),
                    requested: (c.kind == Kind::InUse
                        || c.kind == Kind::Direct
                        || c.kind == Kind::Mmapped)
                        .then(|| requests.get(&c.mem()).copied())
                        .flatten(),
                }
            })
            .collect()
    }
}

/// Pages a picture should carry: every page a chunk touches while they
/// are at most [`TRACK_ALL_PAGES`]; past that, only the pages holding
/// chunk headers, links and boundary tags.
pub fn pages_to_track(chunks: &[Chunk]) -> BTreeSet<usize> {
    let mut all = BTreeSet::new();
    for c in chunks {
        let mut p = c.addr & !(PAGE - 1);
        while p < c.end() && all.len() <= TRACK_ALL_PAGES {
            all.insert(p);
            p += PAGE;
        }
    }
    if all.len() <= TRACK_ALL_PAGES {
        return all;
    }
    let mut some = BTreeSet::new();
    for c in chunks {
        some.insert(c.addr & !(PAGE - 1));
        some.insert((c.addr + 63).min(c.end() - 1) & !(PAGE - 1));
        some.insert((c.end() - 1) & !(PAGE - 1));
    }
    some
}

/// Most pages tracked in full (16 MiB).
pub const TRACK_ALL_PAGES: usize = 4096;

/// The latest bytes of every tracked page, shared between pictures.
#[derive(Default)]
pub struct PageTracker {
    latest: BTreeMap<usize, Rc<[u8; PAGE]>>,
}

impl PageTracker {
    /// Reads `pages` with `read` (None: not readable), keeps them, forgets
    /// the others, and returns the pages (with their bytes) and those
    /// whose bytes are new or changed.
    pub fn update(
        &mut self,
        pages: &BTreeSet<usize>,
        read: &mut dyn FnMut(usize) -> Option<[u8; PAGE]>,
    ) -> (BTreeMap<usize, Rc<[u8; PAGE]>>, BTreeSet<usize>) {
        let mut next = BTreeMap::new();
        let mut changed = BTreeSet::new();
        for &p in pages {
            let Some(bytes) = read(p) else { continue };
            match self.latest.get(&p) {
                Some(old) if **old == bytes => {
                    next.insert(p, old.clone());
                }
                _ => {
                    changed.insert(p);
                    next.insert(p, Rc::new(bytes));
                }
            }
        }
        self.latest = next.clone();
        (next, changed)
    }
}
