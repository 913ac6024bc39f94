//! A trace recorded from real programs under libtessera.so replays without
//! error and ends with the live-block count the program had at exit.
//!
//! Needs `libtessera.so` with TESSERA_TRACE support (`cargo build
//! --release` builds it into target/release). Without it the test fails
//! under `CI=true` and is skipped loudly elsewhere.

mod common;

use common::{missing, run_with_timeout, scratch, tessera, workspace};
use std::path::PathBuf;
use std::time::Duration;
use tessera::inspect::trace::{Replayer, TRACE_MAGIC};
use tessera_viz::files::load_trace;

/// The library: next to the `tessera` under test, in the workspace's
/// target/release, or in `$CARGO_TARGET_DIR/release`.
fn library() -> Option<PathBuf> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tessera"));
    let mut candidates = vec![exe.with_file_name("libtessera.so")];
    if let Some(profile_dir) = exe.parent().and_then(|d| d.parent()) {
        candidates.push(profile_dir.join("release/libtessera.so"));
    }
    candidates.push(workspace().join("target/release/libtessera.so"));
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("release/libtessera.so"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Records `program args` with `tessera run`; None (after saying why) when
/// the library does not record traces.
fn record(name: &str, program: &str, args: &[&str]) -> Option<(PathBuf, String)> {
    let Some(lib) = library() else {
        missing(
            "libtessera.so is not built, so no real program was traced",
            "`cargo build --release` builds it",
        );
        return None;
    };
    let dir = scratch(name);
    let trace = dir.join(format!("{name}.trace"));
    let o = run_with_timeout(
        tessera()
            .arg("run")
            .arg("--lib")
            .arg(&lib)
            .arg("--trace")
            .arg(&trace)
            .arg("--")
            .arg(program)
            .args(args),
        Duration::from_secs(120),
    );
    let summary = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "{program} failed under {}:\n{summary}",
        lib.display()
    );
    let head = std::fs::read_to_string(&trace).ok();
    if !head.as_deref().is_some_and(|t| t.starts_with(TRACE_MAGIC)) {
        missing(
            &format!(
                "{} wrote no trace (TESSERA_TRACE unsupported?)",
                lib.display()
            ),
            "build the C library with trace support (crates/tessera-capi)",
        );
        return None;
    }
    Some((trace, summary))
}

fn replay_matches_exit_count(trace: &std::path::Path, summary: &str) {
    let t = load_trace(trace).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        t.records.len() > 100,
        "only {} calls recorded",
        t.records.len()
    );
    let exit = t.exit_live.expect("the trace ends with an exit record");
    let mut r = Replayer::new(tessera::Heap::new());
    r.run(&t)
        .unwrap_or_else(|e| panic!("{}:{}: {}", trace.display(), e.line, e.msg));
    assert_eq!(r.live(), exit, "live blocks after the replay");
    r.heap.check().unwrap();
    assert!(summary.contains("calls: "), "{summary}");
    assert!(summary.contains("(as the program reported)"), "{summary}");
    assert!(summary.contains("peak footprint"), "{summary}");
}

#[test]
fn ls_recursive_replays_to_its_exit_count() {
    if let Some((trace, summary)) = record("ls", "ls", &["-R", "/usr/share"]) {
        replay_matches_exit_count(&trace, &summary);
        // The replay command draws its last step too.
        let o = tessera().arg("replay").arg(&trace).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let _ = std::fs::remove_dir_all(trace.parent().unwrap());
    }
}

#[test]
fn python_replays_to_its_exit_count() {
    let script = "import json, collections\n\
                  d = {str(i): [i] * (i % 7) for i in range(20000)}\n\
                  s = json.dumps(d)\n\
                  c = collections.Counter(s)\n\
                  print(len(s), len(c))";
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("1")
        .output()
        .is_err()
    {
        missing("python3 is not installed", "install python3");
        return;
    }
    if let Some((trace, summary)) = record("python", "python3", &["-c", script]) {
        replay_matches_exit_count(&trace, &summary);
        let _ = std::fs::remove_dir_all(trace.parent().unwrap());
    }
}
