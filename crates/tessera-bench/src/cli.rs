//! Command-line options (hand-parsed: a handful of flags).

use std::path::PathBuf;

/// Usage text.
pub const USAGE: &str = "\
tessera-bench: Tessera against glibc, mimalloc, jemalloc and dlmalloc, in one run

USAGE: tessera-bench [OPTIONS]

  --quick             CI smoke run: scale 0.02, 2 reps, threads 1,2 (explicit flags win)
  --threads LIST      thread counts for threaded workloads [default: 1,2,4]
  --reps N            timed repetitions per allocator and case [default: 5]
  --scale F           multiplies every operation count [default: 1]
  --only LIST         workloads to run, comma-separated (see --list)
  --allocators LIST   allocators, comma-separated [default: all; glibc is always added]
  --json FILE         results [default: $CARGO_TARGET_DIR/bench/results.json, else target/bench/]
  --svg FILE          chart of the ratios [default: next to the JSON, ratios.svg]
  --trace FILE        also replay a recorded trace (TESSERA_TRACE format); repeatable
  --no-memory         skip the peak-memory measurements (child processes)
  --no-progress       no progress bar
  --dump-trace FILE   write the built-in trace (at --scale) as a trace file and exit
  --list              list workloads and allocators and exit
  -h, --help          this text

Also: `tessera-bench shapes --help` and `tessera-bench service --help`: the field's workload
shapes and the service workload, every allocator through LD_PRELOAD, each run a process.

Internal: --child WORKLOAD ALLOCATOR THREADS measures one run's peak memory.";

/// Parsed options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `--quick`.
    pub quick: bool,
    /// Thread counts.
    pub threads: Vec<usize>,
    /// Repetitions.
    pub reps: usize,
    /// Operation scale.
    pub scale: f64,
    /// Selected workloads (empty = all).
    pub only: Vec<String>,
    /// Selected allocators (empty = all).
    pub allocators: Vec<String>,
    /// JSON output path.
    pub json: PathBuf,
    /// SVG output path.
    pub svg: PathBuf,
    /// Recorded traces.
    pub traces: Vec<PathBuf>,
    /// Measure peak memory.
    pub memory: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// `--dump-trace FILE`.
    pub dump_trace: Option<PathBuf>,
    /// `--list`.
    pub list: bool,
    /// `--help`.
    pub help: bool,
    /// `--child WORKLOAD ALLOCATOR THREADS`.
    pub child: Option<(String, String, usize)>,
}

/// Where results go by default: `$CARGO_TARGET_DIR/bench`, else
/// `target/bench` under the current directory.
pub fn default_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("bench")
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut it = args.into_iter();
        let mut quick = false;
        let mut threads = None;
        let mut reps = None;
        let mut scale = None;
        let mut o = Options {
            quick: false,
            threads: Vec::new(),
            reps: 0,
            scale: 0.0,
            only: Vec::new(),
            allocators: Vec::new(),
            json: PathBuf::new(),
            svg: PathBuf::new(),
            traces: Vec::new(),
            memory: true,
            progress: true,
            dump_trace: None,
            list: false,
            help: false,
            child: None,
        };
        let mut json = None;
        let mut svg = None;
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
            match a.as_str() {
                "--quick" => quick = true,
                "--threads" => {
                    let v = value("--threads")?;
                    let t: Result<Vec<usize>, _> = list(&v).iter().map(|x| x.parse()).collect();
                    match t {
                        Ok(t) if !t.is_empty() && t.iter().all(|&n| (1..=256).contains(&n)) => {
                            threads = Some(t)
                        }
                        _ => return Err(format!("--threads: bad list `{v}` (e.g. 1,2,4)")),
                    }
                }
                "--reps" => {
                    let v = value("--reps")?;
                    match v.parse::<usize>() {
                        Ok(n) if n >= 1 => reps = Some(n),
                        _ => return Err(format!("--reps: `{v}` is not a positive number")),
                    }
                }
                "--scale" => {
                    let v = value("--scale")?;
                    match v.parse::<f64>() {
                        Ok(f) if f > 0.0 && f.is_finite() => scale = Some(f),
                        _ => return Err(format!("--scale: `{v}` is not a positive number")),
                    }
                }
                "--only" => o.only.extend(list(&value("--only")?)),
                "--allocators" => o.allocators.extend(list(&value("--allocators")?)),
                "--json" => json = Some(PathBuf::from(value("--json")?)),
                "--svg" => svg = Some(PathBuf::from(value("--svg")?)),
                "--trace" => o.traces.push(PathBuf::from(value("--trace")?)),
                "--no-memory" => o.memory = false,
                "--no-progress" => o.progress = false,
                "--dump-trace" => o.dump_trace = Some(PathBuf::from(value("--dump-trace")?)),
                "--list" => o.list = true,
                "-h" | "--help" => o.help = true,
                "--child" => {
                    let w = value("--child")?;
                    let al = value("--child")?;
                    let t = value("--child")?;
                    let t = t
                        .parse()
                        .map_err(|_| format!("--child: bad thread count `{t}`"))?;
                    o.child = Some((w, al, t));
                }
                other => return Err(format!("unknown option `{other}` (see --help)")),
            }
        }
        o.quick = quick;
        o.threads = threads.unwrap_or_else(|| if quick { vec![1, 2] } else { vec![1, 2, 4] });
        o.reps = reps.unwrap_or(if quick { 2 } else { 5 });
        o.scale = scale.unwrap_or(if quick { 0.02 } else { 1.0 });
        o.json = json.unwrap_or_else(|| default_dir().join("results.json"));
        o.svg = svg.unwrap_or_else(|| {
            o.json
                .parent()
                .map_or_else(|| PathBuf::from("ratios.svg"), |d| d.join("ratios.svg"))
        });
        Ok(o)
    }
}

