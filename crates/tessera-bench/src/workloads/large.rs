//! `large`: big blocks, 256 KiB to 32 MiB (log-uniform), a few live at a
//! time and every page written. This is the mmap path of every allocator:
//! direct mappings, their caching and reuse, and the page faults that come
//! with fresh memory.

use super::{tag_of, Params, Slot, Workload};
use crate::alloc::RawAlloc;
use crate::rng::Rng;

/// See the module docs.
pub struct Large;

/// Live blocks.
const SLOTS: usize = 4;
/// Replacements at scale 1.
const STEPS: usize = 300;

impl Workload for Large {
    fn name(&self) -> &str {
        "large"
    }
    fn about(&self) -> &str {
        "large blocks: 256 KiB-32 MiB log-uniform, 4 live, every page written"
    }
    fn threaded(&self) -> bool {
        false
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64 {
        let mut rng = Rng::new(0x1a79_0000);
        let mut sum = 0u64;
        let make = |rng: &mut Rng| {
            let s = Slot::new(a, rng.log_size(256 << 10, 32 << 20), tag_of(rng));
            s.touch();
            s
        };
        let mut table: Vec<Slot> = (0..SLOTS).map(|_| make(&mut rng)).collect();
        for _ in 0..p.ops(STEPS) {
            let i = rng.below(SLOTS);
            sum = sum.wrapping_add(table[i].release(a, "large"));
            table[i] = make(&mut rng);
        }
        for s in table {
            sum = sum.wrapping_add(s.release(a, "large"));
        }
        sum
    }
}
