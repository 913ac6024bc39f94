//! The workloads: our own programs shaped after the classic allocator
//! benchmarks (see the crate README for what each one models).
//!
//! Every workload
//! - is deterministic: its random choices come from [`Rng`] streams seeded
//!   per thread, so every allocator sees the same calls in the same order
//!   (threads interleave freely, but each thread's own calls are fixed);
//! - writes into what it allocates and verifies a little of it before the
//!   block is freed ([`Slot::stamp`], [`Slot::verify`]), so that nothing is
//!   optimised away and an allocator that hands out overlapping or
//!   corrupted memory stops the run with a message;
//! - returns a checksum computed from the data it verified, never from
//!   addresses, so the checksum is the same for every allocator (the
//!   harness compares them);
//! - keeps its own bookkeeping small (slot arrays on the system allocator)
//!   and identical for every allocator.

use crate::alloc::RawAlloc;
use crate::rng::Rng;

pub(crate) mod cache;
mod churn;
mod large;
mod larson;
mod realloc;
mod tight;
pub mod trace;
mod xmalloc;

pub use cache::{CacheScratch, CacheThrash};
pub use churn::Churn;
pub use large::Large;
pub use larson::Larson;
pub use realloc::ReallocGrowth;
pub use tight::Tight;
pub use trace::TraceReplay;
pub use xmalloc::Xmalloc;

/// How big a run is and on how many threads.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Worker threads (1 for single-threaded workloads).
    pub threads: usize,
    /// Multiplies every operation count (1.0 = the full run; `--quick` uses
    /// a small fraction). Live-set sizes do not scale, so peaks stay
    /// comparable.
    pub scale: f64,
}

impl Params {
    /// `base` operations scaled, at least 1.
    pub fn ops(&self, base: usize) -> usize {
        ((base as f64 * self.scale).round() as usize).max(1)
    }
}

/// One benchmark program.
pub trait Workload: Sync + Send {
    /// Name on the command line and in reports.
    fn name(&self) -> &str;
    /// One line on what it models.
    fn about(&self) -> &str;
    /// Whether it runs at several thread counts (else at 1 only).
    fn threaded(&self) -> bool;
    /// Runs once against `a`; returns the checksum of the data it verified.
    /// Panics with a message naming `a` if a block is corrupted.
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64;
}

/// Every workload, in report order. `traces` are extra recorded traces
/// (`--trace FILE`); without any, the built-in generated trace is used.
pub fn all(traces: Vec<TraceReplay>) -> Vec<Box<dyn Workload>> {
    let mut v: Vec<Box<dyn Workload>> = vec![
        Box::new(Larson),
        Box::new(CacheThrash),
        Box::new(CacheScratch),
        Box::new(Xmalloc),
        Box::new(Tight),
        Box::new(Churn),
        Box::new(ReallocGrowth),
        Box::new(Large),
    ];
    for t in traces {
        v.push(Box::new(t));
    }
    v
}

/// A live block as the workloads track it: 16 bytes, so slot arrays stay
/// small next to the memory they describe. `ptr == 0` is an empty slot.
#[derive(Clone, Copy, Debug, Default)]
pub struct Slot {
    /// The block's address.
    pub ptr: usize,
    /// Requested size (always >= 1).
    pub size: u32,
    /// The value stamped into it.
    pub tag: u32,
}

/// Stride of [`Slot::touch`]: one write per page.
pub const PAGE: usize = 4096;

impl Slot {
    /// Allocates `size` bytes from `a` and stamps `tag` into them.
    /// Panics if the allocator fails.
    #[inline]
    pub fn new(a: &dyn RawAlloc, size: usize, tag: u32) -> Slot {
        // SAFETY: size >= 1 (callers never ask for 0).
        let p = unsafe { a.malloc(size) };
        if p.is_null() {
            out_of_memory(a, size);
        }
        let s = Slot {
            ptr: p as usize,
            size: size as u32,
            tag,
        };
        s.stamp();
        s
    }

    /// Writes the tag to the first 4 bytes (fewer if the block is smaller:
    /// the last byte is kept for the marker) and a marker derived from the
    /// tag and the size to the last byte.
    #[inline]
    pub fn stamp(&self) {
        let p = self.ptr as *mut u8;
        let n = self.size as usize;
        let t = self.tag.to_le_bytes();
        // SAFETY: the block is live with `n >= 1` bytes.
        unsafe {
            for (i, b) in t.iter().enumerate().take(prefix(n)) {
                p.add(i).write_volatile(*b);
            }
            p.add(n - 1).write_volatile(!t[0] ^ (n as u8));
        }
    }

