//! The tour's demo trace really shows what each step's explanation says.

use tessera::inspect::trace::Event;
use tessera::inspect::{ChunkInfo, ChunkKind};
use tessera::Snapshot;
use tessera_viz::film::Film;
use tessera_viz::text::{self, Style};
use tessera_viz::tour;

fn film() -> Film {
    tour::film(true).expect("the tour replays")
}

fn snap(f: &Film, step: usize) -> &Snapshot {
    f.frames[step].snapshot.as_ref().expect("kept")
}

/// The step whose title starts with `title`.
fn step(f: &Film, title: &str) -> usize {
    f.frames
        .iter()
        .position(|fr| fr.title.starts_with(title))
        .unwrap_or_else(|| panic!("no step titled {title}"))
}

fn chunk(s: &Snapshot, mem: usize) -> ChunkInfo {
    *s.chunk_at(mem - 16).expect("a chunk")
}

fn new_block(f: &Film, k: usize) -> usize {
    f.frames[k].info.as_ref().unwrap().applied.new
}

fn old_block(f: &Film, k: usize) -> usize {
    f.frames[k].info.as_ref().unwrap().applied.old
}

#[test]
fn every_step_has_a_title_and_an_explanation_matching_its_call() {
    let t = tour::trace();
    let notes = tour::explanations(tour::TRACE);
    for (r, line) in t.records.iter().zip(&t.lines) {
        let op = match r.event {
            Event::Exit { .. } => continue,
            Event::Malloc { .. } => "malloc(",
            Event::Free { .. } => "free(",
            Event::Memalign { .. } => "memalign(",
            Event::Calloc { .. } => "calloc(",
            Event::Realloc { .. } => "realloc(",
        };
        let (title, note) = notes
            .get(line)
            .unwrap_or_else(|| panic!("line {line} has no `#:`"));
        assert!(title.contains(op), "line {line}: `{title}` is not a {op}");
        assert!(note.len() > 20, "line {line}: explanation too short");
    }
    assert_eq!(t.exit_live, Some(9));
}

#[test]
fn the_replay_ends_with_the_recorded_live_count_and_a_sound_heap() {
    let t = tour::trace();
    let mut r = tessera::inspect::trace::Replayer::new(tessera::Heap::new());
    r.run(&t).unwrap();
    assert_eq!(Some(r.live()), t.exit_live);
    r.heap.check().unwrap();
}

#[test]
fn split_from_top() {
    let f = film();
    let k = step(&f, "a = malloc");
    let (before, after) = (snap(&f, k - 1), snap(&f, k));
    let a = chunk(after, new_block(&f, k));
    assert_eq!(a.kind, ChunkKind::InUse);
    assert_eq!(a.size, 48);
    assert_eq!(a.addr, before.heap.top, "cut from top's front");
    assert_eq!(after.heap.top, a.addr + 48);
    assert_eq!(after.heap.topsize, before.heap.topsize - 48);
}

#[test]
fn small_bin_reuse() {
    let f = film();
    let k = step(&f, "free(b)");
    let b = old_block(&f, k);
    assert_eq!(chunk(snap(&f, k), b).kind, ChunkKind::SmallBin(6));
    let d = new_block(&f, k + 1);
    assert_eq!(d, b, "d gets b's chunk back");
    assert_eq!(chunk(snap(&f, k + 1), d).kind, ChunkKind::InUse);
    assert_eq!(
        snap(&f, k + 1).heap.top,
        snap(&f, k).heap.top,
        "top untouched"
    );
    assert_eq!(snap(&f, k + 1).heap.smallmap, 0);
}

#[test]
fn coalescing_with_both_neighbours() {
    let f = film();
    let k = step(&f, "free(y)");
    let before = snap(&f, k - 1);
    let x = old_block(&f, step(&f, "free(x)"));
    let z = old_block(&f, step(&f, "free(z)"));
    let y = old_block(&f, k);
    assert_eq!(chunk(before, x).kind, ChunkKind::SmallBin(14));
    assert_eq!(chunk(before, z).kind, ChunkKind::SmallBin(14));
    assert_eq!(chunk(before, y).kind, ChunkKind::InUse);
    let after = snap(&f, k);
    let merged = chunk(after, x);
    assert_eq!((merged.size, merged.kind), (336, ChunkKind::TreeBin(0)));
    assert_eq!(
        after.chunk_at(y - 16).unwrap().addr,
        merged.addr,
        "y is inside"
    );
    assert_eq!(
        after.chunk_at(z - 16).unwrap().addr,
        merged.addr,
        "z is inside"
    );
}

