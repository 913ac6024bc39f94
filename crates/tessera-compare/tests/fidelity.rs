//! Tessera's `Heap` against dlmalloc 2.8.6 (the `dlmalloc` crate): random
//! programs of thousands of operations (sizes from 0 to past the mmap
//! threshold, frees in random order, realloc, memalign) must put every
//! block at the same offset and leave the same chunks after every step;
//! each known difference has a name (`fidelity::Departure`, listed in
//! docs/dlmalloc-map.md). The driver is `tessera_compare::fidelity::run`.

use proptest::prelude::*;
use tessera_compare::fidelity::{self, Departure, Op};

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        50 => 0usize..=64,
        30 => 65usize..=1024,
        12 => 1025usize..=16 << 10,
        5 => (16 << 10) + 1..=200_000usize,
        3 => 200_000usize..=600_000,
    ]
}

fn align() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => Just(16usize),
        6 => Just(32usize),
        1 => Just(64usize),
        1 => Just(256usize),
        1 => Just(4096usize),
    ]
}

fn op(align: BoxedStrategy<usize>) -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => size().prop_map(Op::Malloc),
        3 => size().prop_map(Op::Calloc),
        30 => any::<usize>().prop_map(Op::Free),
        10 => (any::<usize>(), size()).prop_map(|(i, n)| Op::Realloc(i, n)),
        1 => any::<usize>().prop_map(|i| Op::Realloc(i, 0)),
        4 => (align, size()).prop_map(|(a, n)| Op::Memalign(a, n)),
    ]
}

/// One line per case on stderr (uncaptured): how far the comparison went.
fn tell(r: &fidelity::Report, len: usize) {
    let mut seen: Vec<&str> = r.departures.iter().map(|d| d.1.name()).collect();
    seen.dedup();
    let line = format!(
        "fidelity: compared {} of {len} operations, at most {} blocks live{}; departures seen: {seen:?}\n",
        r.compared,
        r.max_live,
        r.ended.as_ref().map(|e| format!(" (ended: {e})")).unwrap_or_default(),
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Every alignment up to 4096: a run may end at the crate's own
    /// memalign departure (recognised by its signature).
    #[test]
    fn tessera_lays_out_blocks_as_dlmalloc_does(
        ops in prop::collection::vec(op(align().boxed()), 1000..3000)
    ) {
        match fidelity::run(&ops) {
            Ok(r) => {
                tell(&r, ops.len());
                if let Some(e) = &r.ended {
                    prop_assert!(
                        e.contains("memalign departure") || e.contains("left one segment"),
                        "ended early: {}", e
                    );
                }
            }
            Err(m) => prop_assert!(false, "{}", m),
        }
    }

    /// Alignments of 16 and 32 only, where the crate's memalign cannot
    /// depart from malloc.c: every operation of every run is compared.
    #[test]
    fn whole_runs_agree_when_memalign_cannot_depart(
        ops in prop::collection::vec(op(prop_oneof![Just(16usize), Just(32usize)].boxed()), 2000..4000)
    ) {
        match fidelity::run(&ops) {
            Ok(r) => {
                tell(&r, ops.len());
                prop_assert!(
                    r.ended.is_none() || r.ended.as_deref().is_some_and(|e| e.contains("left one segment")),
                    "ended early: {:?}", r.ended
                );
                prop_assert!(r.departures.iter().all(|d| d.1 != Departure::CrateMemalignLead));
            }
            Err(m) => prop_assert!(false, "{}", m),
        }
    }
}

/// Each departure, shown on the smallest program that has it: with the
/// driver's handling the heaps agree, and the departure is reported.
#[test]
fn each_departure_is_recognised_on_its_smallest_program() {
    use Op::*;
    let cases: [(Departure, Vec<Op>); 3] = [
        (
            Departure::ReallocZeroFrees,
            vec![Malloc(100), Malloc(10), Realloc(0, 0), Malloc(100)],
        ),
        (
            // 100 KiB before top, then growing to 1 MiB: top is shorter.
            Departure::ReallocGrowsTop,
            vec![Malloc(100 << 10), Realloc(0, 1 << 20), Malloc(10)],
        ),
        (
            // 64-aligned: the first chunk's user pointer + 48 must be a
            // multiple of 64 for malloc's chunk to leave exactly 32 bytes
            // of lead; a few sizes before it find such a spot.
            Departure::CrateMemalignLead,
            crate_memalign_program(),
        ),
    ];
    for (want, ops) in cases {
        let r = fidelity::run(&ops).unwrap_or_else(|m| panic!("{}: {m}", want.name()));
        assert!(
            r.departures.iter().any(|d| d.1 == want),
            "{}: not seen in {:?}",
            want.name(),
            r
        );
    }
    assert_eq!(Departure::ALL.len(), 3);
}

/// A program whose memalign(64, 100) meets the crate's departure: small
/// mallocs move top until its start leaves exactly 32 bytes of lead.
fn crate_memalign_program() -> Vec<Op> {
    for pad in 0..8 {
        // Chunks of 32 bytes, and one of 48 when pad is odd: top's start
        // walks through every offset modulo 64.
        let mut ops: Vec<Op> = (0..pad / 2).map(|_| Op::Malloc(8)).collect();
        if pad % 2 == 1 {
            ops.push(Op::Malloc(40));
        }
        ops.push(Op::Memalign(64, 100));
        let r = fidelity::run(&ops).expect("no mismatch");
        if r.departures
            .iter()
            .any(|d| d.1 == Departure::CrateMemalignLead)
        {
            return ops;
        }
    }
    panic!("no program of up to 4 small mallocs meets the departure");
}

/// Without the driver's handling each departure is a real difference:
/// the allocators, called directly, do what docs/dlmalloc-map.md says.
#[test]
fn without_handling_the_departures_differ() {
    use tessera_compare::dl::DlHeap;
    use tessera_compare::replay::Subject;
    use tessera_compare::tess::TesseraHeap;
    let mut t = TesseraHeap::with_heap(
        tessera::Heap::with_config(tessera::Mmap, fidelity::tessera_config()).unwrap(),
    );
    let mut d = DlHeap::new(t.chunks().1).unwrap();
    // realloc-grows-top: a block before a short top.
    let (a, b) = (t.malloc(100 << 10), d.malloc(100 << 10));
    let (a2, b2) = (t.realloc(a, 1 << 20), d.realloc(b, 1 << 20));
    assert_eq!(a2, a, "Tessera grows the block in place");
    assert_ne!(b2, b, "dlmalloc moves it");
    // realloc-zero-frees: dlmalloc's realloc(p, 0) keeps a minimal chunk
    // (Tessera's frees: `tessera::Heap::realloc`).
    let p = d.malloc(100);
    assert_ne!(d.realloc(p, 0), 0);
    let q = t.malloc(100);
    // SAFETY: q is live.
    assert!(unsafe { t.heap.realloc(q as *mut u8, 0) }.is_null());
}
