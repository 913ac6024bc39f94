//! Threads that must share an arena (see `threads::arena`,
//! `bind_new_thread` and `lock_contended`): once every arena has a thread
//! and the limit is reached, a new thread joins the arena with the fewest
//! threads, and of those the one locked least often so far; a thread that
//! finds its shared arena locked waits for it, and moves only after it has
//! waited many times, to an arena, free right now, with fewer threads
//! (moving on every contention spread each thread's memory over every
//! arena it found busy). One test, so that nothing else in this process
//! binds to the arenas meanwhile.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
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
const DONE: u8 = 7;
static STEP: AtomicU8 = AtomicU8::new(0);
/// Rounds of the last phase: the test thread holds the shared arena during
/// round `HELD_ROUND`; the sharer has finished round `SHARER_ROUND`.
static HELD_ROUND: AtomicU32 = AtomicU32::new(0);
static SHARER_ROUND: AtomicU32 = AtomicU32::new(0);
/// Set by the sharer once its malloc lands in another arena.
static MOVED_AT: AtomicU32 = AtomicU32::new(0);
const MAX_ROUNDS: u32 = 3000;

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

/// Holds the lock of arena `i` for `ms`, calling `held` once it is held.
fn hold_arena(i: usize, ms: u64, held: impl Fn()) {
    global::for_each_heap(&mut |j, _| {
        if j == i {
            held();
            std::thread::sleep(Duration::from_millis(ms));
        }
    });
}

#[test]
fn sharing_threads_join_the_least_used_arena_and_move_only_to_even_the_load_after_many_waits() {
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
        // Round after round, a refill while the arena is held.
        let home = arena_of(first);
        let mut moved = 0usize;
        for round in 1..=MAX_ROUNDS {
            let p = global::malloc(900);
            // SAFETY: a live block, freed once.
            unsafe { global::free(p) };
            global::flush_thread_cache();
            while HELD_ROUND.load(Ordering::Acquire) < round {
                std::hint::spin_loop();
            }
            let p = global::malloc(900);
            if arena_of(p) != home {
                // (Before the round is announced, which the test thread
                // waits for before it looks.)
                MOVED_AT.store(round, Ordering::Release);
                SHARER_ROUND.store(round, Ordering::Release);
                moved = p as usize;
                break;
            }
            SHARER_ROUND.store(round, Ordering::Release);
            // SAFETY: as above.
            unsafe { global::free(p) };
        }
        (first as usize, waited as usize, moved)
    });
    wait_for_step(SHARER_BOUND);

    // A second idle thread: this thread's arena now has fewer threads (one
    // against two), so it goes there. Both arenas then have two.
    let second_idle = idle_thread(SECOND_IDLE_BOUND, SECOND_IDLE_GONE);
    wait_for_step(SECOND_IDLE_BOUND);

    // Hold the shared arena while the sharer mallocs: the other arena is
    // free all along but has as many threads, so the sharer waits.
    let idle_arena = 1 - my_arena; // two arenas: indices 0 and 1
    hold_arena(idle_arena, 100, || {
        STEP.store(HELD_FOR_WAIT, Ordering::Release)
    });
    wait_for_step(WAITED);

    // The second idle thread exits: this thread's arena has one thread
    // again. Hold the shared arena round after round while the sharer
    // refills: it waits, and only after many waits moves.
    STEP.store(SECOND_IDLE_GONE, Ordering::Release);
    let second_idle_block = second_idle.join().unwrap();
    for round in 1..=MAX_ROUNDS {
        hold_arena(idle_arena, 1, || HELD_ROUND.store(round, Ordering::Release));
        while SHARER_ROUND.load(Ordering::Acquire) < round {
            std::hint::spin_loop();
        }
        if MOVED_AT.load(Ordering::Acquire) != 0 {
            break;
        }
    }

    let (first, waited, moved) = sharer.join().unwrap();
    STEP.store(DONE, Ordering::Release);
    let idle_block = idle.join().unwrap();

    for (block, arena, what) in [
        (
            idle_block,
            idle_arena,
            "the idle thread has the other arena",
        ),
        (
            first,
            idle_arena,
            "the sharer joined the arena locked least often (round robin took the first)",
        ),
        (
            second_idle_block,
            my_arena,
            "the second idle thread joined the arena with fewer threads",
        ),
        (
            waited,
            idle_arena,
            "the sharer waited for its arena instead of moving to one as loaded",
        ),
    ] {
        assert_eq!(arena_of(block as *mut u8), arena, "{what}");
    }
    let moved_at = MOVED_AT.load(Ordering::Acquire);
    assert!(moved != 0, "the sharer never moved in {MAX_ROUNDS} rounds");
    assert_eq!(
        arena_of(moved as *mut u8),
        my_arena,
        "the sharer moved to the free arena with fewer threads"
    );
    assert!(
        moved_at > 16,
        "the sharer moved after {moved_at} rounds of waiting: not on the first few"
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
