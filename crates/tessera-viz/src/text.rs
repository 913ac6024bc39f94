//! The text renderers: plain box drawing (stable, for tests and diffs) and
//! ANSI colour for terminals. Both draw the same layout:
//!
//! ```text
//!         0       8        16      24    31
//!       ┌────────────────┬────────────────┐
//!   768 │################ pppppppphhhhhhhh│ ◀ 784: 48 B in use (asked 40)
//!   800 ├################################│
//! ```
//! A row is 32 cells, labelled with the number of its first cell (0, 32,
//! ..., 4064). Chunks start at 16-byte boundaries, so a chunk boundary
//! inside a row is at cell 16: the middle column shows `│` there. A chunk
//! that starts at a row's cell 0 turns the left frame into `├`. The optional
//! "changes" grid to the right shows only the bytes a step changed.

use crate::page::{ChunkRow, PageView, COLS, ROWS};
use crate::role::{self, ByteRole, LEGEND};
use std::fmt::Write;
use tessera::inspect::{ChunkKind, Role};

/// How to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Box drawing, no colour.
    Plain,
    /// xterm-256 colours.
    Ansi,
}

/// What to draw.
#[derive(Clone, Debug)]
pub struct GridOptions {
    /// Rows to draw, ascending (all 128 by default); gaps become `⋮` lines.
    pub rows: Vec<usize>,
    /// Bytes changed by the step: drawn as a second grid to the right.
    pub changes: Option<Vec<bool>>,
    /// Note the chunks that start on each row, right of the grid.
    pub annotate: bool,
    /// Cells to emphasise (e.g. the chunk asked about with `--at`).
    pub highlight: Option<(usize, usize)>,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            rows: (0..ROWS).collect(),
            changes: None,
            annotate: true,
            highlight: None,
        }
    }
}

const LABEL: usize = 6;

/// Column numbers above a 35-character framed grid: cells 0, 8, 16, 24, 31.
fn header() -> String {
    let mut line = vec![' '; 35];
    for (cell, text) in [(0usize, "0"), (8, "8"), (16, "16"), (24, "24"), (31, "31")] {
        // +1 for the left frame, +1 past the middle column.
        let at = 1 + cell + usize::from(cell >= 16);
        let at = if text.len() == 2 && cell == 31 {
            at - 1
        } else {
            at
        };
        for (k, ch) in text.chars().enumerate() {
            line[at + k] = ch;
        }
    }
    line.into_iter().collect::<String>().trim_end().to_owned()
}

fn paint(out: &mut String, style: Style, role: ByteRole, glyph: char, strong: bool) {
    match style {
        Style::Plain => out.push(glyph),
        Style::Ansi => {
            let (fg, bg) = role.ansi();
            if strong {
                let _ = write!(out, "\x1b[1;7;38;5;{fg};48;5;{bg}m{glyph}\x1b[0m");
            } else {
                let _ = write!(out, "\x1b[38;5;{fg};48;5;{bg}m{glyph}\x1b[0m");
            }
        }
    }
}

/// Rows that hold a marked cell, with `context` rows around each, merged;
/// gaps of at most `join` rows are filled in.
pub fn rows_around(mask: &[bool], context: usize, join: usize) -> Vec<usize> {
    let marked = PageView::rows_marked(mask);
    let mut rows: Vec<usize> = Vec::new();
    for r in marked {
        let lo = r.saturating_sub(context);
        let hi = (r + context).min(ROWS - 1);
        for x in lo..=hi {
            if let Some(&last) = rows.last() {
                if x <= last {
                    continue;
                }
                if x - last - 1 <= join {
                    rows.extend(last + 1..x);
                }
            }
            rows.push(x);
        }
    }
    rows
}

fn chunk_starts(view: &PageView, row: usize) -> Vec<&ChunkRow> {
    let lo = (row * COLS) as isize;
    view.chunks
        .iter()
        .filter(|c| c.cell >= lo && c.cell < lo + COLS as isize)
        .collect()
}

