//! API round trips and the behaviours dlmalloc documents, one by one.

use std::ptr;
use tessera::heap::chunk::{Chunk, Head};
use tessera::inspect::{ChunkKind, Item};
use tessera::{Config, Heap, Snapshot};

fn kinds(heap: &Heap) -> Vec<(usize, usize, ChunkKind)> {
    let mut v = Vec::new();
    heap.walk(&mut |item| {
        if let Item::Chunk(c) = item {
            v.push((c.addr, c.size, c.kind));
        }
    });
    v
}

fn kind_of(heap: &Heap, mem: *mut u8) -> (usize, ChunkKind) {
    let c = heap.chunk_at(mem as usize - 16).expect("chunk");
    assert_eq!(c.addr, mem as usize - 16);
    (c.size, c.kind)
}

#[test]
fn request_sizes_follow_dlmalloc() {
    let mut h = Heap::new();
    for (req, usable) in [
        (0, 24),
        (1, 24),
        (24, 24),
        (25, 40),
        (40, 40),
        (41, 56),
        (1000, 1000),
    ] {
        let p = h.malloc(req);
        // SAFETY: live pointer.
        assert_eq!(unsafe { h.usable_size(p) }, usable, "request {req}");
        assert_eq!(p as usize % 16, 0);
    }
    h.check().unwrap();
}

#[test]
fn free_coalesces_with_both_neighbours() {
    let mut h = Heap::new();
    let a = h.malloc(100);
    let b = h.malloc(100);
    let c = h.malloc(100);
    let guard = h.malloc(100); // keeps c away from top
                               // SAFETY: live pointers, each freed once.
    unsafe {
        h.free(a);
        h.free(c);
        assert_eq!(kind_of(&h, a).1, ChunkKind::SmallBin(14)); // 112 >> 3
        h.free(b);
    }
    let (size, kind) = kind_of(&h, a);
    assert_eq!(size, 3 * 112, "a, b and c merged into one chunk");
    assert_eq!(kind, ChunkKind::TreeBin(0));
    h.check().unwrap();
    // SAFETY: live pointer.
    unsafe { h.free(guard) };
    // Everything merged into top again.
    assert!(kinds(&h)
        .iter()
        .all(|k| matches!(k.2, ChunkKind::Top | ChunkKind::Fencepost)));
    h.check().unwrap();
}

#[test]
fn tree_chunks_hang_in_their_trie_and_best_fit_wins() {
    let mut h = Heap::new();
    let mut keep = Vec::new();
    let mut freed = Vec::new();
    for size in [600usize, 520, 700, 520, 1500, 3000] {
        freed.push((h.malloc(size), size));
        keep.push(h.malloc(16));
    }
    for &(p, _) in &freed {
        // SAFETY: live pointer, freed once.
        unsafe { h.free(p) };
    }
    h.check().unwrap();
    // A 530-byte request takes the smallest chunk that fits: the 608-byte one
    // (600 -> 608), not 528 (520 -> 528, too small) nor the bigger ones.
    let p = h.malloc(530);
    assert_eq!(p, freed[0].0);
    h.check().unwrap();
}

#[test]
fn dv_serves_runs_of_small_requests_contiguously() {
    let mut h = Heap::new();
    let big = h.malloc(2000);
    let _guard = h.malloc(16);
    // SAFETY: live pointer.
    unsafe { h.free(big) };
    let a = h.malloc(40); // splits the 2000-byte chunk; remainder becomes dv
    let info = h.walk_dv();
    assert!(info.0 != 0, "a dv exists");
    let b = h.malloc(40);
    let c = h.malloc(40);
    assert_eq!(b as usize - a as usize, 48);
    assert_eq!(c as usize - b as usize, 48);
    h.check().unwrap();
}

trait DvExt {
    fn walk_dv(&self) -> (usize, usize);
}
impl DvExt for Heap {
    fn walk_dv(&self) -> (usize, usize) {
        let mut dv = (0, 0);
        self.walk(&mut |item| {
            if let Item::Heap(hi) = item {
                dv = (hi.dv, hi.dvsize);
            }
        });
        dv
    }
}

