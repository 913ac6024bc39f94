//! Fault injection: the page source fails at random points; every failure
//! must end in a null return with the heap intact, and the heap must keep
//! working once the OS recovers.

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
    for size in [10usize, 1000, 100_000, 3 << 20] {
        m.apply(&Op::Malloc(size)).unwrap();
    }
    m.free_all().unwrap();
    failures
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
        m.free_all().unwrap();
    }
}

#[test]
fn heap_creation_failure_is_reported_as_none() {
    let f = Faulty::new(Mmap);
    f.fail_always(true);
    assert!(Heap::with_source(f).is_none());
}
