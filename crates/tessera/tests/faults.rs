//! Fault injection: the page source fails at random points; every failure
//! must end in a null return with the heap intact, and the heap must keep
//! working once the OS recovers. (The model itself rejects a null return
//! during which the source injected no failure: see
//! `tessera::testing::Model::null_is_excused`.)

use tessera::testing::{Model, Op, OpGen};
use tessera::{Faulty, Heap, Mmap};

/// Returns (failures injected by the source, null returns seen).
fn run_with_faults(seed: u64, rate: usize, ops: usize) -> (usize, usize) {
    let heap = Heap::with_source(Faulty::new(Mmap)).expect("first segment");
    let mut m = Model::new(heap);
    m.heap.source().fail_randomly(rate, seed);
    let mut gen = OpGen::new(seed);
    for i in 0..ops {
        let op = gen.op();
        m.apply(&op)
            .unwrap_or_else(|e| panic!("seed {seed} op {i} {op:?}: {e}"));
        while m.live() > 500 {
            m.apply(&Op::Free(gen.next_u64() as usize)).unwrap();
        }
    }
    let failures = (m.heap.source().failures(), m.failures);
    // The OS recovers: the heap must serve again, including large blocks.
    m.heap.source().reset();
    serves_again(&mut m, &format!("seed {seed}"));
    m.free_all().unwrap();
    failures
}

/// After the OS recovered: small, medium, large and directly mapped
/// requests, aligned and zeroed ones, and a growing realloc all succeed
/// (not one null return more), and the blocks hold their contents.
fn serves_again(m: &mut Model<Faulty<Mmap>>, what: &str) {
    let nulls = m.failures;
    let ops = [
        Op::Malloc(10),
        Op::Malloc(1000),
        Op::Malloc(100_000),
        Op::Malloc(3 << 20),
        Op::Memalign(12, 5000),
        Op::Calloc(100, 300),
        Op::Realloc(usize::MAX, 1 << 20),
        Op::IndependentComalloc(vec![100, 2000, 40]),
    ];
    for op in &ops {
        m.apply(op)
            .unwrap_or_else(|e| panic!("{what}, OS recovered, {op:?}: {e}"));
        assert_eq!(
            m.failures, nulls,
            "{what}: {op:?} returned null after the OS recovered"
        );
    }
}

#[test]
fn random_os_failures_never_corrupt_the_heap() {
    let (mut injected, mut nulls) = (0, 0);
    for seed in 1..=24u64 {
        let rate = [2000, 8000, 20000, 40000][seed as usize % 4];
        let (i, n) = run_with_faults(seed * 7919, rate, 1500);
        injected += i;
        nulls += n;
    }
    assert!(injected > 100, "faults were injected: {injected}");
    assert!(nulls > 20, "some requests failed with null: {nulls}");
}

#[test]
fn failing_after_each_call_count() {
    // Let exactly n OS calls succeed, then fail everything, for each n.
    for n in 0..40 {
        let heap = Heap::with_source(Faulty::new(Mmap)).expect("first segment");
        let mut m = Model::new(heap);
        m.heap.source().fail_after(n);
        let mut gen = OpGen::new(n as u64 + 1);
        for _ in 0..400 {
            let op = gen.op();
            m.apply(&op).unwrap_or_else(|e| panic!("n {n} {op:?}: {e}"));
        }
        m.heap.source().reset();
        m.apply(&Op::Malloc(5 << 20)).unwrap();
        serves_again(&mut m, &format!("fail_after({n})"));
        m.free_all().unwrap();
    }
}

#[test]
fn heap_creation_failure_is_reported_as_none() {
    let f = Faulty::new(Mmap);
    f.fail_always(true);
    assert!(Heap::with_source(f).is_none());
}
