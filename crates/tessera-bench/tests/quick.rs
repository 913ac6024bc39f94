//! The binary runs end to end on a tiny subset and writes a JSON file and an
//! SVG chart that parse. This checks that the suite works, never how fast
//! anything is.

use std::path::PathBuf;
use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera-bench"))
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tessera-bench-tests");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn quick_run_writes_json_and_svg() {
    let json = tmp("quick.json");
    let svg = tmp("quick.svg");
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&svg);
    let out = bench()
        .args([
            "--quick",
            "--reps",
            "1",
            "--threads",
            "1,2",
            "--no-progress",
        ])
        .args([
            "--only",
            "xmalloc,realloc",
            "--allocators",
            "tessera,mimalloc",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Time: median"), "{stdout}");
    assert!(stdout.contains("Peak memory"), "{stdout}");

    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap())
        .expect("results.json parses");
    assert_eq!(v["schema"], "tessera-bench/1");
    let results = v["results"].as_array().unwrap();
    // xmalloc at 1 and 2 threads, realloc at 1: 3 cases x 3 allocators
    // (glibc is always added as the reference).
    assert_eq!(results.len(), 9);
    for r in results {
        assert!(r["median_s"].as_f64().unwrap() > 0.0);
        assert!(r["peak_bytes"].is_u64(), "{r}");
        if r["allocator"] == "glibc" {
            assert_eq!(r["time_ratio"].as_f64(), Some(1.0));
        }
    }
    assert!(v["geomean"]["time_ratio"]["tessera"].is_number());
    assert!(v["problems"].as_array().unwrap().is_empty());

    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("ratios.svg is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let bars = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.children().any(|c| c.has_tag_name("title")))
        .count();
    // 2 allocators x (3 cases + geomean) x (time + memory panels).
    assert_eq!(bars, 16);
}

#[test]
fn dumped_trace_replays_as_a_recorded_trace() {
    let trace = tmp("builtin.trace");
    let out = bench()
        .args(["--scale", "0.005", "--dump-trace"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success());
    let json = tmp("trace.json");
    let out = bench()
        .args(["--quick", "--reps", "1", "--no-memory", "--no-progress"])
        .args(["--only", "trace:builtin", "--allocators", "dlmalloc"])
        .arg("--trace")
        .arg(&trace)
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(tmp("trace.svg"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("trace:builtin"), "{stdout}");
}

#[test]
fn bad_options_are_refused() {
    let out = bench()
        .args(["--only", "no-such-workload"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload"));
    let out = bench().arg("--list").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("larson"));
}