    /// Writes one byte in every page of the block (so its memory is really
    /// resident, as in a program that uses what it allocates), keeping the
    /// stamp intact.
    #[inline]
    pub fn touch(&self) {
        let p = self.ptr as *mut u8;
        let n = self.size as usize;
        let mut off = PAGE;
        while off + 1 < n {
            // SAFETY: off < n - 1: inside the block, past the stamp.
            unsafe { p.add(off).write_volatile(off as u8) };
            off += PAGE;
        }
    }

    /// Checks the stamp; returns a checksum contribution.
    #[inline]
    pub fn verify(&self, a: &dyn RawAlloc, what: &str) -> u64 {
        let p = self.ptr as *const u8;
        let n = self.size as usize;
        let t = self.tag.to_le_bytes();
        // SAFETY: the block is live with `n >= 1` bytes.
        let ok = unsafe {
            (0..prefix(n)).all(|i| p.add(i).read_volatile() == t[i])
                && p.add(n - 1).read_volatile() == !t[0] ^ (n as u8)
        };
        if !ok {
            corrupted(a, what, self);
        }
        u64::from(self.tag) ^ ((n as u64) << 32)
    }

    /// Verifies and frees the block; returns the checksum contribution.
    #[inline]
    pub fn release(self, a: &dyn RawAlloc, what: &str) -> u64 {
        let c = self.verify(a, what);
        // SAFETY: a live block of `a` with this requested size.
        unsafe { a.free(self.ptr as *mut u8, self.size as usize) };
        c
    }
}

/// Bytes of the tag stamped at the start of an `n`-byte block.
#[inline]
fn prefix(n: usize) -> usize {
    (n - 1).min(4)
}

#[cold]
#[inline(never)]
fn out_of_memory(a: &dyn RawAlloc, size: usize) -> ! {
    panic!("{}: malloc({size}) returned null", a.name());
}

#[cold]
#[inline(never)]
fn corrupted(a: &dyn RawAlloc, what: &str, s: &Slot) -> ! {
    panic!(
        "{}: block {:#x} ({} bytes) lost its contents in {what}",
        a.name(),
        s.ptr,
        s.size
    );
}

/// A tag for the `i`-th block made by a stream: cheap and never all-zero.
#[inline]
pub fn tag_of(rng: &mut Rng) -> u32 {
    (rng.next_u64() >> 40) as u32 | 1
}

/// Runs `f(thread_index)` on `threads` scoped threads and sums the results
/// (wrapping). A panic in any thread is re-raised here.
pub fn on_threads(threads: usize, f: impl Fn(usize) -> u64 + Sync) -> u64 {
    if threads == 1 {
        return f(0);
    }
    let f = &f;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|i| s.spawn(move || f(i))).collect();
        hs.into_iter().fold(0u64, |acc, h| match h.join() {
            Ok(v) => acc.wrapping_add(v),
            Err(e) => std::panic::resume_unwind(e),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc;

    /// Every workload runs, tiny, on every allocator and at 1 and 3
    /// threads, and yields the same checksum for all of them.
    #[test]
    fn every_workload_agrees_across_allocators() {
        for w in all(vec![TraceReplay::builtin(0.01)]) {
            let counts: &[usize] = if w.threaded() { &[1, 3] } else { &[1] };
            for &threads in counts {
                let p = Params {
                    threads,
                    scale: 0.002,
                };
                let sums: Vec<(String, u64)> = alloc::all()
                    .into_iter()
                    .map(|a| (a.name().to_string(), w.run(a, &p)))
                    .collect();
                for (name, s) in &sums {
                    assert_eq!(*s, sums[0].1, "{} x{threads}: {name} differs", w.name());
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "lost its contents")]
    fn corruption_is_caught() {
        let a = &alloc::Glibc;
        let s = Slot::new(a, 64, 0x1234_5679);
        // SAFETY: inside the live block.
        unsafe { (s.ptr as *mut u8).write(0) };
        s.release(a, "test");
    }
}
