//! The four single-threaded patterns of the core benchmark
//! (`benches/core.rs`, issue 2), shared with `examples/profile_core.rs` so
//! that a profiler sees exactly what criterion times.
//!
//! - `small`: a burst of 64 blocks of 16-256 B, then all freed (FIFO);
//! - `medium`: a burst of 32 blocks of 1-64 KiB, then all freed (FIFO);
//! - `churn`: 64 random replacements in a table of 512 live blocks of
//!   16 B-64 KiB (log-uniform); the table lives across iterations;
//! - `realloc`: four buffers grown side by side by 1.5x steps from 16 B to
//!   128 KiB, then freed.
//!
//! [`Core`] is implemented by `tessera::Heap` (the core alone: one heap,
//! `&mut self`, no lock, no thread cache) and by [`Glibc`] (the process's
//! malloc); both calls are direct, so each allocator is used as a program
//! would use it.

use crate::rng::Rng;
use std::hint::black_box;

/// The three calls the patterns use.
pub trait Core {
    /// `malloc(n)`, `n >= 1`.
    fn malloc(&mut self, n: usize) -> *mut u8;
    /// # Safety
    /// `p` is live in this allocator.
    unsafe fn free(&mut self, p: *mut u8);
    /// # Safety
    /// `p` is live in this allocator.
    unsafe fn realloc(&mut self, p: *mut u8, n: usize) -> *mut u8;
}

/// glibc, the process's malloc.
pub struct Glibc;

impl Core for Glibc {
    #[inline]
    fn malloc(&mut self, n: usize) -> *mut u8 {
        // SAFETY: plain libc call.
        unsafe { libc::malloc(n).cast() }
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: forwarded to the caller.
        unsafe { libc::free(p.cast()) }
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, n: usize) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        unsafe { libc::realloc(p.cast(), n).cast() }
    }
}

impl Core for tessera::Heap {
    #[inline]
    fn malloc(&mut self, n: usize) -> *mut u8 {
        tessera::Heap::malloc(self, n)
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: forwarded to the caller.
        unsafe { tessera::Heap::free(self, p) }
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, n: usize) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        unsafe { tessera::Heap::realloc(self, p, n) }
    }
}

/// The patterns, in report order.
pub const PATTERNS: [&str; 4] = ["small", "medium", "churn", "realloc"];
/// The two allocators, as named in criterion's output.
pub const ALLOCATORS: [&str; 2] = ["tessera-heap", "glibc"];

fn sizes(seed: u64, n: usize, f: impl Fn(&mut Rng) -> usize) -> Vec<usize> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| f(&mut r)).collect()
}

/// A burst of blocks of `sizes`, each written once, then freed FIFO.
pub fn burst<A: Core>(a: &mut A, sizes: &[usize], live: &mut Vec<*mut u8>) {
    for &n in sizes {
        let p = a.malloc(n);
        // SAFETY: a fresh block of n >= 1 bytes.
        unsafe { p.write(n as u8) };
        live.push(p);
    }
    for p in live.drain(..) {
        // SAFETY: a live block of `a`, freed once.
        unsafe { a.free(black_box(p)) };
    }
}

/// Churn state: a table of live blocks and the stream of choices.
pub struct Churn {
    table: Vec<*mut u8>,
    rng: Rng,
}

/// Live blocks in the churn table.
pub const CHURN_TABLE: usize = 512;
/// Replacements per churn iteration.
pub const CHURN_STEPS: usize = 64;

impl Churn {
    /// Fills the table.
    pub fn new<A: Core>(a: &mut A) -> Churn {
        let mut rng = Rng::new(0xc0de);
        let table = (0..CHURN_TABLE)
            .map(|_| a.malloc(rng.log_size(16, 65536)))
            .collect();
        Churn { table, rng }
    }
    /// One iteration: CHURN_STEPS replacements.
    pub fn step<A: Core>(&mut self, a: &mut A) {
        for _ in 0..CHURN_STEPS {
            let i = self.rng.below(CHURN_TABLE);
            // SAFETY: table entries are live blocks of `a`.
            unsafe { a.free(self.table[i]) };
            let n = self.rng.log_size(16, 65536);
            let p = a.malloc(n);
            // SAFETY: a fresh block of n bytes.
            unsafe { p.write(1) };
            self.table[i] = p;
        }
    }
    /// Frees the table.
    pub fn drop_all<A: Core>(self, a: &mut A) {
        for p in self.table {
            // SAFETY: live blocks of `a`.
            unsafe { a.free(p) };
        }
    }
}

/// Four buffers grown 1.5x at a time, side by side, to 128 KiB.
pub fn grow<A: Core>(a: &mut A) {
    let mut bufs = [(std::ptr::null_mut::<u8>(), 16usize); 4];
    for b in bufs.iter_mut() {
        b.0 = a.malloc(16);
    }
    let goal = 128 << 10;
    while bufs[0].1 < goal {
        for b in bufs.iter_mut() {
            let n = (b.1 + b.1 / 2 + 16).min(goal);
            // SAFETY: a live block of `a`.
            b.0 = unsafe { a.realloc(b.0, n) };
            // SAFETY: the block has n bytes now.
            unsafe { b.0.add(n - 1).write(1) };
            b.1 = n;
        }
    }
    for b in bufs {
        // SAFETY: live blocks of `a`.
        unsafe { a.free(black_box(b.0)) };
    }
}

/// Precomputed burst sizes (the same for both allocators).
pub struct Inputs {
    /// 64 sizes, 16-256 B.
    pub small: Vec<usize>,
    /// 32 sizes, 1-64 KiB.
    pub medium: Vec<usize>,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            small: sizes(1, 64, |r| r.range(16, 256)),
            medium: sizes(2, 32, |r| r.range(1 << 10, 64 << 10)),
        }
    }
}

/// Runs `iters` iterations of `pattern` on `a` outside criterion (for
/// profilers: `examples/profile_core.rs`). Returns false for an unknown
/// pattern.
pub fn run_pattern<A: Core>(pattern: &str, a: &mut A, iters: usize) -> bool {
    let i = Inputs::default();
    let mut live = Vec::with_capacity(64);
    match pattern {
        "small" => (0..iters).for_each(|_| burst(a, &i.small, &mut live)),
        "medium" => (0..iters).for_each(|_| burst(a, &i.medium, &mut live)),
        "churn" => {
            let mut c = Churn::new(a);
            (0..iters).for_each(|_| c.step(a));
            c.drop_all(a);
        }
        "realloc" => (0..iters).for_each(|_| grow(a)),
        _ => return false,
    }
    true
}
