//! The grids in docs/structures.md, docs/visualiser.md and the README are
//! drawn by Tessera itself. Each `<!-- grid: NAME -->` ... `<!-- /grid -->`
//! block is produced by the snippet of that name below, from the tour's
//! replay, and must equal what the current code draws: only the addresses
//! (where the kernel put the heap) and the head tags (keyed by a per-process
//! secret) may differ from run to run, and the comparison rewrites both
//! (see `normalise`).
//!
//! Regenerate them (and docs/img/explorer.png and docs/img/compare.png,
//! when chromium is installed):
//! `cargo test -p tessera-cli --test docs -- --ignored`

mod common;

use common::{run_with_timeout, scratch, tessera, workspace};
use std::time::Duration;
use tessera::inspect::ChunkKind;
use tessera::Snapshot;
use tessera_viz::film::Film;
use tessera_viz::page::{page_of, PageView, COLS};
use tessera_viz::text::{self, GridOptions, Style};
use tessera_viz::tour;

/// Each document with generated grids and the snippets it uses, in order.
const DOCS: [(&str, &[&str]); 3] = [
    (
        "docs/structures.md",
        &[
            "segment-record",
            "top",
            "in-use",
            "small-bin",
            "coalesced",
            "tree-bin",
            "dv",
            "memalign",
            "direct",
        ],
    ),
    ("docs/visualiser.md", &["reading"]),
    ("README.md", &["tour-step-16"]),
];

fn step(f: &Film, title: &str) -> usize {
    f.frames
        .iter()
        .position(|fr| fr.title.starts_with(title))
        .unwrap_or_else(|| panic!("no tour step {title}"))
}

fn snap(f: &Film, k: usize) -> &Snapshot {
    f.frames[k].snapshot.as_ref().unwrap()
}

