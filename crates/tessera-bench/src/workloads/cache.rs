//! False-sharing probes, after Hoard's cache-thrash and cache-scratch
//! (Berger et al., "Hoard: a scalable memory allocator for multithreaded
//! applications", ASPLOS 2000).
//!
//! - `cache-thrash` (active false sharing): every thread allocates a tiny
//!   object, writes it many times, frees it, again and again. An allocator
//!   that carves the objects of different threads from the same cache line
//!   makes the cores fight over that line.
//! - `cache-scratch` (passive false sharing): the main thread allocates one
//!   tiny object per worker, side by side, and hands them out; each worker
//!   frees its object first and then loops like `cache-thrash`. An
//!   allocator that gives the freed neighbour back to the worker that freed
//!   it inherits the main thread's shared line.
//!
//! At one thread both are plain small-object loops.

use super::{on_threads, Params, Workload};
use crate::alloc::RawAlloc;

/// See the module docs.
pub struct CacheThrash;
/// See the module docs.
pub struct CacheScratch;

/// Object size: eight of them fit one 64-byte line.
const OBJ: usize = 8;
/// Allocate/free cycles per thread at scale 1.
const CYCLES: usize = 1_000_000;
/// Writes (each followed by a read) per object.
const WRITES: usize = 50;

/// One worker's loop: allocate, hammer, free. Returns a checksum.
fn hammer(a: &dyn RawAlloc, me: usize, cycles: usize, what: &str) -> u64 {
    let mut sum = 0u64;
    for c in 0..cycles {
        // SAFETY: OBJ >= 1; the block is freed below.
        let p = unsafe { a.malloc(OBJ) };
        assert!(!p.is_null(), "{}: malloc failed", a.name());
        for w in 0..WRITES {
            let v = (me + c + w) as u8;
            // SAFETY: w % OBJ < OBJ: inside the live block.
            unsafe {
                let q = p.add(w % OBJ);
                q.write_volatile(v);
                if q.read_volatile() != v {
                    panic!("{}: {what} object {p:p} changed under a write", a.name());
                }
            }
            sum = sum.wrapping_add(u64::from(v));
        }
        // SAFETY: live block of `a`, OBJ bytes.
        unsafe { a.free(p, OBJ) };
    }
    sum
}

impl Workload for CacheThrash {
    fn name(&self) -> &str {
        "cache-thrash"
    }
    fn about(&self) -> &str {
        "active false sharing: each thread allocates, writes and frees 8-byte objects"
    }
    fn threaded(&self) -> bool {
        true
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64 {
        let cycles = p.ops(CYCLES);
        on_threads(p.threads, |me| hammer(a, me, cycles, "cache-thrash"))
    }
}

/// The start of cache-scratch (the suite's workload and the shape alike):
/// the calling (main) thread allocates one `size`-byte object per worker,
/// one after the other (so likely on one cache line), each filled with its
/// worker's index; the workers free them. Returns their addresses.
pub fn seed_objects(a: &dyn RawAlloc, workers: usize, size: usize) -> Vec<usize> {
    assert!(size >= 1);
    (0..workers)
        .map(|i| {
            // SAFETY: size >= 1; each block is freed by its worker.
            let q = unsafe { a.malloc(size) };
            assert!(!q.is_null(), "{}: malloc failed", a.name());
            // SAFETY: a fresh block of `size` bytes.
            unsafe { q.write_bytes(i as u8, size) };
            q as usize
        })
        .collect()
}

impl Workload for CacheScratch {
    fn name(&self) -> &str {
        "cache-scratch"
    }
    fn about(&self) -> &str {
        "passive false sharing: workers free neighbouring objects made by the main thread, then loop"
    }
    fn threaded(&self) -> bool {
        true
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64 {
        let cycles = p.ops(CYCLES);
        // Allocated consecutively by this (the main) thread: likely on one line.
        let seeds = seed_objects(a, p.threads, OBJ);
        on_threads(p.threads, |me| {
            let q = seeds[me] as *mut u8;
            // SAFETY: the block the main thread made for this worker.
            let first = unsafe { q.read_volatile() };
            if first != me as u8 {
                panic!("{}: cache-scratch seed object {q:p} changed", a.name());
            }
            // SAFETY: live block of `a`, freed exactly once, here.
            unsafe { a.free(q, OBJ) };
            hammer(a, me, cycles, "cache-scratch") + u64::from(first)
        })
    }
}
