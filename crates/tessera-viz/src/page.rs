//! One 4 KiB page as the grid draws it: 4096 cells with their role, value
//! and chunk, and the chunks that touch the page with their decoded heads.
//!
//! # Glossary
//! - **cell**: one byte of the page; cell `i` is the byte at `page + i`,
//!   `0 <= i < 4096`. Row `r` of the grid holds cells `32 r .. 32 r + 31`.
//! - **requests**: the sizes the program asked for, by user pointer. Only a
//!   replay knows them; with them, payload bytes past the request are drawn
//!   as slack.

use crate::role::ByteRole;
use std::collections::HashMap;
use tessera::heap::chunk::{Head, MEM_OFFSET};
use tessera::heap::treebins::minsize_for_tree_index;
use tessera::inspect::{ChunkInfo, ChunkKind, Role, PAGE};
use tessera::Snapshot;

/// Cells in a grid row.
pub const COLS: usize = 32;
/// Rows in a page's grid.
pub const ROWS: usize = PAGE / COLS;

/// Requested sizes by user pointer (`Replayer::requested_sizes`).
pub type Requests = HashMap<usize, usize>;

/// The page that contains `addr`.
pub fn page_of(addr: usize) -> usize {
    addr & !(PAGE - 1)
}

/// One byte of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// What the byte is.
    pub role: ByteRole,
    /// Its value, if the page's bytes were captured.
    pub value: Option<u8>,
    /// Index into [`PageView::chunks`] of the chunk that holds it.
    pub chunk: Option<u16>,
}

/// A word a free chunk keeps in its body (fd, bk, tree fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name as dlmalloc spells it.
    pub name: &'static str,
    /// Offset from the chunk.
    pub offset: usize,
    /// The value read from the captured bytes.
    pub value: usize,
}

/// A chunk that touches the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRow {
    /// The chunk as the walk reported it.
    pub info: ChunkInfo,
    /// Offset of the chunk from the page (negative if it starts before).
    pub cell: isize,
    /// What the program asked for, if known.
    pub requested: Option<usize>,
    /// The link fields of a free chunk in a bin, if their bytes were captured.
    pub fields: Vec<Field>,
    /// How another allocator's walker describes the chunk (the comparison
    /// of `tessera compare`); None for Tessera's own chunks, which the
    /// core's kinds and head describe.
    pub label: Option<Label>,
}

/// Another allocator's words for a chunk: its place, its head decoded
/// with that allocator's flag bits, and a difference to point out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Where the chunk is kept (`tcache bin 1 (48 B)`, `fastbin 0`, ...).
    pub kind: String,
    /// The head word decoded (`0x31 = 48 | PREV_INUSE`).
    pub head: String,
    /// Is it free from the program's point of view?
    pub free: bool,
    /// A difference from the other heaps of a comparison, if any.
    pub note: Option<String>,
}

impl ChunkRow {
    /// The head decoded by the core's `Debug` (e.g. `0x33 = 48 | P | C`).
    pub fn head_text(&self) -> String {
        match &self.label {
            Some(l) => l.head.clone(),
            None => head_text(self.info.head),
        }
    }

    /// Where the chunk is kept, in words.
    pub fn kind_text(&self) -> String {
        match &self.label {
            Some(l) => l.kind.clone(),
            None => kind_text(self.info.kind),
        }
    }

    /// Is the chunk free (to the program)?
    pub fn is_free(&self) -> bool {
        match &self.label {
            Some(l) => l.free,
            None => self.info.kind.is_free(),
        }
    }
}

/// A chunk that another allocator's walker reported, as the grid draws
/// it: the byte roles of its body and its link fields are given, not
/// derived from a Tessera [`ChunkKind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drawn {
    /// Address, size and raw head; `kind` is the nearest Tessera kind
    /// (in use, a bin, top, fencepost), used where text needs one.
    pub info: ChunkInfo,
    /// The walker's words for it.
    pub label: Label,
    /// Byte ranges past the 16-byte header with their roles:
    /// `(offset, length, role)`.
    pub roles: Vec<(usize, usize, ByteRole)>,
    /// The role of the remaining bytes past the header.
    pub body: ByteRole,
    /// The whole chunk is one role (fenceposts, a segment's foot).
    pub whole: Option<ByteRole>,
    /// Link fields to list, with their values.
    pub fields: Vec<Field>,
    /// What the program asked for, if known.
    pub requested: Option<usize>,
}