#[test]
fn memalign_every_power_of_two_up_to_16mib_gives_slack_back() {
    let mut h = Heap::new();
    let mut ptrs = Vec::new();
    for log2 in 3..=24 {
        let align = 1usize << log2;
        for size in [1usize, 100, 5000, 300 << 10] {
            let p = h.memalign(align, size);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "align {align} size {size}");
            // SAFETY: live pointer.
            assert!(unsafe { h.usable_size(p) } >= size);
            // SAFETY: `size` bytes are usable.
            unsafe { ptr::write_bytes(p, 0xA5, size) };
            ptrs.push(p);
        }
        h.check().unwrap();
    }
    // No slack is kept mapped: direct chunks are trimmed to their pages and
    // segment slack went back to the bins.
    let st = h.stats();
    assert!(
        st.hblkhd < 40 * ((300 << 10) + 8192),
        "direct mappings trimmed: {st:?}"
    );
    for p in ptrs {
        // SAFETY: live pointers, freed once.
        unsafe { h.free(p) };
    }
    h.check().unwrap();
    assert_eq!(h.stats().hblks, 0);
}

#[test]
fn realloc_grows_in_place_into_top_and_shrinks_in_place() {
    let mut h = Heap::new();
    let p = h.malloc(100);
    // SAFETY: live pointers throughout.
    unsafe {
        ptr::write_bytes(p, 7, 100);
        let q = h.realloc(p, 50_000);
        assert_eq!(q, p, "next chunk is top: grow in place");
        assert_eq!(*q.add(99), 7);
        let r = h.realloc(q, 200);
        assert_eq!(r, q, "shrink in place");
        assert!(h.realloc_in_place(r, 150_000), "top grows in place");
        h.check().unwrap();
        h.free(r);
    }
    h.check().unwrap();
}

#[test]
fn direct_chunks_are_mapped_resized_and_unmapped() {
    let mut h = Heap::new();
    let before = h.footprint();
    // Fill top so the large request cannot be carved from it.
    let p = h.malloc(1 << 20);
    // SAFETY: live pointers throughout.
    unsafe {
        let head = Chunk::head(Chunk::from_mem(p));
        assert!(head.is_mmapped(), "{head:?}");
        assert_eq!(kind_of(&h, p).1, ChunkKind::Direct);
        ptr::write_bytes(p, 3, 1 << 20);
        let q = h.realloc(p, 8 << 20);
        assert!(!q.is_null());
        assert_eq!(*q.add((1 << 20) - 1), 3);
        assert!(Chunk::head(Chunk::from_mem(q)).is_mmapped());
        assert_eq!(h.stats().hblks, 1);
        h.check().unwrap();
        h.free(q);
    }
    assert_eq!(h.stats().hblks, 0);
    assert_eq!(h.footprint(), before);
    h.check().unwrap();
}

#[test]
fn calloc_zeroes_reused_memory_and_rejects_overflow() {
    let mut h = Heap::new();
    let p = h.malloc(4000);
    // SAFETY: live pointer.
    unsafe {
        ptr::write_bytes(p, 0xFF, 4000);
        h.free(p);
    }
    let q = h.calloc(100, 40);
    // SAFETY: 4000 bytes are usable.
    let bytes = unsafe { std::slice::from_raw_parts(q, 4000) };
    assert!(bytes.iter().all(|&b| b == 0));
    assert!(h.calloc(usize::MAX / 2, 3).is_null());
    // Fresh memory from a new segment is handed out zeroed too.
    let big = h.calloc(1, 100 << 10);
    // SAFETY: 100 KiB are usable.
    let bytes = unsafe { std::slice::from_raw_parts(big, 100 << 10) };
    assert!(bytes.iter().all(|&b| b == 0));
    h.check().unwrap();
}

