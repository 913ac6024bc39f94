//! Ratios, targets, the text table and the JSON file of `tessera-bench
//! shapes`. The ratios and geometric means are the suite's
//! ([`crate::report::Summary`], over a [`crate::harness::Results`] built
//! from the shapes' cells), so the chart is the suite's chart too.

use super::plan::Outcomes;
use crate::harness;
use crate::preload::Door;
use crate::report::{Summary, Target, REFERENCE};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The shapes' cells as the suite's results (time = median of the runs'
/// times, peak = median peak), for [`Summary`] and the chart.
pub fn as_results(o: &Outcomes) -> harness::Results {
    let cells = o
        .cells
        .iter()
        .map(|c| harness::Cell {
            workload: c.entry.clone(),
            threads: c.threads,
            allocator: c.door.clone(),
            times: c.runs.iter().map(|r| r.time).collect(),
            median: c.time().unwrap_or(0.0),
            peak: c.peak(),
            checksum: c.runs.first().map_or(0, |r| r.checksum),
        })
        .collect();
    harness::Results {
        cells,
        problems: o.problems.clone(),
        wall: o.wall,
    }
}

fn time_ratio(s: &Summary, ci: usize, door: &str) -> Option<f64> {
    let ai = s.allocators.iter().position(|a| a == door)?;
    s.time[ci][ai]
}

/// The targets of issues 17 and 18 that the shapes measure, for Tessera.
/// Empty when Tessera did not take part.
pub fn targets(s: &Summary) -> Vec<Target> {
    let Some(ti) = s.allocators.iter().position(|a| a == "tessera") else {
        return Vec::new();
    };
    let mut v = Vec::new();
    if let Some(g) = s.time_geomean[ti] {
        v.push(Target {
            name: "time geomean vs glibc (issue 17)".into(),
            value: g,
            limit: 0.60,
            offenders: Vec::new(),
        });
    }
    if let Some(g) = s.tessera_vs_mimalloc {
        v.push(Target {
            name: "time geomean vs mimalloc (issue 17)".into(),
            value: g,
            limit: 1.00,
            offenders: Vec::new(),
        });
    }
    let per_case = |names: &[&str], limit: f64, what: &str| -> Option<Target> {
        let mut worst: Option<f64> = None;
        let mut offenders = Vec::new();
        for (ci, (w, _)) in s.cases.iter().enumerate() {
            if !names.is_empty() && !names.contains(&w.as_str()) {
                continue;
            }
            if let Some(x) = time_ratio(s, ci, "tessera") {
                worst = Some(worst.map_or(x, |m: f64| m.max(x)));
                if x > limit {
                    offenders.push(format!("{w} {x:.2}"));
                }
            }
        }
        worst.map(|value| Target {
            name: what.into(),
            value,
            limit,
            offenders,
        })
    };
    v.extend(per_case(
        &[],
        1.0,
        "no shape slower than glibc (worst time ratio)",
    ));
    v.extend(per_case(
        &["sh6", "sh8"],
        0.35,
        "sh6, sh8 time <= 0.35 x glibc",
    ));
    v.extend(per_case(
        &["larson", "larson-4k"],
        0.60,
        "larson time <= 0.6 x glibc",
    ));
    v.extend(per_case(
        &["tight", "tight-N"],
        0.50,
        "tight loop time <= 0.5 x glibc",
    ));
    if let Some(g) = s.mem_geomean[ti] {
        v.push(Target {
            name: "peak RSS geomean vs glibc (issue 18)".into(),
            value: g,
            limit: 0.90,
            offenders: Vec::new(),
        });
    }
    v
}

/// The spread of one cell's repetitions, (max - min) / median of its
/// times; None with fewer than two runs.
pub fn spread(c: &super::plan::Cell) -> Option<f64> {
    let t: Vec<f64> = c.runs.iter().map(|r| r.time).collect();
    if t.len() < 2 {
        return None;
    }
    let (lo, hi) = t
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let m = crate::harness::median(&t);
    (m > 0.0).then(|| (hi - lo) / m)
}

/// One line on how much the repetitions of a cell disagreed: the median
/// and the largest spread over all cells. A ratio between two allocators
/// is not to be trusted much below these.
pub fn noise_line(o: &Outcomes) -> Option<String> {
    let mut v: Vec<(f64, String)> = o
        .cells
        .iter()
        .filter_map(|c| spread(c).map(|x| (x, format!("{} {}", c.entry, c.door))))
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let med = crate::harness::median(&v.iter().map(|x| x.0).collect::<Vec<_>>());
    let (worst, which) = v.last().expect("non-empty");
    Some(format!(
        "Noise: the repetitions of a cell spread (max - min) / median by {:.0}% (median over cells), \
         at most {:.0}% ({which})",
        med * 100.0,
        worst * 100.0
    ))
}

/// CPU-time ratios to glibc: `rows[case][allocator]` and the geometric
/// mean per allocator (same order as the [`Summary`]).
pub struct CpuRatios {
    /// Ratio per case and allocator.
    pub rows: Vec<Vec<Option<f64>>>,
    /// Geometric mean per allocator.
    pub geomean: Vec<Option<f64>>,
}

/// The CPU-time ratios of a run.
pub fn cpu_ratios(o: &Outcomes, s: &Summary) -> CpuRatios {
    let find = |w: &str, a: &str| o.cells.iter().find(|c| c.entry == w && c.door == a);
    let rows: Vec<Vec<Option<f64>>> = s
        .cases
        .iter()
        .map(|(w, _)| {
            let g = find(w, REFERENCE).and_then(|c| c.cpu());
            s.allocators
                .iter()
                .map(|a| match (find(w, a).and_then(|c| c.cpu()), g) {
                    (Some(x), Some(g)) if g > 0.0 => Some(x / g),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let geomean = (0..s.allocators.len())
        .map(|ai| crate::report::geomean(rows.iter().filter_map(|r| r[ai])))
        .collect();
    CpuRatios { rows, geomean }
}

/// Tessera against another build given as `NAME=PATH` (for example the
/// library of main): geometric means of the per-shape ratios tessera /
/// NAME, and the shape where Tessera's peak memory grew most.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The other door's name.
    pub other: String,
    /// Geomean of tessera's median time over the other's.
    pub time: Option<f64>,
    /// The same for CPU time.
    pub cpu: Option<f64>,
    /// The same for peak memory.
    pub peak: Option<f64>,
    /// The shape with the largest peak-memory ratio, and that ratio.
    pub worst_peak: Option<(String, f64)>,
}

impl Comparison {
    /// One line for the table.
    pub fn line(&self) -> String {
        let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}"));
        let worst = self.worst_peak.as_ref().map_or(String::new(), |(w, x)| {
            format!("; largest peak-RSS ratio {x:.2} ({w})")
        });
        format!(
            "Tessera vs {}: time geomean {}, CPU {}, peak RSS {}{worst}",
            self.other,
            f(self.time),
            f(self.cpu),
            f(self.peak)
        )
    }
}

/// A [`Comparison`] with every door that is not one of the known
/// allocators (`NAME=PATH` builds), when Tessera took part.
pub fn comparisons(o: &Outcomes, s: &Summary) -> Vec<Comparison> {
    if !s.allocators.iter().any(|a| a == "tessera") {
        return Vec::new();
    }
    let find = |w: &str, a: &str| o.cells.iter().find(|c| c.entry == w && c.door == a);
    s.allocators
        .iter()
        .filter(|a| !crate::preload::KNOWN.contains(&a.as_str()))
        .map(|other| {
            let ratios = |f: &dyn Fn(&super::plan::Cell) -> Option<f64>| -> Vec<(String, f64)> {
                s.cases
                    .iter()
                    .filter_map(|(w, _)| {
                        let a = f(find(w, "tessera")?)?;
                        let b = f(find(w, other)?)?;
                        (b > 0.0).then(|| (w.clone(), a / b))
                    })
                    .collect()
            };
            let gm = |v: &[(String, f64)]| crate::report::geomean(v.iter().map(|x| x.1));
            let time = ratios(&|c| c.time());
            let cpu = ratios(&|c| c.cpu());
            let peak = ratios(&|c| c.peak().map(|p| p as f64));
            Comparison {
                other: other.clone(),
                time: gm(&time),
                cpu: gm(&cpu),
                peak: gm(&peak),
                worst_peak: peak.iter().cloned().max_by(|a, b| a.1.total_cmp(&b.1)),
            }
        })
        .collect()
}

fn cell(x: Option<f64>) -> String {
    x.map_or("-  ".into(), |x| format!("{x:.2} "))
}

/// The text table: time, CPU time, throughput, peak memory, then the
/// targets.
pub fn table(o: &Outcomes, s: &Summary, reps: usize, targets: &[Target]) -> String {
    let mut out = String::new();
    let others: Vec<usize> = (0..s.allocators.len())
        .filter(|&i| s.allocators[i] != REFERENCE)
        .collect();
    // Columns wide enough for long names such as `main-65069d7`.
    let width: Vec<usize> = s.allocators.iter().map(|a| (a.len() + 2).max(12)).collect();
    let header = |out: &mut String, unit: &str| {
        let _ = write!(out, "{:<15}{:>4}{:>11}", "shape", "thr", unit);
        for &i in &others {
            let _ = write!(out, "{:>w$}", s.allocators[i], w = width[i]);
        }
        out.push('\n');
    };
    let find = |w: &str, a: &str| o.cells.iter().find(|c| c.entry == w && c.door == a);
    let _ = writeln!(
        out,
        "Time: median of {reps}, ratio to glibc (lower is better); glibc column in ms.\n\
         Shapes: the work, timed in the process; python, gcc: the whole process (wall)."
    );
    header(&mut out, "glibc ms");
    for (ci, (w, t)) in s.cases.iter().enumerate() {
        let g = find(w, REFERENCE).and_then(|c| c.time());
        let _ = write!(
            out,
            "{w:<15}{t:>4}{:>11}",
            g.map_or("-".into(), |g| format!("{:.1}", g * 1e3))
        );
        for &i in &others {
            let _ = write!(out, "{:>w$}", cell(s.time[ci][i]), w = width[i]);
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<15}{:>4}{:>11}", "geomean", "", "");
    for &i in &others {
        let _ = write!(out, "{:>w$}", cell(s.time_geomean[i]), w = width[i]);
    }
    out.push_str("\n\n");

    if let Some(line) = noise_line(o) {
        let _ = writeln!(out, "{line}\n");
    }
    let cpu = cpu_ratios(o, s);
    let _ = writeln!(
        out,
        "CPU time: user + system of the whole process (start-up included), median, ratio to glibc;\n\
         less disturbed than wall time when other jobs share the machine; glibc column in ms"
    );
    header(&mut out, "glibc ms");
    for (ci, (w, t)) in s.cases.iter().enumerate() {
        let g = find(w, REFERENCE).and_then(|c| c.cpu());
        let _ = write!(
            out,
            "{w:<15}{t:>4}{:>11}",
            g.map_or("-".into(), |g| format!("{:.1}", g * 1e3))
        );
        for &i in &others {
            let _ = write!(out, "{:>w$}", cell(cpu.rows[ci][i]), w = width[i]);
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<15}{:>4}{:>11}", "geomean", "", "");
    for &i in &others {
        let _ = write!(out, "{:>w$}", cell(cpu.geomean[i]), w = width[i]);
    }
    out.push_str("\n\n");

    let larsons: Vec<&str> = s
        .cases
        .iter()
        .map(|(w, _)| w.as_str())
        .filter(|w| w.starts_with("larson"))
        .collect();
    if !larsons.is_empty() {
        let _ = writeln!(
            out,
            "Throughput: million operations (a free and a malloc) per second"
        );
        let _ = write!(out, "{:<15}{:>4}{:>11}", "shape", "thr", "glibc");
        for &i in &others {
            let _ = write!(out, "{:>w$}", s.allocators[i], w = width[i]);
        }
        out.push('\n');
        for (w, t) in s
            .cases
            .iter()
            .filter(|(w, _)| larsons.contains(&w.as_str()))
        {
            let mops = |a: &str| find(w, a).and_then(|c| c.ops_per_s()).map(|x| x / 1e6);
            let _ = write!(out, "{w:<15}{t:>4}{:>11}", cell(mops(REFERENCE)));
            for &i in &others {
                let _ = write!(out, "{:>w$}", cell(mops(&s.allocators[i])), w = width[i]);
            }
            out.push('\n');
        }
        out.push('\n');
    }

    let _ = writeln!(
        out,
        "Peak memory: the process's peak resident set (wait4 ru_maxrss), median, ratio to glibc;\n\
         glibc column in MiB (every process starts with about 3 MiB of its own)"
    );
    header(&mut out, "glibc MiB");
    for (ci, (w, t)) in s.cases.iter().enumerate() {
        let g = find(w, REFERENCE).and_then(|c| c.peak());
        let _ = write!(
            out,
            "{w:<15}{t:>4}{:>11}",
            g.map_or("-".into(), |g| format!("{:.1}", g as f64 / 1048576.0))
        );
        for &i in &others {
            let _ = write!(out, "{:>w$}", cell(s.mem[ci][i]), w = width[i]);
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<15}{:>4}{:>11}", "geomean", "", "");
    for &i in &others {
        let _ = write!(out, "{:>w$}", cell(s.mem_geomean[i]), w = width[i]);
    }
    out.push_str("\n\n");

    if let Some(x) = s.tessera_vs_mimalloc {
        let _ = writeln!(out, "Tessera vs mimalloc, time geomean: {x:.2}");
    }
    for c in comparisons(o, s) {
        let _ = writeln!(out, "{}", c.line());
    }
    crate::report::write_targets(&mut out, "Targets (measurements, not tests):", targets);
    crate::report::write_problems(&mut out, &o.problems);
    out
}

/// Facts about the run for the JSON file.
pub struct Meta {
    /// Repetitions.
    pub reps: usize,
    /// Operation scale.
    pub scale: f64,
    /// Cores the thread counts came from.
    pub cores: usize,
    /// `--quick`.
    pub quick: bool,
    /// The doors.
    pub doors: Vec<Door>,
    /// (name, about, threads, kind) per entry.
    pub entries: Vec<(String, String, usize, &'static str)>,
    /// `/proc/loadavg` when the run started.
    pub load_start: String,
}

/// `/proc/loadavg`, trimmed.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Environment variables that change an allocator's behaviour, as set for
/// this run (they reach every door's processes).
pub fn allocator_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("TESSERA_")
                || k.starts_with("MIMALLOC_")
                || k.starts_with("TCMALLOC_")
                || k.starts_with("GLIBC_TUNABLES")
        })
        .collect()
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |x| json!(x))
}

/// The host facts shared by the shapes' and the service's JSON.
pub fn host() -> Value {
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default().trim(),
        "loadavg": loadavg(),
    })
}

/// The door list for JSON.
pub fn doors_json(doors: &[Door]) -> Value {
    doors
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "lib": d.lib.as_ref().map(|p| p.display().to_string()),
                "env": d.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "about": d.about,
            })
        })
        .collect()
}

