//! The service workload of issue 18 (`tessera-bench service`): does memory
//! come back in a long-running threaded program?
//!
//! 8 threads, 16 bursts. In each burst every thread allocates 3,000 blocks
//! (70% of 16-255 bytes, 25% of 256 B-16 KiB, 4.5% of 16-128 KiB, 0.5% of
//! 128 KiB-1.1 MiB, uniform within each band) and writes them (a stamp at
//! both ends and one byte in every page). Then it keeps every eighth block
//! in its long-lived table of 1,536 slots, at a random slot (freeing the
//! block that was there: random replacement, so the survivors are
//! scattered through the heap), hands every fourth block to the next
//! thread, which frees it, and frees the rest. When the tables are full
//! they hold about 100 MiB. Between bursts all threads wait at a barrier
//! and the main thread reads the resident set (RSS) and the live bytes
//! (the tables' requested bytes). After the last burst the threads sit
//! idle for 3 seconds (blocked, no allocation anywhere in the process) and
//! RSS is read again; then they free everything and exit.
//!
//! Reported per allocator (each in its own process through the same door,
//! [`crate::preload`]): RSS / live bytes between bursts (the median over
//! the second half of the bursts, when the tables are mostly full), RSS /
//! live bytes after the idle period, and the time of the bursts. A sampler
//! thread reads RSS every 10 ms for the plot (`/proc/self/statm` read into
//! a buffer on the stack, so the sampler never allocates: an allocator
//! that does its housekeeping on allocation must not be woken by the
//! measurement).

use crate::alloc::{ProcessMalloc, RawAlloc};
use crate::preload::Door;
use crate::proc;
use crate::report::Target;
use crate::rng::Rng;
use crate::shapes::report;
use crate::svg::{self, Series};
use crate::workloads::{tag_of, Slot};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// Worker threads.
pub const THREADS: usize = 8;
/// Bursts.
pub const BURSTS: usize = 16;
/// Blocks per thread per burst at scale 1.
const PER_BURST: usize = 3000;
/// Long-lived slots per thread at scale 1.
const TABLE: usize = 1536;
/// One block in `KEEP` is kept in the table.
const KEEP: usize = 8;
/// One block in `HANDOFF` is freed by the next thread.
const HANDOFF: usize = 4;
/// The sampler's period.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// Samples kept (preallocated; later ones are dropped).
const MAX_SAMPLES: usize = 20_000;

/// Size of the next block: 70% 16-255 B, 25% 256 B-16 KiB, 4.5% 16-128
/// KiB, 0.5% 128 KiB-1.1 MiB.
fn block_size(rng: &mut Rng) -> usize {
    let band = rng.below(1000);
    if band < 700 {
        rng.range(16, 255)
    } else if band < 950 {
        rng.range(256, 16 << 10)
    } else if band < 995 {
        rng.range((16 << 10) + 1, 128 << 10)
    } else {
        rng.range((128 << 10) + 1, 1_153_434)
    }
}

/// Reads the resident set from `/proc/self/statm` without allocating.
struct Statm {
    fd: libc::c_int,
    page: u64,
}

impl Statm {
    fn open() -> Statm {
        // SAFETY: a NUL-terminated path; the fd is closed in Drop.
        let fd = unsafe { libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY) };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        Statm { fd, page }
    }

    /// Resident bytes, or 0 if the file cannot be read.
    fn rss(&self) -> u64 {
        let mut buf = [0u8; 128];
        // SAFETY: reading into a stack buffer of its own length.
        let n = unsafe { libc::pread(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return 0;
        }
        // "size resident shared text lib data dt": the second field.
        let mut field = 0;
        let mut value = 0u64;
        for &b in &buf[..n as usize] {
            if b == b' ' {
                if field == 1 {
                    break;
                }
                field += 1;
            } else if field == 1 && b.is_ascii_digit() {
                value = value * 10 + u64::from(b - b'0');
            }
        }
        value * self.page
    }
}

impl Drop for Statm {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// One reading between bursts or after the idle period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// Seconds since the first burst started.
    pub t: f64,
    /// Resident bytes.
    pub rss: u64,
    /// Live bytes (requested) in the tables.
    pub live: u64,
}

