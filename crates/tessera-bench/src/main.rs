//! `tessera-bench`: runs the workloads against every allocator and reports
//! time and peak memory as ratios to glibc (table, JSON, SVG). See the
//! crate README.
//!
//! The binary's own `#[global_allocator]` stays the system allocator, so
//! the harness's bookkeeping costs the same whichever allocator is measured.

use std::path::Path;
use std::process::ExitCode;
use tessera_bench::alloc::{self, RawAlloc};
use tessera_bench::cli::{DoorCommand, DoorOptions, Options, DOOR_USAGE, USAGE};
use tessera_bench::harness::Plan;
use tessera_bench::workloads::{self, Params, TraceReplay, Workload};
use tessera_bench::{mem, preload, report, service, shapes, svg};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("shapes" | "service") => return door_main(args),
        Some("--shape-child") => return shape_child(&args[1..]),
        Some("--service-child") => return service_child(&args[1..]),
        _ => {}
    }
    let opts = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tessera-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tessera-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Names of the workloads that need no building, in report order.
const FIXED: [&str; 8] = [
    "larson",
    "cache-thrash",
    "cache-scratch",
    "xmalloc",
    "tight",
    "churn",
    "realloc",
    "large",
];

fn trace_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    format!("trace:{stem}")
}

/// Builds the selected workloads (the built-in trace only if selected).
fn build_workloads(opts: &Options, only: &[String]) -> Result<Vec<Box<dyn Workload>>, String> {
    let mut known: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
    known.push("trace".into());
    known.extend(opts.traces.iter().map(|p| trace_name(p)));
    for name in only {
        if !known.contains(name) {
            return Err(format!(
                "unknown workload `{name}`; known: {}",
                known.join(", ")
            ));
        }
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|n| n == name);
    let mut traces = Vec::new();
    if wanted("trace") {
        traces.push(TraceReplay::builtin(opts.scale));
    }
    for p in &opts.traces {
        if wanted(&trace_name(p)) {
            let t = TraceReplay::from_file(p)?;
            if t.anomalies > 0 {
                eprintln!(
                    "tessera-bench: {}: {} records skipped or patched (see README)",
                    p.display(),
                    t.anomalies
                );
            }
            traces.push(t);
        }
    }
    Ok(workloads::all(traces)
        .into_iter()
        .filter(|w| wanted(w.name()))
        .collect())
}

