//! The grids in docs/structures.md are drawn by Tessera itself. Each
//! `<!-- grid: NAME -->` ... `<!-- /grid -->` block is produced by the
//! snippet of that name below, from the tour's replay.
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

const NAMES: [&str; 9] = [
    "segment-record",
    "top",
    "in-use",
    "small-bin",
    "coalesced",
    "tree-bin",
    "dv",
    "memalign",
    "direct",
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
        other => panic!("no snippet named {other}"),
    }
}

fn doc_path() -> std::path::PathBuf {
    workspace().join("docs/structures.md")
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
fn every_grid_in_the_structures_doc_has_a_snippet() {
    let doc = std::fs::read_to_string(doc_path()).unwrap();
    let mut found = Vec::new();
    fill(&doc, &|name| {
        assert!(
            NAMES.contains(&name),
            "docs/structures.md asks for `{name}`"
        );
        String::new()
    });
    for n in NAMES {
        if doc.contains(&format!("<!-- grid: {n} -->")) {
            found.push(n);
        }
    }
    assert_eq!(found, NAMES, "every snippet is used");
    // The snippets can be drawn (the tour still shows each structure).
    let f = tour::film(true).unwrap();
    for n in NAMES {
        assert!(snippet(&f, n).contains("┌"), "{n}");
    }
}

#[test]
#[ignore = "rewrites docs/structures.md, docs/img/explorer.png and docs/img/compare.png"]
fn regenerate_docs() {
    let f = tour::film(true).unwrap();
    let doc = std::fs::read_to_string(doc_path()).unwrap();
    std::fs::write(doc_path(), fill(&doc, &|n| snippet(&f, n))).unwrap();

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
