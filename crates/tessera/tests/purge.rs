//! Purging: the pages inside free chunks go back to the OS while the chunks
//! stay, the heap counts them, the checker agrees, snapshots draw them, and
//! reuse or merging takes them off the count. Its own binary: it reads the
//! process RSS.

use tessera::heap::chunk::{purgeable_bytes, Chunk};
use tessera::inspect::{role_in_chunk, ChunkKind, Role};
use tessera::{Heap, Snapshot};

/// The tests of this binary run one at a time: each reads the process RSS,
/// which the other's heap would move.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// 400 blocks of 20,000 bytes, every page written; then every other one
/// freed, so the free chunks cannot merge and sit in tree bins.
fn holes(h: &mut Heap) -> (Vec<*mut u8>, Vec<*mut u8>) {
    let blocks: Vec<*mut u8> = (0..400)
        .map(|_| {
            let p = h.malloc(20_000);
            assert!(!p.is_null());
            // SAFETY: 20,000 usable bytes.
            unsafe { p.write_bytes(0xA5, 20_000) };
            p
        })
        .collect();
    let (freed, live): (Vec<_>, Vec<_>) = blocks.chunks(2).map(|c| (c[0], c[1])).unzip();
    for &p in &freed {
        // SAFETY: live, freed once.
        unsafe { h.free(p) };
    }
    (freed, live)
}

fn chunk_bytes(p: *mut u8) -> usize {
    let c = Chunk::from_mem(p);
    // SAFETY: a chunk of the test's heap (free or in use; its size is there).
    purgeable_bytes(c as usize, unsafe { Chunk::size(c) })
}

#[test]
fn purged_pages_leave_the_rss_and_come_back_on_reuse() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Heap::new();
    let (freed, live) = holes(&mut h);
    h.check().unwrap();
    assert_eq!(h.stats().purged, 0);
    let rss_before = rss_bytes();
    let purged = h.purge();
    let expected: usize = freed.iter().map(|&p| chunk_bytes(p)).sum();
    assert_eq!(purged, expected);
    assert!(purged >= 200 * 12 * 1024, "{purged}");
    assert_eq!(h.stats().purged, purged);
    h.check().unwrap();
    let rss_after = rss_bytes();
    assert!(
        rss_before - rss_after >= purged * 9 / 10,
        "rss {rss_before} -> {rss_after}, purged {purged}"
    );
    // A second purge finds nothing new.
    assert_eq!(h.purge(), 0);

    // The snapshot shows the purged pages as their own role, the links and
    // the boundary tag around them as before.
    let snap = Snapshot::capture(&h, 0);
    let c = snap
        .chunks
        .iter()
        .find(|c| c.addr == Chunk::from_mem(freed[10]) as usize)
        .expect("the freed chunk is in the snapshot");
    assert!(matches!(c.kind, ChunkKind::TreeBin(_)) && c.head.flag4());
    assert_eq!(role_in_chunk(c, 16), Role::Fd);
    let purged_roles = (0..c.size)
        .filter(|&o| role_in_chunk(c, o) == Role::Purged)
        .count();
    assert_eq!(purged_roles, chunk_bytes(freed[10]));
    assert_eq!(role_in_chunk(c, c.size - 1), Role::Free);

    // Reuse: a block carved from a purged chunk takes it off the count,
    // and its memory reads as zero past what the heap wrote.
    let before = h.stats().purged;
    let was: Vec<usize> = freed.iter().map(|&f| chunk_bytes(f)).collect();
    let p = h.malloc(16_000);
    let took = freed.iter().position(|&f| f == p);
    assert!(took.is_some(), "best fit reuses a freed chunk");
    assert_eq!(h.stats().purged, before - was[took.unwrap()]);
    // SAFETY: 16,000 usable bytes.
    let zeros = unsafe { std::slice::from_raw_parts(p.add(4096), 8192) };
    assert!(zeros.iter().all(|&b| b == 0), "purged pages read as zero");
    h.check().unwrap();

    // Merging: freeing a live block between two purged chunks merges all
    // three; the merged chunk is not purged (its middle was just written).
    let purged_now = |f: *mut u8| {
        // SAFETY: a chunk of the test's heap.
        let h = unsafe { Chunk::head(Chunk::from_mem(f)) };
        !h.cinuse() && h.flag4()
    };
    let i = (0..live.len() - 1)
        .find(|&i| purged_now(freed[i]) && purged_now(freed[i + 1]))
        .unwrap();
    let both = chunk_bytes(freed[i]) + chunk_bytes(freed[i + 1]);
    let before = h.stats().purged;
    // SAFETY: live, freed once.
    unsafe { h.free(live[i]) };
    assert_eq!(h.stats().purged, before - both);
    h.check().unwrap();
    // trim purges it again, with everything else.
    h.trim(0);
    assert!(h.stats().purged > before - both);
    h.check().unwrap();
}

#[test]
fn the_checker_catches_a_purge_count_that_lies() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Heap::new();
    let (freed, _live) = holes(&mut h);
    h.purge();
    h.check().unwrap();
    // Clear one chunk's FLAG4 behind the heap's back.
    let c = Chunk::from_mem(freed[3]);
    // SAFETY: a free chunk of the test's heap; its head word is readable.
    unsafe { Chunk::set_head(c, Chunk::head(c).0 & !4) };
    let e = h.check().unwrap_err();
    assert!(e.to_string().contains("purged"), "{e}");
    // SAFETY: as above; put it back.
    unsafe { Chunk::set_head(c, Chunk::head(c).0 | 4) };
    h.check().unwrap();
}