#[test]
fn impossible_requests_return_null_and_leave_the_heap_intact() {
    let mut h = Heap::new();
    assert!(h.malloc(usize::MAX).is_null());
    assert!(h.malloc(usize::MAX - 100).is_null());
    assert!(h.malloc(1 << 62).is_null());
    assert!(h.memalign(1 << 20, usize::MAX - (1 << 19)).is_null());
    assert!(h.memalign(usize::MAX / 2 + 1, 16).is_null());
    let p = h.malloc(10);
    // SAFETY: live pointer.
    unsafe {
        assert!(h.realloc(p, usize::MAX - 10).is_null());
        assert_eq!(h.usable_size(p), 24);
        h.free(p);
    }
    h.check().unwrap();
}

#[test]
fn footprint_limit_refuses_growth_but_keeps_serving() {
    let mut h = Heap::new();
    let limit = h.footprint() + (1 << 20);
    h.set_footprint_limit(limit);
    let mut ptrs = Vec::new();
    loop {
        let p = h.malloc(10_000);
        if p.is_null() {
            break;
        }
        ptrs.push(p);
    }
    assert!(h.footprint() <= limit);
    assert!(ptrs.len() > 50);
    assert!(
        h.malloc(2 << 20).is_null(),
        "direct mapping also respects the limit"
    );
    h.check().unwrap();
    // Freed memory is reused under the limit.
    // SAFETY: live pointer.
    unsafe { h.free(ptrs.pop().unwrap()) };
    let p = h.malloc(10_000);
    assert!(!p.is_null());
    ptrs.push(p);
    for p in ptrs {
        // SAFETY: live pointers.
        unsafe { h.free(p) };
    }
    h.set_footprint_limit(0);
    assert!(!h.malloc(5 << 20).is_null());
    h.check().unwrap();
}

#[test]
fn independent_calloc_and_comalloc_are_contiguous_and_separately_freeable() {
    let mut h = Heap::new();
    let mut out = [ptr::null_mut(); 5];
    assert!(h.independent_calloc(5, 40, &mut out));
    for w in out.windows(2) {
        assert_eq!(w[1] as usize - w[0] as usize, 48);
    }
    let sizes = [10usize, 300, 5000];
    let mut co = [ptr::null_mut(); 3];
    assert!(h.independent_comalloc(&sizes, &mut co));
    assert_eq!(co[1] as usize - co[0] as usize, 32);
    assert_eq!(co[2] as usize - co[1] as usize, 320);
    h.check().unwrap();
    // SAFETY: live pointers, freed once.
    unsafe {
        h.free(out[2]);
        h.free(co[1]);
    }
    h.check().unwrap();
    let mut other = Heap::new();
    let foreign = other.malloc(10);
    let mut all = vec![out[0], out[1], out[3], out[4], co[0], co[2], foreign];
    // SAFETY: all pointers are live in one heap or the other.
    let left = unsafe { h.bulk_free(&mut all) };
    assert_eq!(left, 1);
    assert_eq!(all[6], foreign);
    assert!(all[..6].iter().all(|p| p.is_null()));
    h.check().unwrap();
    other.check().unwrap();
}

#[test]
fn stats_add_up() {
    let mut h = Heap::new();
    let ptrs: Vec<_> = (0..100).map(|i| h.malloc(i * 37)).collect();
    let big = h.malloc(1 << 20);
    for p in ptrs.iter().step_by(3) {
        // SAFETY: live pointers.
        unsafe { h.free(*p) };
    }
    let st = h.stats();
    assert_eq!(st.arena, st.uordblks + st.fordblks);
    assert_eq!(st.footprint, st.arena + st.hblkhd);
    assert_eq!(st.hblks, 1);
    assert!(st.ordblks >= 2);
    assert!(st.keepcost > 0);
    // SAFETY: live pointer.
    unsafe { h.free(big) };
    let after = h.stats();
    assert_eq!(after.hblks, 0);
    assert_eq!(after.max_hblks, 1, "the high-water mark stays");
    assert!(after.max_hblkhd > 1 << 20);
    assert!(after.max_arena >= after.arena);
}

