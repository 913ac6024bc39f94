//! Ratios, geometric means, the targets, the text table and the JSON file.
//!
//! Every ratio is `allocator / glibc` on the same case: below 1 is better
//! (faster, or less memory). Geometric means are taken over cases, so a
//! workload that runs at three thread counts weighs three times.

use crate::harness::Results;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The reference allocator of every ratio.
pub const REFERENCE: &str = "glibc";

/// Below this glibc peak a memory ratio is dominated by fixed costs
/// (arena headers, per-thread caches, the first segment) rather than by
/// how the allocator manages the workload's data: such ratios are shown
/// marked `~` and left out of the memory geometric mean.
pub const SMALL_PEAK: u64 = 1 << 20;

/// One target of issue 4, checked against a run.
#[derive(Clone, Debug)]
pub struct Target {
    /// What is promised.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// The limit (`value <= limit` passes).
    pub limit: f64,
    /// Cases that break it, if it is a per-case target.
    pub offenders: Vec<String>,
}

impl Target {
    /// Whether the run meets it.
    pub fn pass(&self) -> bool {
        self.value <= self.limit && self.offenders.is_empty()
    }
}

/// Ratios derived from a run.
pub struct Summary {
    /// Allocators in order.
    pub allocators: Vec<String>,
    /// Cases in order.
    pub cases: Vec<(String, usize)>,
    /// `time[case][alloc]`: median time ratio to glibc.
    pub time: Vec<Vec<Option<f64>>>,
    /// `mem[case][alloc]`: peak memory ratio to glibc.
    pub mem: Vec<Vec<Option<f64>>>,
    /// Whether glibc's peak on the case is below [`SMALL_PEAK`].
    pub small_peak: Vec<bool>,
    /// Geometric mean of the time ratios per allocator.
    pub time_geomean: Vec<Option<f64>>,
    /// Geometric mean of the memory ratios per allocator (cases with a
    /// small glibc peak left out).
    pub mem_geomean: Vec<Option<f64>>,
    /// Geometric mean over cases of tessera's time / mimalloc's time.
    pub tessera_vs_mimalloc: Option<f64>,
    /// The targets (those whose allocators took part).
    pub targets: Vec<Target>,
}

/// Geometric mean of the values present (None if there are none).
pub fn geomean(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        if x > 0.0 && x.is_finite() {
            s += x.ln();
            n += 1;
        }
    }
    (n > 0).then(|| (s / n as f64).exp())
}

impl Summary {
    /// Computes every ratio of `r`.
    pub fn new(r: &Results) -> Summary {
        let allocators = r.allocators();
        let cases = r.cases();
        let mut time = Vec::new();
        let mut mem = Vec::new();
        let mut small_peak = Vec::new();
        for (w, t) in &cases {
            let reference = r.cell(w, *t, REFERENCE);
            let ref_time = reference.map(|c| c.median);
            let ref_peak = reference.and_then(|c| c.peak);
            small_peak.push(ref_peak.is_some_and(|p| p < SMALL_PEAK));
            let mut tr = Vec::new();
            let mut mr = Vec::new();
            for a in &allocators {
                let c = r.cell(w, *t, a);
                tr.push(match (c, ref_time) {
                    (Some(c), Some(g)) if g > 0.0 => Some(c.median / g),
                    _ => None,
                });
                mr.push(match (c.and_then(|c| c.peak), ref_peak) {
                    (Some(p), Some(g)) if g > 0 => Some(p as f64 / g as f64),
                    _ => None,
                });
            }
            time.push(tr);
            mem.push(mr);
        }
        let col = |m: &Vec<Vec<Option<f64>>>, ai: usize, skip_small: bool| {
            geomean(
                m.iter()
                    .zip(&small_peak)
                    .filter(|(_, &s)| !(skip_small && s))
                    .filter_map(|(row, _)| row[ai]),
            )
        };
        let time_geomean = (0..allocators.len())
            .map(|ai| col(&time, ai, false))
            .collect();
        let mem_geomean: Vec<Option<f64>> = (0..allocators.len())
            .map(|ai| col(&mem, ai, true))
            .collect();
        let ti = allocators.iter().position(|a| a == "tessera");
        let mi = allocators.iter().position(|a| a == "mimalloc");
        let tessera_vs_mimalloc = match (ti, mi) {
            (Some(_), Some(_)) => geomean(cases.iter().filter_map(|(w, t)| {
                let a = r.cell(w, *t, "tessera")?.median;
                let b = r.cell(w, *t, "mimalloc")?.median;
                (b > 0.0).then(|| a / b)
            })),
            _ => None,
        };
        let mut s = Summary {
            allocators,
            cases,
            time,
            mem,
            small_peak,
            time_geomean,
            mem_geomean,
            tessera_vs_mimalloc,
            targets: Vec::new(),
        };
        s.targets = s.check_targets(ti);
        s
    }