/// Usage of `tessera-bench shapes` and `tessera-bench service`.
pub const DOOR_USAGE: &str = "\
tessera-bench shapes | service: every allocator through the same door (LD_PRELOAD)

USAGE: tessera-bench shapes [OPTIONS]     the field's workload shapes and real programs (issue 17)
       tessera-bench service [OPTIONS]    the service workload: RSS between bursts and when idle (issue 18)

  --quick             smoke run: shapes scale 0.05, 1 rep; service scale 0.1, 1 rep, idle 0.3 s
  --reps N            processes per allocator and shape [default: 5]
  --scale F           multiplies the operation counts [default: 1]
  --only LIST         shapes to run, comma-separated (see --list; shapes only)
  --allocators LIST   glibc (always added), tessera, mimalloc, jemalloc, tcmalloc, jemalloc-bg
                      or NAME=PATH.so, or NAME=PATH.so?KEY=VALUE&... (environment for
                      that door only) [default: all but jemalloc-bg; service: all]
  --cores N           cores the thread counts are derived from [default: this machine's]
  --idle SECONDS      the service's idle period [default: 3]
  --tessera-lib PATH  preload this libtessera.so as `tessera` (also $TESSERA_LIB)
  --no-build          do not run `cargo build -p tessera-capi` first; use the library as it is
  --json FILE         results [default: $CARGO_TARGET_DIR/bench/{shapes,service}.json, else target/bench/]
  --svg FILE          chart [default: next to the JSON, shapes.svg / service-rss.svg]
  --no-progress       no progress bar
  --list              list shapes and allocators and exit
  -h, --help          this text";

/// Which door command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorCommand {
    /// `tessera-bench shapes`.
    Shapes,
    /// `tessera-bench service`.
    Service,
}

/// Options of `shapes` and `service`.
#[derive(Clone, Debug, PartialEq)]
pub struct DoorOptions {
    /// The command.
    pub command: DoorCommand,
    /// `--quick`.
    pub quick: bool,
    /// Repetitions.
    pub reps: usize,
    /// Scale.
    pub scale: f64,
    /// Selected shapes (empty = all).
    pub only: Vec<String>,
    /// Selected allocators (empty = the command's default).
    pub allocators: Vec<String>,
    /// Cores.
    pub cores: usize,
    /// The service's idle period.
    pub idle: std::time::Duration,
    /// How to get libtessera.so.
    pub tessera: crate::preload::TesseraLib,
    /// JSON path.
    pub json: PathBuf,
    /// SVG path.
    pub svg: PathBuf,
    /// Progress bar.
    pub progress: bool,
    /// `--list`.
    pub list: bool,
    /// `--help`.
    pub help: bool,
}