impl Reading {
    /// RSS / live.
    pub fn ratio(&self) -> f64 {
        self.rss as f64 / self.live.max(1) as f64
    }
    fn json(&self) -> Value {
        json!({"t": self.t, "rss": self.rss, "live": self.live})
    }
    fn from_json(v: &Value) -> Option<Reading> {
        Some(Reading {
            t: v["t"].as_f64()?,
            rss: v["rss"].as_u64()?,
            live: v["live"].as_u64()?,
        })
    }
}

/// What one run of the service workload measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Seconds of the bursts (the idle period not included).
    pub time: f64,
    /// One reading after each burst.
    pub bursts: Vec<Reading>,
    /// The reading after the idle period.
    pub idle: Reading,
    /// (seconds, resident bytes) every 10 ms, from the first burst to the
    /// end of the idle period.
    pub series: Vec<(f64, u64)>,
    /// Checksum of the verified data.
    pub checksum: u64,
    /// The object `malloc` came from.
    pub malloc: String,
}

/// First field of the child's JSON line.
pub const CHILD_TAG: &str = "tessera-bench-service";

impl Report {
    /// RSS / live between bursts: the median over the second half of the
    /// bursts (the tables mostly full).
    pub fn between(&self) -> f64 {
        let half = &self.bursts[self.bursts.len() / 2..];
        let v: Vec<f64> = half.iter().map(Reading::ratio).collect();
        crate::harness::median(&v)
    }

    /// The child's output line.
    pub fn line(&self) -> String {
        json!({
            "tag": CHILD_TAG,
            "time_s": self.time,
            "bursts": self.bursts.iter().map(Reading::json).collect::<Vec<_>>(),
            "idle": self.idle.json(),
            "series": self.series.iter().map(|&(t, r)| json!([t, r])).collect::<Vec<_>>(),
            "checksum": self.checksum,
            "malloc": self.malloc,
        })
        .to_string()
    }

    /// Parses the child's stdout.
    pub fn parse(stdout: &str) -> Option<Report> {
        let line = stdout.lines().find(|l| l.contains(CHILD_TAG))?;
        let v: Value = serde_json::from_str(line).ok()?;
        Some(Report {
            time: v["time_s"].as_f64()?,
            bursts: v["bursts"]
                .as_array()?
                .iter()
                .map(Reading::from_json)
                .collect::<Option<Vec<_>>>()?,
            idle: Reading::from_json(&v["idle"])?,
            series: v["series"]
                .as_array()?
                .iter()
                .map(|p| Some((p[0].as_f64()?, p[1].as_u64()?)))
                .collect::<Option<Vec<_>>>()?,
            checksum: v["checksum"].as_u64()?,
            malloc: v["malloc"].as_str()?.to_string(),
        })
    }
}

/// The sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Worker threads.
    pub threads: usize,
    /// Bursts.
    pub bursts: usize,
    /// Blocks per thread per burst.
    pub per_burst: usize,
    /// Table slots per thread.
    pub table: usize,
    /// The idle period.
    pub idle: Duration,
}

impl Size {
    /// The sizes with the per-thread counts multiplied by `scale`.
    pub fn scaled(scale: f64, idle: Duration) -> Size {
        let n = |x: usize| ((x as f64 * scale).round() as usize).max(KEEP);
        Size {
            threads: THREADS,
            bursts: BURSTS,
            per_burst: n(PER_BURST),
            table: n(TABLE),
            idle,
        }
    }
}