/// A short note for a chunk start: `784: 48 B in use (asked 40)`.
pub fn short_note(c: &ChunkRow) -> String {
    let mut s = format!("{}: ", c.cell);
    if c.info.kind == ChunkKind::Fencepost {
        s.push_str("fencepost");
        return s;
    }
    let _ = write!(s, "{} B {}", c.info.size, c.kind_text());
    if let Some(r) = c.requested {
        let _ = write!(s, " (asked {r})");
    }
    s
}

/// Notes for structures that are not chunks but start on a row.
fn area_note(view: &PageView, row: usize) -> Option<String> {
    let i = row * COLS;
    let here = view.cells[i].role;
    let before = if i == 0 {
        None
    } else {
        Some(view.cells[i - 1].role)
    };
    if before == Some(here) || view.cells[i].chunk.is_some() {
        return None;
    }
    match here {
        ByteRole::Core(Role::SegmentRecord) => Some(format!("{i}: segment record")),
        ByteRole::Core(Role::HeapState) => Some(format!("{i}: heap state")),
        ByteRole::Core(Role::MmapHeader) => Some(format!("{i}: mmap header")),
        _ => None,
    }
}

/// The grid of one page (title line, column numbers, frame, rows).
pub fn grid(view: &PageView, opts: &GridOptions, style: Style) -> String {
    let mut out = String::new();
    let changes = opts.changes.as_deref();
    let pad = " ".repeat(LABEL);
    let head = header();
    let _ = write!(out, "{pad}{head:35}");
    if changes.is_some() {
        let _ = write!(out, "  {head}");
    }
    let out_trim = out.trim_end().len();
    out.truncate(out_trim);
    out.push('\n');
    let rule = |l: char, m: char, r: char| format!("{l}{}{m}{}{r}", "─".repeat(16), "─".repeat(16));
    let _ = write!(out, "{pad}{}", rule('┌', '┬', '┐'));
    if changes.is_some() {
        let _ = write!(out, "  {}", rule('┌', '┬', '┐'));
    }
    out.push('\n');
    let mut prev: Option<usize> = None;
    for &row in &opts.rows {
        if let Some(p) = prev {
            if row > p + 1 {
                let n = row - p - 1;
                let text = format!("⋮ {n} row{}", if n == 1 { "" } else { "s" });
                let _ = write!(out, "{pad}│{text:^33}│");
                if changes.is_some() {
                    let _ = write!(out, "  │{:33}│", "");
                }
                out.push('\n');
            }
        }
        prev = Some(row);
        let base = row * COLS;
        let starts = chunk_starts(view, row);
        let starts_at = |cell: usize| starts.iter().any(|c| c.cell == cell as isize);
        let _ = write!(out, "{base:>5} ");
        out.push(if starts_at(base) { '├' } else { '│' });
        for col in 0..COLS {
            if col == 16 {
                out.push(if starts_at(base + 16) { '│' } else { ' ' });
            }
            let i = base + col;
            let cell = view.cells[i];
            let strong = changes.is_some_and(|m| m[i])
                || opts.highlight.is_some_and(|(lo, hi)| i >= lo && i < hi);
            paint(&mut out, style, cell.role, cell.role.glyph(), strong);
        }
        out.push('│');
        if let Some(mask) = changes {
            out.push_str("  ");
            out.push(if starts_at(base) { '├' } else { '│' });
            for col in 0..COLS {
                if col == 16 {
                    out.push(if starts_at(base + 16) { '│' } else { ' ' });
                }
                let i = base + col;
                let cell = view.cells[i];
                if mask[i] {
                    let g = match cell.role.glyph() {
                        ' ' => '×',
                        g => g,
                    };
                    paint(&mut out, style, cell.role, g, false);
                } else {
                    out.push(' ');
                }
            }
            out.push('│');
        } else if opts.annotate {
            let mut notes: Vec<String> = area_note(view, row).into_iter().collect();
            notes.extend(starts.iter().map(|c| short_note(c)));
            if !notes.is_empty() {
                let _ = write!(out, " ◀ {}", notes.join(" · "));
            }
        }
        out.push('\n');
    }
    let _ = write!(out, "{pad}{}", rule('└', '┴', '┘'));
    if changes.is_some() {
        let _ = write!(out, "  {}", rule('└', '┴', '┘'));
    }
    out.push('\n');
    out
}