    fn case_name(&self, ci: usize) -> String {
        let (w, t) = &self.cases[ci];
        format!("{w} x{t}")
    }

    fn check_targets(&self, ti: Option<usize>) -> Vec<Target> {
        let Some(ti) = ti else { return Vec::new() };
        let mut v = Vec::new();
        if let Some(g) = self.time_geomean[ti] {
            v.push(Target {
                name: "time geomean vs glibc".into(),
                value: g,
                limit: 0.75,
                offenders: Vec::new(),
            });
        }
        if let Some(g) = self.tessera_vs_mimalloc {
            v.push(Target {
                name: "time geomean vs mimalloc".into(),
                value: g,
                limit: 1.10,
                offenders: Vec::new(),
            });
        }
        let per_case = |m: &Vec<Vec<Option<f64>>>, limit: f64| {
            let mut worst: f64 = 0.0;
            let mut off = Vec::new();
            for (ci, row) in m.iter().enumerate() {
                if let Some(x) = row[ti] {
                    worst = worst.max(x);
                    if x > limit {
                        off.push(format!("{} {x:.2}", self.case_name(ci)));
                    }
                }
            }
            (worst, off)
        };
        let (worst, offenders) = per_case(&self.time, 1.0);
        if worst > 0.0 {
            v.push(Target {
                name: "no slower than glibc on any case (worst ratio)".into(),
                value: worst,
                limit: 1.0,
                offenders,
            });
        }
        let (worst, offenders) = per_case(&self.mem, 1.1);
        if worst > 0.0 {
            v.push(Target {
                name: "peak memory <= 1.1 x glibc on every case (worst ratio)".into(),
                value: worst,
                limit: 1.1,
                offenders,
            });
        }
        v
    }
}

fn ratio_cell(x: Option<f64>, small: bool) -> String {
    match x {
        Some(x) => format!("{x:.2}{}", if small { "~" } else { " " }),
        None => "-  ".into(),
    }
}

/// The text table: time, then memory, then the targets.
pub fn table(r: &Results, s: &Summary, reps: usize) -> String {
    let mut out = String::new();
    let others: Vec<usize> = (0..s.allocators.len())
        .filter(|&i| s.allocators[i] != REFERENCE)
        .collect();
    let header = |out: &mut String, unit: &str| {
        let _ = write!(out, "{:<16}{:>4}{:>12}", "workload", "thr", unit);
        for &i in &others {
            let _ = write!(out, "{:>11}", s.allocators[i]);
        }
        out.push('\n');
    };
    let _ = writeln!(
        out,
        "Time: median of {reps}, ratio to glibc (lower is better); glibc column in ms"
    );
    header(&mut out, "glibc ms");
    for (ci, (w, t)) in s.cases.iter().enumerate() {
        let g = r.cell(w, *t, REFERENCE).map(|c| c.median * 1e3);
        let _ = write!(
            out,
            "{w:<16}{t:>4}{:>12}",
            g.map_or("-".into(), |g| format!("{g:.1}"))
        );
        for &i in &others {
            let _ = write!(out, "{:>11}", ratio_cell(s.time[ci][i], false));
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<16}{:>4}{:>12}", "geomean", "", "");
    for &i in &others {
        let _ = write!(out, "{:>11}", ratio_cell(s.time_geomean[i], false));
    }
    out.push_str("\n\n");

    let any_peak = r.cells.iter().any(|c| c.peak.is_some());
    if any_peak {
        let _ = writeln!(
            out,
            "Peak memory: resident bytes in a child run, ratio to glibc; glibc column in MiB\n\
             (~ = glibc peak under 1 MiB: fixed costs dominate; left out of the geomean)"
        );
        header(&mut out, "glibc MiB");
        for (ci, (w, t)) in s.cases.iter().enumerate() {
            let g = r.cell(w, *t, REFERENCE).and_then(|c| c.peak);
            let _ = write!(
                out,
                "{w:<16}{t:>4}{:>12}",
                g.map_or("-".into(), |g| format!("{:.2}", g as f64 / 1048576.0))
            );
            for &i in &others {
                let _ = write!(out, "{:>11}", ratio_cell(s.mem[ci][i], s.small_peak[ci]));
            }
            out.push('\n');
        }
        let _ = write!(out, "{:<16}{:>4}{:>12}", "geomean", "", "");
        for &i in &others {
            let _ = write!(out, "{:>11}", ratio_cell(s.mem_geomean[i], false));
        }
        out.push_str("\n\n");
    }

    if let Some(x) = s.tessera_vs_mimalloc {
        let _ = writeln!(out, "Tessera vs mimalloc, time geomean: {x:.2}");
    }
    write_targets(&mut out, "Targets (issue 4):", &s.targets);
    write_problems(&mut out, &r.problems);
    out
}

/// Appends the target lines under `heading`, each case that breaks a
/// per-case target on a line of its own (nothing if there are none).
pub fn write_targets(out: &mut String, heading: &str, targets: &[Target]) {
    if targets.is_empty() {
        return;
    }
    let _ = writeln!(out, "{heading}");
    for t in targets {
        let verdict = if t.pass() { "pass" } else { "FAIL" };
        let _ = writeln!(
            out,
            "  [{verdict}] {}: {:.2} (limit {:.2})",
            t.name, t.value, t.limit
        );
        if !t.offenders.is_empty() {
            let _ = writeln!(out, "         {}", t.offenders.join(", "));
        }
    }
}

/// Appends the run's problems (failed or disagreeing runs), if any.
pub fn write_problems(out: &mut String, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nProblems:");
    for p in problems {
        let _ = writeln!(out, "  {p}");
    }
}

/// Facts about the run for the JSON file.
pub struct Meta {
    /// Repetitions.
    pub reps: usize,
    /// Thread counts asked for.
    pub threads: Vec<usize>,
    /// Operation scale.
    pub scale: f64,
    /// `--quick`.
    pub quick: bool,
    /// Allocator name -> description found at run time.
    pub allocators: Vec<(String, String)>,
    /// Findings of `alloc::check_baselines`.
    pub baseline_checks: Vec<String>,
    /// Workloads: (name, about, threaded).
    pub workloads: Vec<(String, String, bool)>,
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |x| json!(x))
}