impl DoorOptions {
    /// Parses `shapes ...` or `service ...` (the command word first).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<DoorOptions, String> {
        use crate::preload::TesseraLib;
        let mut it = args.into_iter();
        let command = match it.next().as_deref() {
            Some("shapes") => DoorCommand::Shapes,
            Some("service") => DoorCommand::Service,
            other => return Err(format!("expected `shapes` or `service`, got {other:?}")),
        };
        let service = command == DoorCommand::Service;
        let (mut quick, mut reps, mut scale, mut idle) = (false, None, None, None);
        let (mut json, mut svg, mut lib, mut no_build) = (None, None, None, false);
        let mut o = DoorOptions {
            command,
            quick: false,
            reps: 0,
            scale: 0.0,
            only: Vec::new(),
            allocators: Vec::new(),
            cores: std::thread::available_parallelism().map_or(2, |n| n.get()),
            idle: std::time::Duration::ZERO,
            tessera: TesseraLib::Build,
            json: PathBuf::new(),
            svg: PathBuf::new(),
            progress: true,
            list: false,
            help: false,
        };
        let positive = |name: &str, v: &str| -> Result<f64, String> {
            match v.parse::<f64>() {
                Ok(f) if f > 0.0 && f.is_finite() => Ok(f),
                _ => Err(format!("{name}: `{v}` is not a positive number")),
            }
        };
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
            match a.as_str() {
                "--quick" => quick = true,
                "--reps" => {
                    let v = value("--reps")?;
                    match v.parse::<usize>() {
                        Ok(n) if n >= 1 => reps = Some(n),
                        _ => return Err(format!("--reps: `{v}` is not a positive number")),
                    }
                }
                "--scale" => scale = Some(positive("--scale", &value("--scale")?)?),
                "--idle" => {
                    let v = value("--idle")?;
                    match v.parse::<f64>() {
                        Ok(f) if (0.0..=600.0).contains(&f) => idle = Some(f),
                        _ => return Err(format!("--idle: `{v}` is not 0-600 seconds")),
                    }
                }
                "--cores" => {
                    let v = value("--cores")?;
                    match v.parse::<usize>() {
                        Ok(n) if (1..=256).contains(&n) => o.cores = n,
                        _ => return Err(format!("--cores: bad count `{v}`")),
                    }
                }
                "--only" => o.only.extend(list(&value("--only")?)),
                "--allocators" => o.allocators.extend(list(&value("--allocators")?)),
                "--tessera-lib" => lib = Some(PathBuf::from(value("--tessera-lib")?)),
                "--no-build" => no_build = true,
                "--json" => json = Some(PathBuf::from(value("--json")?)),
                "--svg" => svg = Some(PathBuf::from(value("--svg")?)),
                "--no-progress" => o.progress = false,
                "--list" => o.list = true,
                "-h" | "--help" => o.help = true,
                other => return Err(format!("unknown option `{other}` (see --help)")),
            }
        }
        if service && !o.only.is_empty() {
            return Err("--only is for `shapes`".into());
        }
        o.quick = quick;
        o.reps = reps.unwrap_or(match (quick, service) {
            (true, _) => 1,
            (false, _) => 5,
        });
        o.scale = scale.unwrap_or(match (quick, service) {
            (false, _) => 1.0,
            (true, false) => 0.05,
            (true, true) => 0.1,
        });
        o.idle = std::time::Duration::from_secs_f64(idle.unwrap_or(if quick { 0.3 } else { 3.0 }));
        let env_lib = std::env::var_os("TESSERA_LIB").map(PathBuf::from);
        o.tessera = match (lib.or(env_lib), no_build) {
            (Some(p), _) => TesseraLib::Given(p),
            (None, true) => TesseraLib::Existing,
            (None, false) => TesseraLib::Build,
        };
        let (jname, sname) = if service {
            ("service.json", "service-rss.svg")
        } else {
            ("shapes.json", "shapes.svg")
        };
        o.json = json.unwrap_or_else(|| default_dir().join(jname));
        o.svg = svg.unwrap_or_else(|| {
            o.json
                .parent()
                .map_or_else(|| PathBuf::from(sname), |d| d.join(sname))
        });
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Options, String> {
        Options::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_quick() {
        let o = parse("").unwrap();
        assert_eq!(
            (o.reps, o.threads.clone(), o.scale),
            (5, vec![1, 2, 4], 1.0)
        );
        assert!(o.memory && !o.quick);
        let q = parse("--quick --reps 3").unwrap();
        assert_eq!((q.reps, q.threads, q.scale), (3, vec![1, 2], 0.02));
    }

    #[test]
    fn lists_paths_and_errors() {
        let o =
            parse("--only larson,churn --allocators tessera --json x/r.json --trace a --trace b")
                .unwrap();
        assert_eq!(o.only, ["larson", "churn"]);
        assert_eq!(o.allocators, ["tessera"]);
        assert_eq!(o.svg, PathBuf::from("x/ratios.svg"));
        assert_eq!(o.traces.len(), 2);
        assert!(parse("--threads 0").is_err());
        assert!(parse("--reps").is_err());
        assert!(parse("--bogus").is_err());
        let c = parse("--child larson glibc 2 --scale 0.5").unwrap();
        assert_eq!(c.child, Some(("larson".into(), "glibc".into(), 2)));
        assert_eq!(c.scale, 0.5);
    }

    #[test]
    fn door_options() {
        let p = |s: &str| DoorOptions::parse(s.split_whitespace().map(String::from));
        let o = p("shapes").unwrap();
        assert_eq!((o.reps, o.scale, o.quick), (5, 1.0, false));
        assert!(o.json.ends_with("shapes.json") && o.svg.ends_with("shapes.svg"));
        let q = p("service --quick --allocators tessera,x=/a.so --json d/s.json").unwrap();
        assert_eq!((q.reps, q.scale), (1, 0.1));
        assert_eq!(q.idle, std::time::Duration::from_millis(300));
        assert_eq!(q.allocators, ["tessera", "x=/a.so"]);
        assert_eq!(q.svg, PathBuf::from("d/service-rss.svg"));
        assert!(p("service --only sh6").is_err());
        assert!(p("shapes --reps 0").is_err());
        assert!(p("other").is_err());
        let g = p("shapes --tessera-lib /x/libtessera.so").unwrap();
        assert_eq!(
            g.tessera,
            crate::preload::TesseraLib::Given(PathBuf::from("/x/libtessera.so"))
        );
    }
}