#[test]
fn check_reports_a_broken_boundary_tag() {
    let mut h = Heap::new();
    let a = h.malloc(100);
    let _b = h.malloc(100);
    // SAFETY: a is live; the scribble models an overflow of its payload.
    unsafe {
        h.free(a);
        // The boundary tag of free chunk a lives in b's prev_foot.
        let tag = Chunk::plus_offset(Chunk::from_mem(a), 112);
        assert_eq!(Chunk::prev_foot(tag), 112);
        Chunk::set_prev_foot(tag, 96);
    }
    let err = h.check().unwrap_err();
    assert!(err.what.contains("boundary tag"), "{err}");
}

#[test]
fn check_reports_a_wrong_pinuse_bit() {
    let mut h = Heap::new();
    let a = h.malloc(100);
    let b = h.malloc(100);
    // SAFETY: b is live; flipping its PINUSE models a corrupted header.
    unsafe {
        let pb = Chunk::from_mem(b);
        Chunk::set_head(pb, Chunk::head(pb).0 & !Head::PINUSE);
    }
    let err = h.check().unwrap_err();
    assert!(err.what.contains("PINUSE"), "{err}");
    assert_eq!(err.addr, b as usize - 16);
    let _ = a;
}

#[test]
fn snapshot_text_round_trips_and_names_roles() {
    let mut h = Heap::new();
    let a = h.malloc(40);
    let _g = h.malloc(16);
    let b = h.malloc(300);
    let _c = h.malloc(40);
    // SAFETY: live pointers.
    unsafe {
        h.free(a);
        h.free(b);
    }
    let snap = Snapshot::capture(&h, 64);
    assert_eq!(h.snapshot(64), snap);
    let text = snap.to_text();
    let back = Snapshot::parse(&text).unwrap();
    assert_eq!(back, snap);
    use tessera::inspect::Role;
    let pa = a as usize - 16;
    assert_eq!(snap.role_at(pa), Role::PrevFoot);
    assert_eq!(snap.role_at(pa + 8), Role::Head);
    assert_eq!(snap.role_at(pa + 16), Role::Fd);
    assert_eq!(snap.role_at(pa + 24), Role::Bk);
    let pb = b as usize - 16;
    assert_eq!(snap.role_at(pb + 32), Role::Child0);
    assert_eq!(snap.role_at(pb + 48), Role::Parent);
    assert_eq!(snap.role_at(pb + 56), Role::Index);
    let seg = snap.segments[0];
    assert_eq!(snap.role_at(seg.base), Role::SegmentRecord);
    assert_eq!(snap.role_at(seg.base + 100), Role::HeapState);
    // The head word read from the captured bytes matches the walk.
    let info = snap.chunk_at(pb).unwrap();
    assert_eq!(snap.word(pb + 8), Some(info.head.0));
    // A damaged file names its line.
    let broken = text.replacen("chunk 0x", "chunk zz", 1);
    let err = Snapshot::parse(&broken).unwrap_err();
    assert!(err.line > 2 && err.msg.contains("not a number"), "{err}");
    let err = Snapshot::parse(&text[..text.len() - 4]).unwrap_err();
    assert!(err.msg.contains("end"), "{err}");
}

#[test]
fn write_snapshot_without_allocating_matches_owned_snapshot() {
    let mut h = Heap::new();
    let _a = h.malloc(1000);
    let mut out: Vec<u8> = Vec::new();
    h.write_snapshot(&mut out, 8);
    let parsed = Snapshot::parse(std::str::from_utf8(&out).unwrap()).unwrap();
    assert_eq!(parsed, Snapshot::capture(&h, 8));
}

