//! `sh6` and `sh8`: the shape of MicroQuill's SmartHeap benchmarks
//! sh6bench and sh8bench (as run by mimalloc-bench, at two threads per
//! core).
//!
//! Each thread, again and again, allocates a run of a few thousand blocks
//! whose sizes climb a ladder from 24 bytes to 3 KiB (each rung about a
//! quarter larger than the one before; small rungs repeated more, so most
//! blocks are small), stamps each, and then frees the run in an order
//! unlike the allocation order: every other block forwards (0, 2, 4, ...),
//! then the rest backwards. In `sh8` every fourth block of a run is handed
//! to the next thread, which frees it at the start of its own next run, so
//! a quarter of all frees are of another thread's blocks, arriving while
//! their owner keeps allocating. A thread more than two runs ahead of the
//! next one waits for it (freeing its own incoming blocks meanwhile), so
//! the blocks in flight are bounded whatever the scheduler does.

use super::{Outcome, Shape};
use crate::alloc::RawAlloc;
use crate::rng::Rng;
use crate::workloads::{on_threads, tag_of, Params, Slot};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The shape; `cross` makes it `sh8`.
pub struct ShBench {
    cross: bool,
}

/// `sh6`.
pub const SH6: ShBench = ShBench { cross: false };
/// `sh8`.
pub const SH8: ShBench = ShBench { cross: true };

/// Blocks per run.
const RUN: usize = 3000;
/// Runs per thread at scale 1.
const RUNS: usize = 300;
/// Every `HANDOFF`-th block (index % HANDOFF == HANDOFF - 1) goes to the
/// next thread in `sh8`.
const HANDOFF: usize = 4;
/// Blocks an inbox may hold before its sender waits: two runs' hand-offs.
const MAIL_LIMIT: usize = 2 * RUN / HANDOFF;
/// How long a waiting thread sleeps between looks at the boxes: sleeping,
/// not spinning, so that a waiting thread leaves the cores to the threads
/// still at work.
const PAUSE: std::time::Duration = std::time::Duration::from_micros(50);

/// The sizes of one run: the ladder, cycled.
fn run_sizes() -> Vec<u32> {
    let mut ladder = Vec::new();
    let mut s = 24u32;
    while s <= 3072 {
        let repeat = (768 / s).max(1);
        for _ in 0..repeat {
            ladder.push(s);
        }
        s += s / 4 + 8;
    }
    ladder.iter().copied().cycle().take(RUN).collect()
}

impl Shape for ShBench {
    fn name(&self) -> &'static str {
        if self.cross {
            "sh8"
        } else {
            "sh6"
        }
    }
    fn about(&self) -> &'static str {
        if self.cross {
            "sh8bench: as sh6, and every 4th block of a run is freed by the next thread"
        } else {
            "sh6bench: runs of 3000 blocks of 24 B-3 KiB (a size ladder), freed every other forwards, then the rest backwards"
        }
    }
    fn threads(&self, cores: usize) -> usize {
        2 * cores
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> Outcome {
        let t = p.threads;
        let runs = p.ops(RUNS);
        let sizes = run_sizes();
        let inboxes: Vec<Mutex<Vec<Slot>>> = (0..t).map(|_| Mutex::new(Vec::new())).collect();
        let finished = AtomicUsize::new(0);
        let checksum = on_threads(t, |me| {
            let mut rng = Rng::new(0x5686_0000 + me as u64);
            let mut sum = 0u64;
            let mut run: Vec<Slot> = Vec::with_capacity(RUN);
            let mut outgoing: Vec<Slot> = Vec::with_capacity(RUN / HANDOFF + 1);
            let mut incoming: Vec<Slot> = Vec::with_capacity(RUN);
            let next = (me + 1) % t;
            let take_mail = |sum: &mut u64, incoming: &mut Vec<Slot>| {
                std::mem::swap(&mut *inboxes[me].lock().unwrap(), incoming);
                for s in incoming.drain(..) {
                    *sum = sum.wrapping_add(s.release(a, "sh8 (remote free)"));
                }
            };
            for _ in 0..runs {
                if self.cross {
                    take_mail(&mut sum, &mut incoming);
                }
                for &size in &sizes {
                    run.push(Slot::new(a, size as usize, tag_of(&mut rng)));
                }
                if self.cross {
                    for (i, s) in run.iter_mut().enumerate() {
                        if i % HANDOFF == HANDOFF - 1 {
                            outgoing.push(*s);
                            s.ptr = 0;
                        }
                    }
                    // A thread that runs ahead waits (freeing its own
                    // mail meanwhile, so a ring of waiters cannot lock up)
                    // until its neighbour has caught up: the blocks in
                    // flight, and so the peak memory, stay bounded
                    // whatever the scheduler does.
                    while inboxes[next].lock().unwrap().len() >= MAIL_LIMIT {
                        take_mail(&mut sum, &mut incoming);
                        std::thread::sleep(PAUSE);
                    }
                    inboxes[next].lock().unwrap().append(&mut outgoing);
                }
                for s in run
                    .iter()
                    .step_by(2)
                    .chain(run.iter().skip(1).step_by(2).rev())
                {
                    if s.ptr != 0 {
                        sum = sum.wrapping_add(s.release(a, self.name()));
                    }
                }
                run.clear();
            }
            if self.cross {
                // Keep freeing incoming blocks until every thread has sent
                // its last ones (a sender may be waiting for this box to
                // drain), then free what is left.
                finished.fetch_add(1, Ordering::AcqRel);
                while finished.load(Ordering::Acquire) < t {
                    take_mail(&mut sum, &mut incoming);
                    std::thread::sleep(PAUSE);
                }
                take_mail(&mut sum, &mut incoming);
            }
            sum
        });
        Outcome {
            checksum,
            ops: (t * runs * RUN) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_is_mostly_small() {
        let s = run_sizes();
        assert_eq!(s.len(), RUN);
        assert_eq!(*s.iter().min().unwrap(), 24);
        assert!(*s.iter().max().unwrap() > 2048);
        let small = s.iter().filter(|&&x| x < 256).count();
        assert!(small * 10 > s.len() * 7, "{small}");
    }
}
