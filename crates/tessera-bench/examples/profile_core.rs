//! Runs one pattern of the core benchmark a fixed number of times, outside
//! criterion, for profilers (instruction counts per iteration are exact
//! under callgrind):
//!
//! ```text
//! cargo build --release -p tessera-bench --example profile_core
//! valgrind --tool=callgrind target/release/examples/profile_core small tessera-heap 20000
//! callgrind_annotate callgrind.out.<pid>
//! ```

use tessera_bench::patterns::{run_pattern, Glibc, PATTERNS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = format!(
        "usage: profile_core <{}> <tessera-heap|glibc> [iterations]",
        PATTERNS.join("|")
    );
    let (Some(pattern), Some(alloc)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let ok = match alloc.as_str() {
        "tessera-heap" => run_pattern(pattern, &mut tessera::Heap::new(), iters),
        "glibc" => run_pattern(pattern, &mut Glibc, iters),
        _ => false,
    };
    if !ok {
        eprintln!("{usage}");
        std::process::exit(2);
    }
}
