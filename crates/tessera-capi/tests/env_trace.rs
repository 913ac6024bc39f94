//! Configuration from the environment, `TESSERA_TRACE` and
//! `TESSERA_SNAPSHOT`: run C programs under the library and read back what
//! it wrote with the core's own parsers.

mod common;

use common::{c_command, compile, run, temp_dir, Mode};
use std::collections::HashSet;
use std::time::Duration;
use tessera_core::inspect::trace::{Event, Replayer, Trace};
use tessera_core::Heap;

const T: Duration = Duration::from_secs(60);

/// Checks a recorded trace: parses, has an exit record, replays into a
/// fresh heap ending with exactly the live count of the exit record.
/// Returns the trace.
fn check_trace(text: &str) -> Trace {
    let t = Trace::parse(text).unwrap_or_else(|e| panic!("trace does not parse: {e}"));
    let live = t.exit_live.expect("the trace ends with an exit record");
    let mut r = Replayer::new(Heap::new());
    r.run(&t)
        .unwrap_or_else(|e| panic!("trace does not replay: {e}"));
    assert_eq!(
        r.live(),
        live,
        "replay ends with the exit record's live count"
    );
    r.heap.check().unwrap();
    t
}

fn record(mode: Mode, how: &str) {
    if !common::require("cc", "gcc") {
        return;
    }
    let dir = temp_dir("trace");
    let exe = compile("trace", mode, dir.path());
    let path = dir.path().join("calls.trace");
    let out = run(
        c_command(&exe, mode).arg(how).env("TESSERA_TRACE", &path),
        T,
    );
    out.assert_ok("trace program");
    assert!(out.stdout_str().contains("leaked 7"));
    let text = std::fs::read_to_string(&path).unwrap();
    let t = check_trace(&text);
    assert!(t.exit_live.unwrap() >= 7, "the 7 leaked blocks are live");
    let mut kinds = HashSet::new();
    let mut tids = HashSet::new();
    for r in &t.records {
        tids.insert(r.tid);
        kinds.insert(match r.event {
            Event::Malloc { .. } => "malloc",
            Event::Calloc { .. } => "calloc",
            Event::Realloc { size: 0, .. } => "realloc0",
            Event::Realloc { .. } => "realloc",
            Event::Memalign { align: 4096, .. } => "page",
            Event::Memalign { .. } => "memalign",
            Event::Free { .. } => "free",
            Event::Exit { .. } => "exit",
        });
    }
    for k in [
        "malloc", "calloc", "realloc", "realloc0", "memalign", "page", "free", "exit",
    ] {
        assert!(kinds.contains(k), "no {k} record");
    }
    assert!(tids.len() >= 5, "4 worker threads and main: {tids:?}");
    // Every call of the program made it: 4 threads x 3000 rounds, each at
    // least one allocation.
    let allocs = t
        .records
        .iter()
        .filter(|r| !matches!(r.event, Event::Free { .. } | Event::Exit { .. }))
        .count();
    assert!(allocs >= 12_000, "{allocs} allocations recorded");
    // The last record is the exit record.
    assert!(matches!(
        t.records.last().unwrap().event,
        Event::Exit { .. }
    ));
}

#[test]
fn trace_is_complete_after_exit_preloaded() {
    record(Mode::Preload, "exit");
}

#[test]
fn trace_is_complete_after_return_from_main_linked() {
    record(Mode::Linked, "return");
}

#[test]
fn trace_per_process_with_pid_in_the_path() {
    // sh forks and execs: the forked child stops recording, and each
    // exec'd program records into its own file. (dash itself leaves with
    // `_exit`, which runs no exit hook: its trace has no exit record.)
    let dir = temp_dir("trace-pid");
    let template = dir.path().join("p.%p.trace");
    let out = run(
        std::process::Command::new("/bin/sh")
            .args(["-c", "/bin/echo one; /bin/ls / > /dev/null; echo two"])
            .env("LD_PRELOAD", common::lib_path())
            .env("TESSERA_TRACE", &template),
        T,
    );
    out.assert_ok("sh");
    assert_eq!(out.stdout_str(), "one\ntwo\n");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "trace"))
        .collect();
    assert!(files.len() >= 3, "sh, echo and ls each record: {files:?}");
    let mut complete = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let t = Trace::parse(&text).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        if t.exit_live.is_some() {
            check_trace(&text);
            complete += 1;
        }
    }
    assert!(complete >= 2, "echo and ls exit normally: {files:?}");
}

