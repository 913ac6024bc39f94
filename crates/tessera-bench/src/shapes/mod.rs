//! The field's workload shapes, run through the same door for every
//! allocator (`tessera-bench shapes`).
//!
//! The classic allocator benchmarks that people compare mallocs with
//! (mimalloc-bench's collection: sh6bench, sh8bench, larson, xmalloc-test,
//! cache-thrash, cache-scratch, malloc-large, glibc's bench-malloc-simple
//! and -thread, cfrac, espresso) each stress one shape of program. These
//! are our own programs with those shapes (the sources were read to learn
//! the shapes; none is copied), plus real programs timed as whole
//! processes ([`programs`]).
//!
//! Every measurement is a separate process: this binary re-executes itself
//! as `tessera-bench --shape-child NAME THREADS SCALE` with the allocator
//! preloaded ([`crate::preload`]), or runs the real program that way. The
//! child runs the shape once, timing the work itself (not process start or
//! exit), and prints one line:
//!
//! ```text
//! tessera-bench-shape time=<s> ops=<n> checksum=<n> base=<bytes> hwm=<bytes> malloc=<object>
//! ```
//!
//! The parent takes wall time, CPU time and the peak resident set from
//! `wait4` ([`crate::proc`]). Peak memory is the whole process's, as
//! `/usr/bin/time` reports it (the binary's own pages, about 3 MiB, are in
//! every allocator's figure alike).
//!
//! Like the suite's workloads, every shape is deterministic (per-thread
//! xorshift streams), writes into every block it allocates and checks it
//! before freeing, and returns a checksum of what it checked, which must be
//! the same for every allocator. Each shape calls `malloc` and `free` of
//! the process ([`ProcessMalloc`]), so the preloaded library serves them.

use crate::alloc::{ProcessMalloc, RawAlloc};
use crate::workloads::Params;
use std::time::Instant;

mod falseshare;
mod large;
mod larson;
pub mod plan;
pub mod programs;
pub mod report;
mod sh;
mod tight;
mod xmalloc;

/// What one run of a shape did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Checksum of the data verified before each free.
    pub checksum: u64,
    /// malloc/free pairs done.
    pub ops: u64,
}

/// One shape, run in a child process.
pub trait Shape: Sync {
    /// Name on the command line and in reports.
    fn name(&self) -> &'static str;
    /// One line on what it does and which benchmark it follows.
    fn about(&self) -> &'static str;
    /// Threads it runs on a machine with `cores` cores (its report column).
    fn threads(&self, cores: usize) -> usize;
    /// Runs once on `a`. Panics (naming `a`) if a block is corrupted.
    fn run(&self, a: &dyn RawAlloc, p: &Params) -> Outcome;
}

/// Every shape, in report order.
pub fn all() -> Vec<&'static dyn Shape> {
    vec![
        &sh::SH6,
        &sh::SH8,
        &larson::LARSON,
        &larson::LARSON_4K,
        &xmalloc::XMALLOC,
        &falseshare::CacheThrash,
        &falseshare::CacheScratch,
        &large::LargeBlocks,
        &tight::TIGHT,
        &tight::TIGHT_N,
    ]
}

/// The shape called `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Shape> {
    all().into_iter().find(|s| s.name() == name)
}

/// First word of a shape child's result line.
pub const CHILD_TAG: &str = "tessera-bench-shape";

/// What a shape child reported.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildLine {
    /// Seconds of the timed work.
    pub time: f64,
    /// malloc/free pairs.
    pub ops: u64,
    /// The shape's checksum.
    pub checksum: u64,
    /// Resident bytes just before the work.
    pub base: u64,
    /// Peak resident bytes of the process after the work.
    pub hwm: u64,
    /// The shared object `malloc` resolved to.
    pub malloc: String,
}

impl ChildLine {
    /// The line the child prints.
    pub fn line(&self) -> String {
        format!(
            "{CHILD_TAG} time={} ops={} checksum={} base={} hwm={} malloc={}",
            self.time, self.ops, self.checksum, self.base, self.hwm, self.malloc
        )
    }

    /// Parses the child's stdout.
    pub fn parse(stdout: &str) -> Option<ChildLine> {
        let line = stdout.lines().find(|l| l.starts_with(CHILD_TAG))?;
        let field = |name: &str| -> Option<&str> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        };
        let malloc = line.split_once(" malloc=")?.1.to_string();
        Some(ChildLine {
            time: field("time")?.parse().ok()?,
            ops: field("ops")?.parse().ok()?,
            checksum: field("checksum")?.parse().ok()?,
            base: field("base")?.parse().ok()?,
            hwm: field("hwm")?.parse().ok()?,
            malloc,
        })
    }
}

/// The child's side: runs shape `name` once on this process's malloc.
pub fn child(name: &str, threads: usize, scale: f64) -> Result<ChildLine, String> {
    let shape = by_name(name).ok_or_else(|| format!("unknown shape `{name}`"))?;
    let p = Params { threads, scale };
    crate::mem::reset_peak();
    let base = crate::mem::status_bytes("VmRSS").unwrap_or(0);
    let t0 = Instant::now();
    let out = shape.run(&ProcessMalloc, &p);
    let time = t0.elapsed().as_secs_f64();
    let hwm = crate::mem::status_bytes("VmHWM").unwrap_or(0);
    Ok(ChildLine {
        time,
        ops: out.ops,
        checksum: out.checksum,
        base,
        hwm,
        malloc: crate::preload::malloc_object(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc;

    #[test]
    fn child_line_round_trips() {
        let c = ChildLine {
            time: 0.25,
            ops: 7,
            checksum: 99,
            base: 1,
            hwm: 2,
            malloc: "/usr/lib/x 86/libc.so.6".into(),
        };
        assert_eq!(ChildLine::parse(&format!("x\n{}\n", c.line())), Some(c));
        assert_eq!(ChildLine::parse("nothing"), None);
    }

    /// Every shape runs tiny in this process on glibc, Tessera and
    /// mimalloc (the suite's in-process doors) at 1 and 3 threads and gives
    /// the same checksum: the shapes do not depend on addresses or timing.
    #[test]
    fn shapes_agree_across_allocators_and_runs() {
        for s in all() {
            for threads in [1, 3] {
                let p = Params {
                    threads,
                    scale: 0.01,
                };
                let base = s.run(&alloc::Glibc, &p);
                assert!(base.ops > 0, "{}", s.name());
                for a in [
                    &alloc::Tessera as &dyn RawAlloc,
                    &alloc::Mimalloc,
                    &alloc::Glibc,
                ] {
                    assert_eq!(
                        s.run(a, &p),
                        base,
                        "{} x{threads} on {}",
                        s.name(),
                        a.name()
                    );
                }
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let names: Vec<&str> = all().iter().map(|s| s.name()).collect();
        for n in &names {
            assert_eq!(names.iter().filter(|m| *m == n).count(), 1, "{n}");
            assert!(by_name(n).is_some());
        }
    }
}
