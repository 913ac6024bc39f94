//! A decay delay of 0 (`TESSERA_DECAY_MS=0`, as jemalloc's
//! `dirty_decay_ms:0`): free pages go back to the OS as the arena is
//! unlocked, not a delay later. One thread, no background thread, so
//! nothing else purges: with the default delay the same frees purge
//! nothing at once. Its own binary: the tunables are process-wide.

use tessera::global::{self, Tunable};

const BLOCK: usize = 20_000;
const BLOCKS: usize = 2000;

/// Allocates `BLOCKS` blocks of `BLOCK` bytes, writes them, frees every
/// other one (so nothing merges into top) and returns the rest.
fn fill_and_free_half() -> Vec<usize> {
    let mut kept = Vec::new();
    let mut freed = Vec::new();
    for i in 0..BLOCKS {
        let p = global::malloc(BLOCK);
        assert!(!p.is_null());
        // SAFETY: BLOCK usable bytes.
        unsafe { p.write_bytes(0x5a, BLOCK) };
        if i % 2 == 0 {
            freed.push(p as usize);
        } else {
            kept.push(p as usize);
        }
    }
    for p in freed {
        // SAFETY: live, freed once.
        unsafe { global::free(p as *mut u8) };
    }
    kept
}

fn free_all(blocks: Vec<usize>) {
    for p in blocks {
        // SAFETY: live, freed once.
        unsafe { global::free(p as *mut u8) };
    }
}

#[test]
fn a_delay_of_zero_purges_as_the_arena_is_unlocked() {
    assert!(global::set_tunable(Tunable::Background, 0));
    // The default delay: the frees leave their pages resident.
    let kept = fill_and_free_half();
    let purged_default = global::stats().purged;
    assert_eq!(purged_default, 0, "nothing purges within the default delay");
    free_all(kept);
    global::check().unwrap();

    assert!(global::set_tunable(Tunable::DecayMs, 0));
    let kept = fill_and_free_half();
    let s = global::stats();
    // 1000 free 20 KB chunks, each with 3-4 whole pages inside: at least
    // 10 MiB, less what may wait below the floor (1 MiB) and the chunks
    // still in the thread cache's medium classes.
    println!(
        "purged {} KiB of {} KiB free",
        s.purged >> 10,
        s.fordblks >> 10
    );
    assert!(s.purged >= 10 << 20, "purged only {} bytes", s.purged);
    global::check().unwrap();
    // Blocks made from purged pages are whole again (they read as zero
    // until written; the allocator's own words are intact).
    let again: Vec<usize> = (0..BLOCKS / 2)
        .map(|_| {
            let p = global::malloc(BLOCK);
            assert!(!p.is_null());
            // SAFETY: BLOCK usable bytes.
            unsafe { p.write_bytes(0xa5, BLOCK) };
            p as usize
        })
        .collect();
    global::check().unwrap();
    free_all(again);
    free_all(kept);
    global::check().unwrap();
    assert!(global::set_tunable(Tunable::DecayMs, 1000));
}
