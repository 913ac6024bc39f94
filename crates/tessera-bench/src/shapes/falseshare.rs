//! The false-sharing shapes, after Hoard's cache-thrash and cache-scratch
//! (Berger et al., ASPLOS 2000) as mimalloc-bench runs them: one thread per
//! core, tiny objects, and many writes to each.
//!
//! - `cache-thrash` (active false sharing): each thread allocates an 8-byte
//!   object, writes and re-reads it many times, frees it, and starts again.
//!   An allocator that carves two threads' objects from one cache line
//!   makes the cores fight over that line on every write.
//! - `cache-scratch` (passive false sharing): the main thread allocates one
//!   8-byte object per worker, one after another (so they likely share a
//!   line), and hands them out. Each worker first writes its object many
//!   times, then frees it and loops like `cache-thrash`. An allocator that
//!   gives a worker back the block it just freed keeps the worker on the
//!   main thread's shared line.
//!
//! The time is the writes' time: what the allocator decides is where the
//! objects go.

use super::{Outcome, Shape};
use crate::alloc::RawAlloc;
use crate::workloads::cache::seed_objects;
use crate::workloads::{on_threads, Params};

/// See the module docs.
pub struct CacheThrash;
/// See the module docs.
pub struct CacheScratch;

/// Object size: eight fit in one 64-byte line.
const OBJ: usize = 8;
/// Objects per thread at scale 1.
const OBJECTS: usize = 2000;
/// Writes (each read back) per object.
const WRITES: usize = 25_000;

/// Writes `p` (an OBJ-byte block) `WRITES` times, reading each byte back.
fn hammer(a: &dyn RawAlloc, p: *mut u8, seed: usize, what: &str) -> u64 {
    let mut sum = 0u64;
    for w in 0..WRITES {
        let v = (seed + w) as u8;
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
    sum
}

/// A worker's loop: allocate, hammer, free.
fn cycle(a: &dyn RawAlloc, me: usize, objects: usize, what: &str) -> u64 {
    let mut sum = 0u64;
    for c in 0..objects {
        // SAFETY: OBJ >= 1; freed below.
        let p = unsafe { a.malloc(OBJ) };
        assert!(!p.is_null(), "{}: malloc failed", a.name());
        sum = sum.wrapping_add(hammer(a, p, me * 7 + c, what));
        // SAFETY: the live block just allocated.
        unsafe { a.free(p, OBJ) };
    }
    sum
}

impl Shape for CacheThrash {
    fn name(&self) -> &'static str {
        "cache-thrash"
    }
    fn about(&self) -> &'static str {
        "cache-thrash: per core, 8-byte objects allocated, written 25,000 times, freed"
    }
    fn threads(&self, cores: usize) -> usize {
        cores
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> Outcome {
        let objects = p.ops(OBJECTS);
        let checksum = on_threads(p.threads, |me| cycle(a, me, objects, "cache-thrash"));
        Outcome {
            checksum,
            ops: (p.threads * objects) as u64,
        }
    }
}

impl Shape for CacheScratch {
    fn name(&self) -> &'static str {
        "cache-scratch"
    }
    fn about(&self) -> &'static str {
        "cache-scratch: the main thread allocates one 8-byte object per worker; each writes its own, frees it, then loops as cache-thrash"
    }
    fn threads(&self, cores: usize) -> usize {
        cores
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> Outcome {
        let objects = p.ops(OBJECTS);
        let seeds = seed_objects(a, p.threads, OBJ);
        let checksum = on_threads(p.threads, |me| {
            let q = seeds[me] as *mut u8;
            // SAFETY: the block the main thread made for this worker.
            let first = unsafe { q.add(OBJ - 1).read_volatile() };
            if first != me as u8 {
                panic!("{}: cache-scratch object {q:p} changed", a.name());
            }
            let mut sum = u64::from(first) + hammer(a, q, me, "cache-scratch");
            // SAFETY: freed exactly once, here, by its worker.
            unsafe { a.free(q, OBJ) };
            sum = sum.wrapping_add(cycle(a, me, objects, "cache-scratch"));
            sum
        });
        Outcome {
            checksum,
            ops: (p.threads * (objects + 1)) as u64,
        }
    }
}
