//! Runs one suite workload against one allocator, single-threaded by
//! default, for instruction counting (exact and repeatable under callgrind,
//! unlike wall time on a shared machine):
//!
//! ```text
//! cargo build --release -p tessera-bench --example profile_workload
//! valgrind --tool=callgrind --toggle-collect='*Workload>::run' \
//!     target/release/examples/profile_workload larson tessera 0.1
//! ```
//! Compare the totals of two allocators on the same workload and scale.

use tessera_bench::workloads::{self, Params};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(alloc)) = (args.first(), args.get(1)) else {
        eprintln!("usage: profile_workload <workload> <allocator> [scale] [threads]");
        std::process::exit(2);
    };
    let scale: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.1);
    let threads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let Some(a) = tessera_bench::alloc::by_name(alloc) else {
        eprintln!("unknown allocator {alloc}");
        std::process::exit(2);
    };
    // The built-in trace costs a lot to generate: only when it is asked for.
    let traces = if name == "trace" {
        vec![workloads::TraceReplay::builtin(scale)]
    } else {
        Vec::new()
    };
    let all = workloads::all(traces);
    let Some(w) = all.iter().find(|w| w.name() == name) else {
        eprintln!("unknown workload {name}");
        std::process::exit(2);
    };
    let p = Params { threads, scale };
    let sum = w.run(a, &p);
    println!("{name} on {alloc}: checksum {sum:#x}");
}