#[test]
fn a_tree_chunk_with_child_and_parent_links() {
    let f = film();
    let k = step(&f, "free(t)");
    let s = snap(&f, k);
    let t = chunk(s, old_block(&f, k));
    let root = chunk(s, old_block(&f, step(&f, "free(x)")));
    assert_eq!(t.kind, ChunkKind::TreeBin(0));
    assert_eq!(root.kind, ChunkKind::TreeBin(0));
    let child0 = s.word(root.addr + 32).unwrap();
    let child1 = s.word(root.addr + 40).unwrap();
    assert!(
        child0 == t.addr || child1 == t.addr,
        "t hangs under the root"
    );
    assert_eq!(
        s.word(t.addr + 48),
        Some(root.addr),
        "t's parent is the root"
    );
    let parent = s.word(root.addr + 48).unwrap();
    assert!(
        parent >= s.heap.state && parent < s.heap.state + s.heap.state_size,
        "the root's parent is its bin slot in the heap state"
    );
    // The grid shows the links by name.
    let view = &f.frames[k].pages[&tessera_viz::page::page_of(t.addr)].view;
    let list = text::chunk_list(view);
    assert!(
        list.contains(&format!("parent→@{}", root.addr - view.addr)),
        "{list}"
    );
}

#[test]
fn the_dv_at_work() {
    let f = film();
    let k = step(&f, "e = malloc");
    let s = snap(&f, k);
    assert_eq!(snap(&f, k - 1).heap.dv, 0, "no dv before");
    let e = chunk(s, new_block(&f, k));
    assert_eq!(s.heap.dv, e.addr + 48, "the remainder becomes the dv");
    assert_eq!(s.heap.dvsize, 336 - 48);
    let fblk = new_block(&f, k + 1);
    assert_eq!(fblk, new_block(&f, k) + 48, "f lands right after e");
    assert_eq!(snap(&f, k + 1).heap.dvsize, 336 - 96);
    assert_eq!(
        chunk(snap(&f, k + 1), snap(&f, k + 1).heap.dv + 16).kind,
        ChunkKind::Dv
    );
}

#[test]
fn memalign_gives_its_slack_back_on_both_sides() {
    let f = film();
    let k = step(&f, "al = memalign");
    let s = snap(&f, k);
    let al = new_block(&f, k);
    assert_eq!(al % 256, 0);
    let c = chunk(s, al);
    let i = s.chunks.iter().position(|x| x.addr == c.addr).unwrap();
    let (before, after) = (s.chunks[i - 1], s.chunks[i + 1]);
    let free_in_bin = |k: ChunkKind| matches!(k, ChunkKind::SmallBin(_) | ChunkKind::TreeBin(_));
    assert!(free_in_bin(before.kind), "{before:?}");
    assert!(free_in_bin(after.kind), "{after:?}");
    let m = old_block(&f, step(&f, "free(m)"));
    assert_eq!(before.addr, m - 16, "the slack before starts where m did");
    assert_eq!(
        before.size + c.size + after.size,
        400,
        "m's chunk, split in three"
    );
}

#[test]
fn a_direct_chunk_is_mapped_then_unmapped() {
    let f = film();
    let k = step(&f, "big = malloc");
    let s = snap(&f, k);
    let big = chunk(s, new_block(&f, k));
    assert_eq!(big.kind, ChunkKind::Direct);
    assert!(big.head.is_mmapped());
    assert_eq!(s.directs.len(), 1);
    let after = snap(&f, k + 1);
    assert!(after.chunks.iter().all(|c| c.kind != ChunkKind::Direct));
    assert!(!f.frames[k + 1].gone.is_empty(), "its pages are gone");
}

#[test]
fn each_step_prints_compactly_and_names_its_call() {
    let f = film();
    for k in 1..f.frames.len() {
        let out = text::frame(&f, k, Style::Plain, false, 2);
        let lines = out.lines().count();
        assert!(lines <= 45, "step {k} prints {lines} lines:\n{out}");
        assert!(out.contains(&f.frames[k].title), "{out}");
        if k < f.frames.len() - 1 {
            assert!(
                out.contains("right: bytes this step changed"),
                "step {k}:\n{out}"
            );
        }
    }
}

#[test]
fn the_tour_page_is_self_contained() {
    let f = tour::film(false).unwrap();
    let html = tessera_viz::html::explorer(&f);
    for banned in ["http://", "https://", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(banned), "the page refers to `{banned}`");
    }
    assert!(html.contains("id=\"selftest\""));
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
}

