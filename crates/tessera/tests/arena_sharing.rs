//! Threads that must share an arena (see `threads::arena`,
//! `bind_new_thread` and `lock_contended`): once every arena has a thread
//! and the limit is reached, a new thread joins the arena with the fewest
//! threads, and of those the one locked least often so far; a thread that
//! finds its shared arena locked waits for it, unless another arena, free
//! right now, has fewer threads (moving on every contention spread each
//! thread's memory over every arena it found busy). One test, so that
//! nothing else in this process binds to the arenas meanwhile.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tessera::global::{self, Tunable};

mod common;
use common::arena_of;

/// Steps of the test, in order.
const IDLE_BOUND: u8 = 1;
const SHARER_BOUND: u8 = 2;
const SECOND_IDLE_BOUND: u8 = 3;
const HELD_FOR_WAIT: u8 = 4;
const WAITED: u8 = 5;
const SECOND_IDLE_GONE: u8 = 6;
const HELD_FOR_MOVE: u8 = 7;
const DONE: u8 = 8;
static STEP: AtomicU8 = AtomicU8::new(0);

fn wait_for_step(step: u8) {
    while STEP.load(Ordering::Acquire) < step {
        std::hint::spin_loop();
    }
}

/// A thread that binds to an arena (its first malloc), announces `bound`
/// and stays bound until `until`; returns its block.
fn idle_thread(bound: u8, until: u8) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let p = global::malloc(64);
        STEP.store(bound, Ordering::Release);
        wait_for_step(until);
        p as usize
    })
}

/// Holds the lock of arena `i` for 100 ms, announcing `step` once held.
fn hold_arena(i: usize, step: u8) {
    global::for_each_heap(&mut |j, _| {
        if j == i {
            STEP.store(step, Ordering::Release);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

#[test]
fn sharing_threads_join_the_least_used_arena_and_move_only_to_even_the_load() {
    assert!(global::set_tunable(Tunable::ArenaMax, 2));
    // This thread's arena (the first one): locked many times over, by
    // refills and flushes of its cache.
    let mine = global::malloc(64);
    for _ in 0..200 {
        let blocks: Vec<*mut u8> = (1..40).map(|i| global::malloc(i * 16)).collect();
        for p in blocks {
            // SAFETY: live blocks, each freed once.
            unsafe { global::free(p) };
        }
        global::flush_thread_cache();
    }
    let my_arena = arena_of(mine);

    // A thread that takes the second (and last) arena, allocates once and
    // then only waits.
    let idle = idle_thread(IDLE_BOUND, DONE);
    wait_for_step(IDLE_BOUND);
    assert_eq!(global::arena_count(), 2, "the limit is reached");

    // The sharer: no arena is free and none may be made, and both have one
    // thread, so it joins the one locked least often, the idle thread's.
    // Each of its later mallocs is of a class it never used: its cache is
    // empty, so the refill needs its arena's lock.
    let sharer = std::thread::spawn(|| {
        let first = global::malloc(64);
        STEP.store(SHARER_BOUND, Ordering::Release);
        wait_for_step(HELD_FOR_WAIT);
        let waited = global::malloc(700);
        STEP.store(WAITED, Ordering::Release);
        wait_for_step(HELD_FOR_MOVE);
        let moved = global::malloc(900);
        (first as usize, waited as usize, moved as usize)
    });
    wait_for_step(SHARER_BOUND);

    // A second idle thread: this thread's arena now has fewer threads (one
    // against two), so it goes there. Both arenas then have two.
    let second_idle = idle_thread(SECOND_IDLE_BOUND, SECOND_IDLE_GONE);
    wait_for_step(SECOND_IDLE_BOUND);

    // Hold the shared arena while the sharer mallocs: the other arena is
    // free all along but has as many threads, so the sharer waits.
    let idle_arena = 1 - my_arena; // two arenas: indices 0 and 1
    hold_arena(idle_arena, HELD_FOR_WAIT);
    wait_for_step(WAITED);

    // The second idle thread exits: this thread's arena has one thread
    // again. Hold the shared arena once more: now the sharer moves.
    STEP.store(SECOND_IDLE_GONE, Ordering::Release);
    let second_idle_block = second_idle.join().unwrap();
    hold_arena(idle_arena, HELD_FOR_MOVE);

    let (first, waited, moved) = sharer.join().unwrap();
    STEP.store(DONE, Ordering::Release);
    let idle_block = idle.join().unwrap();

    assert_eq!(
        arena_of(idle_block as *mut u8),
        idle_arena,
        "the idle thread has the other arena"
    );
    assert_eq!(
        arena_of(first as *mut u8),
        idle_arena,
        "the sharer joined the arena locked least often (round robin took the first)"
    );
    assert_eq!(
        arena_of(second_idle_block as *mut u8),
        my_arena,
        "the second idle thread joined the arena with fewer threads"
    );
    assert_eq!(
        arena_of(waited as *mut u8),
        idle_arena,
        "the sharer waited for its arena instead of moving to one as loaded"
    );
    assert_eq!(
        arena_of(moved as *mut u8),
        my_arena,
        "the sharer moved to the free arena with fewer threads"
    );
    assert_eq!(global::arena_count(), 2);
    // SAFETY: each block is live and freed once.
    unsafe {
        for p in [first, waited, moved, idle_block, second_idle_block] {
            global::free(p as *mut u8);
        }
        global::free(mine);
    }
    global::check().unwrap();
}
