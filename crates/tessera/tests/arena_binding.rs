//! Which arena a thread uses when its own is busy (see `threads::arena`,
//! `lock_contended`): a thread alone on its arena waits for whoever holds
//! it (another thread's cache flushing chunks home, the decay pass, here
//! the main thread walking the heaps) instead of moving to another arena
//! or making a new one, which would spread its memory over every arena it
//! ever found busy. One test, so that nothing else in this process binds
//! to the arenas meanwhile.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tessera::global;

mod common;
use common::arena_of;

/// 0: the worker is bound; 1: its arena is held, malloc now; 2: done.
static STEP: AtomicU8 = AtomicU8::new(0);

#[test]
fn a_thread_alone_on_its_arena_waits_for_a_visitor() {
    let main_block = global::malloc(64);
    let worker = std::thread::spawn(|| {
        let first = global::malloc(64);
        STEP.store(1, Ordering::Release);
        while STEP.load(Ordering::Acquire) != 2 {
            std::hint::spin_loop();
        }
        // A class this thread never used: its cache is empty, so the
        // refill needs the arena's lock, which the main thread holds.
        let second = global::malloc(700);
        assert!(!second.is_null());
        (first as usize, second as usize)
    });
    while STEP.load(Ordering::Acquire) != 1 {
        std::hint::spin_loop();
    }
    let arenas_before = global::arena_count();
    // Two threads use the allocator here: this one and the worker, each
    // on an arena of its own. Hold the one that is not this thread's
    // while the worker mallocs.
    let main_arena = arena_of(main_block);
    let mut held = None;
    global::for_each_heap(&mut |i, _| {
        if i != main_arena && held.is_none() {
            held = Some(i);
            STEP.store(2, Ordering::Release);
            // The worker now waits for this lock (before the change it
            // moved to this thread's arena at once).
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (first, second) = worker.join().unwrap();
    let first_arena = arena_of(first as *mut u8);
    assert_eq!(
        Some(first_arena),
        held,
        "the worker's arena is the one held (two arenas in this process)"
    );
    assert_eq!(
        arena_of(second as *mut u8),
        first_arena,
        "the worker waited for its own arena instead of moving"
    );
    assert_eq!(global::arena_count(), arenas_before, "no arena was made");
    // SAFETY: each block is live and freed once.
    unsafe {
        global::free(first as *mut u8);
        global::free(second as *mut u8);
        global::free(main_block);
    }
    global::check().unwrap();
}
