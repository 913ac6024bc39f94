//! Tessera as the `#[global_allocator]` of this test binary: the Rust
//! runtime's own allocations before `main`, then a real multi-threaded
//! workload of maps, vectors and strings whose every value read back is
//! compared with the exact value it must have.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: tessera::Tessera = tessera::Tessera;

/// The exact string the map holds for key `k`.
fn value_for(k: u64) -> String {
    let mut v = format!("value-{k}-");
    // Grown one piece at a time, so the string is reallocated as it grows.
    for i in 0..k % 200 {
        v.push(char::from(b'a' + (k + i) as u8 % 26));
    }
    v
}

/// Bytes whose contents the workload compared with what they must be.
#[derive(Default, Debug)]
struct Verified {
    strings: usize,
    tree_values: usize,
    vec_bytes: usize,
}

fn verify_vec(v: &[u8], fill: u8) -> usize {
    if let Some(i) = v.iter().position(|&b| b != fill) {
        panic!(
            "vec of {} bytes lost data at +{i}: {} != {fill}",
            v.len(),
            v[i]
        );
    }
    v.len()
}

/// Maps, trees and vectors churned on the global heap; every value read
/// back is compared with the exact value it must have: map values with the
/// string their key determines, tree entries with a shadow of counts and
/// sums kept in fixed arrays, vectors byte by byte, also across the
/// reallocations that grow them.
fn workload(seed: u64) -> Verified {
    const KEYS: usize = 5000;
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut hash: HashMap<u64, String> = HashMap::new();
    let mut tree: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    // Shadow of `tree`: entry count and sum of values per key.
    let mut tree_len = vec![0usize; KEYS].into_boxed_slice();
    let mut tree_sum = vec![0u64; KEYS].into_boxed_slice();
    let mut vecs: Vec<(Vec<u8>, u8)> = Vec::new();
    let mut seen = Verified::default();
    let mut check_string = |k: u64, v: &str| {
        assert_eq!(v, value_for(k), "the value of key {k}");
        seen.strings += v.len();
    };
    for i in 0..40_000u64 {
        let k = next() % KEYS as u64;
        match next() % 6 {
            0 | 1 => {
                if let Some(old) = hash.insert(k, value_for(k)) {
                    check_string(k, &old);
                }
            }
            2 => {
                if let Some(v) = hash.remove(&k) {
                    check_string(k, &v);
                }
            }
            3 => {
                let e = tree.entry(format!("key{k:05}")).or_default();
                e.push(i);
                let (len, sum) = (&mut tree_len[k as usize], &mut tree_sum[k as usize]);
                *len += 1;
                *sum += i;
                if e.len() > 50 {
                    *len -= 25;
                    *sum -= e.drain(..25).sum::<u64>();
                }
                assert_eq!((e.len(), e.iter().sum::<u64>()), (*len, *sum), "key {k}");
            }
            4 => {
                let len = (next() % 70_000) as usize;
                let fill = next() as u8;
                vecs.push((vec![fill; len], fill));
                if vecs.len() > 64 {
                    let (v, fill) = vecs.swap_remove((next() % 64) as usize);
                    seen.vec_bytes += verify_vec(&v, fill);
                }
            }
            _ => {
                if let Some((v, fill)) = vecs.last_mut() {
                    // Grow (a realloc), check that every old byte came
                    // along and the new ones are the zeros asked for.
                    let n = v.len();
                    v.resize(n * 2 + 1, 0);
                    seen.vec_bytes += verify_vec(&v[..n], *fill);
                    seen.vec_bytes += verify_vec(&v[n..], 0);
                    v.truncate(n / 2 + 1);
                    v.shrink_to_fit();
                    seen.vec_bytes += verify_vec(&v[..n / 2], *fill);
                    *fill = fill.wrapping_add(1);
                    let f = *fill;
                    v.fill(f);
                }
            }
        }
    }
    for (k, v) in &hash {
        check_string(*k, v);
    }
    for (key, v) in &tree {
        let k: usize = key["key".len()..].parse().expect("a key of 5 digits");
        assert_eq!((v.len(), v.iter().sum::<u64>()), (tree_len[k], tree_sum[k]));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        seen.tree_values += v.len();
    }
    let keys_with_values = tree_len.iter().filter(|&&n| n > 0).count();
    assert_eq!(tree.len(), keys_with_values, "tree keys");
    for (v, fill) in &vecs {
        seen.vec_bytes += verify_vec(v, *fill);
    }
    seen
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
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 4);
    // Every thread compared real amounts of data with what it must be.
    for r in results.iter() {
        assert!(
            r.strings > 1 << 20 && r.tree_values > 1000 && r.vec_bytes > 10 << 20,
            "{r:?}"
        );
    }
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
