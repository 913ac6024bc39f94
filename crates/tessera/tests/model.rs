//! Model-based tests: random operation sequences against the shadow model
//! (see `tessera::testing`), with `Heap::check` after every step.
//!
//! `TESSERA_PROPTEST_CASES` raises the number of cases (default 2,000), and
//! `TESSERA_LONG_OPS` sets the length of the long deterministic run
//! (default 1,000,000 operations, about 25 s in release).
//!
//! Failing cases proptest finds are saved as seeds in
//! `model.proptest-regressions` next to this file (commit them); every run
//! replays those seeds before it generates new cases.

use proptest::prelude::*;
use proptest::test_runner::{FailurePersistence, FileFailurePersistence};
use tessera::testing::{Model, Op, OpGen};
use tessera::Heap;

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=256,
        3 => 0usize..=8192,
        1 => 0usize..=(256 << 10),
        1 => 0usize..=(4 << 20),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => size().prop_map(Op::Malloc),
        7 => any::<usize>().prop_map(Op::Free),
        3 => (any::<usize>(), size()).prop_map(|(s, n)| Op::Realloc(s, n)),
        1 => (any::<usize>(), size()).prop_map(|(s, n)| Op::ReallocInPlace(s, n)),
        1 => (1usize..16, 0usize..4096).prop_map(|(n, s)| Op::Calloc(n, s)),
        1 => (0u8..=20, size()).prop_map(|(a, n)| Op::Memalign(a, n)),
        1 => (0usize..(1 << 20)).prop_map(Op::Trim),
        1 => (1usize..8, 0usize..600).prop_map(|(n, s)| Op::IndependentCalloc(n, s)),
        1 => proptest::collection::vec(0usize..3000, 1..6).prop_map(Op::IndependentComalloc),
        2 => any::<usize>().prop_map(Op::Park),
        1 => (0usize..64).prop_map(Op::Unpark),
    ]
}

/// Where proptest keeps the seeds of failing cases: `model.proptest-regressions`,
/// beside this file.
const REGRESSIONS: FileFailurePersistence =
    FileFailurePersistence::WithSource("proptest-regressions");

fn cases() -> u32 {
    std::env::var("TESSERA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(REGRESSIONS)),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_programs_keep_every_invariant(ops in proptest::collection::vec(op(), 1..120)) {
        // With quick lists, as an arena has: `Park` and `Unpark` play a
        // thread cache's flushes and refills.
        let mut m = Model::new(Heap::new()).with_quick_lists();
        if let Err(e) = m.run(&ops) {
            panic!("{e}");
        }
    }
}

#[test]
fn the_saved_regression_seeds_are_found_and_replayed() {
    // The proptest above replays every seed of the file before new cases;
    // make sure the file is where proptest looks (a moved or renamed file
    // would silently replay nothing).
    let seeds = REGRESSIONS.load_persisted_failures2(Some(file!()));
    assert!(
        !seeds.is_empty(),
        "no seeds loaded from tests/model.proptest-regressions"
    );
}

#[test]
fn saved_regression_cases_pass() {
    // The cases the seeds of model.proptest-regressions once shrank to.
    // A seed replays through the current strategies, which have changed
    // since it was saved, so the shrunk cases are kept here as well.
    let cases: &[&[Op]] = &[
        // A request just under the trim threshold that top could not hold.
        &[Op::Malloc(1712049)],
    ];
    for ops in cases {
        let mut m = Model::new(Heap::new()).with_quick_lists();
        m.run(ops).unwrap_or_else(|e| panic!("{ops:?}: {e}"));
        assert_eq!(m.failures, 0, "{ops:?}: a request failed");
    }
}

#[test]
fn a_null_return_needs_an_excuse() {
    // The model fails on a null return the heap had no reason for (so a
    // heap that answers null to what it can serve cannot pass); these are
    // the reasons it accepts, and nothing else.
    let mut m = Model::new(Heap::new());
    m.apply(&Op::Malloc(100)).unwrap();
    let fp = m.heap.footprint();
    let mib8 = Some(8 << 20);
    assert!(!m.null_is_excused(mib8, 0, fp), "the heap can serve 8 MiB");
    assert!(m.null_is_excused(mib8, 1, fp), "the OS failed on purpose");
    assert!(m.null_is_excused(None, 0, fp), "the size overflowed");
    assert!(m.null_is_excused(Some(1 << 41), 0, fp), "2 TiB: no machine");
    m.heap.set_footprint_limit(fp);
    assert!(m.null_is_excused(mib8, 0, fp), "past the footprint limit");
    m.apply(&Op::Malloc(8 << 20)).unwrap();
    assert_eq!(m.failures, 1, "refused under the limit, and counted");
    m.heap.set_footprint_limit(0);
    m.apply(&Op::Malloc(8 << 20)).unwrap();
    assert_eq!(m.failures, 1, "served once the limit is lifted");
    m.free_all().unwrap();
}

#[test]
fn debug_mode_raises_no_false_alarms() {
    // The debug tier fills and verifies every free chunk and checks the
    // heap every 13 operations: a sound program must pass it untouched.
    let mut gen = OpGen::new(0xDEB6);
    gen.max_size = 256 << 10;
    for round in 0..20 {
        let mut heap = Heap::new();
        heap.set_debug(2, 13);
        let mut m = Model::new(heap);
        m.check_every_op = false;
        for i in 0..2000 {
            let op = gen.op();
            m.apply(&op)
                .unwrap_or_else(|e| panic!("round {round} op {i} {op:?}: {e}"));
        }
        m.free_all().unwrap();
    }
}

#[test]
fn long_deterministic_run() {
    let n: usize = std::env::var("TESSERA_LONG_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut gen = OpGen::new(0x5EED);
    let mut m = Model::new(Heap::new()).with_quick_lists();
    let mut parked_seen = 0;
    // A full check after every op would make a long run quadratic in the
    // heap size; check every 64 ops and after every large op instead.
    m.check_every_op = false;
    for i in 0..n {
        let op = gen.op();
        m.apply(&op)
            .unwrap_or_else(|e| panic!("op {i} {op:?}: {e}"));
        if i % 64 == 0 {
            m.heap
                .check()
                .unwrap_or_else(|e| panic!("after op {i} {op:?}: {e}"));
            parked_seen = parked_seen.max(m.heap.stats().smblks);
        }
        // Keep the live set bounded so the run stays fast.
        while m.live() > 2000 {
            m.apply(&Op::Free(gen.next_u64() as usize)).unwrap();
        }
    }
    m.free_all().unwrap();
    if n >= 100_000 {
        // (Consolidation empties the lists often: the heap grows, top
        // passes the trim threshold, `Trim` runs.)
        assert!(parked_seen >= 5, "the run parked chunks ({parked_seen})");
    }
}

#[test]
fn a_model_that_can_fail_does_fail() {
    // The model must notice lost data: corrupt a block behind its back.
    let mut m = Model::new(Heap::new());
    m.apply(&Op::Malloc(64)).unwrap();
    let mut out = [std::ptr::null_mut(); 1];
    // Find the live block through the heap walk and scribble on it.
    m.heap.walk(&mut |item| {
        if let tessera::inspect::Item::Chunk(c) = item {
            if c.kind == tessera::inspect::ChunkKind::InUse {
                out[0] = c.mem() as *mut u8;
            }
        }
    });
    // SAFETY: the block is live and at least 64 bytes long.
    unsafe { *out[0].add(10) ^= 0xFF };
    let err = m.apply(&Op::Free(0)).unwrap_err();
    assert!(err.contains("lost data"), "{err}");
}
