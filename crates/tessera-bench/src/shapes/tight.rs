//! `tight` and `tight-N`: a tight malloc/free loop of small blocks of
//! random sizes, a few live at a time, after glibc's bench-malloc-simple
//! and bench-malloc-thread: the fast path and nothing else. `tight` runs
//! one thread; `tight-N` one per core, each on its own.
//!
//! Each step allocates 1 to 4 blocks of 8 to 256 bytes (uniform), writes
//! a tag into the first 8 bytes of each, and checks and frees them newest
//! first: the lightest check that still catches a block handed out twice,
//! so the loop's own work stays small next to the allocator's.

use super::{Outcome, Shape};
use crate::alloc::RawAlloc;
use crate::rng::Rng;
use crate::workloads::{on_threads, Params};
use std::sync::atomic::{AtomicU64, Ordering};

/// The shape; `per_core` makes it `tight-N`.
pub struct Tight {
    per_core: bool,
}

/// `tight`: one thread.
pub const TIGHT: Tight = Tight { per_core: false };
/// `tight-N`: one thread per core.
pub const TIGHT_N: Tight = Tight { per_core: true };

/// Steps per thread at scale 1.
const STEPS: usize = 4_000_000;
/// Most blocks live at once.
const MAX_LIVE: usize = 4;

impl Shape for Tight {
    fn name(&self) -> &'static str {
        if self.per_core {
            "tight-N"
        } else {
            "tight"
        }
    }
    fn about(&self) -> &'static str {
        if self.per_core {
            "tight loop, one thread per core"
        } else {
            "tight loop, one thread: 1-4 live blocks of 8-256 B, malloc and free"
        }
    }
    fn threads(&self, cores: usize) -> usize {
        if self.per_core {
            cores
        } else {
            1
        }
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> Outcome {
        let steps = p.ops(STEPS);
        let pairs = AtomicU64::new(0);
        let checksum = on_threads(p.threads, |me| {
            let mut rng = Rng::new(0x7197_4000 + me as u64);
            let mut sum = 0u64;
            let mut n_pairs = 0u64;
            let mut live = [(std::ptr::null_mut::<u8>(), 0usize); MAX_LIVE];
            for _ in 0..steps {
                let r = rng.next_u64();
                let n = 1 + (r & 3) as usize;
                let tag = r | 1;
                for (k, slot) in live.iter_mut().enumerate().take(n) {
                    let size = 8 + ((r >> (8 + 8 * k)) & 0xff) as usize * 248 / 255;
                    // SAFETY: size >= 8; freed below.
                    let p = unsafe { a.malloc(size) };
                    if p.is_null() {
                        panic!("{}: malloc({size}) returned null", a.name());
                    }
                    // SAFETY: 8 bytes of a fresh block of at least 8; malloc
                    // blocks are 8-aligned.
                    unsafe { p.cast::<u64>().write_volatile(tag ^ k as u64) };
                    *slot = (p, size);
                }
                for (k, &(p, size)) in live[..n].iter().enumerate().rev() {
                    // SAFETY: the live block written above.
                    let v = unsafe { p.cast::<u64>().read_volatile() };
                    if v != tag ^ k as u64 {
                        panic!(
                            "{}: block {p:p} ({size} bytes) lost its contents in tight",
                            a.name()
                        );
                    }
                    sum = sum.wrapping_add(v ^ size as u64);
                    // SAFETY: a live block of `a`, freed once.
                    unsafe { a.free(p, size) };
                }
                n_pairs += n as u64;
            }
            pairs.fetch_add(n_pairs, Ordering::Relaxed);
            sum
        });
        Outcome {
            checksum,
            ops: pairs.into_inner(),
        }
    }
}
