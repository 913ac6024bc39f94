//! `larson` and `larson-4k`: the shape of Larson & Krishnan's server
//! benchmark (ISMM 1998) as mimalloc-bench runs it.
//!
//! One lineage of threads per core. Each lineage owns a table of slots
//! holding live blocks; its current thread replaces random slots again and
//! again (free the old block, allocate a random size, 16 B-1 KiB or, in
//! `larson-4k`, 16 B-4 KiB). After a fixed number of replacements the
//! thread retires: it exits, and a new thread takes over the table and the
//! random stream where it stopped, so many of the new thread's frees are
//! of blocks that a thread which has exited allocated (each generation
//! replaces 2.5 blocks per slot on average: about a third of its frees hit
//! its predecessors' blocks). The report gives operations (a free and a
//! malloc) per second.
//!
//! Our own structure: each lineage is driven by a coordinator thread that
//! starts one worker per generation and joins it before starting the next
//! (the original's exiting thread starts its successor itself).

use super::{Outcome, Shape};
use crate::alloc::RawAlloc;
use crate::rng::Rng;
use crate::workloads::{on_threads, tag_of, Params, Slot};

/// The shape, with its largest block size.
pub struct LarsonShape {
    max: usize,
    generations: usize,
}

/// `larson`: 16 B-1 KiB.
pub const LARSON: LarsonShape = LarsonShape {
    max: 1024,
    generations: 200,
};
/// `larson-4k`: 16 B-4 KiB.
pub const LARSON_4K: LarsonShape = LarsonShape {
    max: 4096,
    generations: 100,
};

/// Slots per lineage.
const SLOTS: usize = 4000;
/// Replacements per thread before it retires.
const PER_THREAD: usize = 10_000;
const MIN_SIZE: usize = 16;

impl Shape for LarsonShape {
    fn name(&self) -> &'static str {
        if self.max == 1024 {
            "larson"
        } else {
            "larson-4k"
        }
    }
    fn about(&self) -> &'static str {
        if self.max == 1024 {
            "larson: per core 4000 slots of 16 B-1 KiB, random replacement; a thread retires after 10,000 and its successor inherits the slots"
        } else {
            "larson with sizes 16 B-4 KiB"
        }
    }
    fn threads(&self, cores: usize) -> usize {
        cores
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> Outcome {
        // The number of generations scales; the work of one does not, so
        // the share of frees that hit an exited thread's blocks stays.
        let generations = p.ops(self.generations);
        let checksum = on_threads(p.threads, |lineage| {
            let mut rng = Rng::new(0x1a25_4000 + lineage as u64 + self.max as u64);
            let mut table: Vec<Slot> = Vec::with_capacity(SLOTS);
            let mut sum = 0u64;
            for g in 0..generations {
                let worker = || {
                    let mut sum = 0u64;
                    if g == 0 {
                        for _ in 0..SLOTS {
                            let size = rng.range(MIN_SIZE, self.max);
                            table.push(Slot::new(a, size, tag_of(&mut rng)));
                        }
                    }
                    for _ in 0..PER_THREAD {
                        let i = rng.below(SLOTS);
                        sum = sum.wrapping_add(table[i].release(a, "larson"));
                        let size = rng.range(MIN_SIZE, self.max);
                        table[i] = Slot::new(a, size, tag_of(&mut rng));
                    }
                    sum
                };
                let s = std::thread::scope(|s| s.spawn(worker).join());
                match s {
                    Ok(s) => sum = sum.wrapping_add(s),
                    Err(e) => std::panic::resume_unwind(e),
                }
            }
            for s in table.drain(..) {
                sum = sum.wrapping_add(s.release(a, "larson"));
            }
            sum
        });
        Outcome {
            checksum,
            ops: (p.threads * generations * PER_THREAD) as u64,
        }
    }
}
