//! The parent's side of `tessera-bench shapes`: every entry (shape or real
//! program) through every door, each run a separate process, the doors
//! interleaved.
//!
//! For each entry the doors take turns, one process each per repetition,
//! and the order rotates by one at every repetition (rep 0: a b c d e,
//! rep 1: b c d e a, ...), so that no allocator always runs first or after
//! the same neighbour and slow drifts of the machine spread over all of
//! them. Time, CPU time and peak memory are the medians of the
//! repetitions. Every run's checksum must equal glibc's; a child whose
//! `malloc` is not its door's library, a crash, a timeout or a differing
//! checksum is reported as a problem and leaves that run out.

use super::programs::{self, Inputs, Program};
use super::{ChildLine, Shape};
use crate::harness::median;
use crate::preload::Door;
use crate::proc;
use std::process::Command;
use std::time::{Duration, Instant};

/// A shape or a real program.
pub enum Entry {
    /// A shape, run by this binary in a child.
    Shape(&'static dyn Shape),
    /// A real program and where it was found.
    Program(Program, std::path::PathBuf),
}

impl Entry {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Entry::Shape(s) => s.name(),
            Entry::Program(p, _) => p.name,
        }
    }
    /// What it does.
    pub fn about(&self) -> &str {
        match self {
            Entry::Shape(s) => s.about(),
            Entry::Program(p, _) => p.about,
        }
    }
    /// Threads it runs (real programs: 1).
    pub fn threads(&self, cores: usize) -> usize {
        match self {
            Entry::Shape(s) => s.threads(cores),
            Entry::Program(..) => 1,
        }
    }
    /// Whether it is a real program.
    pub fn is_program(&self) -> bool {
        matches!(self, Entry::Program(..))
    }
}

/// Every known entry name, in report order.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = super::all().iter().map(|s| s.name()).collect();
    v.extend(programs::all().iter().map(|p| p.name));
    v
}

/// The entries called `only` (all if empty). Real programs that are not
/// installed are skipped with a loud message (an error under CI).
pub fn entries(only: &[String]) -> Result<Vec<Entry>, String> {
    let known = names();
    for n in only {
        if !known.contains(&n.as_str()) {
            return Err(format!("unknown shape `{n}`; known: {}", known.join(", ")));
        }
    }
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let mut v: Vec<Entry> = super::all()
        .into_iter()
        .filter(|s| wanted(s.name()))
        .map(Entry::Shape)
        .collect();
    for p in programs::all() {
        if !wanted(p.name) {
            continue;
        }
        match programs::find_exe(p.exe) {
            Some(exe) => v.push(Entry::Program(p, exe)),
            None => {
                let msg = format!(
                    "{}: `{}` is not installed; install the Debian package `{}`",
                    p.name, p.exe, p.package
                );
                if crate::preload::strict() {
                    return Err(msg);
                }
                eprintln!("\n**********\n*** SKIPPED {msg}\n**********\n");
            }
        }
    }
    Ok(v)
}

/// What to run.
pub struct Plan {
    /// Entries in report order.
    pub entries: Vec<Entry>,
    /// Doors; glibc (the reference) first.
    pub doors: Vec<Door>,
    /// Repetitions per (entry, door).
    pub reps: usize,
    /// Operation scale.
    pub scale: f64,
    /// Cores the thread counts are derived from.
    pub cores: usize,
    /// Show a progress bar (stderr, only on a terminal).
    pub progress: bool,
}

/// One process's measurement.
#[derive(Clone, Debug)]
pub struct Run {
    /// Seconds of the timed work (shapes: measured in the child; real
    /// programs: wall time of the process).
    pub time: f64,
    /// Wall seconds of the whole process.
    pub wall: f64,
    /// User + system CPU seconds of the process (and its children).
    pub cpu: f64,
    /// Peak resident bytes (largest process).
    pub peak: u64,
    /// Resident bytes before the work (shapes only).
    pub base: Option<u64>,
    /// malloc/free pairs (shapes only).
    pub ops: u64,
    /// Checksum.
    pub checksum: u64,
}

/// The medians of one (entry, door).
#[derive(Clone, Debug)]
pub struct Cell {
    /// Entry name.
    pub entry: String,
    /// Threads.
    pub threads: usize,
    /// Door name.
    pub door: String,
    /// The runs that succeeded, in run order.
    pub runs: Vec<Run>,
}

impl Cell {
    fn med(&self, f: impl Fn(&Run) -> f64) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().map(f).collect();
        (!v.is_empty()).then(|| median(&v))
    }
    /// Median time.
    pub fn time(&self) -> Option<f64> {
        self.med(|r| r.time)
    }
    /// Median CPU time.
    pub fn cpu(&self) -> Option<f64> {
        self.med(|r| r.cpu)
    }
    /// Median peak memory.
    pub fn peak(&self) -> Option<u64> {
        self.med(|r| r.peak as f64).map(|x| x as u64)
    }
    /// Operations per second (median time), for shapes that count them.
    pub fn ops_per_s(&self) -> Option<f64> {
        let ops = self.runs.first()?.ops;
        let t = self.time()?;
        (ops > 0 && t > 0.0).then(|| ops as f64 / t)
    }
}

