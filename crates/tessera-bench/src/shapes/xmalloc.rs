//! `xmalloc`: the shape of Lever & Boreham's xmalloc-test (USENIX 2000) as
//! mimalloc-bench runs it (`-s 64`): producer threads allocate, consumer
//! threads free, so every free is cross-thread, at a high rate.
//!
//! One producer and one consumer per core. A producer allocates a batch:
//! an array of 1024 pointers (itself a malloc'd 8 KiB block) filled with
//! fresh 64-byte blocks, each stamped; it puts the batch on one shared
//! queue (at most 64 batches waiting; a producer waits while it is full).
//! A consumer takes a batch, checks and frees every block and then the
//! array. The run ends when every producer has made its batches and the
//! consumers have freed them all.

use super::{Outcome, Shape};
use crate::alloc::RawAlloc;
use crate::rng::Rng;
use crate::workloads::{on_threads, tag_of, Params, Slot};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// See the module docs.
pub struct XmallocShape;
/// The shape.
pub const XMALLOC: XmallocShape = XmallocShape;

/// Object size (mimalloc-bench runs xmalloc-test with `-s 64`).
const OBJ: usize = 64;
/// Objects per batch.
const PER_BATCH: usize = 1024;
/// Batches per producer at scale 1.
const BATCHES: usize = 1500;
/// Batches the queue holds.
const QUEUE_MAX: usize = 64;

struct Queue {
    /// Batch arrays (addresses) and the number of batches still to come.
    state: Mutex<(VecDeque<usize>, usize)>,
    not_empty: Condvar,
    not_full: Condvar,
}

impl Shape for XmallocShape {
    fn name(&self) -> &'static str {
        "xmalloc"
    }
    fn about(&self) -> &'static str {
        "xmalloc-test: per core a producer of batches of 1024 64-byte blocks and a consumer that frees them"
    }
    fn threads(&self, cores: usize) -> usize {
        2 * cores
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> Outcome {
        let pairs = p.threads.div_ceil(2).max(1);
        let batches = p.ops(BATCHES);
        let q = Queue {
            state: Mutex::new((VecDeque::with_capacity(QUEUE_MAX), pairs * batches)),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
        };
        let checksum = on_threads(2 * pairs, |me| {
            if me < pairs {
                produce(a, &q, me, batches)
            } else {
                consume(a, &q)
            }
        });
        Outcome {
            checksum,
            ops: (pairs * batches * (PER_BATCH + 1)) as u64,
        }
    }
}

fn produce(a: &dyn RawAlloc, q: &Queue, me: usize, batches: usize) -> u64 {
    let mut rng = Rng::new(0x0c0a_6400 + me as u64);
    for _ in 0..batches {
        // SAFETY: a non-zero size; the consumer frees the array.
        let arr = unsafe { a.malloc(PER_BATCH * 8) } as *mut usize;
        assert!(!arr.is_null(), "{}: malloc failed", a.name());
        for i in 0..PER_BATCH {
            let s = Slot::new(a, OBJ, tag_of(&mut rng));
            // SAFETY: i < PER_BATCH: inside the array.
            unsafe { arr.add(i).write(s.ptr) };
        }
        let mut st = q.state.lock().unwrap();
        while st.0.len() >= QUEUE_MAX {
            st = q.not_full.wait(st).unwrap();
        }
        st.0.push_back(arr as usize);
        q.not_empty.notify_one();
    }
    0
}

fn consume(a: &dyn RawAlloc, q: &Queue) -> u64 {
    let mut sum = 0u64;
    loop {
        let arr = {
            let mut st = q.state.lock().unwrap();
            loop {
                if let Some(b) = st.0.pop_front() {
                    st.1 -= 1;
                    if st.1 == 0 {
                        // The last batch: wake the others so they can end.
                        q.not_empty.notify_all();
                    }
                    q.not_full.notify_one();
                    break Some(b);
                }
                if st.1 == 0 {
                    break None;
                }
                st = q.not_empty.wait(st).unwrap();
            }
        };
        let Some(arr) = arr else { return sum };
        let arr = arr as *mut usize;
        for i in 0..PER_BATCH {
            // SAFETY: the producer filled every entry of the array.
            let ptr = unsafe { arr.add(i).read() };
            // The tag is read back from the block and checked against the
            // marker the producer wrote from it.
            // SAFETY: a live OBJ-byte block.
            let tag = unsafe { (ptr as *const u32).read_unaligned() };
            let s = Slot {
                ptr,
                size: OBJ as u32,
                tag,
            };
            sum = sum.wrapping_add(s.release(a, "xmalloc"));
        }
        // SAFETY: the batch array, allocated by a producer with this size.
        unsafe { a.free(arr.cast(), PER_BATCH * 8) };
    }
}