/// The JSON document (schema `tessera-bench/1`, described in the README).
pub fn json(r: &Results, s: &Summary, m: &Meta) -> Value {
    let results: Vec<Value> = r
        .cells
        .iter()
        .map(|c| {
            let ci = s
                .cases
                .iter()
                .position(|(w, t)| *w == c.workload && *t == c.threads)
                .expect("cell of a known case");
            let ai = s
                .allocators
                .iter()
                .position(|a| *a == c.allocator)
                .expect("cell of a known allocator");
            json!({
                "workload": c.workload,
                "threads": c.threads,
                "allocator": c.allocator,
                "times_s": c.times,
                "median_s": c.median,
                "peak_bytes": c.peak,
                "time_ratio": opt(s.time[ci][ai]),
                "mem_ratio": opt(s.mem[ci][ai]),
                "small_peak": s.small_peak[ci],
                "checksum": format!("{:#x}", c.checksum),
            })
        })
        .collect();
    let per_alloc = |g: &Vec<Option<f64>>| -> Value {
        let mut o = serde_json::Map::new();
        for (a, x) in s.allocators.iter().zip(g) {
            o.insert(a.clone(), opt(*x));
        }
        Value::Object(o)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "schema": "tessera-bench/1",
        "unix_time": now,
        "host": {
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default().trim(),
        },
        "config": {
            "reps": m.reps,
            "threads": m.threads,
            "scale": m.scale,
            "quick": m.quick,
            "wall_s": r.wall,
            "reference": REFERENCE,
            "small_peak_bytes": SMALL_PEAK,
        },
        "allocators": m.allocators.iter()
            .map(|(n, d)| json!({"name": n, "version": d})).collect::<Vec<_>>(),
        "baseline_checks": m.baseline_checks,
        "workloads": m.workloads.iter()
            .map(|(n, a, t)| json!({"name": n, "about": a, "threaded": t})).collect::<Vec<_>>(),
        "results": results,
        "geomean": {
            "time_ratio": per_alloc(&s.time_geomean),
            "mem_ratio": per_alloc(&s.mem_geomean),
            "tessera_vs_mimalloc_time": opt(s.tessera_vs_mimalloc),
        },
        "targets": s.targets.iter().map(|t| json!({
            "name": t.name, "value": t.value, "limit": t.limit,
            "pass": t.pass(), "offenders": t.offenders,
        })).collect::<Vec<_>>(),
        "problems": r.problems,
    })
}

/// The progress bar of a long run (`len` steps; hidden unless `visible`),
/// the same for the suite, the shapes and the service workload.
pub fn progress_bar(len: u64, visible: bool) -> indicatif::ProgressBar {
    let bar = if visible {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geomean_basics() {
        assert!((geomean([2.0, 8.0]).unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(geomean(std::iter::empty()), None);
        assert!((geomean([0.5, 2.0]).unwrap() - 1.0).abs() < 1e-12);
    }
}