/// Everything a run of the plan produced.
pub struct Outcomes {
    /// One cell per (entry, door), entries in plan order, doors in plan
    /// order within an entry.
    pub cells: Vec<Cell>,
    /// Problems found.
    pub problems: Vec<String>,
    /// Wall seconds of the whole plan.
    pub wall: f64,
}

/// Timeout of one child.
const TIMEOUT: Duration = Duration::from_secs(600);

impl Plan {
    /// Runs every entry through every door.
    pub fn run(&self) -> Result<Outcomes, String> {
        let start = Instant::now();
        let n = self.doors.len();
        let bar =
            crate::report::progress_bar((self.entries.len() * n * self.reps) as u64, self.progress);
        let inputs = if self.entries.iter().any(Entry::is_program) {
            Some(Inputs::write(self.scale).map_err(|e| format!("writing program inputs: {e}"))?)
        } else {
            None
        };
        let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
        let mut cells = Vec::new();
        let mut problems = Vec::new();
        for e in &self.entries {
            let threads = e.threads(self.cores);
            let mut runs: Vec<Vec<Run>> = vec![Vec::new(); n];
            for rep in 0..self.reps {
                for k in 0..n {
                    let di = (k + rep) % n;
                    let door = &self.doors[di];
                    bar.set_message(format!("{} x{threads} {}", e.name(), door.name));
                    let r = match e {
                        Entry::Shape(s) => {
                            let mut cmd = Command::new(&exe);
                            cmd.arg("--shape-child")
                                .arg(s.name())
                                .arg(threads.to_string())
                                .arg(self.scale.to_string());
                            run_shape(&mut cmd, door)
                        }
                        Entry::Program(p, path) => {
                            let inputs = inputs.as_ref().expect("inputs written");
                            let mut cmd = inputs.command(p, path, self.scale);
                            run_program(&mut cmd, door, inputs, p)
                        }
                    };
                    match r {
                        Ok(r) => runs[di].push(r),
                        Err(msg) => problems.push(format!("{} {}: {msg}", e.name(), door.name)),
                    }
                    bar.inc(1);
                }
            }
            // Every checksum must be glibc's (the first door's).
            let reference = runs[0].first().map(|r| r.checksum);
            for (di, door) in self.doors.iter().enumerate() {
                let before = runs[di].len();
                runs[di].retain(|r| Some(r.checksum) == reference);
                if runs[di].len() != before {
                    problems.push(format!(
                        "{} {}: checksum differs from {}'s in {} of {} runs",
                        e.name(),
                        door.name,
                        self.doors[0].name,
                        before - runs[di].len(),
                        before
                    ));
                }
                cells.push(Cell {
                    entry: e.name().to_string(),
                    threads,
                    door: door.name.clone(),
                    runs: std::mem::take(&mut runs[di]),
                });
            }
        }
        bar.finish_and_clear();
        Ok(Outcomes {
            cells,
            problems,
            wall: start.elapsed().as_secs_f64(),
        })
    }
}

/// A preload that the loader could not honour is only a warning on stderr:
/// catch it, or glibc would be measured under the door's name.
fn preload_failed(stderr: &str) -> bool {
    stderr.contains("cannot be preloaded")
}

fn run_shape(cmd: &mut Command, door: &Door) -> Result<Run, String> {
    door.apply(cmd);
    let f = proc::run(cmd, TIMEOUT).map_err(|e| format!("cannot run: {e}"))?;
    if !f.ok() {
        return Err(f.failure());
    }
    if preload_failed(&f.stderr) {
        return Err(format!("preload failed: {}", f.stderr.trim()));
    }
    let line =
        ChildLine::parse(&f.stdout).ok_or_else(|| format!("no result line: {}", f.failure()))?;
    if !door.matches(&line.malloc) {
        return Err(format!(
            "malloc came from {}, not from {}",
            line.malloc,
            door.lib
                .as_ref()
                .map_or("glibc".into(), |p| p.display().to_string())
        ));
    }
    Ok(Run {
        time: line.time,
        wall: f.wall,
        cpu: f.user + f.sys,
        peak: f.maxrss,
        base: Some(line.base),
        ops: line.ops,
        checksum: line.checksum,
    })
}

fn run_program(
    cmd: &mut Command,
    door: &Door,
    inputs: &Inputs,
    p: &Program,
) -> Result<Run, String> {
    door.apply(cmd);
    let f = proc::run(cmd, TIMEOUT).map_err(|e| format!("cannot run: {e}"))?;
    if !f.ok() {
        return Err(f.failure());
    }
    if preload_failed(&f.stderr) {
        return Err(format!("preload failed: {}", f.stderr.trim()));
    }
    let checksum = inputs.checksum(p, &f.stdout)?;
    Ok(Run {
        time: f.wall,
        wall: f.wall,
        cpu: f.user + f.sys,
        peak: f.maxrss,
        base: None,
        ops: 0,
        checksum,
    })
}