impl Drawn {
    /// The role of the byte `offset` bytes into the chunk.
    pub fn role_at(&self, offset: usize) -> ByteRole {
        if let Some(r) = self.whole {
            return r;
        }
        match offset {
            0..=7 => return ByteRole::Core(Role::PrevFoot),
            8..=15 => return ByteRole::Core(Role::Head),
            _ => {}
        }
        for &(at, len, role) in &self.roles {
            if offset >= at && offset < at + len {
                return role;
            }
        }
        if self.body == ByteRole::Core(Role::Payload) {
            if let Some(r) = self.requested {
                if offset >= MEM_OFFSET + r {
                    return ByteRole::Slack;
                }
            }
        }
        self.body
    }
}

/// `Head(0x33 = 48 | P | C)` without the `Head(...)` wrapper.
pub fn head_text(h: Head) -> String {
    let s = format!("{h:?}");
    s.strip_prefix("Head(")
        .and_then(|s| s.strip_suffix(')'))
        .map(str::to_owned)
        .unwrap_or(s)
}

/// The size range a tree bin holds.
pub fn tree_bin_range(i: u8) -> (usize, usize) {
    let lo = minsize_for_tree_index(i as usize);
    let hi = if i >= 31 {
        usize::MAX
    } else {
        minsize_for_tree_index(i as usize + 1) - 1
    };
    (lo, hi)
}

/// A chunk kind in words: `in use`, `small bin 6`, `tree bin 0 (256..383)`.
pub fn kind_text(k: ChunkKind) -> String {
    match k {
        ChunkKind::InUse => "in use".into(),
        ChunkKind::Cached => "cached (in a thread cache)".into(),
        ChunkKind::Parked => "parked (on the arena's quick list)".into(),
        ChunkKind::SmallBin(i) => format!("small bin {i}"),
        ChunkKind::TreeBin(i) => {
            let (lo, hi) = tree_bin_range(i);
            if hi == usize::MAX {
                format!("tree bin {i} ({lo}..)")
            } else {
                format!("tree bin {i} ({lo}..{hi})")
            }
        }
        ChunkKind::Dv => "dv".into(),
        ChunkKind::Top => "top".into(),
        ChunkKind::Fencepost => "fencepost".into(),
        ChunkKind::Direct => "direct (mmapped)".into(),
    }
}

/// The link fields a chunk of this kind keeps, with their offsets.
fn field_layout(kind: ChunkKind) -> &'static [(&'static str, usize)] {
    match kind {
        ChunkKind::SmallBin(_) => &[("fd", 16), ("bk", 24)],
        ChunkKind::TreeBin(_) => &[
            ("fd", 16),
            ("bk", 24),
            ("child[0]", 32),
            ("child[1]", 40),
            ("parent", 48),
            ("index", 56),
        ],
        _ => &[],
    }
}

/// The byte role at `addr`, refined with slack when the request is known.
pub fn role_with_requests(snap: &Snapshot, req: Option<&Requests>, addr: usize) -> ByteRole {
    match snap.chunk_at(addr) {
        Some(c) => refine(c, addr, req),
        None => ByteRole::Core(snap.role_at(addr)),
    }
}

fn refine(c: &ChunkInfo, addr: usize, req: Option<&Requests>) -> ByteRole {
    let role = tessera::inspect::role_in_chunk(c, addr - c.addr);
    if role == Role::Payload {
        if let Some(&r) = req.and_then(|m| m.get(&c.mem())) {
            if addr >= c.mem() + r {
                return ByteRole::Slack;
            }
        }
    }
    ByteRole::Core(role)
}