/// The page title: address and which cells are shown.
pub fn title(view: &PageView, opts: &GridOptions) -> String {
    let rows = &opts.rows;
    let mut s = format!("page {:#x}", view.addr);
    if rows.len() == ROWS {
        s.push_str(" · cells 0..4095 · 128 rows × 32");
    } else if let (Some(a), Some(b)) = (rows.first(), rows.last()) {
        let _ = write!(
            s,
            " · cells {}..{} · rows {a}..{b} of 128",
            a * COLS,
            b * COLS + COLS - 1
        );
    }
    if !view.has_bytes {
        s.push_str(" · (bytes not captured)");
    }
    if opts.changes.is_some() {
        s.push_str(" · right: bytes this step changed");
    }
    s
}

/// The legend of every role.
pub fn full_legend(style: Style) -> String {
    legend_of(&LEGEND, style)
}

/// The legend of the roles present in `view`.
pub fn legend(view: &PageView, style: Style) -> String {
    let present: Vec<ByteRole> = role::all()
        .filter(|r| view.cells.iter().any(|c| c.role == *r))
        .collect();
    legend_of(&present, style)
}

fn legend_of(present: &[ByteRole], style: Style) -> String {
    let mut out = String::from("legend:");
    let mut width = out.len();
    for &r in present {
        let mut item = String::new();
        let g = if r.glyph() == ' ' { '␠' } else { r.glyph() };
        paint(&mut item, style, r, g, false);
        let _ = write!(item, " {}", r.name());
        let w = 3 + r.name().chars().count();
        if width + w + 2 > 78 {
            out.push_str("\n       ");
            width = 7;
        }
        out.push_str("  ");
        out.push_str(&item);
        width += w + 2;
    }
    out.push('\n');
    out
}

/// The chunks touching the page, one per line, with decoded head and bin,
/// and the link fields of free chunks.
pub fn chunk_list(view: &PageView) -> String {
    let mut out = String::new();
    if view.chunks.is_empty() {
        out.push_str("no chunk touches this page\n");
        return out;
    }
    out.push_str("chunks touching this page (cell = offset from the page):\n");
    let _ = writeln!(
        out,
        "  {:>6}  {:<16} {:>8}  {:<28} head",
        "cell", "address", "size", "kind"
    );
    for c in &view.chunks {
        let mut kind = c.kind_text();
        if let Some(r) = c.requested {
            let slack = c.info.size.saturating_sub(16).saturating_sub(r);
            let _ = write!(kind, ", asked {r}");
            if slack > 0 && c.info.kind == ChunkKind::InUse {
                let _ = write!(kind, ", slack {slack}");
            }
        }
        let _ = writeln!(
            out,
            "  {:>6}  {:<16} {:>8}  {:<28} {}",
            c.cell,
            format!("{:#x}", c.info.addr),
            c.info.size,
            kind,
            c.head_text()
        );
        if !c.fields.is_empty() {
            let links: Vec<String> = c
                .fields
                .iter()
                .map(|f| {
                    if f.name == "index" {
                        format!("index={}", f.value)
                    } else {
                        format!("{}→{}", f.name, view.name_ptr(f.value))
                    }
                })
                .collect();
            let _ = writeln!(out, "  {:>6}  {}", "", links.join(" "));
        }
    }
    out
}