/// Runs the workload in this process on `a` (in the child: the process's
/// malloc).
pub fn run(a: &dyn RawAlloc, size: Size) -> Report {
    let t = size.threads;
    let statm = Statm::open();
    let tables: Vec<Mutex<Vec<Slot>>> = (0..t)
        .map(|_| Mutex::new(vec![Slot::default(); size.table]))
        .collect();
    let inboxes: Vec<Mutex<Vec<Slot>>> = (0..t)
        .map(|_| Mutex::new(Vec::with_capacity(size.per_burst)))
        .collect();
    let live: Vec<AtomicU64> = (0..t).map(|_| AtomicU64::new(0)).collect();
    let sums: Vec<AtomicU64> = (0..t).map(|_| AtomicU64::new(0)).collect();
    let gate = Barrier::new(t + 1);
    let stop = AtomicBool::new(false);
    let mut bursts = Vec::with_capacity(size.bursts);
    let mut start = Instant::now();
    let mut time = 0.0;
    let mut idle = None;
    let series = std::thread::scope(|s| {
        for me in 0..t {
            let (tables, inboxes, live, sums, gate) = (&tables, &inboxes, &live, &sums, &gate);
            s.spawn(move || {
                let mut rng = Rng::new(0x5e41_1ce0 + me as u64);
                let mut sum = 0u64;
                let mut burst: Vec<Slot> = Vec::with_capacity(size.per_burst);
                let mut outgoing: Vec<Slot> = Vec::with_capacity(size.per_burst / HANDOFF + 1);
                let mut incoming: Vec<Slot> = Vec::with_capacity(size.per_burst);
                let mut table = tables[me].lock().unwrap();
                for _ in 0..size.bursts {
                    gate.wait();
                    for _ in 0..size.per_burst {
                        let s = Slot::new(a, block_size(&mut rng), tag_of(&mut rng));
                        s.touch();
                        burst.push(s);
                    }
                    for (i, s) in burst.drain(..).enumerate() {
                        if i % KEEP == 0 {
                            let j = rng.below(size.table);
                            let old = std::mem::replace(&mut table[j], s);
                            live[me].fetch_add(u64::from(s.size), Ordering::Relaxed);
                            if old.ptr != 0 {
                                live[me].fetch_sub(u64::from(old.size), Ordering::Relaxed);
                                sum = sum.wrapping_add(old.release(a, "service (table)"));
                            }
                        } else if i % HANDOFF == 1 {
                            outgoing.push(s);
                        } else {
                            sum = sum.wrapping_add(s.release(a, "service"));
                        }
                    }
                    inboxes[(me + 1) % t].lock().unwrap().append(&mut outgoing);
                    gate.wait();
                    std::mem::swap(&mut *inboxes[me].lock().unwrap(), &mut incoming);
                    for s in incoming.drain(..) {
                        sum = sum.wrapping_add(s.release(a, "service (remote)"));
                    }
                    gate.wait();
                }
                // Idle: wait while the main thread sleeps and measures.
                gate.wait();
                for s in table.iter_mut().filter(|s| s.ptr != 0) {
                    sum = sum.wrapping_add(std::mem::take(s).release(a, "service (end)"));
                }
                sums[me].store(sum, Ordering::Relaxed);
            });
        }
        let sampler = s.spawn(|| {
            let mut v: Vec<(f64, u64)> = Vec::with_capacity(MAX_SAMPLES);
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if v.len() < MAX_SAMPLES {
                    v.push((t0.elapsed().as_secs_f64(), statm.rss()));
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            (t0, v)
        });
        start = Instant::now();
        for _ in 0..size.bursts {
            gate.wait(); // start the burst
            gate.wait(); // blocks made, kept, handed over, freed
            gate.wait(); // handed-over blocks freed
            bursts.push(Reading {
                t: start.elapsed().as_secs_f64(),
                rss: statm.rss(),
                live: live.iter().map(|l| l.load(Ordering::Relaxed)).sum(),
            });
        }
        time = start.elapsed().as_secs_f64();
        std::thread::sleep(size.idle);
        idle = Some(Reading {
            t: start.elapsed().as_secs_f64(),
            rss: statm.rss(),
            live: live.iter().map(|l| l.load(Ordering::Relaxed)).sum(),
        });
        gate.wait(); // let the workers free everything and end
        stop.store(true, Ordering::Relaxed);
        let (t0, v) = sampler.join().expect("sampler thread");
        // Sample times relative to the first burst.
        let shift = start.saturating_duration_since(t0).as_secs_f64();
        let end = idle.map_or(f64::MAX, |r| r.t);
        v.into_iter()
            .map(|(t, r)| (t - shift, r))
            .filter(|&(t, _)| t >= 0.0 && t <= end)
            .collect::<Vec<_>>()
    });
    Report {
        time,
        bursts,
        idle: idle.expect("idle reading"),
        series,
        checksum: sums
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.load(Ordering::Relaxed))),
        malloc: crate::preload::malloc_object(),
    }
}

/// The child's side: runs the workload on this process's malloc.
pub fn child(scale: f64, idle: Duration) -> Report {
    run(&ProcessMalloc, Size::scaled(scale, idle))
}

// ---------------------------------------------------------------------
// The parent: every door, interleaved, medians, table, JSON and the plot.

