//! A segment that a free empties is kept for reuse, one at a time, in the
//! process allocator's arenas (see `heap::grow`, `release_if_empty`):
//! freeing the blocks of a middle segment leaves the footprint where it
//! was, allocating as much again reuses the segment instead of mapping a
//! new one, and `malloc_trim` gives it back. One test in its own binary:
//! it reads the process-wide footprint.

use tessera::global;

/// Segments are this large and aligned to it (`heap::segment`).
const SEGMENT: usize = 64 << 20;
/// Below the mmap threshold (256 KiB) and above the thread cache's medium
/// classes (64 KiB): every block goes to the arena's segments.
const BLOCK: usize = 200 << 10;

fn segment_of(p: usize) -> usize {
    p / SEGMENT
}

fn malloc_touched(n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            let p = global::malloc(BLOCK);
            assert!(!p.is_null());
            // SAFETY: BLOCK usable bytes.
            unsafe { p.write_bytes(0x3c, BLOCK) };
            p as usize
        })
        .collect()
}

fn free_all(blocks: &[usize]) {
    for &b in blocks {
        // SAFETY: each block is live and freed once.
        unsafe { global::free(b as *mut u8) };
    }
}

#[test]
fn an_emptied_segment_waits_for_reuse_and_trim_gives_it_back() {
    // About 2.5 segments' worth: the arena needs a first, a middle and a
    // top segment.
    let blocks = malloc_touched(5 * SEGMENT / 2 / BLOCK);
    let first = segment_of(blocks[0]);
    let last = segment_of(*blocks.last().unwrap());
    let (middle, rest): (Vec<usize>, Vec<usize>) = blocks
        .iter()
        .partition(|&&b| segment_of(b) != first && segment_of(b) != last);
    assert!(
        middle.len() * BLOCK > SEGMENT / 2,
        "{} blocks in a middle segment",
        middle.len()
    );
    let before = global::footprint();
    free_all(&middle);
    global::check().unwrap();
    let emptied = global::footprint();
    // Before the spare, the segment was unmapped here (64 MiB less).
    assert!(
        emptied + (8 << 20) > before,
        "the emptied segment is kept: footprint {before} -> {emptied}"
    );
    // As much again: served from the kept segment, no new one.
    let again = malloc_touched(middle.len());
    let reused = global::footprint();
    assert!(
        reused < emptied + (8 << 20),
        "reused without growing: {emptied} -> {reused}"
    );
    assert!(again
        .iter()
        .any(|&b| middle.iter().any(|&m| segment_of(m) == segment_of(b))));
    global::check().unwrap();
    free_all(&again);
    // malloc_trim unmaps the kept segment.
    global::trim(0);
    let trimmed = global::footprint();
    assert!(
        trimmed + (48 << 20) < emptied,
        "trim gives the kept segment back: {emptied} -> {trimmed}"
    );
    global::check().unwrap();
    free_all(&rest);
    global::check().unwrap();
}