/// One page, cell by cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageView {
    /// The page's address (4096-aligned).
    pub addr: usize,
    /// 4096 cells.
    pub cells: Vec<Cell>,
    /// Chunks touching the page, in address order.
    pub chunks: Vec<ChunkRow>,
    /// Were the page's bytes captured (values known)?
    pub has_bytes: bool,
    /// The heap state's address range (to name links that point into it).
    pub state: (usize, usize),
    /// What links into that range are called (`state`, `main_arena`).
    pub state_name: &'static str,
}

impl PageView {
    /// Builds the view of the page at `page` (rounded down to 4096).
    pub fn new(snap: &Snapshot, page: usize, req: Option<&Requests>) -> PageView {
        let page = page_of(page);
        let bytes = snap.page(page);
        let mut cells: Vec<Cell> = (0..PAGE)
            .map(|i| Cell {
                role: ByteRole::Core(Role::Outside),
                value: bytes.map(|b| b[i]),
                chunk: None,
            })
            .collect();
        let mut covered = vec![false; PAGE];
        let mut chunks = Vec::new();
        for (n, c) in snap.chunks_on_page(page).iter().enumerate() {
            let lo = c.addr.max(page);
            let hi = (c.addr + c.size).min(page + PAGE);
            for a in lo..hi {
                let i = a - page;
                cells[i].role = refine(c, a, req);
                cells[i].chunk = Some(n as u16);
                covered[i] = true;
            }
            let fields = field_layout(c.kind)
                .iter()
                .filter_map(|&(name, offset)| {
                    let w = snap.word(c.addr + offset)?;
                    let value = if name == "index" { w & 0xffff_ffff } else { w };
                    Some(Field {
                        name,
                        offset,
                        value,
                    })
                })
                .collect();
            chunks.push(ChunkRow {
                info: *c,
                cell: c.addr as isize - page as isize,
                requested: req.and_then(|m| m.get(&c.mem()).copied()),
                fields,
                label: None,
            });
        }
        for (i, cell) in cells.iter_mut().enumerate() {
            if !covered[i] {
                cell.role = ByteRole::Core(snap.role_at(page + i));
            }
        }
        PageView {
            addr: page,
            cells,
            chunks,
            has_bytes: bytes.is_some(),
            state: (snap.heap.state, snap.heap.state + snap.heap.state_size),
            state_name: "state",
        }
    }

    /// The view of the page at `page` of a heap that another allocator's
    /// walker described: `chunks` sorted by address (those not touching the
    /// page are skipped), `outside` the role of bytes no chunk covers,
    /// `state` the range (and name) of the allocator's own bookkeeping that
    /// links may point into.
    pub fn from_drawn(
        page: usize,
        bytes: Option<&[u8; PAGE]>,
        chunks: &[Drawn],
        outside: &dyn Fn(usize) -> ByteRole,
        state: (usize, usize),
        state_name: &'static str,
    ) -> PageView {
        let page = page_of(page);
        let mut cells: Vec<Cell> = (0..PAGE)
            .map(|i| Cell {
                role: outside(page + i),
                value: bytes.map(|b| b[i]),
                chunk: None,
            })
            .collect();
        let lo = chunks.partition_point(|c| c.info.addr + c.info.size <= page);
        let mut rows = Vec::new();
        for c in chunks[lo..]
            .iter()
            .take_while(|c| c.info.addr < page + PAGE)
        {
            let n = rows.len() as u16;
            let from = c.info.addr.max(page);
            let to = (c.info.addr + c.info.size).min(page + PAGE);
            for a in from..to {
                let cell = &mut cells[a - page];
                cell.role = c.role_at(a - c.info.addr);
                cell.chunk = Some(n);
            }
            rows.push(ChunkRow {
                info: c.info,
                cell: c.info.addr as isize - page as isize,
                requested: c.requested,
                fields: c.fields.clone(),
                label: Some(c.label.clone()),
            });
        }
        PageView {
            addr: page,
            cells,
            chunks: rows,
            has_bytes: bytes.is_some(),
            state,
            state_name,
        }
    }

