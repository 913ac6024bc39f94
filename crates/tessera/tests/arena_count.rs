//! How many arenas the default limit allows (see `threads::arena`,
//! `limit`): 2 x cores while there are few threads, one per two threads
//! once there are more than 4 x cores of them (up to 8 x cores, and never
//! more than 128 arenas). One test, so that nothing else in this process
//! binds to the arenas meanwhile.

use std::sync::Barrier;
use tessera::global;

#[test]
fn many_threads_get_one_arena_per_two() {
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    // This thread and `workers` more: one arena per two of them.
    let workers = 6 * cores - 1;
    let mine = global::malloc(64);
    let done = Barrier::new(workers + 1);
    let blocks: Vec<usize> = std::thread::scope(|s| {
        // One at a time, each bound before the next starts, so that every
        // choice sees the threads before it.
        let (tx, rx) = std::sync::mpsc::channel();
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let tx = tx.clone();
                let h = s.spawn(|| {
                    let p = global::malloc(64) as usize;
                    tx.send(()).unwrap();
                    drop(tx);
                    // Stay bound until every thread has been counted.
                    done.wait();
                    p
                });
                rx.recv().unwrap();
                h
            })
            .collect();
        let arenas = global::arena_count();
        done.wait();
        assert_eq!(
            arenas,
            (3 * cores).min(128),
            "{} threads on {cores} cores: one arena per two (2 x cores = {})",
            workers + 1,
            2 * cores
        );
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for p in blocks {
        // SAFETY: live blocks, each freed once.
        unsafe { global::free(p as *mut u8) };
    }
    // SAFETY: as above.
    unsafe { global::free(mine) };
    global::check().unwrap();
}
