//! The thread-cache fast path, for instruction counting with callgrind:
//!
//! ```text
//! cargo build --release -p tessera --example fastpath
//! valgrind --tool=callgrind --toggle-collect='fastpath::pairs' \
//!     target/release/examples/fastpath 1000
//! ```
//! Run it with two counts (say 1000 and 2000) and divide the difference of
//! the reported instruction counts (Ir) by the difference of the counts:
//! that cancels the loop's fixed cost.

use std::hint::black_box;

#[inline(never)]
fn pairs(n: usize) {
    for _ in 0..n {
        let p = tessera::global::malloc(black_box(64));
        // SAFETY: p is live and freed once.
        unsafe { tessera::global::free(black_box(p)) };
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    // Warm up: the first pair fills the cache from an arena.
    pairs(10);
    pairs(n);
}
