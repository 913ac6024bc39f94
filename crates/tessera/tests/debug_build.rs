//! The core crate's tests once more in a build with debug assertions and
//! overflow checks, from the README's one test command.
//!
//! CI runs `cargo test --workspace --release` only, and a release build
//! compiles out every `debug_assert!` and every arithmetic overflow check
//! of the allocator. So, when this test runs in a release build, it runs
//! `cargo test -p tessera` in the dev profile (debug assertions and
//! overflow checks on) with its own target directory
//! (`target/debug-checks`, so that it never waits for the outer build's
//! lock), at `opt-level = 1` (the checks stay on; the exhaustive
//! size-class loops run about five times faster than at `opt-level = 0`),
//! on the unit tests and the integration tests of the core, with the long
//! runs scaled down. In a debug build the whole suite already runs with
//! the checks, so the test is ignored there.
//!
//! Cost: 137 s from an empty `target/debug-checks` (building the core and
//! its test dependencies, then the tests), about 70 s when only the core
//! changed (6 Dec 2026, on the shared 2-core development machine at load
//! average 5-7).

use std::path::PathBuf;
use std::process::Command;

/// The integration tests of `crates/tessera/tests` run in the debug build:
/// all but the memory measurements (`memory_return`, `thread_churn`: their
/// numbers mean something only in the build they were measured in) and
/// this file.
const TESTS: [&str; 9] = [
    "model",
    "fuzz_driver",
    "faults",
    "smoke",
    "misuse",
    "quick",
    "global",
    "oom",
    "concurrency",
];

/// `target/`: this test binary lives in `target/<profile>/deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("the test binary sits in target/<profile>/deps")
        .to_path_buf()
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "this build already has debug assertions and overflow checks"
)]
fn core_tests_pass_with_debug_assertions_and_overflow_checks() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["test", "--no-fail-fast", "-p", "tessera", "--lib"])
        .args(TESTS.iter().flat_map(|t| ["--test", t]))
        .args(["--config", "profile.dev.opt-level=1"])
        .arg("--target-dir")
        .arg(target_dir().join("debug-checks"))
        // The long runs, scaled down for the slower build.
        .env("TESSERA_PROPTEST_CASES", "300")
        .env("TESSERA_LONG_OPS", "50000")
        .env("TESSERA_FUZZ_CASES", "50")
        // No incremental state to keep (CI starts fresh) or to corrupt (a
        // build interrupted here once left objects that no longer linked).
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("CARGO_TARGET_DIR");
    let out = cmd.output().expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // What failed: each panic with its message, and the FAILED lines.
        let lines: Vec<&str> = stdout.lines().collect();
        let mut failures = String::new();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("panicked at") {
                failures.push_str(&lines[i..lines.len().min(i + 3)].join("\n"));
                failures.push('\n');
            } else if l.contains("FAILED") {
                failures.push_str(l);
                failures.push('\n');
            }
        }
        panic!(
            "the core's tests fail with debug assertions and overflow checks ({}):\n\
             {failures}\n--- stderr (tail)\n{}",
            out.status,
            &stderr[stderr.len().saturating_sub(4000)..]
        );
    }
    // One result line per test binary (the unit tests and each file), and
    // every binary ran tests: a run that built nothing or ran nothing is
    // no proof.
    let passed: Vec<usize> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(passed.len(), TESTS.len() + 1, "{stdout}");
    assert!(passed.iter().all(|&n| n > 0), "{passed:?}\n{stdout}");
    let total: usize = passed.iter().sum();
    println!("{total} tests passed with debug assertions and overflow checks");
    assert!(total >= 100, "{total} tests ran");
}