/// `rows` without the middle of runs of identical rows: of each run of
/// rows that look the same and start no chunk, the first `keep` and the
/// last are kept.
pub fn squeeze(view: &PageView, rows: &[usize], keep: usize) -> Vec<usize> {
    let look = |r: usize| -> Vec<ByteRole> {
        view.cells[r * COLS..(r + 1) * COLS]
            .iter()
            .map(|c| c.role)
            .collect()
    };
    let plain = |r: usize| chunk_starts(view, r).is_empty() && area_note(view, r).is_none();
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len()
            && rows[j] == rows[j - 1] + 1
            && plain(rows[j])
            && look(rows[j]) == look(rows[i])
        {
            j += 1;
        }
        // rows[i..j] look alike (rows[i] may start something).
        if j - i > keep + 2 {
            out.extend_from_slice(&rows[i..i + keep + 1]);
            out.push(rows[j - 1]);
        } else {
            out.extend_from_slice(&rows[i..j]);
        }
        i = j;
    }
    out
}

/// Title, grid, legend and chunk list: the whole picture of one page.
pub fn page(view: &PageView, opts: &GridOptions, style: Style) -> String {
    let mut out = title(view, opts);
    out.push('\n');
    out.push_str(&grid(view, opts, style));
    out.push_str(&legend(view, style));
    out.push_str(&chunk_list(view));
    out
}

/// Wraps `text` at `width` columns, each line prefixed with `indent`.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.chars().count() > indent.len()
            && line.chars().count() + 1 + word.chars().count() > width
        {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(indent);
        }
        if line.chars().count() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.trim().is_empty() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// True for cells that belong to the bookkeeping areas at a segment's
/// base, which change with every bin operation: the compact view leaves
/// them out of the rows it picks.
fn is_bookkeeping(role: ByteRole) -> bool {
    matches!(
        role,
        ByteRole::Core(Role::HeapState) | ByteRole::Core(Role::SegmentRecord)
    )
}

/// Roles that fill the inside of chunks: a change there alone is not worth
/// rows of its own in the compact view.
fn is_bulk(role: ByteRole) -> bool {
    matches!(
        role,
        ByteRole::Slack
            | ByteRole::Core(Role::Payload | Role::Free | Role::Dv | Role::Top | Role::Outside)
    )
}

/// The rows worth drawing for a step's `changes` to `view`: rows around
/// changed structure (headers, links, tags) with one row of context, gaps
/// of up to 3 rows filled; the heap state and segment record are left out.
/// Changes to bulk bytes alone (payload, free space, top) count only if
/// `bulk_ok` (else the result is empty).
pub fn compact_rows(view: &PageView, changes: &[bool], bulk_ok: bool) -> Vec<usize> {
    let visible: Vec<bool> = changes
        .iter()
        .zip(&view.cells)
        .map(|(&c, cell)| c && !is_bookkeeping(cell.role))
        .collect();
    let structural: Vec<bool> = visible
        .iter()
        .zip(&view.cells)
        .map(|(&c, cell)| c && !is_bulk(cell.role))
        .collect();
    if structural.iter().any(|&c| c) {
        rows_around(&structural, 1, 3)
    } else if bulk_ok {
        rows_around(&visible, 1, 3)
    } else {
        Vec::new()
    }
}

/// What a step changed in the bins: `smallmap 0x40 → 0`, `dv 288 → 240 B`.
pub fn bins_change(before: &crate::Bins, after: &crate::Bins) -> Vec<String> {
    let mut v = Vec::new();
    if before.smallmap != after.smallmap {
        v.push(format!(
            "smallmap {:#x} → {:#x}",
            before.smallmap, after.smallmap
        ));
    }
    if before.treemap != after.treemap {
        v.push(format!(
            "treemap {:#x} → {:#x}",
            before.treemap, after.treemap
        ));
    }
    let size = |x: Option<(usize, usize)>| x.map_or("none".to_owned(), |(_, s)| format!("{s} B"));
    if before.dv != after.dv {
        v.push(format!("dv {} → {}", size(before.dv), size(after.dv)));
    }
    if before.top.map(|t| t.1) != after.top.map(|t| t.1) {
        v.push(format!("top {} → {}", size(before.top), size(after.top)));
    }
    if before.direct != after.direct {
        v.push(format!(
            "direct chunks {} → {}",
            before.direct.0, after.direct.0
        ));
    }
    v
}

