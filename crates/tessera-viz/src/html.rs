//! The HTML explorer: one self-contained page (no network, no CDN) with a
//! step slider, the grid of a page, the bins panel and the free-chunk
//! histogram. Hovering a byte shows its address, chunk, field and value;
//! clicking pins the chunk that holds it; an address box answers "which
//! chunk holds X".
//!
//! The film's data goes into the page as JSON: the distinct page views
//! (each page's bytes in base64 and its roles run-length encoded), and per
//! frame the views that changed, the bins and the histogram. Opening the
//! page with `#selftest` runs its own checks (used by the headless browser
//! test) and writes PASS/FAIL lines into `<pre id="selftest">`.

use crate::bins::{Bins, Histogram};
use crate::film::{Film, FramePage};
use crate::json;
use crate::page::PageView;
use crate::role;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::rc::Rc;

const TEMPLATE: &str = include_str!("../assets/explorer.html");
const STYLE: &str = include_str!("../assets/explorer.css");

/// The explorer's style sheet (the grid, the role colours), for other
/// pages that draw grids (the comparison of `tessera compare`).
pub const EXPLORER_CSS: &str = STYLE;
const SCRIPT: &str = include_str!("../assets/explorer.js");

/// Roles of a page as runs: `A64B688...`, the letter being the role's
/// index in the legend.
fn roles_rle(view: &PageView) -> String {
    let mut out = String::new();
    let mut run: Option<(usize, usize)> = None;
    for c in &view.cells {
        let r = c.role.index();
        match run {
            Some((x, n)) if x == r => run = Some((x, n + 1)),
            _ => {
                if let Some((x, n)) = run {
                    let _ = write!(out, "{}{n}", (b'A' + x as u8) as char);
                }
                run = Some((r, 1));
            }
        }
    }
    if let Some((x, n)) = run {
        let _ = write!(out, "{}{n}", (b'A' + x as u8) as char);
    }
    out
}

/// Interned chunk rows: each distinct row of the chunk lists is written
/// once, and page versions refer to rows by index.
#[derive(Default)]
struct Rows {
    ids: HashMap<String, usize>,
    json: Vec<String>,
}

impl Rows {
    fn id(&mut self, view: &PageView, c: &crate::page::ChunkRow) -> usize {
        let mut out = String::new();
        out.push_str("{\"addr\":");
        json::addr(&mut out, c.info.addr);
        let _ = write!(
            out,
            ",\"cell\":{},\"size\":{},\"head\":",
            c.cell, c.info.size
        );
        json::string(&mut out, &c.head_text());
        out.push_str(",\"kind\":");
        json::string(&mut out, &c.kind_text());
        let _ = write!(out, ",\"free\":{}", c.is_free());
        if let Some(note) = c.label.as_ref().and_then(|l| l.note.as_ref()) {
            out.push_str(",\"note\":");
            json::string(&mut out, note);
        }
        match c.requested {
            Some(r) => {
                let _ = write!(out, ",\"req\":{r}");
            }
            None => out.push_str(",\"req\":null"),
        }
        out.push_str(",\"fields\":[");
        for (k, f) in c.fields.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            out.push('[');
            json::string(&mut out, f.name);
            out.push(',');
            if f.name == "index" {
                json::string(&mut out, &f.value.to_string());
            } else {
                json::string(&mut out, &view.name_ptr(f.value));
            }
            out.push(']');
        }
        out.push_str("]}");
        let next = self.json.len();
        *self.ids.entry(out.clone()).or_insert_with(|| {
            self.json.push(out);
            next
        })
    }
}

fn bytes_of(view: &PageView) -> Option<Vec<u8>> {
    view.has_bytes
        .then(|| view.cells.iter().map(|c| c.value.unwrap_or(0)).collect())
}

/// `[[offset, "hex"], ...]`: the runs where `now` differs from `before`
/// (a run ends after 4 equal bytes, to keep runs few).
fn patch_json(now: &[u8], before: &[u8]) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    while i < now.len() {
        if now[i] == before[i] {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        while i < now.len() && (now[i] != before[i] || i - end <= 4) {
            if now[i] != before[i] {
                end = i + 1;
            }
            i += 1;
        }
        if out.len() > 1 {
            out.push(',');
        }
        let _ = write!(out, "[{start},\"");
        for b in &now[start..end] {
            let _ = write!(out, "{b:02x}");
        }
        out.push_str("\"]");
    }
    out.push(']');
    out
}

