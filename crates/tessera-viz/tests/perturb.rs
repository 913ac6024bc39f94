//! M_PERTURB (issue 16, item 5) in the grid: a perturbed free chunk is
//! drawn as a free chunk (its links, then free bytes), the perturb byte
//! only in the cell values; an in-use block's payload is payload whatever
//! it was filled with.

use tessera::inspect::{ChunkKind, Role};
use tessera::{Config, Heap, Mmap, Snapshot};
use tessera_viz::page::{page_of, PageView};
use tessera_viz::text::{self, GridOptions, Style};
use tessera_viz::ByteRole;

#[test]
fn a_perturbed_free_chunk_is_drawn_as_free() {
    let config = Config {
        perturb: Some(0x5a),
        ..Config::DEFAULT
    };
    let mut heap = Heap::with_config(Mmap, config).expect("a heap");
    let a = heap.malloc(200);
    let b = heap.malloc(200);
    let c = heap.malloc(200);
    assert!(!a.is_null() && !b.is_null() && !c.is_null());
    // SAFETY: live blocks of this heap, at least 200 bytes each; b freed once.
    unsafe {
        assert!((0..200).all(|i| *a.add(i) == 0xa5), "malloc fills with !b");
        heap.free(b);
    }
    heap.check().expect("consistent");

    let snap = Snapshot::capture(&heap, 16);
    let chunk = snap
        .chunks
        .iter()
        .find(|ch| ch.mem() == b as usize)
        .expect("b's chunk in the snapshot");
    assert!(chunk.kind.is_free(), "{:?}", chunk.kind);
    assert!(matches!(chunk.kind, ChunkKind::SmallBin(_)));

    let view = PageView::new(&snap, page_of(b as usize), None);
    assert!(view.has_bytes);
    // The free chunk's body past its two links and before its successor's
    // prev_foot: free bytes holding the perturb byte.
    let body = (b as usize + 16)..(chunk.addr + chunk.size);
    let mut free_cells = 0;
    for addr in body {
        let cell = &view.cells[addr - view.addr];
        assert_eq!(cell.role, ByteRole::Core(Role::Free), "byte at {addr:#x}");
        assert_eq!(cell.value, Some(0x5a), "byte at {addr:#x}");
        free_cells += 1;
    }
    assert!(free_cells > 150);
    // The links are drawn as links.
    assert_eq!(
        view.cells[b as usize - view.addr].role,
        ByteRole::Core(Role::Fd)
    );
    assert_eq!(
        view.cells[b as usize + 8 - view.addr].role,
        ByteRole::Core(Role::Bk)
    );
    // And the in-use neighbours' perturbed payload is payload.
    assert_eq!(
        view.cells[a as usize + 100 - view.addr].role,
        ByteRole::Core(Role::Payload)
    );
    // The plain grid shows the free bytes with the free glyph.
    let grid = text::grid(&view, &GridOptions::default(), Style::Plain);
    let free_glyph = ByteRole::Core(Role::Free).glyph();
    assert!(grid.matches(free_glyph).count() >= free_cells, "{grid}");
}
