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
