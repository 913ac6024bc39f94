//! Thread churn with bounded memory: a hundred thousand short-lived
//! threads, each allocating through its own thread cache and leaving
//! chunks in it when it exits, must not make the process allocator grow.
//!
//! The test reads the process-wide footprint, which every thread of the
//! process moves, so it is the only test of this binary: no sibling test
//! allocates or frees while it measures.

use tessera::global;

#[global_allocator]
static GLOBAL: tessera::Tessera = tessera::Tessera;

/// Growth allowed between the warm-up and the end, plus [`PER_NEW_ARENA`]
/// for each arena created after the warm-up (their number is bounded by
/// the arena limit). Alone in its process, the footprint went from
/// 0.8-1.0 MB after the 4,000 threads of the warm-up to 1.2-1.4 MB after
/// 100,000 (0-1 new arenas; 6 Dec 2026, `cargo test --release -p tessera
/// --test thread_churn -- --nocapture`, three runs). When this test shared
/// its binary with the other concurrency tests, their blocks moved the
/// footprint by tens of MB while it measured (27-102 MB after the
/// warm-up, 10-13 MB at the end), enough to hide a leak of that size.
const ALLOWED_GROWTH: usize = 1 << 20;

/// What an arena created during the run may add: its first segment and
/// what the threads it serves keep.
const PER_NEW_ARENA: usize = 512 << 10;

#[test]
fn a_hundred_thousand_short_threads_do_not_grow_memory() {
    let spawn_batch = |n: usize| {
        for _ in 0..n / 8 {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    std::thread::spawn(move || {
                        let v: Vec<Box<[u8; 100]>> =
                            (0..20).map(|_| Box::new([i as u8; 100])).collect();
                        let s: String = "x".repeat(500 + i * 10);
                        assert!(v.iter().all(|b| b.iter().all(|&x| x == i as u8)));
                        assert!(s.len() == 500 + i * 10 && s.bytes().all(|x| x == b'x'));
                        // Leave freed chunks in the thread cache on exit.
                        drop(v);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        }
    };
    spawn_batch(4000);
    let fp_after_warmup = global::footprint();
    let arenas_after_warmup = global::arena_count();
    let n: usize = std::env::var("TESSERA_THREAD_CHURN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    spawn_batch(n);
    let fp_end = global::footprint();
    let new_arenas = global::arena_count() - arenas_after_warmup;
    println!(
        "footprint after warm-up {fp_after_warmup}, after {n} threads {fp_end}, arenas {}",
        global::arena_count()
    );
    assert!(
        fp_end <= fp_after_warmup + ALLOWED_GROWTH + new_arenas * PER_NEW_ARENA,
        "{fp_after_warmup} -> {fp_end} ({new_arenas} arenas created after the warm-up)"
    );
    global::check().unwrap();
}
