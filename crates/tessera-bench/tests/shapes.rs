//! `tessera-bench shapes` and `tessera-bench service` at a tiny scale,
//! end to end: every shape and real program runs as its own process under
//! `LD_PRELOAD=libtessera.so`, under glibc, and under each of mimalloc,
//! jemalloc and tcmalloc that is installed, and every run's checksum (the
//! data each workload wrote and checked before freeing) must agree. This
//! checks that the measurement works, never how fast anything is.
//!
//! `libtessera.so` is built by the binary itself (`cargo build -p
//! tessera-capi --lib`, a no-op when fresh). The baselines' shared
//! libraries are optional here: a missing one is skipped loudly, except
//! under CI (`CI=true` or `CI=1`), where `.ci/run` installs them and a
//! missing one fails the test.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

fn bench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera-bench"));
    c.env_remove("LD_PRELOAD").env_remove("TESSERA_LIB");
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tessera-bench-shapes-tests");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn strict() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Says it on fd 2 itself, past the test harness's capture.
fn loud(msg: &str) {
    let banner = format!("\n**********\n*** SKIPPED: {msg}\n**********\n");
    let _ = std::io::stderr().write_all(banner.as_bytes());
}

/// The baselines whose libraries are installed (all of them under CI).
fn baselines() -> Vec<&'static str> {
    let mut v = Vec::new();
    for (name, file, package) in [
        ("mimalloc", "libmimalloc.so.2", "libmimalloc2.0"),
        ("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
        (
            "tcmalloc",
            "libtcmalloc_minimal.so.4",
            "libtcmalloc-minimal4",
        ),
    ] {
        if tessera_bench::preload::find_lib(file).is_some() {
            v.push(name);
            continue;
        }
        let msg = format!(
            "{name} ({file}) is not installed: apt-get install -y {package}; \
             the shapes are checked without it"
        );
        if strict() {
            panic!("{msg}");
        }
        loud(&msg);
    }
    v
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn svg_elements(path: &PathBuf, tag: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants().filter(|n| n.has_tag_name(tag)).count()
}

/// Runs `tessera-bench COMMAND ARGS --allocators DOORS` with its JSON and
/// SVG in the temporary directory; returns its stdout, the JSON (whose
/// schema is `tessera-bench-COMMAND/1` and which lists no problems) and
/// the SVG's path.
fn run_door_command(
    command: &str,
    args: &[&str],
    doors: &[&str],
) -> (String, serde_json::Value, PathBuf) {
    let json = tmp(&format!("{command}.json"));
    let svg = tmp(&format!("{command}.svg"));
    let stdout = run_ok(
        bench()
            .arg(command)
            .args(args)
            .arg("--no-progress")
            .arg("--allocators")
            .arg(doors.join(","))
            .arg("--json")
            .arg(&json)
            .arg("--svg")
            .arg(&svg),
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], format!("tessera-bench-{command}/1"));
    assert!(
        v["problems"].as_array().unwrap().is_empty(),
        "{}",
        v["problems"]
    );
    (stdout, v, svg)
}

#[test]
fn every_shape_agrees_under_every_preload() {
    let mut doors = vec!["tessera"];
    doors.extend(baselines());
    let (stdout, v, svg) = run_door_command("shapes", &["--scale", "0.01", "--reps", "1"], &doors);
    assert!(stdout.contains("Targets"), "{stdout}");
    let results = v["results"].as_array().unwrap();
    let shapes: Vec<&str> = v["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for must in [
        "sh6",
        "sh8",
        "larson",
        "xmalloc",
        "cache-scratch",
        "large",
        "tight",
    ] {
        assert!(shapes.contains(&must), "{shapes:?}");
    }
    if strict() {
        assert!(
            shapes.contains(&"python") && shapes.contains(&"gcc"),
            "{shapes:?}"
        );
    }
    for shape in &shapes {
        let cells: Vec<&serde_json::Value> =
            results.iter().filter(|r| r["shape"] == *shape).collect();
        // glibc is always added as the reference.
        assert_eq!(cells.len(), doors.len() + 1, "{shape}");
        let glibc = cells.iter().find(|c| c["allocator"] == "glibc").unwrap();
        for c in &cells {
            assert_eq!(
                c["runs"].as_array().unwrap().len(),
                1,
                "{shape} {}",
                c["allocator"]
            );
            assert!(c["checksum"].is_string(), "{shape} {}", c["allocator"]);
            assert_eq!(
                c["checksum"], glibc["checksum"],
                "{shape} {}",
                c["allocator"]
            );
            assert!(c["median_peak_bytes"].as_u64().unwrap() > 1 << 20);
        }
    }
    // One bar per non-glibc allocator per shape and for the geomean, in
    // two panels.
    let bars = svg_elements(&svg, "title");
    assert_eq!(bars, 2 * doors.len() * (shapes.len() + 1));
}

