//! The `tessera` command end to end: help, tour, replay, art, and errors
//! that name the file and the line.

mod common;

use common::{scratch, tessera};
use std::path::Path;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for sub in [&[][..], &["tour"], &["replay"], &["run"], &["art"]] {
        let o = tessera().args(sub).arg("--help").output().unwrap();
        assert!(o.status.success(), "{sub:?}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("Usage: tessera"), "{sub:?}:\n{out}");
    }
    let o = tessera().arg("--help").output().unwrap();
    for sub in ["tour", "replay", "run", "art"] {
        assert!(stdout(&o).contains(sub));
    }
}

#[test]
fn tour_tells_the_story_and_writes_the_html_page() {
    let dir = scratch("tour");
    let o = tessera().arg("tour").current_dir(&dir).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "step 1 of 23",
        "Split from top",
        "small bin 6",
        "Small-bin reuse",
        "Coalescing with both neighbours",
        "child[1]",
        "The dv at work",
        "memalign",
        "direct (mmapped)",
        "MMAPPED",
        "fencepost",
        "right: bytes this step changed",
        "Wrote tessera-tour.html",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    assert!(!out.contains('\x1b'), "no colour when stdout is a pipe");
    let html = std::fs::read_to_string(dir.join("tessera-tour.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Coalescing with both neighbours"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tour_colour_and_single_steps() {
    let o = tessera()
        .args(["--color", "always", "tour", "--no-html", "--step", "16"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(
        out.contains("\x1b[38;5;"),
        "ANSI colours with --color always"
    );
    assert!(out.contains("free(y)") && !out.contains("free(t)"));
    let o = tessera()
        .args(["tour", "--no-html", "--step", "99"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no step 99"));
    let o = tessera()
        .args(["tour", "--no-html", "--step", "2", "--full"])
        .output()
        .unwrap();
    let rows = stdout(&o)
        .lines()
        .filter(|l| l.contains("│") || l.contains("├"))
        .count();
    assert!(rows >= 128, "--full draws whole pages");
}

fn tour_trace(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("tour.trace");
    std::fs::write(&p, tessera_viz::tour::TRACE).unwrap();
    p
}

#[test]
fn replay_draws_a_page_at_a_step_and_answers_which_chunk() {
    let dir = scratch("replay");
    let t = tour_trace(&dir);
    let o = tessera()
        .arg("replay")
        .arg(&t)
        .args(["--step", "16"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("step 16 of 24"), "{out}");
    assert!(out.contains("free("), "{out}");
    assert!(out.contains("tree bin 0 (256..383)"), "{out}");
    assert!(out.contains("128 rows × 32"), "{out}");
    assert!(out.contains("bins of the replay heap"), "{out}");
    // Which chunk holds an address: `a` (recorded as 0xa0) is live at step
    // 16; a byte inside it is asked about through its replay address, which
    // the first answer gives.
    let o = tessera()
        .arg("replay")
        .arg(&t)
        .args(["--step", "16", "--at", "0xa0"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(
        out.contains("0xa0 is a block the trace recorded; in this replay it is at 0x"),
        "{out}"
    );
    assert!(out.contains("(48 B, in use, head "), "{out}");
    assert!(out.contains("byte 16 of it · field: payload"), "{out}");
    // HTML.
    let html = dir.join("r.html");
    let o = tessera()
        .arg("replay")
        .arg(&t)
        .args(["--step", "5", "--window", "10", "--html"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("\"start\":5"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_trace_names_the_file_and_the_line() {
    let dir = scratch("badtrace");
    let bad = dir.join("bad.trace");
    std::fs::write(
        &bad,
        "tessera-trace 1\n1 1 malloc 10 0x10\n2 1 malloc ten 0x20\n",
    )
    .unwrap();
    let o = tessera().arg("replay").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    assert!(err.contains("`ten` is not a number"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&bad, "not a trace\n").unwrap();
    let err = stderr(&tessera().arg("replay").arg(&bad).output().unwrap());
    assert!(
        err.contains(":1:") && err.contains("expected `tessera-trace 1`"),
        "{err}"
    );

    let missing = dir.join("nope.trace");
    let o = tessera().arg("replay").arg(&missing).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nope.trace: cannot read"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn freeing_an_unknown_pointer_is_reported_not_a_crash() {
    let dir = scratch("unknown");
    let t = dir.join("u.trace");
    std::fs::write(
        &t,
        "tessera-trace 1\n1 1 malloc 10 0x10\n2 1 free 0x10\n3 1 free 0x10\n4 1 free 0x1234\n",
    )
    .unwrap();
    let o = tessera().arg("replay").arg(&t).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:4:", t.display())), "{err}");
    assert!(err.contains("free of unknown pointer 0x10"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Up to the step before, it replays fine.
    let o = tessera()
        .arg("replay")
        .arg(&t)
        .args(["--step", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tessera()
        .arg("replay")
        .arg(&t)
        .args(["--step", "9"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("there is no step 9"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_snapshot(dir: &Path) -> (std::path::PathBuf, usize) {
    let mut h = tessera::Heap::new();
    let a = h.malloc(100);
    let _g = h.malloc(10);
    let b = h.malloc(500);
    let _g2 = h.malloc(10);
    // SAFETY: live pointers, freed once.
    unsafe {
        h.free(a);
        h.free(b);
    }
    let snap = tessera::Snapshot::capture(&h, 4);
    let p = dir.join("heap.snapshot");
    // Two arenas' worth, as the C library writes them.
    std::fs::write(&p, format!("{}{}", snap.to_text(), snap.to_text())).unwrap();
    (p, b as usize)
}

#[test]
fn art_draws_a_snapshot_and_finds_chunks() {
    let dir = scratch("art");
    let (snap, b) = write_snapshot(&dir);
    let o = tessera().arg("art").arg(&snap).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("arena 0 of 2"), "{out}");
    assert!(out.contains("small bin 14"), "{out}");
    assert!(out.contains("tree bin 2 (512..767)"), "{out}");
    assert!(
        out.contains("segment record") && out.contains("heap state"),
        "{out}"
    );
    let o = tessera()
        .arg("art")
        .arg(&snap)
        .args(["--at", &format!("{:#x}", b + 8)])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "{:#x} is in the chunk at {:#x} (512 B, tree bin 2",
            b + 8,
            b - 16
        )),
        "{out}"
    );
    assert!(out.contains("field: bk"), "{out}");
    let html = dir.join("a.html");
    let o = tessera()
        .arg("art")
        .arg(&snap)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("arena 1 of 2"));
    let o = tessera()
        .arg("art")
        .arg(&snap)
        .args(["--arena", "5"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("there is no arena 5 (the file has 2)"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_snapshot_names_the_file_and_the_line() {
    let dir = scratch("badsnap");
    let (snap, _) = write_snapshot(&dir);
    let text = std::fs::read_to_string(&snap).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.iter().position(|l| l.starts_with("chunk ")).unwrap();
    let mut broken: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    broken[n] = "chunk 0x1000 big 0x11 inuse".into();
    std::fs::write(&snap, broken.join("\n") + "\n").unwrap();
    let o = tessera().arg("art").arg(&snap).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:{}:", snap.display(), n + 1)),
        "{err}"
    );
    assert!(err.contains("`big` is not a number"), "{err}");
    // Cut short.
    std::fs::write(&snap, &text[..text.len() / 3]).unwrap();
    let err = stderr(&tessera().arg("art").arg(&snap).output().unwrap());
    assert!(
        err.contains("heap.snapshot:") && !err.contains("panicked"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_without_a_library_says_how_to_get_one() {
    let o = tessera()
        .args(["run", "--lib", "/nonexistent/libtessera.so", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such library"), "{}", stderr(&o));
    let o = tessera().arg("run").output().unwrap();
    assert!(!o.status.success());
}
