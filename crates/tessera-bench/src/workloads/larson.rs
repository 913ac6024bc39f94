//! `larson`: a server simulation, after Larson & Krishnan's benchmark
//! ("Memory allocation for long-running server applications", ISMM 1998).
//!
//! Each thread owns a table of live blocks of random sizes and replaces a
//! random entry again and again (random lifetimes, a steady live set). Work
//! is cut in rounds; at the end of a round every table passes to the next
//! thread, as a server hands connections between workers, so from the
//! second round on most frees hit blocks that another thread allocated.
//!
//! Our own structure: tables rotate between long-lived threads behind a
//! barrier (the original spawns fresh threads that inherit them).

use super::{on_threads, tag_of, Params, Slot, Workload};
use crate::alloc::RawAlloc;
use crate::rng::Rng;
use std::sync::{Barrier, Mutex};

/// See the module docs.
pub struct Larson;

/// Live blocks per table.
const SLOTS: usize = 2000;
/// Rounds (table hand-overs + 1).
const ROUNDS: usize = 8;
/// Replacements per thread per round at scale 1.
const OPS_PER_ROUND: usize = 200_000;
/// Block sizes, uniform.
const MIN_SIZE: usize = 16;
const MAX_SIZE: usize = 1024;

impl Workload for Larson {
    fn name(&self) -> &str {
        "larson"
    }
    fn about(&self) -> &str {
        "server simulation: random sizes 16-1024 B and lifetimes, tables passed between threads"
    }
    fn threaded(&self) -> bool {
        true
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64 {
        let t = p.threads;
        let ops = p.ops(OPS_PER_ROUND);
        let tables: Vec<Mutex<Vec<Slot>>> = (0..t).map(|_| Mutex::new(Vec::new())).collect();
        let barrier = Barrier::new(t);
        on_threads(t, |me| {
            let mut rng = Rng::new(0x1a25_0000 + me as u64);
            let mut sum = 0u64;
            {
                let mut mine = tables[me].lock().unwrap();
                mine.reserve_exact(SLOTS);
                for _ in 0..SLOTS {
                    let size = rng.range(MIN_SIZE, MAX_SIZE);
                    mine.push(Slot::new(a, size, tag_of(&mut rng)));
                }
            }
            for round in 0..ROUNDS {
                barrier.wait();
                let mut table = tables[(me + round) % t].lock().unwrap();
                for _ in 0..ops {
                    let i = rng.below(SLOTS);
                    sum = sum.wrapping_add(table[i].release(a, "larson"));
                    let size = rng.range(MIN_SIZE, MAX_SIZE);
                    table[i] = Slot::new(a, size, tag_of(&mut rng));
                }
            }
            barrier.wait();
            let mut table = tables[(me + ROUNDS) % t].lock().unwrap();
            for s in table.drain(..) {
                sum = sum.wrapping_add(s.release(a, "larson"));
            }
            sum
        })
    }
}