/// What to run.
pub struct Plan {
    /// Doors; glibc first.
    pub doors: Vec<Door>,
    /// Repetitions per door.
    pub reps: usize,
    /// Scale of the per-thread counts.
    pub scale: f64,
    /// The idle period.
    pub idle: Duration,
    /// Show a progress bar.
    pub progress: bool,
}

/// One run through a door.
#[derive(Clone, Debug)]
pub struct Run {
    /// What the child measured.
    pub report: Report,
    /// Peak resident bytes of the process (wait4).
    pub peak: u64,
}

/// The runs of one door.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Door name.
    pub door: String,
    /// Successful runs, in run order.
    pub runs: Vec<Run>,
}

impl Cell {
    fn med(&self, f: impl Fn(&Run) -> f64) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().map(f).collect();
        (!v.is_empty()).then(|| crate::harness::median(&v))
    }
    /// Median time of the bursts.
    pub fn time(&self) -> Option<f64> {
        self.med(|r| r.report.time)
    }
    /// Median RSS / live between bursts.
    pub fn between(&self) -> Option<f64> {
        self.med(|r| r.report.between())
    }
    /// Median RSS / live after the idle period.
    pub fn idle(&self) -> Option<f64> {
        self.med(|r| r.report.idle.ratio())
    }
    /// Median peak RSS.
    pub fn peak(&self) -> Option<f64> {
        self.med(|r| r.peak as f64)
    }
    /// Median live bytes at the end.
    pub fn live(&self) -> Option<f64> {
        self.med(|r| r.report.idle.live as f64)
    }
    /// The run whose time is the median (or the lower middle one): the one
    /// plotted.
    pub fn typical(&self) -> Option<&Run> {
        let mut v: Vec<&Run> = self.runs.iter().collect();
        v.sort_by(|a, b| a.report.time.total_cmp(&b.report.time));
        v.get((v.len().max(1) - 1) / 2).copied()
    }
}

/// Everything the plan produced.
pub struct Outcomes {
    /// One cell per door, in plan order.
    pub cells: Vec<Cell>,
    /// Problems found.
    pub problems: Vec<String>,
    /// Wall seconds of the whole plan.
    pub wall: f64,
}

impl Plan {
    /// Runs the workload through every door, interleaved.
    pub fn run(&self) -> Result<Outcomes, String> {
        let start = Instant::now();
        let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
        let n = self.doors.len();
        let bar = crate::report::progress_bar((n * self.reps) as u64, self.progress);
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); n];
        let mut problems = Vec::new();
        for rep in 0..self.reps {
            for k in 0..n {
                let di = (k + rep) % n;
                let door = &self.doors[di];
                bar.set_message(format!("service {}", door.name));
                let mut cmd = Command::new(&exe);
                cmd.arg("--service-child")
                    .arg(self.scale.to_string())
                    .arg(self.idle.as_secs_f64().to_string());
                door.apply(&mut cmd);
                match proc::run(&mut cmd, Duration::from_secs(900)) {
                    Ok(f) if f.ok() => match Report::parse(&f.stdout) {
                        Some(r) if door.matches(&r.malloc) => runs[di].push(Run {
                            report: r,
                            peak: f.maxrss,
                        }),
                        Some(r) => problems.push(format!(
                            "service {}: malloc came from {}, not the door's library",
                            door.name, r.malloc
                        )),
                        None => problems.push(format!("service {}: no report", door.name)),
                    },
                    Ok(f) => problems.push(format!("service {}: {}", door.name, f.failure())),
                    Err(e) => problems.push(format!("service {}: cannot run: {e}", door.name)),
                }
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        let reference = runs[0].first().map(|r| r.report.checksum);
        let mut cells = Vec::new();
        for (di, door) in self.doors.iter().enumerate() {
            let before = runs[di].len();
            runs[di].retain(|r| Some(r.report.checksum) == reference);
            if runs[di].len() != before {
                problems.push(format!(
                    "service {}: checksum differs from glibc's in {} of {before} runs",
                    door.name,
                    before - runs[di].len()
                ));
            }
            cells.push(Cell {
                door: door.name.clone(),
                runs: std::mem::take(&mut runs[di]),
            });
        }
        Ok(Outcomes {
            cells,
            problems,
            wall: start.elapsed().as_secs_f64(),
        })
    }
}