/// One frame of a film as the tour prints it: a header with the step and
/// its title, the explanation, then for each page the step changed (focus
/// first, at most `max_pages`) the rows it changed, drawn twice: the page
/// now, and only the changed bytes. `full` draws all 128 rows instead.
pub fn frame(
    film: &crate::film::Film,
    k: usize,
    style: Style,
    full: bool,
    max_pages: usize,
) -> String {
    let f = &film.frames[k];
    let last = film.frames.len() - 1;
    let mut out = String::new();
    let head = if f.step == 0 && f.info.is_none() {
        format!("━━ {} ", f.title)
    } else {
        format!(
            "━━ step {} of {} ━━ {} ",
            f.step, film.frames[last].step, f.title
        )
    };
    let fill = 78usize.saturating_sub(head.chars().count());
    let _ = writeln!(out, "{head}{}", "━".repeat(fill));
    out.push_str(&wrap(&f.note, 78, ""));
    if k > 0 {
        let ch = bins_change(&film.frames[k - 1].bins, &f.bins);
        if !ch.is_empty() {
            let _ = writeln!(out, "({})", ch.join(" · "));
        }
    }
    let mut order: Vec<usize> = f
        .focus
        .into_iter()
        .filter(|p| f.pages.contains_key(p))
        .collect();
    order.extend(f.pages.keys().copied().filter(|p| Some(*p) != f.focus));
    let mut shown = 0;
    for p in order {
        let fp = &f.pages[&p];
        let view = &fp.view;
        let Some(changes) = &fp.changes else { continue };
        let rows = if full {
            (0..ROWS).collect()
        } else {
            compact_rows(view, changes, shown == 0)
        };
        if rows.is_empty() {
            continue;
        }
        if shown == max_pages {
            let _ = writeln!(out, "(and more pages changed)");
            break;
        }
        shown += 1;
        let opts = GridOptions {
            rows,
            changes: Some(changes.clone()),
            annotate: false,
            highlight: None,
        };
        out.push('\n');
        out.push_str(&title(view, &opts));
        out.push('\n');
        out.push_str(&grid(view, &opts, style));
        // The chunks of this page the step created or changed.
        if let Some(info) = &f.info {
            for c in view
                .chunks
                .iter()
                .filter(|c| info.changed.contains(&c.info))
            {
                let mut line = format!("  {:<38} {}", short_note(c), c.head_text());
                if !c.fields.is_empty() {
                    let links: Vec<String> = c
                        .fields
                        .iter()
                        .filter(|fl| fl.name != "index")
                        .map(|fl| format!("{}→{}", fl.name, view.name_ptr(fl.value)))
                        .collect();
                    let _ = write!(line, "\n  {:<38} {}", "", links.join(" "));
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    if shown == 0 && k > 0 {
        if f.gone.is_empty() {
            out.push_str("(no chunk bytes changed; only the heap state)\n");
        } else {
            let _ = writeln!(
                out,
                "(the mapping from page {:#x} on is gone: unmapped)",
                f.gone[0]
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_around_merges_close_rows_and_keeps_gaps() {
        let mut mask = vec![false; 4096];
        mask[5 * 32] = true;
        mask[7 * 32 + 3] = true;
        mask[40 * 32] = true;
        assert_eq!(rows_around(&mask, 1, 2), vec![4, 5, 6, 7, 8, 39, 40, 41]);
        assert!(rows_around(&[false; 4096], 1, 2).is_empty());
        mask[0] = true;
        mask[4095] = true;
        let r = rows_around(&mask, 1, 0);
        assert_eq!(r.first(), Some(&0));
        assert_eq!(r.last(), Some(&127));
    }
}