// ---------------------------------------------------------------------
// The tour's first chunks against dlmalloc's rules, worked out by hand
// here rather than taken from the code (which the golden grids were
// generated from). A layout change in the allocator or the viewer that
// moved a chunk, changed a head bit or a bin, or drew a byte with another
// role makes this test fail, whatever the goldens say.
// ---------------------------------------------------------------------

/// dlmalloc's `request2size` on x86-64: the request plus the 8-byte head,
/// rounded up to 16, and never less than the 32-byte minimum chunk.
fn request2size(req: usize) -> usize {
    ((req + 8 + 15) & !15).max(32)
}

/// dlmalloc's `small_index`: chunks under 256 bytes, one bin per 8 bytes.
fn small_index(size: usize) -> u8 {
    assert!(size < 256);
    (size >> 3) as u8
}

/// dlmalloc's `compute_tree_index`, from its definition: with
/// `X = size >> 8`, bin `2K + (the bit below the leading one)` where `K` is
/// the index of X's leading bit; bin 31 from X > 0xFFFF on.
fn tree_index(size: usize) -> u8 {
    let x = size >> 8;
    assert!(x != 0, "a tree chunk is 256 bytes or more");
    if x > 0xFFFF {
        return 31;
    }
    let k = usize::BITS as usize - 1 - x.leading_zeros() as usize;
    ((k << 1) + ((size >> (k + 7)) & 1)) as u8
}

/// What a chunk of the hand-kept heap is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hand {
    InUse { asked: usize },
    Free,
    Dv,
    Top,
}

/// The heap of the tour kept by hand, dlmalloc's way: chunks by offset
/// from the segment base. Only what the tour's first steps do is
/// supported; anything else panics.
struct HandHeap {
    chunks: Vec<(usize, usize, Hand)>,
}

/// The first chunk of a heap: after the 64-byte segment record and the
/// heap state, at cell 1024 of the segment's first page.
const FIRST_CHUNK: usize = 1024;
const PINUSE: usize = 1;
const CINUSE: usize = 2;

impl HandHeap {
    fn new(topsize: usize) -> Self {
        HandHeap {
            chunks: vec![(FIRST_CHUNK, topsize, Hand::Top)],
        }
    }

    fn index_of(&self, off: usize) -> usize {
        self.chunks
            .iter()
            .position(|c| c.0 == off)
            .expect("a chunk there")
    }

    /// Splits `nb` bytes off the front of chunk `i`, which becomes the
    /// in-use chunk; the rest keeps the kind `rest`.
    fn split(&mut self, i: usize, nb: usize, asked: usize, rest: Hand) -> usize {
        let (off, size, _) = self.chunks[i];
        assert!(size - nb >= 32, "a remainder worth keeping");
        self.chunks[i] = (off, nb, Hand::InUse { asked });
        self.chunks.insert(i + 1, (off + nb, size - nb, rest));
        off
    }