/// Issue 18's targets for Tessera: (name, value, limit).
pub fn targets(o: &Outcomes) -> Vec<Target> {
    let find = |d: &str| o.cells.iter().find(|c| c.door == d && !c.runs.is_empty());
    let (Some(t), g) = (find("tessera"), find("glibc")) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    let mut push = |name: &str, value: Option<f64>, limit: f64| {
        if let Some(value) = value {
            v.push(Target {
                name: name.into(),
                value,
                limit,
                offenders: Vec::new(),
            });
        }
    };
    push("RSS / live between bursts", t.between(), 2.0);
    push("RSS / live after the idle period", t.idle(), 1.5);
    let ratio = match (t.time(), g.and_then(Cell::time)) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    push("time vs glibc", ratio, 1.0);
    v
}

/// The text table.
pub fn table(o: &Outcomes, plan: &Plan, targets: &[Target]) -> String {
    let mut out = String::new();
    let size = Size::scaled(plan.scale, plan.idle);
    let _ = writeln!(
        out,
        "Service workload: {} threads, {} bursts of {} blocks per thread, idle {:.1} s; median of {}\n\
         RSS / live bytes (lower is better: 1 = nothing but the live data is resident)",
        size.threads,
        size.bursts,
        size.per_burst,
        plan.idle.as_secs_f64(),
        plan.reps
    );
    let _ = writeln!(
        out,
        "{:<14}{:>10}{:>8}{:>10}{:>10}{:>10}{:>10}",
        "allocator", "time ms", "ratio", "between", "idle", "peak MiB", "live MiB"
    );
    let glibc_time = o.cells.first().and_then(Cell::time);
    for c in &o.cells {
        let f = |x: Option<f64>, scale: f64, prec: usize| {
            x.map_or("-".into(), |x| format!("{:.*}", prec, x * scale))
        };
        let ratio = match (c.time(), glibc_time) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let _ = writeln!(
            out,
            "{:<14}{:>10}{:>8}{:>10}{:>10}{:>10}{:>10}",
            c.door,
            f(c.time(), 1e3, 0),
            f(ratio, 1.0, 2),
            f(c.between(), 1.0, 2),
            f(c.idle(), 1.0, 2),
            f(c.peak(), 1.0 / 1048576.0, 0),
            f(c.live(), 1.0 / 1048576.0, 1),
        );
    }
    crate::report::write_targets(
        &mut out,
        "\nTargets (issue 18; measurements, not tests):",
        targets,
    );
    crate::report::write_problems(&mut out, &o.problems);
    out
}