/// Seconds since the epoch.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The JSON document (schema `tessera-bench-shapes/1`, described in the
/// crate README).
pub fn json(o: &Outcomes, s: &Summary, targets: &[Target], m: &Meta) -> Value {
    let cpu = cpu_ratios(o, s);
    let results: Vec<Value> = o
        .cells
        .iter()
        .map(|c| {
            let ci = s
                .cases
                .iter()
                .position(|(w, t)| *w == c.entry && *t == c.threads);
            let ai = s.allocators.iter().position(|a| *a == c.door);
            let (tr, mr, cr) = match (ci, ai) {
                (Some(ci), Some(ai)) => (s.time[ci][ai], s.mem[ci][ai], cpu.rows[ci][ai]),
                _ => (None, None, None),
            };
            json!({
                "shape": c.entry,
                "threads": c.threads,
                "allocator": c.door,
                "runs": c.runs.iter().map(|r| json!({
                    "time_s": r.time, "wall_s": r.wall, "cpu_s": r.cpu,
                    "peak_bytes": r.peak, "base_bytes": r.base, "ops": r.ops,
                })).collect::<Vec<_>>(),
                "median_time_s": opt(c.time()),
                "median_cpu_s": opt(c.cpu()),
                "median_peak_bytes": c.peak(),
                "ops_per_s": opt(c.ops_per_s()),
                "time_spread": opt(spread(c)),
                "time_ratio": opt(tr),
                "cpu_ratio": opt(cr),
                "mem_ratio": opt(mr),
                "checksum": c.runs.first().map(|r| format!("{:#x}", r.checksum)),
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
    json!({
        "schema": "tessera-bench-shapes/1",
        "unix_time": unix_time(),
        "host": host(),
        "config": {
            "reps": m.reps,
            "scale": m.scale,
            "cores": m.cores,
            "quick": m.quick,
            "wall_s": o.wall,
            "loadavg_start": m.load_start,
            "reference": REFERENCE,
            "door": "LD_PRELOAD (glibc: none)",
            "env": allocator_env().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        },
        "allocators": doors_json(&m.doors),
        "shapes": m.entries.iter().map(|(n, a, t, k)| json!({
            "name": n, "about": a, "threads": t, "kind": k,
        })).collect::<Vec<_>>(),
        "results": results,
        "geomean": {
            "time_ratio": per_alloc(&s.time_geomean),
            "cpu_ratio": per_alloc(&cpu.geomean),
            "mem_ratio": per_alloc(&s.mem_geomean),
            "tessera_vs_mimalloc_time": opt(s.tessera_vs_mimalloc),
        },
        "comparisons": comparisons(o, s).iter().map(|c| json!({
            "other": c.other, "time_ratio": opt(c.time), "cpu_ratio": opt(c.cpu),
            "peak_ratio": opt(c.peak),
            "worst_peak": c.worst_peak.as_ref().map(|(w, x)| json!({"shape": w, "ratio": x})),
        })).collect::<Vec<_>>(),
        "targets": targets.iter().map(|t| json!({
            "name": t.name, "value": t.value, "limit": t.limit,
            "pass": t.pass(), "offenders": t.offenders,
        })).collect::<Vec<_>>(),
        "problems": o.problems,
    })
}