#[test]
fn service_runs_and_agrees() {
    let mut doors = vec!["tessera"];
    let found = baselines();
    doors.extend(&found);
    if found.contains(&"jemalloc") {
        doors.push("jemalloc-bg");
    }
    let (stdout, v, svg) = run_door_command(
        "service",
        &["--scale", "0.05", "--reps", "1", "--idle", "0.1"],
        &doors,
    );
    assert!(stdout.contains("RSS / live"), "{stdout}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), doors.len() + 1);
    let first = &results[0]["runs"][0];
    for r in results {
        let run = &r["runs"][0];
        assert_eq!(run["checksum"], first["checksum"], "{}", r["allocator"]);
        assert_eq!(run["bursts"].as_array().unwrap().len(), 16);
        assert!(run["between"].as_f64().unwrap() > 0.0);
        assert!(run["idle"].as_f64().unwrap() > 0.0);
        // The live bytes are the workload's, not the allocator's.
        assert_eq!(run["idle_reading"]["live"], first["idle_reading"]["live"]);
    }
    // One line per allocator plus the live bytes.
    assert_eq!(svg_elements(&svg, "polyline"), doors.len() + 2);
}

/// A library the loader cannot preload must not pass for a result: the
/// loader only warns and runs the program on glibc.
#[test]
fn a_failed_preload_is_a_problem() {
    let fake = tmp("not-a-library.so");
    std::fs::write(&fake, b"this is not an ELF file").unwrap();
    let out = bench()
        .args([
            "shapes", "--only", "tight", "--scale", "0.001", "--reps", "1",
        ])
        .args(["--no-progress", "--allocators"])
        .arg(format!("fake={}", fake.display()))
        .arg("--json")
        .arg(tmp("fake.json"))
        .arg("--svg")
        .arg(tmp("fake.svg"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("Problems:"), "{stdout}");
    assert!(stdout.contains("fake"), "{stdout}");
}

/// A second build given as `NAME=PATH` is compared with Tessera in the
/// table and the JSON (here the same library under another name).
#[test]
fn a_second_build_is_compared() {
    let lib = PathBuf::from(env!("CARGO_BIN_EXE_tessera-bench"))
        .parent()
        .unwrap()
        .join("libtessera.so");
    let json = tmp("compare.json");
    let stdout = run_ok(
        bench()
            .args([
                "shapes",
                "--only",
                "sh6,tight",
                "--scale",
                "0.005",
                "--reps",
                "1",
            ])
            .args(["--no-progress", "--allocators"])
            // `tessera` first: resolving it builds the library the second
            // name points at.
            .arg(format!("tessera,again={}", lib.display()))
            .arg("--json")
            .arg(&json)
            .arg("--svg")
            .arg(tmp("compare.svg")),
    );
    assert!(
        stdout.contains("Tessera vs again: time geomean"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let c = &v["comparisons"][0];
    assert_eq!(c["other"], "again");
    for k in ["time_ratio", "cpu_ratio", "peak_ratio"] {
        assert!(c[k].as_f64().unwrap() > 0.0, "{k}: {c}");
    }
    assert!(["sh6", "tight"].contains(&c["worst_peak"]["shape"].as_str().unwrap()));
}
