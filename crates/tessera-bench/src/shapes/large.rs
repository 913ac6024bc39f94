//! `large`: the shape of mimalloc-bench's malloc-large: blocks of 5 to 25
//! MiB (uniform), up to 20 live, replaced at random in a loop, each touched
//! sparsely (a stamp at both ends and one byte every 64 KiB).
//!
//! glibc's dynamic mmap threshold does well here: after the first such
//! block is freed it serves later ones from the heap, whose pages stay
//! mapped. An allocator that maps and unmaps every block pays the system
//! calls and a page fault for every page it touches again.

use super::{Outcome, Shape};
use crate::alloc::RawAlloc;
use crate::rng::Rng;
use crate::workloads::{tag_of, Params, Slot};

/// See the module docs.
pub struct LargeBlocks;

/// Live blocks.
const SLOTS: usize = 20;
/// Replacements at scale 1.
const STEPS: usize = 1000;
const MIN_SIZE: usize = 5 << 20;
const MAX_SIZE: usize = 25 << 20;
/// Distance between the bytes written.
const STRIDE: usize = 64 << 10;

fn make(a: &dyn RawAlloc, rng: &mut Rng) -> Slot {
    let s = Slot::new(a, rng.range(MIN_SIZE, MAX_SIZE), tag_of(rng));
    let p = s.ptr as *mut u8;
    let mut off = STRIDE;
    while off + 1 < s.size as usize {
        // SAFETY: off < size - 1: inside the block, past the stamp.
        unsafe { p.add(off).write_volatile(off as u8) };
        off += STRIDE;
    }
    s
}

impl Shape for LargeBlocks {
    fn name(&self) -> &'static str {
        "large"
    }
    fn about(&self) -> &'static str {
        "malloc-large: 20 live blocks of 5-25 MiB replaced at random, one byte written per 64 KiB"
    }
    fn threads(&self, _cores: usize) -> usize {
        1
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> Outcome {
        let mut rng = Rng::new(0x1a79_e000);
        let mut sum = 0u64;
        let steps = p.ops(STEPS);
        let mut table: Vec<Slot> = (0..SLOTS).map(|_| make(a, &mut rng)).collect();
        for _ in 0..steps {
            let i = rng.below(SLOTS);
            sum = sum.wrapping_add(table[i].release(a, "large"));
            table[i] = make(a, &mut rng);
        }
        for s in table {
            sum = sum.wrapping_add(s.release(a, "large"));
        }
        Outcome {
            checksum: sum,
            ops: (SLOTS + steps) as u64,
        }
    }
}
