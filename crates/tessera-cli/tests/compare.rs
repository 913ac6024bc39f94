//! `tessera compare` end to end, and the glibc child's walk: the main
//! arena's chunks, tcache lists with safe-linking undone, the bins. Runs
//! on glibc 2.26 to 2.41 (CI: Debian, glibc 2.36); on another glibc the
//! child must refuse with a message naming the version.

mod common;

use common::{scratch, tessera};
use tessera_compare::core::Trace;
use tessera_compare::glibc::{self, Layout};
use tessera_compare::model::Kind;

fn glibc_known() -> bool {
    let (a, b) = glibc::running_version().unwrap();
    Layout::of(a, b).is_some()
}

#[test]
fn layouts_are_known_for_2_26_to_2_41_only() {
    assert!(Layout::of(2, 25).is_none());
    assert!(Layout::of(2, 42).is_none());
    let l = Layout::of(2, 36).unwrap();
    assert_eq!((l.top(), l.bins(), l.tcache_chunk()), (96, 112, 0x290));
    assert!(l.safe_linking && l.key);
    let old = Layout::of(2, 26).unwrap();
    assert_eq!((old.top(), old.tcache_chunk()), (88, 0x250));
    assert!(!old.safe_linking);
    // Safe-linking: stored = next ^ (slot >> 12).
    assert_eq!(
        l.demangle(0x5555_5555_9000, 0x5555_5555_9a30 ^ 0x5_5555_5559),
        0x5555_5555_9a30
    );
}

#[test]
fn the_glibc_child_walks_tcache_and_bins() {
    if !glibc_known() {
        let o = tessera().arg("glibc-replay").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("not one this walker knows"),
            "{err}"
        );
        return;
    }
    // Three 48-byte chunks and a guard; a and b freed (tcache bin 1,
    // b first, its next pointing at a); then 8 frees of 1040-byte chunks
    // (the 8th goes past tcache's 7 into the unsorted bin).
    let mut text = String::from("tessera-trace 1\n");
    let mut seq = 0;
    let mut line = |s: String| {
        seq += 1;
        text.push_str(&format!("{seq} 1 {s}\n"));
    };
    for p in [0xa0, 0xb0, 0xc0] {
        line(format!("malloc 40 {p:#x}"));
    }
    for i in 0..9 {
        line(format!("malloc 1030 {:#x}", 0x1000 + 0x10 * i));
        line(format!("malloc 10 {:#x}", 0x2000 + 0x10 * i));
    }
    line("free 0xa0".into());
    line("free 0xb0".into());
    for i in 0..8 {
        line(format!("free {:#x}", 0x1000 + 0x10 * i));
    }
    // Eight 32-byte chunks freed: seven fill tcache bin 0, the eighth
    // goes to fastbin 0 (alone there: its fd, demangled, is null).
    for i in 0..8 {
        line(format!("malloc 24 {:#x}", 0x3000 + 0x10 * i));
    }
    for i in 0..8 {
        line(format!("free {:#x}", 0x3000 + 0x10 * i));
    }
    let t = Trace::parse(&text).unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_tessera"));
    let (header, steps) = glibc::run_child(exe, &t).unwrap();
    assert!(header.contains("version=2."), "{header}");
    assert_eq!(steps.len(), t.records.len() + 1);
    // Step 0: no heap yet (nothing in the child used glibc's malloc).
    assert!(
        steps[0].picture.chunks.is_empty(),
        "{:?}",
        steps[0].picture.chunks
    );
    // After the big frees (3 + 18 mallocs, 2 + 8 frees), before the
    // small chunks, which glibc carves from the unsorted chunk.
    let last = &steps[31].picture;
    let first = &last.chunks[0];
    assert_eq!(first.kind, Kind::TcacheStruct);
    assert_eq!(last.base, first.end());
    let blocks = &steps[3].blocks;
    let (a, b) = (blocks[&0xa0].0, blocks[&0xb0].0);
    assert_eq!(
        a - 16,
        last.base,
        "a is the first chunk after the tcache struct"
    );
    assert_eq!(b - a, 48);
    let chunk = |mem: usize| last.chunks.iter().find(|c| c.mem() == mem).unwrap();
    assert_eq!(chunk(a).kind, Kind::Tcache(1));
    assert_eq!(chunk(b).kind, Kind::Tcache(1));
    let next = |mem: usize| {
        chunk(mem)
            .links
            .iter()
            .find(|l| l.name == "next")
            .unwrap()
            .value
    };
    assert_eq!(next(b), a, "b's next, demangled, is a's user pointer");
    assert_eq!(next(a), 0, "a ends the list");
    // 1040-byte chunks: seven in tcache bin 63, the eighth in the unsorted bin.
    // (All 21 mallocs done at step 21, before the frees.)
    let big: Vec<Kind> = (0..8)
        .map(|i| chunk(steps[21].blocks[&(0x1000 + 0x10 * i)].0).kind)
        .collect();
    assert_eq!(
        big.iter().filter(|k| **k == Kind::Tcache(63)).count(),
        7,
        "{big:?}"
    );
    assert_eq!(
        big.iter().filter(|k| **k == Kind::Unsorted).count(),
        1,
        "{big:?}"
    );
    // The unsorted chunk's links point into main_arena.
    let uns = last
        .chunks
        .iter()
        .find(|c| c.kind == Kind::Unsorted)
        .unwrap();
    let (lo, hi, name) = last.state;
    assert_eq!(name, "main_arena");
    for l in uns
        .links
        .iter()
        .filter(|l| l.name == "fd" || l.name == "bk")
    {
        assert!(
            l.value >= lo && l.value < hi,
            "{} = {:#x} not in main_arena",
            l.name,
            l.value
        );
    }
    let top = last.chunks.iter().filter(|c| c.kind == Kind::Top).count();
    assert_eq!(top, 1);
    let last = &steps.last().unwrap().picture;
    let small: Vec<&tessera_compare::model::Chunk> =
        last.chunks.iter().filter(|c| c.size == 32).collect();
    assert_eq!(
        small.iter().filter(|c| c.kind == Kind::Tcache(0)).count(),
        7
    );
    let fast: Vec<_> = small
        .iter()
        .filter(|c| c.kind == Kind::Fastbin(0))
        .collect();
    assert_eq!(fast.len(), 1, "{small:?}");
    assert_eq!(fast[0].links[0].name, "fd");
    assert_eq!(
        fast[0].links[0].value, 0,
        "a lone fastbin chunk's fd demangles to null"
    );
}

