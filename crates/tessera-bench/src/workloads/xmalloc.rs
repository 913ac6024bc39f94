//! `xmalloc`: producer/consumer, after Lever & Boreham's xmalloc-test
//! ("malloc() performance in a multithreaded Linux environment", USENIX
//! 2000): blocks are allocated on one thread and freed on another.
//!
//! Our own shape: the threads form a ring. Each thread allocates a batch of
//! small blocks and sends it to the next thread; after a lead of `LEAD`
//! batches it also receives one batch from the previous thread per batch it
//! sends, and frees it. At one thread the ring closes on itself (frees stay
//! local); from two threads on, every free is remote. The lead lets a
//! thread run ahead of its neighbour instead of waiting for it at every
//! batch, so the run measures the allocator more than the scheduler. The
//! batch vectors circulate, so the harness allocates almost nothing.
//!
//! No deadlock (channels hold `DEPTH > LEAD` batches): a thread blocked
//! sending has completed s sends and s - LEAD receives, so "every channel
//! full" needs s_i - s_{i+1} = DEPTH - LEAD > 0 for every i around the
//! ring, which sums to 0; a thread blocked receiving has completed s sends
//! and s - LEAD - 1 receives, so "every channel empty" needs
//! s_{i-1} = s_i - LEAD - 1 < s_i all around the ring, again impossible;
//! and a thread cannot wait to receive from a full channel.

use super::{on_threads, tag_of, Params, Slot, Workload};
use crate::alloc::RawAlloc;
use crate::rng::Rng;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// See the module docs.
pub struct Xmalloc;

/// Blocks per batch.
const BATCH: usize = 100;
/// Batches each thread produces at scale 1.
const BATCHES: usize = 20_000;
/// Batches a thread sends before it starts receiving.
const LEAD: usize = 8;
/// Batches a channel holds (> LEAD).
const DEPTH: usize = 2 * LEAD;
const MIN_SIZE: usize = 16;
const MAX_SIZE: usize = 512;

impl Workload for Xmalloc {
    fn name(&self) -> &str {
        "xmalloc"
    }
    fn about(&self) -> &str {
        "producer/consumer ring: batches of 16-512 B blocks freed by the next thread"
    }
    fn threaded(&self) -> bool {
        true
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64 {
        let t = p.threads;
        let batches = p.ops(BATCHES);
        type Chan = (SyncSender<Vec<Slot>>, Mutex<Option<Receiver<Vec<Slot>>>>);
        let chans: Vec<Chan> = (0..t)
            .map(|_| {
                let (tx, rx) = sync_channel(DEPTH);
                (tx, Mutex::new(Some(rx)))
            })
            .collect();
        on_threads(t, |me| {
            let tx = chans[(me + 1) % t].0.clone();
            let rx = chans[me]
                .1
                .lock()
                .unwrap()
                .take()
                .expect("one receiver per thread");
            let mut rng = Rng::new(0x0c0a_0000 + me as u64);
            let mut sum = 0u64;
            let mut consume = |mut batch: Vec<Slot>| {
                for s in batch.drain(..) {
                    sum = sum.wrapping_add(s.release(a, "xmalloc"));
                }
                batch
            };
            let mut spare: Vec<Slot> = Vec::with_capacity(BATCH);
            for k in 0..batches {
                for _ in 0..BATCH {
                    let size = rng.range(MIN_SIZE, MAX_SIZE);
                    spare.push(Slot::new(a, size, tag_of(&mut rng)));
                }
                tx.send(spare).expect("ring neighbour alive");
                spare = if k >= LEAD {
                    consume(rx.recv().expect("ring neighbour alive"))
                } else {
                    Vec::with_capacity(BATCH)
                };
            }
            for _ in 0..batches.min(LEAD) {
                consume(rx.recv().expect("ring neighbour alive"));
            }
            sum
        })
    }
}
