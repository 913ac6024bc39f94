//! `tight`: malloc/free in a tight loop, after glibc's bench-malloc-simple
//! and bench-malloc-thread: short bursts of small blocks freed right away
//! (LIFO), the fast path of every allocator (thread caches, fast bins).
//! Each thread runs on its own; at one thread this is the single-threaded
//! loop.

use super::{on_threads, Params, Slot, Workload};
use crate::alloc::RawAlloc;
use crate::rng::Rng;

/// See the module docs.
pub struct Tight;

/// Small sizes a program asks for most.
const SIZES: [usize; 8] = [16, 24, 32, 48, 64, 96, 128, 256];
/// Bursts per thread at scale 1.
const BURSTS: usize = 1_000_000;
/// Largest burst.
const MAX_BURST: usize = 8;

impl Workload for Tight {
    fn name(&self) -> &str {
        "tight"
    }
    fn about(&self) -> &str {
        "tight loops: bursts of 1-8 small blocks (16-256 B) freed at once, per thread"
    }
    fn threaded(&self) -> bool {
        true
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64 {
        let bursts = p.ops(BURSTS);
        on_threads(p.threads, |me| {
            let mut rng = Rng::new(0x7197_0000 + me as u64);
            let mut sum = 0u64;
            let mut live = [Slot::default(); MAX_BURST];
            for _ in 0..bursts {
                let r = rng.next_u64();
                let n = 1 + (r & 7) as usize;
                for (k, s) in live.iter_mut().enumerate().take(n) {
                    let size = SIZES[(r >> (3 + 3 * k)) as usize & 7];
                    *s = Slot::new(a, size, (r >> 32) as u32 | 1);
                }
                for s in live[..n].iter().rev() {
                    sum = sum.wrapping_add(s.release(a, "tight"));
                }
            }
            sum
        })
    }
}