    /// dlmalloc's malloc for a small request: an exact fit from a small
    /// bin, else the dv if it is large enough, else the smallest tree chunk
    /// (its remainder becomes the dv), else a split from top.
    fn malloc(&mut self, asked: usize) -> usize {
        let nb = request2size(asked);
        assert!(nb < 256, "the tour's small requests only");
        let exact = self
            .chunks
            .iter()
            .position(|&(_, s, k)| k == Hand::Free && s == nb);
        if let Some(i) = exact {
            self.chunks[i].2 = Hand::InUse { asked };
            return self.chunks[i].0;
        }
        if let Some(i) = self.chunks.iter().position(|c| c.2 == Hand::Dv) {
            assert!(self.chunks[i].1 >= nb + 32);
            return self.split(i, nb, asked, Hand::Dv);
        }
        let smallest_tree = self
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, &(_, s, k))| k == Hand::Free && s >= 256)
            .min_by_key(|(_, &(_, s, _))| s)
            .map(|(i, _)| i);
        if let Some(i) = smallest_tree {
            return self.split(i, nb, asked, Hand::Dv);
        }
        let top = self.chunks.len() - 1;
        self.split(top, nb, asked, Hand::Top)
    }

    /// dlmalloc's malloc for a chunk of 256 bytes or more, when no bin has
    /// one: a split from top.
    fn malloc_from_top(&mut self, asked: usize) -> usize {
        assert!(!self.chunks.iter().any(|c| c.2 == Hand::Free));
        let top = self.chunks.len() - 1;
        self.split(top, request2size(asked), asked, Hand::Top)
    }

    /// dlmalloc's free: merge with a free chunk before and after (never
    /// top or the dv in the tour), then bin.
    fn free(&mut self, off: usize) {
        let mut i = self.index_of(off);
        assert!(matches!(self.chunks[i].2, Hand::InUse { .. }));
        self.chunks[i].2 = Hand::Free;
        if self.chunks[i + 1].2 == Hand::Free {
            self.chunks[i].1 += self.chunks.remove(i + 1).1;
        }
        assert!(
            matches!(self.chunks[i + 1].2, Hand::InUse { .. }),
            "not next to top or dv"
        );
        if i > 0 && self.chunks[i - 1].2 == Hand::Free {
            self.chunks[i - 1].1 += self.chunks.remove(i).1;
            i -= 1;
        }
        let _ = i;
    }

    /// The kind a snapshot must give chunk `(off, size, hand)`.
    fn kind(size: usize, hand: Hand) -> ChunkKind {
        match hand {
            Hand::InUse { .. } => ChunkKind::InUse,
            Hand::Free if size < 256 => ChunkKind::SmallBin(small_index(size)),
            Hand::Free => ChunkKind::TreeBin(tree_index(size)),
            Hand::Dv => ChunkKind::Dv,
            Hand::Top => ChunkKind::Top,
        }
    }

    /// The glyphs the grid must draw for chunk `(off, size, hand)`, cell by
    /// cell from `off` (top only to the end of the page): prev_foot and
    /// head, then the payload and slack, or a free chunk's fields.
    fn glyphs(off: usize, size: usize, hand: Hand) -> Vec<char> {
        let mut g = vec!['p'; 8];
        g.extend(['h'; 8]);
        let body = size - 16;
        match hand {
            Hand::InUse { asked } => {
                let payload = asked.min(body);
                g.extend(std::iter::repeat_n('#', payload));
                g.extend(std::iter::repeat_n('~', body - payload));
            }
            Hand::Free => {
                // fd, bk; a tree chunk also child[0], child[1], parent and
                // a 4-byte bin index.
                let mut fields = vec![('f', 8), ('b', 8)];
                if size >= 256 {
                    fields.extend([('0', 8), ('1', 8), ('^', 8), ('i', 4)]);
                }
                for (c, n) in fields {
                    g.extend(std::iter::repeat_n(c, n));
                }
                g.resize(size, '.');
            }
            Hand::Dv => g.resize(size, ':'),
            Hand::Top => g.resize(size.min(4096 - off), '_'),
        }
        g
    }
}

/// The 4096 glyphs of a fully drawn page, cell by cell.
fn page_glyphs(view: &tessera_viz::page::PageView) -> Vec<char> {
    let opts = tessera_viz::text::GridOptions {
        annotate: false,
        ..Default::default()
    };
    let grid = text::grid(view, &opts, Style::Plain);
    let mut cells = Vec::with_capacity(4096);
    for line in grid.lines() {
        let Some((label, rest)) = line.split_at_checked(5) else {
            continue;
        };
        let Ok(n) = label.trim().parse::<usize>() else {
            continue;
        };
        assert_eq!(n, cells.len(), "row label");
        // " ", the frame, 16 cells, the middle column, 16 cells, the frame.
        let chars: Vec<char> = rest.chars().collect();
        cells.extend(&chars[2..18]);
        cells.extend(&chars[19..35]);
    }
    assert_eq!(cells.len(), 4096, "128 rows of 32 cells");
    cells
}

