//! Giving memory back over time, through the process allocator: two
//! threads fill their arenas, free every other block (so nothing merges
//! into top) and then sit idle while alive; within the decay delay and a
//! few ticks the arenas give their free pages back (RSS falls, the heap
//! counts them purged) and their quick lists are consolidated. Its own
//! binary: it reads the process RSS and starts the background thread.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tessera::global::{self, Tunable};

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn idle_arenas_give_their_free_pages_back() {
    let rss0 = rss_bytes();
    assert!(global::set_tunable(Tunable::DecayMs, 200));
    assert!(!global::set_tunable(Tunable::DecayMs, 3_600_001));
    let filled = Arc::new(Barrier::new(3));
    let done = Arc::new(Barrier::new(3));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (filled, done) = (filled.clone(), done.clone());
            std::thread::spawn(move || {
                // 40 MiB in 20 KB blocks, every page written; small blocks
                // in between, which the thread cache flushes to the quick
                // lists when they are freed.
                let mut big = Vec::new();
                let mut small = Vec::new();
                for _ in 0..2000 {
                    let p = global::malloc(20_000);
                    assert!(!p.is_null());
                    // SAFETY: 20,000 usable bytes.
                    unsafe { p.write_bytes(7, 20_000) };
                    big.push(p as usize);
                    for _ in 0..8 {
                        small.push(global::malloc(48) as usize);
                    }
                }
                for (i, &p) in big.iter().enumerate() {
                    if i % 2 == 0 {
                        // SAFETY: live, freed once.
                        unsafe { global::free(p as *mut u8) };
                    }
                }
                for &p in &small {
                    // SAFETY: live, freed once.
                    unsafe { global::free(p as *mut u8) };
                }
                filled.wait();
                // Idle, alive, holding the other half.
                done.wait();
                for (i, &p) in big.iter().enumerate() {
                    if i % 2 == 1 {
                        // SAFETY: live, freed once.
                        unsafe { global::free(p as *mut u8) };
                    }
                }
            })
        })
        .collect();
    filled.wait();
    let rss_full = rss_bytes();
    // (Parked chunks counted from the statistics: a snapshot's text would
    // itself take RSS.)
    let parked_before = global::stats().smblks;
    // The other threads are idle now; wait for the decay delay and a few
    // ticks (with a generous deadline for a loaded machine).
    let start = Instant::now();
    let mut purged = 0;
    while start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        let s = global::stats();
        purged = s.purged;
        if purged >= 30 << 20 && s.smblks == 0 {
            break;
        }
    }
    let rss_idle = rss_bytes();
    let parked_after = global::stats().smblks;
    println!(
        "rss {} -> {} -> {} MiB after {:?}; purged {} MiB; parked chunks {parked_before} -> {parked_after}",
        rss0 >> 20,
        rss_full >> 20,
        rss_idle >> 20,
        start.elapsed(),
        purged >> 20,
    );
    assert!(
        tessera::threads::decay::background_running(),
        "two threads started the background thread"
    );
    assert!(purged >= 30 << 20, "purged only {purged} bytes");
    // What stays: the live half (2 x 1000 blocks of 20 KB, 40 MB); the
    // partial pages at both ends of each free 20 KB chunk (only whole
    // pages inside a chunk are purged: 4-8 KiB of each stays, 8-16 MB);
    // the thread caches and the test's own memory.
    let live = 2 * 1000 * 20_000;
    assert!(
        rss_idle <= rss0 + live + (16 << 20),
        "RSS {rss0} at the start, {rss_full} full, {rss_idle} idle; live {live}"
    );
    assert!(parked_before > 0, "the small frees were parked");
    assert_eq!(parked_after, 0, "idle arenas consolidate their quick lists");
    global::check().unwrap();
    done.wait();
    for w in workers {
        w.join().unwrap();
    }
    global::check().unwrap();
}