fn select_allocators(names: &[String]) -> Result<Vec<&'static dyn RawAlloc>, String> {
    if names.is_empty() {
        return Ok(alloc::all());
    }
    let mut v: Vec<&'static dyn RawAlloc> = vec![&alloc::Glibc];
    for n in names {
        let a = alloc::by_name(n).ok_or_else(|| {
            let known: Vec<&str> = alloc::all().iter().map(|a| a.name()).collect();
            format!("unknown allocator `{n}`; known: {}", known.join(", "))
        })?;
        if !v.iter().any(|b| b.name() == a.name()) {
            v.push(a);
        }
    }
    Ok(v)
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The end of every command: the JSON (pretty) and the SVG written, where
/// they went said, and the exit code: failure if any run had a problem.
fn finish(
    json_path: &Path,
    json: &serde_json::Value,
    svg_path: &Path,
    svg: &str,
    wall: f64,
    clean: bool,
) -> Result<ExitCode, String> {
    let text = serde_json::to_string_pretty(json).map_err(|e| e.to_string())?;
    write_file(json_path, &text)?;
    write_file(svg_path, svg)?;
    println!(
        "\nwrote {} and {} ({wall:.0} s)",
        json_path.display(),
        svg_path.display()
    );
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(opts: &Options) -> Result<ExitCode, String> {
    if opts.help {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some((w, a, threads)) = &opts.child {
        let ws = build_workloads(opts, std::slice::from_ref(w))?;
        let a = alloc::by_name(a).ok_or(format!("unknown allocator `{a}`"))?;
        let p = Params {
            threads: *threads,
            scale: opts.scale,
        };
        let r = mem::measure_here(ws[0].as_ref(), a, &p);
        println!("{}", r.line());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &opts.dump_trace {
        let t = workloads::trace::builtin_trace(opts.scale);
        write_file(path, &t.to_text())?;
        println!("wrote {} ({} records)", path.display(), t.records.len());
        return Ok(ExitCode::SUCCESS);
    }
    if opts.list {
        println!("workloads:");
        for w in build_workloads(opts, &[])? {
            let kind = if w.threaded() { "threads" } else { "1 thread" };
            println!("  {:<16}{:<10}{}", w.name(), kind, w.about());
        }
        println!("allocators:");
        for a in alloc::all() {
            println!("  {:<16}{}", a.name(), a.describe());
        }
        return Ok(ExitCode::SUCCESS);
    }

    let checks = alloc::check_baselines()?;
    let allocators = select_allocators(&opts.allocators)?;
    let plan = Plan {
        workloads: build_workloads(opts, &opts.only)?,
        allocators,
        threads: opts.threads.clone(),
        reps: opts.reps,
        scale: opts.scale,
        memory: opts.memory,
        trace_files: opts.traces.clone(),
        progress: opts.progress,
    };
    println!(
        "tessera-bench: {} cases x {} allocators x {} reps, scale {}{}",
        plan.cases().len(),
        plan.allocators.len(),
        plan.reps,
        plan.scale,
        if plan.memory {
            ", peak memory in child processes"
        } else {
            ""
        }
    );
    let described: Vec<(String, String)> = plan
        .allocators
        .iter()
        .map(|a| (a.name().to_string(), a.describe()))
        .collect();
    println!(
        "{}",
        described
            .iter()
            .map(|(_, d)| d.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("{}\n", checks[0]);

    let results = plan.run();
    let summary = report::Summary::new(&results);
    print!("{}", report::table(&results, &summary, plan.reps));
    let meta = report::Meta {
        reps: plan.reps,
        threads: plan.threads.clone(),
        scale: plan.scale,
        quick: opts.quick,
        allocators: described,
        baseline_checks: checks,
        workloads: plan
            .workloads
            .iter()
            .map(|w| (w.name().to_string(), w.about().to_string(), w.threaded()))
            .collect(),
    };
    let json = report::json(&results, &summary, &meta);
    finish(
        &opts.json,
        &json,
        &opts.svg,
        &svg::chart(&summary, plan.memory),
        results.wall,
        results.problems.is_empty(),
    )
}

/// `--shape-child NAME THREADS SCALE`: runs one shape on this process's
/// malloc (preloaded by the parent) and prints its result line.
fn shape_child(args: &[String]) -> ExitCode {
    let parsed = match args {
        [name, threads, scale] => threads
            .parse::<usize>()
            .ok()
            .zip(scale.parse::<f64>().ok())
            .map(|(t, s)| (name, t, s)),
        _ => None,
    };
    let Some((name, threads, scale)) = parsed else {
        eprintln!("tessera-bench: usage: --shape-child NAME THREADS SCALE");
        return ExitCode::from(2);
    };
    match shapes::child(name, threads, scale) {
        Ok(line) => {
            println!("{}", line.line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tessera-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--service-child SCALE IDLE_SECONDS`: runs the service workload on this
/// process's malloc and prints its JSON line.
fn service_child(args: &[String]) -> ExitCode {
    let parsed = match args {
        [scale, idle] => scale.parse::<f64>().ok().zip(idle.parse::<f64>().ok()),
        _ => None,
    };
    let Some((scale, idle)) = parsed else {
        eprintln!("tessera-bench: usage: --service-child SCALE IDLE_SECONDS");
        return ExitCode::from(2);
    };
    let r = service::child(scale, std::time::Duration::from_secs_f64(idle));
    println!("{}", r.line());
    ExitCode::SUCCESS
}

fn door_main(args: Vec<String>) -> ExitCode {
    let opts = match DoorOptions::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tessera-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        println!("{DOOR_USAGE}");
        return ExitCode::SUCCESS;
    }
    let r = match opts.command {
        DoorCommand::Shapes => run_shapes(&opts),
        DoorCommand::Service => run_service(&opts),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tessera-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// The allocators of `shapes` when none are named.
const SHAPE_DOORS: [&str; 4] = ["tessera", "mimalloc", "jemalloc", "tcmalloc"];
/// The allocators of `service` when none are named.
const SERVICE_DOORS: [&str; 5] = ["tessera", "mimalloc", "jemalloc", "jemalloc-bg", "tcmalloc"];

fn print_doors(doors: &[preload::Door]) {
    for d in doors {
        println!("  {:<12} {}", d.name, d.about);
    }
}

fn run_shapes(opts: &DoorOptions) -> Result<ExitCode, String> {
    let entries = shapes::plan::entries(&opts.only)?;
    if opts.list {
        println!("shapes (threads on {} cores):", opts.cores);
        for e in &entries {
            println!(
                "  {:<15}{:>3}  {}",
                e.name(),
                e.threads(opts.cores),
                e.about()
            );
        }
        println!(
            "allocators (through LD_PRELOAD): {}",
            preload::KNOWN.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let doors = preload::resolve(&opts.allocators, &SHAPE_DOORS, &opts.tessera)?;
    let plan = shapes::plan::Plan {
        entries,
        doors,
        reps: opts.reps,
        scale: opts.scale,
        cores: opts.cores,
        progress: opts.progress,
    };
    println!(
        "tessera-bench shapes: {} shapes x {} allocators x {} reps, scale {}, {} cores; \
         each run a process, allocators through LD_PRELOAD",
        plan.entries.len(),
        plan.doors.len(),
        plan.reps,
        plan.scale,
        plan.cores
    );
    print_doors(&plan.doors);
    println!();
    let load_start = shapes::report::loadavg();
    let outcomes = plan.run()?;
    let results = shapes::report::as_results(&outcomes);
    let summary = report::Summary::new(&results);
    let targets = shapes::report::targets(&summary);
    print!(
        "{}",
        shapes::report::table(&outcomes, &summary, plan.reps, &targets)
    );
    let meta = shapes::report::Meta {
        reps: plan.reps,
        scale: plan.scale,
        cores: plan.cores,
        quick: opts.quick,
        doors: plan.doors.clone(),
        entries: plan
            .entries
            .iter()
            .map(|e| {
                (
                    e.name().to_string(),
                    e.about().to_string(),
                    e.threads(plan.cores),
                    if e.is_program() { "program" } else { "shape" },
                )
            })
            .collect(),
        load_start,
    };
    let json = shapes::report::json(&outcomes, &summary, &targets, &meta);
    let labels = svg::Labels {
        title: "tessera-bench shapes (LD_PRELOAD)",
        time: "Time, ratio to glibc (median; lower is better)",
        memory: "Peak RSS of the process, ratio to glibc (median; lower is better)",
    };
    finish(
        &opts.json,
        &json,
        &opts.svg,
        &svg::chart_with(&summary, true, &labels),
        outcomes.wall,
        outcomes.problems.is_empty(),
    )
}

fn run_service(opts: &DoorOptions) -> Result<ExitCode, String> {
    if opts.list {
        println!(
            "allocators (through LD_PRELOAD): {}",
            preload::KNOWN.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let doors = preload::resolve(&opts.allocators, &SERVICE_DOORS, &opts.tessera)?;
    let plan = service::Plan {
        doors,
        reps: opts.reps,
        scale: opts.scale,
        idle: opts.idle,
        progress: opts.progress,
    };
    println!(
        "tessera-bench service: {} allocators x {} reps, scale {}, idle {:.1} s; \
         each run a process, allocators through LD_PRELOAD",
        plan.doors.len(),
        plan.reps,
        plan.scale,
        plan.idle.as_secs_f64()
    );
    print_doors(&plan.doors);
    println!();
    let load_start = shapes::report::loadavg();
    let outcomes = plan.run()?;
    let targets = service::targets(&outcomes);
    print!("{}", service::table(&outcomes, &plan, &targets));
    let mut json = service::json_doc(&outcomes, &plan, &targets, opts.quick);
    json["config"]["loadavg_start"] = load_start.into();
    finish(
        &opts.json,
        &json,
        &opts.svg,
        &service::plot(&outcomes, &plan),
        outcomes.wall,
        outcomes.problems.is_empty(),
    )
}
