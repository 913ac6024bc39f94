//! Tessera as the `#[global_allocator]` of this test binary: the Rust
//! runtime's own allocations before `main`, then a real multi-threaded
//! workload of maps, vectors and strings whose values are verified.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: tessera::Tessera = tessera::Tessera;

fn workload(seed: u64) -> u64 {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut hash: HashMap<u64, String> = HashMap::new();
    let mut tree: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut vecs: Vec<Vec<u8>> = Vec::new();
    let mut checksum = 0u64;
    for i in 0..40_000u64 {
        let k = next() % 5000;
        match next() % 6 {
            0 | 1 => {
                hash.insert(k, format!("value-{k}-{}", "x".repeat((k % 200) as usize)));
            }
            2 => {
                if let Some(v) = hash.remove(&k) {
                    assert!(v.starts_with(&format!("value-{k}-")), "{v}");
                    assert_eq!(v.len(), format!("value-{k}-").len() + (k % 200) as usize);
                    checksum = checksum.wrapping_add(v.len() as u64);
                }
            }
            3 => {
                let e = tree.entry(format!("key{k:05}")).or_default();
                e.push(i);
                if e.len() > 50 {
                    e.drain(..25);
                }
            }
            4 => {
                let len = (next() % 70_000) as usize;
                vecs.push(vec![(len % 251) as u8; len]);
                if vecs.len() > 64 {
                    let v = vecs.swap_remove((next() % 64) as usize);
                    assert!(v.iter().all(|&b| b == (v.len() % 251) as u8));
                }
            }
            _ => {
                if let Some(v) = vecs.last_mut() {
                    let want = (v.len() % 251) as u8;
                    assert!(v.iter().all(|&b| b == want));
                    v.resize(v.len() * 2 + 1, 0);
                    let n = v.len();
                    v.truncate(n / 2);
                    let fill = (v.len() % 251) as u8;
                    v.fill(fill);
                }
            }
        }
    }
    for (k, v) in &tree {
        assert!(k.starts_with("key"));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }
    checksum
}

#[test]
fn threads_churn_collections_on_the_global_heap() {
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let results = results.clone();
            std::thread::spawn(move || {
                let c = workload(1000 + t);
                results.lock().unwrap().push(c);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(results.lock().unwrap().len(), 4);
    // Same seed, same checksum: the values came back exactly.
    assert_eq!(workload(1000), workload(1000));
    tessera::global::check().expect("every arena is consistent");
    assert!(tessera::global::arena_count() >= 1);
}

#[test]
fn large_alignments_and_zeroed_blocks() {
    use std::alloc::{alloc_zeroed, dealloc, realloc, Layout};
    for log2 in 4..=22 {
        let layout = Layout::from_size_align(1000, 1 << log2).unwrap();
        // SAFETY: non-zero size; freed with the same layout.
        unsafe {
            let p = alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % (1 << log2), 0);
            assert!(std::slice::from_raw_parts(p, 1000).iter().all(|&b| b == 0));
            p.write_bytes(9, 1000);
            let q = realloc(p, layout, 5000);
            assert_eq!(q as usize % (1 << log2), 0);
            assert!(std::slice::from_raw_parts(q, 1000).iter().all(|&b| b == 9));
            dealloc(q, Layout::from_size_align(5000, 1 << log2).unwrap());
        }
    }
}

#[test]
fn medium_blocks_come_back_from_the_thread_cache() {
    use tessera::global;
    // Two requests of the same medium class (5,120-byte chunks): the second
    // gets the first's block back, without a trip to the arena, and the
    // whole class size is usable.
    let a = global::malloc(5000);
    assert!(!a.is_null());
    // SAFETY: `a` is live; freed once.
    unsafe { global::free(a) };
    let b = global::malloc(4990);
    assert_eq!(a, b, "the freed medium block is reused first");
    // SAFETY: `b` is live.
    assert!(unsafe { global::usable_size(b) } >= 5120 - 8);
    // SAFETY: `b` is live; freed once.
    unsafe { global::free(b) };
    // A size of another class does not get it.
    let c = global::malloc(9000);
    assert_ne!(c, b);
    // SAFETY: live; freed once.
    unsafe { global::free(c) };
    global::flush_thread_cache();
    global::check().expect("arenas consistent after flushing medium entries");
}

#[test]
fn snapshots_show_this_threads_cached_chunks_as_cached() {
    use tessera::global;
    use tessera::inspect::{ChunkKind, Snapshot};
    let live = global::malloc(200);
    let cached = global::malloc(200);
    // SAFETY: live; freed once, into this thread's cache.
    unsafe { global::free(cached) };
    // The sink runs under an arena lock and must not allocate: reserve.
    let mut text = Vec::with_capacity(64 << 20);
    let reserved = text.capacity();
    tessera::inspect::process::write_snapshot(&mut text, 0);
    assert_eq!(text.capacity(), reserved, "the sink grew under the lock");
    let text = String::from_utf8(text).unwrap();
    // One snapshot per arena, concatenated: find the chunks in any of them.
    let mut kinds = std::collections::HashMap::new();
    for part in text.split_inclusive("end\n") {
        let snap = Snapshot::parse(part).expect("a snapshot that parses");
        for c in &snap.chunks {
            kinds.insert(c.addr, c.kind);
        }
    }
    let mem_of = |addr: usize| addr + 16;
    let kind = |p: *mut u8| {
        kinds
            .iter()
            .find(|(&a, _)| mem_of(a) == p as usize)
            .map(|(_, &k)| k)
    };
    assert_eq!(kind(cached), Some(ChunkKind::Cached));
    assert_eq!(kind(live), Some(ChunkKind::InUse));
    // The marks are gone once the snapshot is written.
    global::check().expect("heads restored");
    // SAFETY: live; freed once.
    unsafe { global::free(live) };
    let again = global::malloc(200);
    assert_eq!(again, live, "the cache still works after the snapshot");
    // SAFETY: live; freed once.
    unsafe { global::free(again) };
}
