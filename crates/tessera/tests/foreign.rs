//! Blocks of another arena that a thread frees (see `threads::tcache`,
//! "foreign class"): a few blocks smaller than a cache line are a
//! hand-over, and the freeing thread does not hand them out again
//! (mimalloc's rule; without it a worker that frees a block from the main
//! thread gets it back at its next malloc of that size and writes in a
//! cache line that another thread uses: the cache-scratch shape); a stream
//! of them is adopted and reused, as every other allocator reuses them
//! (consumers); larger blocks are reused at once. One test, so that
//! nothing else in this process uses the arenas meanwhile.

use tessera::global;

mod common;
use common::arena_of;

fn free_all(blocks: &[usize]) {
    for &b in blocks {
        // SAFETY: each block is live and freed once.
        unsafe { global::free(b as *mut u8) };
    }
}

#[test]
fn a_few_foreign_blocks_go_home_and_a_stream_is_adopted() {
    // More than a cache class holds (256), so the worker's frees overflow.
    const N: usize = 2000;
    /// Fewer than a foreign list holds (`tcache::FOREIGN_COUNT`, 8).
    const FEW: usize = 5;
    // 24-byte requests: 32-byte chunks, two to a cache line. The main
    // thread's blocks; and a few of 100 bytes, larger than a line.
    let seeds: Vec<usize> = (0..N).map(|_| global::malloc(24) as usize).collect();
    let large: Vec<usize> = (0..FEW).map(|_| global::malloc(100) as usize).collect();
    let home = arena_of(seeds[0] as *mut u8);
    assert!(seeds.iter().all(|&s| arena_of(s as *mut u8) == home));

    let theirs = seeds.clone();
    let (worker_arena, few_back, large_back, adopted) = std::thread::spawn(move || {
        // The worker's own first blocks bind it to an arena of its own.
        let first = global::malloc(24);
        let first_large = global::malloc(100);
        let arena = arena_of(first);
        // A hand-over: a few blocks, then the worker's own work.
        free_all(&theirs[..FEW]);
        let got: Vec<usize> = (0..100).map(|_| global::malloc(24) as usize).collect();
        let few_back = got.iter().filter(|g| theirs[..FEW].contains(g)).count();
        free_all(&got);
        // Blocks larger than a line are reused at once.
        free_all(&large);
        let got: Vec<usize> = (0..FEW).map(|_| global::malloc(100) as usize).collect();
        let large_back = got.iter().filter(|g| large.contains(g)).count();
        free_all(&got);
        free_all(&[first_large as usize]);
        // A stream: the rest, then as many mallocs.
        free_all(&theirs[FEW..]);
        let got: Vec<usize> = (0..N).map(|_| global::malloc(24) as usize).collect();
        let adopted = got.iter().filter(|g| theirs.contains(g)).count();
        free_all(&got);
        free_all(&[first as usize]);
        global::check().expect("the heaps are consistent with foreign lists in use");
        (arena, few_back, large_back, adopted)
    })
    .join()
    .unwrap();
    assert_ne!(
        worker_arena, home,
        "the worker should have an arena of its own (the limit is 2 x cores)"
    );
    assert_eq!(
        few_back, 0,
        "the worker got {few_back} of the {FEW} blocks handed over to it back"
    );
    assert_eq!(
        large_back, FEW,
        "blocks larger than a cache line should be reused by the thread that frees them"
    );
    assert!(
        adopted >= 2 * 8,
        "of a stream of {N} blocks freed by the worker, it reused only {adopted}"
    );

    // The rest went home: the main thread's refills take them back.
    let again: Vec<usize> = (0..N).map(|_| global::malloc(24) as usize).collect();
    let reused = again.iter().filter(|a| seeds.contains(a)).count();
    assert!(
        reused >= N / 4,
        "only {reused} of {N} freed blocks came back to their arena's thread"
    );
    global::check().expect("consistent");
    free_all(&again);
}