#[test]
fn compare_replays_the_tour_into_three_heaps() {
    let dir = scratch("compare");
    let html = dir.join("c.html");
    let o = tessera()
        .args(["compare", "--color", "never", "--html"])
        .arg(&html)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for want in [
        "── Tessera ",
        "── dlmalloc 2.8.6 ",
        "step 24 of 24",
        "all heaps agree",
    ] {
        assert!(out.contains(want), "missing `{want}`");
    }
    if glibc_known() {
        assert!(out.contains("── glibc "), "no glibc panel");
        assert!(
            out.contains("tcache bin 1 (48 B)"),
            "free(b) goes to tcache in glibc"
        );
        assert!(
            out.contains("merged here (336 B); glibc keeps these bytes as"),
            "the coalescing difference"
        );
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("\"heaps\":[") && !page.contains("/*DATA*/"));
    // A trace file, one step, and a step out of range.
    let trace = dir.join("t.trace");
    std::fs::write(&trace, tessera_viz::tour::TRACE).unwrap();
    let o = tessera()
        .arg("compare")
        .arg(&trace)
        .args(["--step", "12", "--no-html", "--color", "never"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(out.contains("━━ step 12 of 24 ━━ free(0xb0)"), "{out}");
    assert!(out.contains("small bin 6"), "{out}");
    let o = tessera()
        .arg("compare")
        .arg(&trace)
        .args(["--step", "99", "--no-html"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("there is no step 99"));
}

#[test]
fn the_tour_ends_with_the_three_allocators() {
    let o = tessera()
        .args(["tour", "--no-html", "--color", "never"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let ch = &out[out
        .find("Last chapter: the same five calls")
        .expect("the chapter")..];
    assert!(ch.contains("━━ step 5 of 5 ━━ free(y)"), "{ch}");
    assert!(
        ch.contains("small bin 28"),
        "Tessera and dlmalloc merge x and y"
    );
    if glibc_known() {
        assert!(
            ch.contains("tcache bin 5 (112 B)"),
            "glibc keeps x and y in tcache"
        );
        assert!(ch.contains(
            "merged here (224 B); glibc keeps these bytes as 112 B in tcache + 112 B in tcache"
        ));
    }
}