#[test]
fn snapshot_at_exit() {
    if !common::require("cc", "gcc") {
        return;
    }
    let dir = temp_dir("snapshot");
    let exe = compile("env", Mode::Preload, dir.path());
    let path = dir.path().join("exit.snapshot");
    run(
        c_command(&exe, Mode::Preload)
            .env("TESSERA_SNAPSHOT", &path)
            .env("TESSERA_SNAPSHOT_PAGES", "3"),
        T,
    )
    .assert_ok("env program");
    let text = std::fs::read_to_string(&path).unwrap();
    let magic = tessera_core::inspect::SNAPSHOT_MAGIC;
    let starts: Vec<usize> = text.match_indices(magic).map(|(i, _)| i).collect();
    assert!(!starts.is_empty(), "no snapshot in {path:?}");
    let mut chunks = 0;
    for (k, &s) in starts.iter().enumerate() {
        let part = &text[s..starts.get(k + 1).copied().unwrap_or(text.len())];
        let snap = tessera_core::Snapshot::parse(part)
            .unwrap_or_else(|e| panic!("arena {k} snapshot: {e:?}"));
        assert!(
            snap.pages.len() <= 3,
            "TESSERA_SNAPSHOT_PAGES is a per-arena budget"
        );
        chunks += snap.chunks.len();
    }
    assert!(chunks > 0);

    // The default budget is 256 pages per arena.
    run(
        c_command(&exe, Mode::Preload).env("TESSERA_SNAPSHOT", &path),
        T,
    )
    .assert_ok("env program");
    let text = std::fs::read_to_string(&path).unwrap();
    let pages = text.lines().filter(|l| l.starts_with("page ")).count();
    assert!(pages > 3 && pages <= 256 * starts.len().max(16));
}

/// Runs `env.c` under the library with `vars`; returns (stdout, stderr).
fn env_run(vars: &[(&str, &str)]) -> Option<(String, String)> {
    if !common::require("cc", "gcc") {
        return None;
    }
    let dir = temp_dir("env");
    let exe = compile("env", Mode::Preload, dir.path());
    let mut cmd = c_command(&exe, Mode::Preload);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = run(&mut cmd, T);
    out.assert_ok("env program");
    Some((out.stdout_str(), out.stderr_str()))
}

#[test]
fn mmap_threshold_and_arena_max_from_the_environment() {
    let Some((out, err)) = env_run(&[]) else {
        return;
    };
    assert!(
        out.contains("direct=1"),
        "512 KiB is above the default 256K: {out}"
    );
    assert!(err.is_empty(), "no warnings by default: {err}");
    expect_out(("TESSERA_MMAP_THRESHOLD", "1M"), "direct=0");
    expect_out(("TESSERA_MMAP_THRESHOLD", "1024k"), "direct=0");
    expect_out(("TESSERA_MMAP_THRESHOLD", "131072"), "direct=1");
    expect_out(("TESSERA_ARENA_MAX", "1"), "arenas=1\n");
}

/// Runs the env program with one variable set (gcc is known to be there:
/// callers ran `env_run` first), asserts that its output has `line`, and
/// returns its stderr.
fn expect_out(var: (&str, &str), line: &str) -> String {
    let (out, err) = env_run(&[var]).unwrap();
    assert!(
        out.contains(line),
        "{}={}: no `{line}` in {out}",
        var.0,
        var.1
    );
    err
}