#[test]
fn the_first_chunks_follow_dlmalloc_rules_worked_out_by_hand() {
    let f = film();
    let t = tour::trace();
    let base = snap(&f, 0).segments[0].base;
    let fresh_top = snap(&f, 0).heap.topsize;
    assert_eq!(
        snap(&f, 0).heap.top,
        base + FIRST_CHUNK,
        "top is the first chunk"
    );
    let mut hand = HandHeap::new(fresh_top);
    // Recorded pointer -> chunk offset, as the trace names its blocks.
    let mut names = std::collections::HashMap::new();
    // Steps 1..=19: splits from top, small-bin reuse, coalescing into a
    // tree chunk, a second tree chunk, the dv at work.
    for k in 1..=19 {
        match t.records[k - 1].event {
            Event::Malloc { size, ret } => {
                let off = if request2size(size) < 256 {
                    hand.malloc(size)
                } else {
                    hand.malloc_from_top(size)
                };
                names.insert(ret, off);
            }
            Event::Free { ptr } => hand.free(names[&ptr]),
            ref e => panic!("step {k}: the hand heap does not do {e:?}"),
        }
        let s = snap(&f, k);
        let what = |off: usize| format!("step {k} ({}), chunk at +{off}", f.frames[k].title);

        // Offsets, sizes and kinds (bins by dlmalloc's indices).
        let got: Vec<(usize, usize, ChunkKind)> = s
            .chunks
            .iter()
            .filter(|c| c.kind != ChunkKind::Fencepost && c.addr >= base && c.addr < base + 4096)
            .map(|c| (c.addr - base, c.size, c.kind))
            .collect();
        let want: Vec<(usize, usize, ChunkKind)> = hand
            .chunks
            .iter()
            .map(|&(off, size, h)| (off, size, HandHeap::kind(size, h)))
            .collect();
        assert_eq!(got, want, "step {k} ({})", f.frames[k].title);

        // Heads and boundary tags, from the raw bytes: head = size | PINUSE
        // if the chunk before is in use | CINUSE if this one is (in-use
        // heads carry a tag in bits 48..63, masked off here); a free chunk
        // (not top) repeats its size in the next chunk's prev_foot.
        let mut smallmap = 0u32;
        let mut treemap = 0u32;
        for (i, &(off, size, h)) in hand.chunks.iter().enumerate() {
            let prev_in_use = i == 0 || matches!(hand.chunks[i - 1].2, Hand::InUse { .. });
            let in_use = matches!(h, Hand::InUse { .. });
            let mut head = size;
            if prev_in_use {
                head |= PINUSE;
            }
            if in_use {
                head |= CINUSE;
            }
            let raw = s.word(base + off + 8).expect("captured");
            assert_eq!(raw & ((1 << 48) - 1), head, "{}: head", what(off));
            if !in_use && h != Hand::Top {
                let foot = s.word(base + off + size).expect("captured");
                assert_eq!(foot, size, "{}: boundary tag", what(off));
            }
            match HandHeap::kind(size, h) {
                ChunkKind::SmallBin(i) => smallmap |= 1 << i,
                ChunkKind::TreeBin(i) => treemap |= 1 << i,
                _ => {}
            }
        }
        assert_eq!(s.heap.smallmap, smallmap, "step {k}: smallmap");
        assert_eq!(s.heap.treemap, treemap, "step {k}: treemap");

        // The grid draws every byte of the first page with its role: the
        // segment record (64 bytes), the heap state up to the first chunk,
        // then each chunk's fields.
        let view = f.page_at(k, base).expect("the first page is drawn");
        let cells = page_glyphs(view);
        assert!(cells[..64].iter().all(|&c| c == 'S'), "step {k}: record");
        assert!(
            cells[64..FIRST_CHUNK].iter().all(|&c| c == 'M'),
            "step {k}: state"
        );
        for &(off, size, h) in &hand.chunks {
            let want = HandHeap::glyphs(off, size, h);
            let got: String = cells[off..off + want.len()].iter().collect();
            let want: String = want.into_iter().collect();
            assert_eq!(got, want, "{}: glyphs", what(off));
        }
    }

    // The trie of tree bin 0 after free(t) (step 17): the 336-byte chunk
    // came first and is the root; t (352 bytes) hangs under it on the side
    // of its first key bit, the bit below the bin's two leading bits
    // (bits 8 and 7 for bin 0): bit 6, set in 352.
    let s = snap(&f, 17);
    let (root, t_chunk) = (base + 1168, base + 1552);
    let bin = tree_index(336) as usize;
    assert_eq!((bin, tree_index(352)), (0, 0));
    let key_bit = (bin >> 1) + 8 - 2;
    let side = (352 >> key_bit) & 1;
    assert_eq!(side, 1);
    assert_eq!(
        s.word(root + 32 + 8 * side),
        Some(t_chunk),
        "root.child[1] = t"
    );
    assert_eq!(
        s.word(root + 32 + 8 * (1 - side)),
        Some(0),
        "root.child[0] = null"
    );
    assert_eq!(s.word(t_chunk + 48), Some(root), "t.parent = root");
    // Equal sizes would share a node; t is alone: its ring is itself.
    assert_eq!(s.word(t_chunk + 16), Some(t_chunk), "t.fd");
    assert_eq!(s.word(t_chunk + 24), Some(t_chunk), "t.bk");
    // The index field (4 bytes) of both is their bin, 0.
    assert_eq!(s.word(root + 56).map(|w| w & 0xFFFF_FFFF), Some(0));
}