    /// Cells whose role or value differ from `before` (the same page at an
    /// earlier step). Values count only where both sides have them.
    pub fn changes(&self, before: &PageView) -> Vec<bool> {
        self.cells
            .iter()
            .zip(&before.cells)
            .map(|(a, b)| {
                a.role != b.role || matches!((a.value, b.value), (Some(x), Some(y)) if x != y)
            })
            .collect()
    }

    /// The chunk holding cell `i`.
    pub fn chunk_of(&self, i: usize) -> Option<&ChunkRow> {
        self.cells[i].chunk.map(|n| &self.chunks[n as usize])
    }

    /// The 8-byte word holding cell `i` (8-aligned), if bytes were captured.
    pub fn word_at(&self, i: usize) -> Option<usize> {
        let start = i & !7;
        let mut w = 0usize;
        for k in (0..8).rev() {
            w = w << 8 | self.cells[start + k].value? as usize;
        }
        Some(w)
    }

    /// Names a pointer value the way the chunk list shows it: `null`,
    /// `state+0x98` (inside the heap state, where the bins live), `@1168`
    /// (a cell of this page) or the plain address.
    pub fn name_ptr(&self, v: usize) -> String {
        if v == 0 {
            "null".into()
        } else if v >= self.state.0 && v < self.state.1 {
            format!("{}+{:#x}", self.state_name, v - self.state.0)
        } else if v >= self.addr && v < self.addr + PAGE {
            format!("@{}", v - self.addr)
        } else {
            format!("{v:#x}")
        }
    }

    /// The rows (0..128) whose cells are marked in `mask`.
    pub fn rows_marked(mask: &[bool]) -> Vec<usize> {
        (0..ROWS)
            .filter(|r| mask[r * COLS..(r + 1) * COLS].iter().any(|&m| m))
            .collect()
    }
}

/// The address of the user block inside a chunk (`chunk + 16`).
pub fn mem_of(chunk: usize) -> usize {
    chunk + MEM_OFFSET
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::Heap;

    #[test]
    fn a_page_has_4096_cells_and_payload_is_split_at_the_request() {
        let mut h = Heap::new();
        let p = h.malloc(90) as usize;
        let snap = Snapshot::capture(&h, 4);
        let mut req = Requests::new();
        req.insert(p, 90);
        let v = PageView::new(&snap, p, Some(&req));
        assert_eq!(v.cells.len(), PAGE);
        assert_eq!(ROWS * COLS, PAGE);
        let i = p - v.addr;
        assert_eq!(v.cells[i - 8].role, ByteRole::Core(Role::Head));
        assert_eq!(v.cells[i - 16].role, ByteRole::Core(Role::PrevFoot));
        assert_eq!(v.cells[i].role, ByteRole::Core(Role::Payload));
        assert_eq!(v.cells[i + 89].role, ByteRole::Core(Role::Payload));
        // 112-byte chunk: 96 bytes after the header; 90 asked for.
        assert_eq!(v.cells[i + 90].role, ByteRole::Slack);
        assert_eq!(v.cells[i + 95].role, ByteRole::Slack);
        assert_eq!(v.cells[i + 96].role, ByteRole::Core(Role::PrevFoot));
        // Without requests there is no slack.
        let plain = PageView::new(&snap, p, None);
        assert_eq!(plain.cells[i + 90].role, ByteRole::Core(Role::Payload));
        let row = v.chunk_of(i).unwrap();
        assert_eq!(row.info.size, 112);
        assert_eq!(row.requested, Some(90));
        let head = row.head_text();
        assert!(
            head.contains(" = 112 ") && head.ends_with("| P | C"),
            "{head}"
        );
        assert_eq!(v.word_at(i - 8), Some(row.info.head.0));
        // SAFETY: live pointer.
        unsafe { h.free(p as *mut u8) };
    }

    #[test]
    fn tree_bin_ranges_follow_dlmalloc() {
        assert_eq!(tree_bin_range(0), (256, 383));
        assert_eq!(tree_bin_range(1), (384, 511));
        assert_eq!(tree_bin_range(2), (512, 767));
        assert_eq!(kind_text(ChunkKind::TreeBin(1)), "tree bin 1 (384..511)");
    }
}