#[test]
fn medium_classes_follow_the_environment() {
    let Some((out, _)) = env_run(&[]) else {
        return;
    };
    // 5,000 bytes is a 5,008-byte chunk, rounded up to the 5,120-byte class.
    assert!(
        out.contains("usable5000=5112\n"),
        "rounded by default: {out}"
    );
    // Off: not rounded, and no warning.
    let err = expect_out(("TESSERA_TCACHE_MEDIUM", "0"), "usable5000=5000\n");
    assert!(err.is_empty(), "{err}");
    expect_out(("TESSERA_TCACHE_MEDIUM", "1M"), "usable5000=5112\n");
    // Out of range: the default stays, with one warning.
    let err = expect_out(("TESSERA_TCACHE_MEDIUM", "64M"), "usable5000=5112\n");
    assert!(
        err.contains("tessera: ignoring") && err.contains("TESSERA_TCACHE_MEDIUM"),
        "one warning: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn malformed_values_warn_once_and_keep_the_default() {
    let Some((out, err)) = env_run(&[
        ("TESSERA_MMAP_THRESHOLD", "lots"),
        ("TESSERA_TRIM_THRESHOLD", "5X"),
        ("TESSERA_ARENA_MAX", "-1"),
        ("TESSERA_CHECK", "7"),
        ("TESSERA_SNAPSHOT_PAGES", "12M"),
        ("TESSERA_SNAPSHOT", "/dev/null"),
    ]) else {
        return;
    };
    assert!(
        out.contains("direct=1"),
        "the default threshold stays: {out}"
    );
    for var in [
        "TESSERA_MMAP_THRESHOLD",
        "TESSERA_TRIM_THRESHOLD",
        "TESSERA_ARENA_MAX",
        "TESSERA_CHECK",
        "TESSERA_SNAPSHOT_PAGES",
    ] {
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(var)).collect();
        assert_eq!(lines.len(), 1, "one warning for {var}: {err}");
        assert!(lines[0].starts_with("tessera: ignoring"), "{}", lines[0]);
        assert!(lines[0].contains("using the default"), "{}", lines[0]);
    }
    assert_eq!(err.lines().count(), 5, "{err}");
    // Too large for the mmap threshold (the cap is 32 MiB).
    let (out, err) = env_run(&[("TESSERA_MMAP_THRESHOLD", "1G")]).unwrap();
    assert!(out.contains("direct=1"), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn heap_checks_from_the_environment() {
    if !common::require("cc", "gcc") {
        return;
    }
    for level in ["1", "2"] {
        let dir = temp_dir("check");
        let exe = compile("info", Mode::Preload, dir.path());
        let out = run(
            c_command(&exe, Mode::Preload).env("TESSERA_CHECK", level),
            T,
        );
        out.assert_ok(&format!("TESSERA_CHECK={level}"));
        assert!(out.stdout_str().contains("info: ok"));
    }
}

#[test]
fn misuse_ends_the_program_with_one_line() {
    use std::os::unix::process::ExitStatusExt;
    if !common::require("cc", "gcc") {
        return;
    }
    let dir = temp_dir("misuse");
    let exe = compile("misuse", Mode::Preload, dir.path());
    // (kind, TESSERA_CHECK, words of the message)
    let cases = [
        ("double-free", "0", "double free"),
        ("foreign", "0", "no Tessera heap"),
        // The debug tier fills freed memory and verifies it on reuse.
        ("write-after-free", "2", "use after free"),
        // The check at exit walks the heap and finds the broken header.
        ("overflow", "1", "tessera: "),
    ];
    for (kind, level, words) in cases {
        let out = run(
            c_command(&exe, Mode::Preload)
                .arg(kind)
                .env("TESSERA_CHECK", level),
            T,
        );
        let err = out.stderr_str();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{kind}: expected an abort, got {} / {err}",
            out.status
        );
        let line = err
            .lines()
            .find(|l| l.starts_with("tessera: "))
            .unwrap_or_else(|| panic!("{kind}: no message: {err}"));
        assert!(line.contains(words), "{kind}: {line}");
    }
    // Without the debug tier, the write after free goes unnoticed: the test
    // above really depends on TESSERA_CHECK=2.
    let out = run(
        c_command(&exe, Mode::Preload)
            .arg("write-after-free")
            .env("TESSERA_CHECK", "0"),
        T,
    );
    out.assert_ok("write-after-free without checks");
    assert!(out.stdout_str().contains("misuse: survived"));
}