/// The JSON document (schema `tessera-bench-service/1`).
pub fn json_doc(o: &Outcomes, plan: &Plan, targets: &[Target], quick: bool) -> Value {
    let size = Size::scaled(plan.scale, plan.idle);
    let opt = |x: Option<f64>| x.map_or(Value::Null, |x| json!(x));
    json!({
        "schema": "tessera-bench-service/1",
        "unix_time": report::unix_time(),
        "host": report::host(),
        "config": {
            "reps": plan.reps,
            "scale": plan.scale,
            "quick": quick,
            "threads": size.threads,
            "bursts": size.bursts,
            "per_burst": size.per_burst,
            "table": size.table,
            "idle_s": plan.idle.as_secs_f64(),
            "wall_s": o.wall,
            "door": "LD_PRELOAD (glibc: none)",
            "env": report::allocator_env().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        },
        "allocators": report::doors_json(&plan.doors),
        "results": o.cells.iter().map(|c| json!({
            "allocator": c.door,
            "median_time_s": opt(c.time()),
            "median_between": opt(c.between()),
            "median_idle": opt(c.idle()),
            "median_peak_bytes": opt(c.peak()),
            "runs": c.runs.iter().map(|r| json!({
                "time_s": r.report.time,
                "between": r.report.between(),
                "idle": r.report.idle.ratio(),
                "peak_bytes": r.peak,
                "bursts": r.report.bursts.iter().map(Reading::json).collect::<Vec<_>>(),
                "idle_reading": r.report.idle.json(),
                "checksum": format!("{:#x}", r.report.checksum),
            })).collect::<Vec<_>>(),
            "series_of_median_run": c.typical().map(|r| r.report.series.iter()
                .map(|&(t, b)| json!([t, b])).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "targets": targets.iter().map(|t| json!({
            "name": t.name, "value": t.value, "limit": t.limit, "pass": t.pass(),
        })).collect::<Vec<_>>(),
        "problems": o.problems,
    })
}

/// The plot: RSS over time per allocator (the run with the median time),
/// the live bytes as a dashed line, a dot where each idle period starts.
pub fn plot(o: &Outcomes, plan: &Plan) -> String {
    const MIB: f64 = 1048576.0;
    /// (allocator, its RSS over time, the dot where its idle period starts).
    type Line = (String, Vec<(f64, f64)>, Vec<(f64, f64)>);
    let mut lines: Vec<Line> = Vec::new();
    let mut live: Vec<(f64, f64)> = Vec::new();
    for c in &o.cells {
        let Some(r) = c.typical() else { continue };
        let pts = r
            .report
            .series
            .iter()
            .map(|&(t, b)| (t, b as f64 / MIB))
            .collect();
        let end = r.report.bursts.last().map_or(0.0, |b| b.t);
        let mark = r
            .report
            .series
            .iter()
            .find(|&&(t, _)| t >= end)
            .map(|&(t, b)| vec![(t, b as f64 / MIB)])
            .unwrap_or_default();
        if live.is_empty() {
            // Live bytes are the same for every allocator; glibc's run
            // gives the times.
            let mut prev = (0.0, 0.0);
            live.push(prev);
            for b in &r.report.bursts {
                live.push((b.t, prev.1));
                prev = (b.t, b.live as f64 / MIB);
                live.push(prev);
            }
            live.push((r.report.idle.t, prev.1));
        }
        lines.push((c.door.clone(), pts, mark));
    }
    let mut series: Vec<Series> = lines
        .iter()
        .map(|(name, pts, mark)| Series {
            name,
            points: pts,
            reference: false,
            marks: mark,
        })
        .collect();
    series.push(Series {
        name: "live bytes",
        points: &live,
        reference: true,
        marks: &[],
    });
    let size = Size::scaled(plan.scale, plan.idle);
    svg::line_chart(
        &format!(
            "Service workload: RSS over time ({} threads, {} bursts, then {:.1} s idle; dot: idle starts)",
            size.threads,
            size.bursts,
            plan.idle.as_secs_f64()
        ),
        "seconds since the first burst",
        "resident MiB",
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc;

    #[test]
    fn sizes_follow_the_bands() {
        let mut rng = Rng::new(3);
        let n = 200_000;
        let v: Vec<usize> = (0..n).map(|_| block_size(&mut rng)).collect();
        let share = |lo: usize, hi: usize| {
            v.iter().filter(|&&s| (lo..=hi).contains(&s)).count() as f64 / n as f64
        };
        assert!((share(16, 255) - 0.70).abs() < 0.01);
        assert!((share(256, 16384) - 0.25).abs() < 0.01);
        assert!((share(16385, 131072) - 0.045).abs() < 0.005);
        assert!((share(131073, 1_153_434) - 0.005).abs() < 0.002);
        assert!(v.iter().all(|&s| (16..=1_153_434).contains(&s)));
    }

    #[test]
    fn statm_reads_a_plausible_rss() {
        let rss = Statm::open().rss();
        let status = crate::mem::status_bytes("VmRSS").unwrap();
        assert!(rss > 1 << 20, "{rss}");
        assert!(rss.abs_diff(status) < 64 << 20, "{rss} vs {status}");
    }

    /// A tiny run on two allocators: same checksum and live bytes, sane
    /// readings, and the report survives its JSON line.
    #[test]
    fn tiny_runs_agree() {
        let size = Size {
            threads: 3,
            bursts: 4,
            per_burst: 200,
            table: 64,
            idle: Duration::from_millis(20),
        };
        let g = run(&alloc::Glibc, size);
        let m = run(&alloc::Mimalloc, size);
        assert_eq!(g.checksum, m.checksum);
        assert_eq!(g.bursts.len(), 4);
        let lg: Vec<u64> = g.bursts.iter().map(|r| r.live).collect();
        let lm: Vec<u64> = m.bursts.iter().map(|r| r.live).collect();
        assert_eq!(lg, lm);
        assert!(lg.windows(2).all(|w| w[1] > 0), "{lg:?}");
        assert_eq!(g.idle.live, *lg.last().unwrap());
        assert!(g.bursts.iter().all(|r| r.rss > 0));
        assert!(g.between() > 0.0);
        let back = Report::parse(&format!("noise\n{}\n", g.line())).unwrap();
        assert_eq!(back.checksum, g.checksum);
        assert_eq!(back.bursts, g.bursts);
    }
}
