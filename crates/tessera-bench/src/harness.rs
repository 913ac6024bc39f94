//! Runs the plan: every (workload, threads) case on every allocator.
//!
//! Time is measured in this process. For each case the allocators take
//! turns, one run each per repetition, and the order rotates by one at
//! every repetition (rep 0: a b c d e, rep 1: b c d e a, ...), so no
//! allocator always runs first or always right after the same neighbour,
//! and slow drifts of the machine (other jobs, frequency) spread over all
//! of them. The reported time is the median of the repetitions.
//!
//! Peak memory is measured afterwards in child processes (see [`crate::mem`]).
//!
//! Every run's checksum must be the same for all allocators (they verify
//! the same data); a mismatch is reported as a problem.

use crate::alloc::RawAlloc;
use crate::mem;
use crate::workloads::{Params, Workload};
use std::path::PathBuf;
use std::time::Instant;

/// What to run.
pub struct Plan {
    /// Workloads, in report order.
    pub workloads: Vec<Box<dyn Workload>>,
    /// Allocators; glibc (the reference) must be among them.
    pub allocators: Vec<&'static dyn RawAlloc>,
    /// Thread counts for threaded workloads.
    pub threads: Vec<usize>,
    /// Timed repetitions per (case, allocator).
    pub reps: usize,
    /// Operation-count scale (see [`Params::scale`]).
    pub scale: f64,
    /// Measure peak memory in child processes.
    pub memory: bool,
    /// Recorded trace files (passed on to the children).
    pub trace_files: Vec<PathBuf>,
    /// Show a progress bar (on stderr, only if it is a terminal).
    pub progress: bool,
}

/// One (workload, threads) pair.
#[derive(Clone, Debug)]
pub struct Case {
    /// Index into `Plan::workloads`.
    pub workload: usize,
    /// Thread count.
    pub threads: usize,
}

/// The measurements of one allocator on one case.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Workload name.
    pub workload: String,
    /// Thread count.
    pub threads: usize,
    /// Allocator name.
    pub allocator: String,
    /// Seconds of each repetition, in run order.
    pub times: Vec<f64>,
    /// Median of `times`.
    pub median: f64,
    /// Peak resident bytes of the workload (None: not measured or failed).
    pub peak: Option<u64>,
    /// Checksum of the timed runs.
    pub checksum: u64,
}

/// Everything a run produced.
pub struct Results {
    /// One cell per (case, allocator), cases in plan order, allocators in
    /// plan order within a case.
    pub cells: Vec<Cell>,
    /// Problems found (checksum mismatches, failed children).
    pub problems: Vec<String>,
    /// Wall-clock seconds of the whole run.
    pub wall: f64,
}

impl Results {
    /// The cell of `allocator` on (`workload`, `threads`).
    pub fn cell(&self, workload: &str, threads: usize, allocator: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.workload == workload && c.threads == threads && c.allocator == allocator)
    }

    /// The (workload, threads) cases in order.
    pub fn cases(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = Vec::new();
        for c in &self.cells {
            if !v.iter().any(|(w, t)| *w == c.workload && *t == c.threads) {
                v.push((c.workload.clone(), c.threads));
            }
        }
        v
    }

    /// Allocator names in order.
    pub fn allocators(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in &self.cells {
            if !v.contains(&c.allocator) {
                v.push(c.allocator.clone());
            }
        }
        v
    }
}

/// The median of a non-empty list.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Plan {
    /// The cases: threaded workloads at every thread count, the others at 1.
    pub fn cases(&self) -> Vec<Case> {
        let mut v = Vec::new();
        for (i, w) in self.workloads.iter().enumerate() {
            if w.threaded() {
                for &t in &self.threads {
                    v.push(Case {
                        workload: i,
                        threads: t,
                    });
                }
            } else {
                v.push(Case {
                    workload: i,
                    threads: 1,
                });
            }
        }
        v
    }

    /// Runs everything.
    pub fn run(&self) -> Results {
        let start = Instant::now();
        let cases = self.cases();
        let n = self.allocators.len();
        let per_case = (n * self.reps + if self.memory { n } else { 0 }) as u64;
        let bar = crate::report::progress_bar(per_case * cases.len() as u64, self.progress);
        let mut cells = Vec::new();
        let mut problems = Vec::new();
        for case in &cases {
            let w = &self.workloads[case.workload];
            let p = Params {
                threads: case.threads,
                scale: self.scale,
            };
            let mut times = vec![Vec::with_capacity(self.reps); n];
            let mut sums = vec![None::<u64>; n];
            for rep in 0..self.reps {
                for k in 0..n {
                    let ai = (k + rep) % n;
                    let a = self.allocators[ai];
                    bar.set_message(format!(
                        "{} x{} {} (time)",
                        w.name(),
                        case.threads,
                        a.name()
                    ));
                    let t0 = Instant::now();
                    let sum = w.run(a, &p);
                    times[ai].push(t0.elapsed().as_secs_f64());
                    std::hint::black_box(sum);
                    match sums[ai] {
                        None => sums[ai] = Some(sum),
                        Some(s) if s != sum => problems.push(format!(
                            "{} x{}: {} gave checksum {sum:#x}, earlier {s:#x}",
                            w.name(),
                            case.threads,
                            a.name()
                        )),
                        _ => {}
                    }
                    bar.inc(1);
                }
            }
            let reference = sums[0];
            for (ai, a) in self.allocators.iter().enumerate() {
                if sums[ai] != reference {
                    problems.push(format!(
                        "{} x{}: {} checksum {:?} differs from {}'s {:?}",
                        w.name(),
                        case.threads,
                        a.name(),
                        sums[ai],
                        self.allocators[0].name(),
                        reference
                    ));
                }
            }
            for (ai, a) in self.allocators.iter().enumerate() {
                let peak = if self.memory {
                    bar.set_message(format!(
                        "{} x{} {} (memory)",
                        w.name(),
                        case.threads,
                        a.name()
                    ));
                    let r = mem::measure_in_child(w.name(), a.name(), &p, &self.trace_files);
                    bar.inc(1);
                    match r {
                        Ok(r) => {
                            if Some(r.checksum) != reference {
                                problems.push(format!(
                                    "{} x{}: {} checksum in the child differs",
                                    w.name(),
                                    case.threads,
                                    a.name()
                                ));
                            }
                            Some(r.peak)
                        }
                        Err(e) => {
                            problems.push(e);
                            None
                        }
                    }
                } else {
                    None
                };
                cells.push(Cell {
                    workload: w.name().to_string(),
                    threads: case.threads,
                    allocator: a.name().to_string(),
                    median: median(&times[ai]),
                    times: std::mem::take(&mut times[ai]),
                    peak,
                    checksum: sums[ai].unwrap_or(0),
                });
            }
        }
        bar.finish_and_clear();
        Results {
            cells,
            problems,
            wall: start.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
    }
}
