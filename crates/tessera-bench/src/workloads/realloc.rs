//! `realloc`: growth by realloc, as a program grows its vectors and string
//! buffers. Eight buffers grow side by side by 1.5x steps from 16 B to a
//! random final size (log-uniform, 256 B to 1 MiB, so some cross the mmap
//! threshold), while small objects are allocated between the steps (so
//! growing in place is not free). Every realloc must keep the old contents:
//! the stamp at the start and the marker at the old end are checked.

use super::{tag_of, Params, Slot, Workload};
use crate::alloc::RawAlloc;
use crate::rng::Rng;

/// See the module docs.
pub struct ReallocGrowth;

/// Buffers growing at once.
const BUFFERS: usize = 8;
/// Rounds at scale 1 (each grows every buffer to its final size).
const ROUNDS: usize = 400;

impl Workload for ReallocGrowth {
    fn name(&self) -> &str {
        "realloc"
    }
    fn about(&self) -> &str {
        "realloc growth: 8 buffers grow 1.5x from 16 B to 256 B-1 MiB between small allocations"
    }
    fn threaded(&self) -> bool {
        false
    }
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> u64 {
        let mut rng = Rng::new(0x4ea1_0000);
        let mut sum = 0u64;
        let mut small: Vec<Slot> = Vec::with_capacity(BUFFERS * 32);
        for _ in 0..p.ops(ROUNDS) {
            let mut bufs: [(Slot, usize); BUFFERS] =
                std::array::from_fn(|_| (Slot::new(a, 16, tag_of(&mut rng)), 0));
            for b in bufs.iter_mut() {
                b.1 = rng.log_size(256, 1 << 20);
            }
            let mut growing = true;
            while growing {
                growing = false;
                for (buf, goal) in bufs.iter_mut() {
                    let old = buf.size as usize;
                    if old >= *goal {
                        continue;
                    }
                    growing = true;
                    let new = (old + old / 2 + 16).min(*goal);
                    // SAFETY: a live block of `a` with requested size `old`.
                    let q = unsafe { a.realloc(buf.ptr as *mut u8, old, new) };
                    assert!(!q.is_null(), "{}: realloc to {new} failed", a.name());
                    buf.ptr = q as usize;
                    sum = sum.wrapping_add(buf.verify(a, "realloc (old contents)"));
                    buf.size = new as u32;
                    buf.stamp();
                    buf.touch();
                    small.push(Slot::new(a, rng.range(24, 128), tag_of(&mut rng)));
                }
            }
            for (buf, _) in bufs {
                sum = sum.wrapping_add(buf.release(a, "realloc"));
            }
            for s in small.drain(..) {
                sum = sum.wrapping_add(s.release(a, "realloc"));
            }
        }
        sum
    }
}