/// One page version. `base` is the previous version of the same page (its
/// id and bytes): when both have bytes, only the changed runs are written.
fn page_json(out: &mut String, view: &PageView, base: Option<(usize, &[u8])>, rows: &mut Rows) {
    out.push_str("{\"addr\":");
    json::addr(out, view.addr);
    const ZEROS: [u8; 4096] = [0; 4096];
    match bytes_of(view) {
        Some(now) => {
            // Patch the previous version, or an all-zero page when that is
            // shorter than the page in base64 (fresh memory is mostly zero).
            let (id, before) = base.unwrap_or((usize::MAX, &ZEROS[..]));
            let patch = patch_json(&now, before);
            if base.is_some() || patch.len() < 5462 {
                let id = if id == usize::MAX { -1 } else { id as isize };
                let _ = write!(out, ",\"base\":{id},\"patch\":{patch}");
            } else {
                out.push_str(",\"bytes\":");
                json::string(out, &json::base64(&now));
            }
        }
        None => out.push_str(",\"bytes\":null"),
    }
    if let Some(b) = bytes_of(view) {
        // A checksum the self-test compares with the decoded bytes.
        let sum = b.iter().enumerate().fold(0u32, |s, (i, &x)| {
            s.wrapping_mul(31).wrapping_add(x as u32 ^ i as u32)
        });
        let _ = write!(out, ",\"sum\":{sum}");
    }
    out.push_str(",\"roles\":");
    json::string(out, &roles_rle(view));
    out.push_str(",\"chunks\":[");
    for (i, c) in view.chunks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}", rows.id(view, c));
    }
    out.push_str("]}");
}

fn bins_json(out: &mut String, b: &Bins) {
    let _ = write!(
        out,
        "{{\"smallmap\":\"{:#010x}\",\"treemap\":\"{:#010x}\",\"small\":[",
        b.smallmap, b.treemap
    );
    for (i, l) in b.small.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "[{},\"{} B\",{},{}]",
            l.index, l.range.0, l.count, l.bytes
        );
    }
    out.push_str("],\"tree\":[");
    for (i, l) in b.tree.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let range = if l.range.1 == usize::MAX {
            format!("{}..", l.range.0)
        } else {
            format!("{}..{}", l.range.0, l.range.1)
        };
        let _ = write!(out, "[{},\"{range}\",{},{}]", l.index, l.count, l.bytes);
    }
    out.push_str("],\"dv\":");
    let pair = |out: &mut String, x: Option<(usize, usize)>| match x {
        Some((a, s)) => {
            out.push('[');
            json::addr(out, a);
            let _ = write!(out, ",{s}]");
        }
        None => out.push_str("null"),
    };
    pair(out, b.dv);
    out.push_str(",\"top\":");
    pair(out, b.top);
    let _ = write!(
        out,
        ",\"inuse\":[{},{}],\"direct\":[{},{}],\"footprint\":[{},{}]}}",
        b.in_use.0, b.in_use.1, b.direct.0, b.direct.1, b.footprint.0, b.footprint.1
    );
}

fn hist_json(out: &mut String, h: &Histogram) {
    out.push('[');
    for (i, &(lo, hi, n, sum)) in h.buckets.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let label = if hi == usize::MAX {
            format!("{lo}..")
        } else {
            format!("{lo}..{hi}")
        };
        let _ = write!(out, "[\"{label}\",{n},{sum}]");
    }
    out.push(']');
}

/// The roles of the grids as JSON objects (name, glyph, CSS class,
/// meaning, free, foreign), indexed as [`crate::ByteRole::index`].
pub fn roles_json(out: &mut String) {
    out.push('[');
    for (i, r) in role::all().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json::string(out, r.name());
        out.push_str(",\"glyph\":");
        json::string(out, &r.glyph().to_string());
        out.push_str(",\"css\":");
        json::string(out, r.css());
        out.push_str(",\"meaning\":");
        json::string(out, r.meaning());
        let _ = write!(
            out,
            ",\"free\":{},\"foreign\":{}}}",
            r.is_free(),
            r.is_foreign()
        );
    }
    out.push(']');
}

/// The page versions a sequence of frames shows, written once each (a
/// version as a patch to the one before it), and the chunk rows they
/// list, interned: the tables the explorer's script decodes.
pub struct PageTable {
    ids: HashMap<*const PageView, usize>,
    pages: String,
    rows: Rows,
}

