//! The model's pieces checked against independent definitions: dlmalloc's
//! tree-bin index against Tessera's, the dlmalloc walk of a fresh heap,
//! and Tessera's chunks drawn through the walkers' path against the grid
//! Tessera's own snapshots give (one renderer for all heaps).

use std::collections::BTreeMap;
use tessera_compare::dl::{tree_index, DlHeap, TOP_FOOT_SIZE};
use tessera_compare::model::Kind;
use tessera_compare::replay::{Replay, Subject};
use tessera_compare::tess::TesseraHeap;
use tessera_viz::page::PageView;

#[test]
fn tree_index_is_dlmalloc_compute_tree_index() {
    let mut size = 256;
    while size < 1 << 25 {
        assert_eq!(
            tree_index(size) as usize,
            tessera_compare::core::compute_tree_index(size),
            "{size}"
        );
        size += if size < 1 << 16 { 16 } else { 4096 };
    }
    assert_eq!(tree_index(usize::MAX & !15), 31);
}

#[test]
fn a_fresh_dlmalloc_heap_is_one_chunk_top_and_its_foot() {
    let mut d = DlHeap::new(0x420).unwrap();
    let p = d.malloc(40);
    let (chunks, notes) = d.walk();
    let (lo, hi) = d.segment();
    assert_eq!(lo % 4096, 0x420, "the segment starts at the asked offset");
    assert!(notes.is_empty(), "{notes:?}");
    let kinds: Vec<Kind> = chunks.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [Kind::InUse, Kind::Top, Kind::TopFoot]);
    assert_eq!(chunks[0].mem(), p);
    assert_eq!(chunks[2].addr + TOP_FOOT_SIZE, hi);
    // A freed small chunk next to an in-use one goes to its small bin,
    // and the walk finds it on the bin's ring.
    let q = d.malloc(40);
    let _guard = d.malloc(40);
    d.free(q);
    let (chunks, _) = d.walk();
    assert_eq!(chunks[1].kind, Kind::SmallBin(6));
    assert_eq!(chunks[1].links.len(), 2);
}

#[test]
fn tessera_chunks_drawn_as_the_walkers_draw_match_the_snapshot_grid() {
    let t = tessera_viz::tour::trace();
    let mut r = Replay::new(TesseraHeap::new());
    for rec in &t.records[..20] {
        r.apply(rec).unwrap();
    }
    let req = r.requests();
    let pic = r.subject.picture();
    let snap = tessera::Snapshot::capture(&r.subject.heap, 64);
    let drawn = pic.drawn(&req, &BTreeMap::new());
    let page = pic.base & !4095;
    let reqs: tessera_viz::Requests = req.iter().map(|(&a, &n)| (a, n)).collect();
    let a = PageView::new(&snap, page, Some(&reqs));
    let b = PageView::from_drawn(
        page,
        pic.pages.get(&page).map(|p| &**p),
        &drawn,
        &|x| pic.outside_role(x),
        (pic.state.0, pic.state.1),
        pic.state.2,
    );
    for i in 0..4096 {
        assert_eq!(a.cells[i].role, b.cells[i].role, "cell {i}");
        assert_eq!(a.cells[i].value, b.cells[i].value, "cell {i}");
    }
    let addrs = |v: &PageView| {
        v.chunks
            .iter()
            .map(|c| (c.info.addr, c.info.size, c.fields.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(addrs(&a), addrs(&b));
}
