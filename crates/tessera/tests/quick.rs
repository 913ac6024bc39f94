//! Quick lists through the process allocator: a thread cache's overflow
//! flushes park chunks on the thread's arena, its refills take them back,
//! statistics count them as free (`smblks`/`fsmblks`), the checker accepts
//! them, and `trim` consolidates them. One test, so that nothing else in
//! this process touches the arenas meanwhile (the blocks come from
//! `tessera::global`, everything else from the system allocator).

use tessera::global;
use tessera::inspect::ChunkKind;

/// Payload addresses of the chunks a snapshot of every arena shows parked.
fn parked() -> Vec<usize> {
    tessera::testing::global_chunks()
        .into_iter()
        .filter(|c| c.kind == ChunkKind::Parked)
        .map(|c| c.mem())
        .collect()
}

fn free_all(blocks: &[*mut u8]) {
    for &b in blocks {
        // SAFETY: each block is live and freed once.
        unsafe { global::free(b) };
    }
}

#[test]
fn flushed_chunks_are_parked_reused_counted_and_trimmed() {
    // 64-byte requests: 80-byte chunks, one thread-cache class.
    let blocks: Vec<*mut u8> = (0..400).map(|_| global::malloc(64)).collect();
    let before = global::stats();
    free_all(&blocks);
    let first = parked();
    assert!(
        first.len() >= 200,
        "the overflow flushes parked {} chunks",
        first.len()
    );
    assert!(first.iter().all(|&a| blocks.contains(&(a as *mut u8))));
    global::check().expect("the checker accepts parked chunks");

    // Statistics: parked chunks are free for the program, in their own
    // count (glibc's fastbin fields).
    let s = global::stats();
    assert!(s.smblks >= first.len());
    assert_eq!(s.fsmblks, s.smblks * 80);
    assert!(s.fordblks >= s.fsmblks);
    assert!(s.uordblks + first.len() * 80 <= before.uordblks);
    assert_eq!(s.arena, s.uordblks + s.fordblks);

    // The same class again (more blocks than were freed): the refills
    // hand every parked chunk back before anything new is carved.
    let again: Vec<*mut u8> = (0..800).map(|_| global::malloc(64)).collect();
    for a in &first {
        assert!(
            again.contains(&(*a as *mut u8)),
            "parked chunk {a:#x} not reused"
        );
    }
    assert!(parked().is_empty());
    for &b in &again {
        // SAFETY: a live block of 64 bytes.
        unsafe { b.write_bytes(0x5A, 64) };
    }
    global::check().unwrap();

    // Parked again, then malloc_trim: nothing stays parked.
    free_all(&again);
    assert!(!parked().is_empty());
    global::trim(0);
    assert!(parked().is_empty(), "trim consolidates the quick lists");
    assert_eq!(global::stats().smblks, 0);
    global::check().unwrap();
}