impl PageTable {
    /// The table of every page view in `frames` (each frame's pages).
    pub fn new<'a>(frames: impl IntoIterator<Item = &'a BTreeMap<usize, FramePage>>) -> PageTable {
        let mut ids: HashMap<*const PageView, usize> = HashMap::new();
        let mut views: Vec<Rc<PageView>> = Vec::new();
        for f in frames {
            for p in f.values() {
                let key = Rc::as_ptr(&p.view);
                if let std::collections::hash_map::Entry::Vacant(e) = ids.entry(key) {
                    e.insert(views.len());
                    views.push(p.view.clone());
                }
            }
        }
        let mut out = String::new();
        let mut rows = Rows::default();
        // The latest version written of each page: (id, bytes).
        let mut last: HashMap<usize, (usize, Vec<u8>)> = HashMap::new();
        for (i, v) in views.iter().enumerate() {
            if i > 0 {
                out.push_str(",\n");
            }
            let base = last.get(&v.addr).map(|(id, b)| (*id, b.as_slice()));
            page_json(&mut out, v, base, &mut rows);
            match bytes_of(v) {
                Some(b) => {
                    last.insert(v.addr, (i, b));
                }
                None => {
                    last.remove(&v.addr);
                }
            }
        }
        PageTable {
            ids,
            pages: out,
            rows,
        }
    }

    /// `"pages":[...],"chunkrows":[...]`.
    pub fn write_tables(&self, out: &mut String) {
        out.push_str("\"pages\":[");
        out.push_str(&self.pages);
        out.push_str("],\"chunkrows\":[");
        for (i, r) in self.rows.json.iter().enumerate() {
            if i > 0 {
                out.push_str(",\n");
            }
            out.push_str(r);
        }
        out.push(']');
    }

    /// `"focus":..,"pages":{"0x..":id,..},"gone":[..]` of one frame.
    pub fn write_frame(
        &self,
        out: &mut String,
        focus: Option<usize>,
        pages: &BTreeMap<usize, FramePage>,
        gone: &[usize],
    ) {
        out.push_str("\"focus\":");
        match focus {
            Some(p) => json::addr(out, p),
            None => out.push_str("null"),
        }
        out.push_str(",\"pages\":{");
        for (k, (addr, p)) in pages.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            json::addr(out, *addr);
            let _ = write!(out, ":{}", self.ids[&Rc::as_ptr(&p.view)]);
        }
        out.push_str("},\"gone\":[");
        for (k, p) in gone.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            json::addr(out, *p);
        }
        out.push(']');
    }
}

/// The film as the explorer's JSON data.
pub fn data_json(film: &Film) -> String {
    let mut out = String::from("{\"title\":");
    json::string(&mut out, &film.title);
    let _ = write!(out, ",\"start\":{}", film.start);
    out.push_str(",\"roles\":");
    roles_json(&mut out);
    let table = PageTable::new(film.frames.iter().map(|f| &f.pages));
    out.push(',');
    table.write_tables(&mut out);
    out.push_str(",\"frames\":[");
    for (i, f) in film.frames.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        let _ = write!(out, "{{\"step\":{},\"title\":", f.step);
        json::string(&mut out, &f.title);
        out.push_str(",\"note\":");
        json::string(&mut out, &f.note);
        out.push(',');
        table.write_frame(&mut out, f.focus, &f.pages, &f.gone);
        out.push_str(",\"bins\":");
        bins_json(&mut out, &f.bins);
        out.push_str(",\"hist\":");
        hist_json(&mut out, &f.hist);
        let _ = write!(out, ",\"live\":{}}}", f.live);
    }
    out.push_str("]}");
    out
}

/// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attributes.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Replaces each marker of `template` by its value in one left-to-right
/// pass: inserted values are never scanned again.
pub fn fill(template: &str, subs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    loop {
        let next = subs
            .iter()
            .filter_map(|&(m, v)| rest.find(m).map(|at| (at, m, v)))
            .min_by_key(|x| x.0);
        match next {
            Some((at, m, v)) => {
                out.push_str(&rest[..at]);
                out.push_str(v);
                rest = &rest[at + m.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// The whole explorer page for `film`.
pub fn explorer(film: &Film) -> String {
    let title = escape_html(&film.title);
    let data = data_json(film);
    fill(
        TEMPLATE,
        &[
            ("{{TITLE}}", &title),
            ("/*STYLE*/", STYLE),
            ("/*SCRIPT*/", SCRIPT),
            ("/*DATA*/", &data),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_run_length_encoded_over_4096_cells() {
        let snap = tessera::Snapshot::capture(&tessera::Heap::new(), 1);
        let v = PageView::new(&snap, snap.segments[0].base, None);
        let rle = roles_rle(&v);
        assert!(rle.starts_with("A64B"), "{rle}");
        let mut total = 0;
        let mut num = String::new();
        for ch in rle.chars().chain(std::iter::once('Z')) {
            if ch.is_ascii_digit() {
                num.push(ch);
            } else if !num.is_empty() {
                total += num.parse::<usize>().unwrap();
                num.clear();
            }
        }
        assert_eq!(total, 4096);
    }

    #[test]
    fn fill_does_not_rescan_values() {
        assert_eq!(
            fill("a{{X}}b/*Y*/c", &[("{{X}}", "/*Y*/"), ("/*Y*/", "y")]),
            "a/*Y*/byc"
        );
    }
}