#[test]
fn config_thresholds_take_effect() {
    let mut h = Heap::with_config(
        tessera::Mmap,
        Config {
            mmap_threshold: 64 << 10,
            ..Config::DEFAULT
        },
    )
    .unwrap();
    let p = h.malloc(1 << 20);
    // SAFETY: live pointer.
    unsafe {
        assert!(Chunk::head(Chunk::from_mem(p)).is_mmapped());
        h.free(p);
    }
    // Trimming: grow top past the trim threshold, free, and top shrinks.
    let mut cfg = h.config();
    cfg.mmap_threshold = 16 << 20;
    cfg.trim_threshold = 1 << 20;
    h.set_config(cfg);
    let big = h.malloc(8 << 20);
    let fp_high = h.footprint();
    // SAFETY: live pointer.
    unsafe { h.free(big) };
    assert!(
        h.footprint() < fp_high - (6 << 20),
        "{} vs {}",
        h.footprint(),
        fp_high
    );
    h.check().unwrap();
}

#[test]
fn read_page_and_state_fields_for_viewers() {
    let mut h = Heap::new();
    let a = h.malloc(100);
    let page = a as usize & !4095;
    let bytes = h.read_page(page).expect("a committed page");
    let off = a as usize - 16 - page + 8;
    // SAFETY: a is live.
    let head = unsafe { Chunk::head(Chunk::from_mem(a)) }.0;
    assert_eq!(
        usize::from_le_bytes(bytes[off..off + 8].try_into().unwrap()),
        head
    );
    assert!(h.read_page(page + 1).is_none(), "unaligned");
    assert!(h.read_page(0x1000).is_none(), "not ours");
    use tessera::inspect::state_field;
    let mut seen_small = None;
    let mut seen_top = false;
    for off in 0..1024 {
        match state_field(off) {
            Some(("small bin head", Some(i))) if i == 4 && seen_small.is_none() => {
                seen_small = Some(off)
            }
            Some(("top", None)) => seen_top = true,
            _ => {}
        }
    }
    assert!(seen_small.is_some() && seen_top);
}

#[test]
fn check_reports_a_dirty_byte_in_fresh_top_at_its_address() {
    let mut h = Heap::new();
    let a = h.malloc(100);
    h.check().unwrap();
    let mut top = 0;
    h.walk(&mut |item| {
        if let Item::Heap(hi) = item {
            top = hi.top;
        }
    });
    // A stray write into top's never-used memory (which calloc trusts to
    // be zero) must be caught, at the exact byte.
    let stray = top + 4096 + 3;
    // SAFETY: inside top, committed; this models a wild write.
    unsafe { *(stray as *mut u8) = 1 };
    let err = h.check().unwrap_err();
    assert_eq!(err.addr, stray, "{err}");
    assert!(err.what.contains("clean watermark"), "{err}");
    // SAFETY: restore, so the heap is sound again.
    unsafe { *(stray as *mut u8) = 0 };
    h.check().unwrap();
    // SAFETY: live pointer.
    unsafe { h.free(a) };
}

/// As in malloc.c, a split may leave top no larger than its 16-byte header
/// (`nb < topsize`): the checker, the snapshot walk and a later free all
/// take it. (The fidelity test against the dlmalloc crate found that
/// Tessera used to grow top instead.)
#[test]
fn top_may_shrink_to_its_header() {
    let mut h = Heap::new();
    let top = h.stats().keepcost;
    // A request whose chunk leaves exactly 16 bytes of top.
    let p = h.malloc(top - 16 - 8);
    assert!(!p.is_null());
    assert_eq!(h.stats().keepcost, 16);
    h.check().unwrap();
    let snap = Snapshot::capture(&h, 0);
    let t = snap
        .chunks
        .iter()
        .find(|c| c.kind == ChunkKind::Top)
        .expect("the snapshot walk reaches top");
    assert_eq!(t.size, 16);
    // SAFETY: live, freed once.
    unsafe { h.free(p) };
    h.check().unwrap();
    assert!(h.stats().keepcost >= top);
}
