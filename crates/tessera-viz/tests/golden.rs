//! Golden tests of the plain grid: small hand-written traces (in
//! `tests/golden/*.trace`) replayed to their last step, the page that step
//! changed drawn in full, compared with `tests/golden/*.txt`.
//!
//! Addresses differ from run to run (mmap) and in-use heads carry a keyed
//! tag, so the text is normalised first: addresses in the heap's first
//! segment become `0x7f00........` (same offset from a fixed base), those in
//! a direct mapping `0x7e00........`, and tag bits `tttt`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p tessera-viz --test golden` rewrites the
//! expected files; read the diff before committing it (tests/golden/README.md
//! says what was checked by hand).

use std::path::{Path, PathBuf};
use tessera::inspect::trace::Trace;
use tessera::Snapshot;
use tessera_viz::page::{PageView, COLS, ROWS};
use tessera_viz::text::{self, GridOptions, Style};
use tessera_viz::{Bins, Histogram, Session};

const SEGMENT: usize = 64 << 20;

/// Rewrites run-dependent hex numbers (see the module docs).
pub fn normalise(text: &str, snap: &Snapshot) -> String {
    let seg = snap.segments.first().map_or(0, |s| s.base);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let digits: String = rest[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        rest = &rest[at + 2 + digits.len()..];
        let Ok(v) = usize::from_str_radix(&digits, 16) else {
            out.push_str("0x");
            out.push_str(&digits);
            continue;
        };
        let tag_word = out.ends_with("tag ");
        let directs = snap.directs.iter().map(|d| (d.header, d.map_size));
        if tag_word {
            out.push_str("0xtttt");
        } else if v >> 48 != 0 {
            out.push_str(&format!("0xtttt{:012x}", v & ((1 << 48) - 1)));
        } else if let Some(r) = rebased(v, seg, directs) {
            out.push_str(&format!("{r:#x}"));
        } else {
            out.push_str("0x");
            out.push_str(&digits);
        }
    }
    out.push_str(rest);
    out
}

/// Where the address `v` would be if the heap's first segment (at `seg`)
/// lay at 0x7f00_0000_0000 and each direct mapping (header, length) at
/// 0x7e00_0000_0000; `None` if it lies in neither.
fn rebased(
    v: usize,
    seg: usize,
    directs: impl IntoIterator<Item = (usize, usize)>,
) -> Option<usize> {
    if v >= seg && v < seg + SEGMENT {
        return Some(0x7f00_0000_0000 + (v - seg));
    }
    let (h, _) = directs.into_iter().find(|&(h, n)| v >= h && v < h + n)?;
    Some(0x7e00_0000_0000 + (v - h))
}