/// Rows `lo..=hi` of the page holding `addr` at frame `k`, annotated, and
/// the chunk-list lines of the chunks that start in them.
fn excerpt(f: &Film, k: usize, addr: usize, lo: usize, hi: usize) -> String {
    let s = snap(f, k);
    let page = page_of(addr);
    // The film's views carry the requests the replay knew (slack).
    let view = match f.page_at(k, page) {
        Some(v) => (**v).clone(),
        None => PageView::new(s, page, None),
    };
    let opts = GridOptions {
        rows: (lo..=hi).collect(),
        ..GridOptions::default()
    };
    let mut out = format!("{}\n", text::title(&view, &opts));
    out.push_str(&text::grid(&view, &opts, Style::Plain));
    let list = text::chunk_list(&view);
    let mut lines = list.lines();
    let header = [lines.next().unwrap_or(""), lines.next().unwrap_or("")];
    let mut kept = Vec::new();
    let mut keep = false;
    for l in lines {
        let cell: Option<isize> = l.split_whitespace().next().and_then(|w| w.parse().ok());
        if let Some(c) = cell {
            keep = c >= (lo * COLS) as isize && c < ((hi + 1) * COLS) as isize;
        }
        if keep {
            kept.push(l);
        }
    }
    if !kept.is_empty() {
        out.push_str(&header.join("\n"));
        out.push('\n');
        for l in kept {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn row_of(addr: usize) -> usize {
    (addr % 4096) / COLS
}

fn snippet(f: &Film, name: &str) -> String {
    match name {
        "segment-record" => {
            let s = snap(f, 0);
            let base = s.segments[0].base;
            let first = s.segments[0].first_chunk;
            let mut v = excerpt(f, 0, base, 0, 3);
            v.push_str("        ⋮\n");
            v.push_str(&excerpt(f, 0, base, row_of(first) - 1, row_of(first) + 1));
            v
        }
        "top" => {
            let k = step(f, "a = malloc");
            let top = snap(f, k).heap.top;
            excerpt(f, k, top, row_of(top) - 2, row_of(top) + 1)
        }
        "in-use" => {
            let k = step(f, "x = malloc");
            let x = f.frames[k].info.as_ref().unwrap().applied.new - 16;
            excerpt(f, k, x, row_of(x), row_of(x + 112) + 1)
        }
        "small-bin" => {
            let k = step(f, "free(z)");
            let z = f.frames[k].info.as_ref().unwrap().applied.old - 16;
            let x = z - 224;
            excerpt(f, k, x, row_of(x), row_of(z) + 1)
        }
        "coalesced" => {
            let k = step(f, "free(y)");
            let x = f.frames[k].info.as_ref().unwrap().applied.old - 16 - 112;
            excerpt(f, k, x, row_of(x), row_of(x + 336) + 1)
        }
        "tree-bin" => {
            let k = step(f, "free(t)");
            let t = f.frames[k].info.as_ref().unwrap().applied.old - 16;
            let root = snap(f, k)
                .chunks
                .iter()
                .find(|c| c.kind == ChunkKind::TreeBin(0) && c.addr != t)
                .unwrap()
                .addr;
            let mut v = excerpt(f, k, root, row_of(root), row_of(root) + 2);
            v.push_str("        ⋮\n");
            v.push_str(&excerpt(f, k, t, row_of(t), row_of(t) + 2));
            v
        }
        "dv" => {
            let k = step(f, "f = malloc");
            let s = snap(f, k);
            let dv = s.heap.dv;
            excerpt(f, k, dv, row_of(dv) - 3, row_of(dv + s.heap.dvsize))
        }
        "memalign" => {
            let k = step(f, "al = memalign");
            let al = f.frames[k].info.as_ref().unwrap().applied.new - 16;
            let s = snap(f, k);
            let i = s.chunks.iter().position(|c| c.addr == al).unwrap();
            let (b, a) = (s.chunks[i - 1], s.chunks[i + 1]);
            excerpt(f, k, al, row_of(b.addr), row_of(a.addr + a.size))
        }
        "direct" => {
            let k = step(f, "big = malloc");
            let s = snap(f, k);
            let d = s.directs[0];
            let last = d.header + d.map_size - 4096;
            let mut v = excerpt(f, k, d.header, 0, 2);
            v.push_str("        ⋮\n");
            v.push_str(&excerpt(f, k, last, 126, 127));
            v
        }
        // The tour's coalescing step, as `tessera tour` prints it.
        "tour-step-16" => {
            let k = step(f, "free(y)");
            assert_eq!(f.frames[k].step, 16);
            text::frame(f, k, Style::Plain, false, 2)
        }
        // The same step's page, without the step's title and explanation.
        "reading" => {
            let k = step(f, "free(y)");
            let out = text::frame(f, k, Style::Plain, false, 2);
            let at = out.find("page 0x").expect("a page title");
            out[at..].to_string()
        }
        other => panic!("no snippet named {other}"),
    }
}

fn doc_path(doc: &str) -> std::path::PathBuf {
    workspace().join(doc)
}

/// Rewrites what differs from run to run in a drawn grid: every address
/// (a hex number of 2^32 or more, below 2^48) becomes its offset from the
/// page of the grid it belongs to (the last `page 0x...` title above it),
/// the page addresses themselves `PAGE`, and head tags (bits 48..63 of an
/// in-use head, and the `tag 0x....` that decodes them) `tttt`. Cell
/// numbers, sizes, flags, kinds, links (`@cell`, `state+0x...`) and every
/// glyph are compared as they are.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut page = 0usize;
    let mut rest = text;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let digits: String = rest[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        rest = &rest[at + 2 + digits.len()..];
        let v = u64::from_str_radix(&digits, 16).ok();
        match v {
            Some(_) if out.ends_with("tag ") => out.push_str("0xtttt"),
            Some(v) if out.ends_with("page ") => {
                page = v as usize;
                out.push_str("0xPAGE");
            }
            Some(v) if v >> 48 != 0 => {
                out.push_str(&format!("0xtttt{:012x}", v & ((1 << 48) - 1)));
            }
            Some(v) if v >> 32 != 0 => {
                let off = v as i64 - page as i64;
                out.push_str(&format!("PAGE{off:+}"));
            }
            _ => {
                out.push_str("0x");
                out.push_str(&digits);
            }
        }
    }
    out.push_str(rest);
    out
}

/// Replaces each generated block of `doc` by `make(name)`.
fn fill(doc: &str, make: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = doc;
    while let Some(at) = rest.find("<!-- grid: ") {
        let name_end = rest[at..].find(" -->").unwrap() + at;
        let name = &rest[at + 11..name_end];
        let close = rest[name_end..]
            .find("<!-- /grid -->")
            .expect("a closing marker")
            + name_end;
        out.push_str(&rest[..name_end + 4]);
        out.push_str("\n```text\n");
        out.push_str(&make(name));
        out.push_str("```\n");
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_generated_grid_in_the_docs_matches_the_current_output() {
    let f = tour::film(true).unwrap();
    for (doc, names) in DOCS {
        let text = std::fs::read_to_string(doc_path(doc)).unwrap();
        let asked = std::cell::RefCell::new(Vec::new());
        let now = fill(&text, &|name| {
            asked.borrow_mut().push(name.to_string());
            snippet(&f, name)
        });
        assert_eq!(
            asked.into_inner(),
            names,
            "{doc}: the grids it asks for, in order"
        );
        let (want, got) = (normalise(&text), normalise(&now));
        if want != got {
            let line = want
                .lines()
                .zip(got.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(got.lines().count()));
            panic!(
                "{doc}: a generated grid differs from what the code draws now, \
                 at line {} (after normalising addresses and tags):\n  doc: {:?}\n  now: {:?}\n\
                 regenerate with `cargo test -p tessera-cli --test docs -- --ignored` \
                 and read the diff",
                line + 1,
                want.lines().nth(line).unwrap_or("<end>"),
                got.lines().nth(line).unwrap_or("<end>")
            );
        }
    }
}

#[test]
fn the_normaliser_keeps_what_a_layout_change_would_move() {
    let a = "page 0x7eff80000000 · cells 0..127\n    1024  0x7eff80000400         48  in use \
             0x70ac000000000033 = 48 | tag 0x70ac | P | C\n  fd→@1168 parent→state+0x110 0x2fbf1";
    let b = "page 0x7f1230000000 · cells 0..127\n    1024  0x7f1230000400         48  in use \
             0x1b5a000000000033 = 48 | tag 0x1b5a | P | C\n  fd→@1168 parent→state+0x110 0x2fbf1";
    assert_eq!(normalise(a), normalise(b), "another run, the same layout");
    assert!(normalise(a).contains("PAGE+1024"));
    for moved in [
        a.replace("0x7eff80000400", "0x7eff80000410"),
        a.replace("= 48", "= 64"),
        a.replace("0x70ac000000000033", "0x70ac000000000031"),
        a.replace("@1168", "@1184"),
        a.replace("0x2fbf1", "0x2fbe1"),
    ] {
        assert_ne!(normalise(a), normalise(&moved), "{moved}");
    }
}

#[test]
#[ignore = "rewrites the generated grids of the docs, docs/img/explorer.png and docs/img/compare.png"]
fn regenerate_docs() {
    let f = tour::film(true).unwrap();
    for (doc, _) in DOCS {
        let text = std::fs::read_to_string(doc_path(doc)).unwrap();
        std::fs::write(doc_path(doc), fill(&text, &|n| snippet(&f, n))).unwrap();
    }

    // The README's screenshot of the explorer.
    let dir = scratch("docs");
    let html = dir.join("tour.html");
    assert!(tessera()
        .args(["tour", "--html"])
        .arg(&html)
        .output()
        .unwrap()
        .status
        .success());
    let shot = workspace().join("docs/img/explorer.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let browser = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let o = run_with_timeout(
        std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!(
                "file://{}#step=17&hover=1400&pin=1400",
                html.display()
            )),
        Duration::from_secs(90),
    );
    assert!(shot.is_file(), "{}", String::from_utf8_lossy(&o.stderr));

    // The README's screenshot of the comparison: free(y), where Tessera
    // and dlmalloc merge three chunks and glibc keeps them in its tcache.
    let cmp = dir.join("compare.html");
    assert!(tessera()
        .args(["compare", "--color", "never", "--html"])
        .arg(&cmp)
        .output()
        .unwrap()
        .status
        .success());
    let shot = workspace().join("docs/img/compare.png");
    let browser = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let o = run_with_timeout(
        std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--window-size=1500,1000",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}#step=16&hover=2:940", cmp.display())),
        Duration::from_secs(90),
    );
    assert!(shot.is_file(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
