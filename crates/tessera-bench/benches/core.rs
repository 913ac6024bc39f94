//! The core alone against glibc, single-threaded (issue 2): see
//! `tessera_bench::patterns` for the four patterns.
//!
//! Run: `cargo bench -p tessera-bench --bench core`. Within each pattern's
//! group the two allocators run back to back (a fresh `tessera::Heap` per
//! pattern). After criterion's own report this prints one line per pattern
//! with the ratio tessera-heap / glibc of criterion's median estimates,
//! read back from `<target>/criterion/<pattern>/<allocator>/new/estimates.json`.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use std::path::PathBuf;
use std::time::Duration;
use tessera_bench::patterns::{burst, grow, Churn, Core, Glibc, Inputs, ALLOCATORS, PATTERNS};

/// Benchmarks `pattern` on `a` as function `name` of group `g`.
fn one<A: Core>(
    g: &mut BenchmarkGroup<WallTime>,
    pattern: &str,
    name: &str,
    a: &mut A,
    i: &Inputs,
) {
    let mut live = Vec::with_capacity(64);
    match pattern {
        "small" => g.bench_function(name, |b| b.iter(|| burst(a, &i.small, &mut live))),
        "medium" => g.bench_function(name, |b| b.iter(|| burst(a, &i.medium, &mut live))),
        "churn" => {
            let mut churn = Churn::new(a);
            g.bench_function(name, |b| b.iter(|| churn.step(a)));
            churn.drop_all(a);
            g
        }
        "realloc" => g.bench_function(name, |b| b.iter(|| grow(a))),
        _ => unreachable!("unknown pattern {pattern}"),
    };
}

/// Where criterion keeps its results (criterion's own rule: CRITERION_HOME,
/// else `$CARGO_TARGET_DIR/criterion`, else `<target>/criterion` found from
/// this executable, `<target>/release/deps/core-*`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return Some(h.into());
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(t).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

fn median_ns(dir: &std::path::Path, pattern: &str, alloc: &str) -> Option<f64> {
    let path = dir.join(pattern).join(alloc).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn print_ratios() {
    let Some(dir) = criterion_dir() else { return };
    println!("\ncore vs glibc (criterion medians, tessera-heap / glibc; target <= 1.20):");
    for p in PATTERNS {
        match (
            median_ns(&dir, p, ALLOCATORS[0]),
            median_ns(&dir, p, ALLOCATORS[1]),
        ) {
            (Some(t), Some(g)) => println!(
                "  {p:<8} tessera-heap {:>10.1} ns  glibc {:>10.1} ns  ratio {:.2}{}",
                t,
                g,
                t / g,
                if t / g <= 1.2 { "" } else { "  (over 1.2)" }
            ),
            _ => println!("  {p:<8} (no estimates in {})", dir.display()),
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let inputs = Inputs::default();
    // One fresh heap per pattern; the two allocators run back to back
    // within each pattern's group.
    for p in PATTERNS {
        let mut g = c.benchmark_group(p);
        let mut heap = tessera::Heap::new();
        one(&mut g, p, ALLOCATORS[0], &mut heap, &inputs);
        drop(heap);
        one(&mut g, p, ALLOCATORS[1], &mut Glibc, &inputs);
        g.finish();
    }
    c.final_summary();
    print_ratios();
}