/// Rewrites every captured 8-byte word as `normalise` rewrites the text,
/// in place: addresses [`rebased`], and every tag (bits 48..63) as 0x7777.
fn rebase_words(snap: &mut Snapshot, seg: usize) {
    let directs: Vec<(usize, usize)> = snap
        .directs
        .iter()
        .map(|d| (d.header, d.map_size))
        .collect();
    for page in snap.pages.values_mut() {
        for word in page.chunks_exact_mut(8) {
            let mut v = usize::from_le_bytes(word.try_into().unwrap());
            if v >> 48 != 0 {
                v = v & ((1 << 48) - 1) | 0x7777 << 48;
            } else if let Some(r) = rebased(v, seg, directs.iter().copied()) {
                v = r;
            }
            word.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Replays `trace` and draws the page its last step changed, with the
/// bytes that step changed, the bins and the histogram.
pub fn draw_last_step(trace: Trace) -> (String, Snapshot) {
    let n = trace.records.len();
    let mut s = Session::new(trace, false);
    s.fast_forward(n - 1).unwrap();
    s.set_tracking(true);
    let mut before = s.snapshot().clone();
    let before_req = s.requests().clone();
    let info = s.step().unwrap().unwrap();
    let page = info.focus.expect("the step changed a page");
    let snap = s.snapshot().clone();
    let view = PageView::new(&snap, page, Some(s.requests()));
    // "Bytes this step changed" compares raw bytes, which hold addresses
    // and tags: compare copies rewritten as `normalise` rewrites the text,
    // so that the marks do not depend on where the kernel put the segment.
    let seg = snap.segments.first().map_or(0, |s| s.base);
    let mut after = snap.clone();
    rebase_words(&mut before, seg);
    rebase_words(&mut after, seg);
    let new = PageView::new(&after, page, Some(s.requests()));
    let old = PageView::new(&before, page, Some(&before_req));
    let opts = GridOptions {
        changes: Some(new.changes(&old)),
        ..GridOptions::default()
    };
    let mut out = text::page(&view, &opts, Style::Plain);
    out.push('\n');
    out.push_str(&Bins::of(&snap).text("the replay heap", &|a| view.name_ptr(a)));
    out.push_str(&Histogram::free_chunks(&snap).text("free-chunk sizes:", 20));
    (out, snap)
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check(name: &str) {
    let dir = golden_dir();
    let trace_text = std::fs::read_to_string(dir.join(format!("{name}.trace"))).unwrap();
    let (out, snap) = draw_last_step(Trace::parse(&trace_text).unwrap());
    let got = normalise(&out, &snap);
    let path = dir.join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{name}: the grid differs from {} at line {}:\n got: {:?}\nwant: {:?}\n(UPDATE_GOLDEN=1 rewrites it)\n\n{got}",
            path.display(),
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
    assert_grid_shape(&got);
}

/// Every drawn page has 128 rows labelled 0, 32, ..., 4064, each with 32
/// cells between its frame characters.
pub fn assert_grid_shape(text: &str) {
    let rows: Vec<(usize, String)> = text
        .lines()
        .filter_map(|l| {
            let (label, rest) = l.split_at_checked(5)?;
            let n: usize = label.trim().parse().ok()?;
            let rest = rest.strip_prefix(' ')?;
            let first = rest.chars().next()?;
            if first != '│' && first != '├' {
                return None;
            }
            Some((n, rest.to_owned()))
        })
        .collect();
    assert_eq!(rows.len(), ROWS, "rows drawn");
    for (i, (label, body)) in rows.iter().enumerate() {
        assert_eq!(*label, i * COLS, "row {i} label");
        let chars: Vec<char> = body.chars().collect();
        // frame, 16 cells, middle column, 16 cells, frame
        assert!(chars.len() >= 35, "row {i} is short: {body}");
        assert!(matches!(chars[17], ' ' | '│'), "row {i} middle: {body}");
        assert_eq!(chars[34], '│', "row {i} right frame: {body}");
    }
}

#[test]
fn split_from_top_with_payload_and_slack() {
    check("split");
}

#[test]
fn small_bin_tree_bins_and_dv() {
    check("bins");
}

#[test]
fn direct_chunk_first_page() {
    check("direct");
}

#[test]
fn memalign_slack_given_back() {
    check("memalign");
}

#[test]
fn the_normaliser_rewrites_addresses_and_tags_only() {
    let mut h = tessera::Heap::new();
    let _a = h.malloc(10);
    let snap = Snapshot::capture(&h, 1);
    let base = snap.segments[0].base;
    let text = format!(
        "at {:#x} head 0x7a3b000000000033 | tag 0x7a3b size 0x30",
        base + 0x320
    );
    assert_eq!(
        normalise(&text, &snap),
        "at 0x7f0000000320 head 0xtttt000000000033 | tag 0xtttt size 0x30"
    );
}

#[test]
fn every_page_of_random_heaps_draws_as_128_rows_of_32_cells() {
    // A deterministic mix of calls; every captured page is drawn.
    let mut text = String::from("tessera-trace 1\n");
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut live: Vec<usize> = Vec::new();
    for seq in 1..400u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if live.len() > 5 && x % 3 == 0 {
            let p = live.swap_remove((x as usize / 3) % live.len());
            text.push_str(&format!("{seq} 1 free {p:#x}\n"));
        } else {
            let size = [8usize, 24, 100, 300, 1000, 5000, 70000][(x >> 8) as usize % 7];
            let p = 0x1000 * seq as usize;
            text.push_str(&format!("{seq} 1 malloc {size} {p:#x}\n"));
            live.push(p);
        }
    }
    let n = Trace::parse(&text).unwrap().records.len();
    let mut s = Session::new(Trace::parse(&text).unwrap(), false);
    s.fast_forward(n).unwrap();
    s.set_tracking(true);
    let snap = s.snapshot();
    assert!(snap.pages.len() > 4);
    for &p in snap.pages.keys() {
        let view = PageView::new(snap, p, Some(s.requests()));
        assert_grid_shape(&text::page(&view, &GridOptions::default(), Style::Plain));
        // The ANSI renderer draws the same cells.
        let ansi = text::grid(&view, &GridOptions::default(), Style::Ansi);
        let stripped = strip_ansi(&ansi);
        assert_eq!(
            stripped,
            text::grid(&view, &GridOptions::default(), Style::Plain)
        );
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
