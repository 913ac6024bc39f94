//! Threads that must share an arena (see `threads::arena`,
//! `bind_new_thread` and `lock_contended`): once every arena has a thread
//! and the limit is reached, a new thread joins the arena locked least
//! often so far, and a thread that finds its shared arena locked waits for
//! it instead of moving to another (moving spread each thread's memory
//! over every arena it found busy). One test, so that nothing else in this
//! process binds to the arenas meanwhile.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tessera::global::{self, Tunable};

mod common;
use common::arena_of;

/// Steps of the test, in order.
const IDLE_BOUND: u8 = 1;
const SHARER_BOUND: u8 = 2;
const ARENA_HELD: u8 = 3;
const DONE: u8 = 4;
static STEP: AtomicU8 = AtomicU8::new(0);

fn wait_for_step(step: u8) {
    while STEP.load(Ordering::Acquire) < step {
        std::hint::spin_loop();
    }
}

#[test]
fn a_sharing_thread_joins_the_least_used_arena_and_waits_for_it() {
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
    let idle = std::thread::spawn(|| {
        let p = global::malloc(64);
        STEP.store(IDLE_BOUND, Ordering::Release);
        wait_for_step(DONE);
        p as usize
    });
    wait_for_step(IDLE_BOUND);
    assert_eq!(global::arena_count(), 2, "the limit is reached");

    // A third thread: no arena is free and none may be made, so it joins
    // the one locked least often, the idle thread's.
    let sharer = std::thread::spawn(|| {
        let first = global::malloc(64);
        STEP.store(SHARER_BOUND, Ordering::Release);
        wait_for_step(ARENA_HELD);
        // A class this thread never used: its cache is empty, so the
        // refill needs the arena's lock, which the test thread holds.
        let second = global::malloc(700);
        assert!(!second.is_null());
        (first as usize, second as usize)
    });
    wait_for_step(SHARER_BOUND);

    // Hold the shared arena while the sharer mallocs; the other arena is
    // free all along.
    let mut held = None;
    global::for_each_heap(&mut |i, _| {
        if i != my_arena && held.is_none() {
            held = Some(i);
            STEP.store(ARENA_HELD, Ordering::Release);
            // The sharer waits for this lock (before, it moved to the free
            // arena at once).
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (first, second) = sharer.join().unwrap();
    STEP.store(DONE, Ordering::Release);
    let idle_block = idle.join().unwrap();

    let shared = arena_of(idle_block as *mut u8);
    assert_ne!(shared, my_arena, "the idle thread has an arena of its own");
    assert_eq!(Some(shared), held);
    assert_eq!(
        arena_of(first as *mut u8),
        shared,
        "the sharer joined the arena locked least often (round robin took the first)"
    );
    assert_eq!(
        arena_of(second as *mut u8),
        shared,
        "the sharer waited for its arena instead of moving to the free one"
    );
    assert_eq!(global::arena_count(), 2);
    // SAFETY: each block is live and freed once.
    unsafe {
        global::free(first as *mut u8);
        global::free(second as *mut u8);
        global::free(idle_block as *mut u8);
        global::free(mine);
    }
    global::check().unwrap();
}
