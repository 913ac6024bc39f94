//! `churn`: random sizes from 16 B to 64 KiB with random lifetimes. Each
//! thread keeps a table of live blocks and replaces a random one at each
//! step; sizes are log-uniform (every power-of-two band equally likely), so
//! small blocks are common and large ones rare, and every page of a block
//! is written. This stresses size classes, splitting and coalescing, and
//! the reuse of freed memory (fragmentation shows in peak memory).

use super::{on_threads, tag_of, Params, Slot, Workload};
use crate::alloc::RawAlloc;
use crate::rng::Rng;

/// See the module docs.
pub struct Churn;

/// Live blocks per thread (about 8 MiB of live data: the mean size is ~8 KiB).
const SLOTS: usize = 1000;
/// Replacements per thread at scale 1.
const STEPS: usize = 600_000;

impl Workload for Churn {
    fn name(&self) -> &str {
        "churn"
    }
    fn about(&self) -> &str {
        "random-size churn: 16 B-64 KiB log-uniform, random lifetimes, per thread"
    }
    fn threaded(&self) -> bool {
        true
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64 {
        let steps = p.ops(STEPS);
        on_threads(p.threads, |me| {
            let mut rng = Rng::new(0xc4a2_0000 + me as u64);
            let mut sum = 0u64;
            let make = |rng: &mut Rng| {
                let s = Slot::new(a, rng.log_size(16, 65536), tag_of(rng));
                s.touch();
                s
            };
            let mut table: Vec<Slot> = (0..SLOTS).map(|_| make(&mut rng)).collect();
            for _ in 0..steps {
                let i = rng.below(SLOTS);
                sum = sum.wrapping_add(table[i].release(a, "churn"));
                table[i] = make(&mut rng);
            }
            for s in table {
                sum = sum.wrapping_add(s.release(a, "churn"));
            }
            sum
        })
    }
}
