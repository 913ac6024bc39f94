//! The comparison in the terminal: for each step, the three heaps as
//! stacked panels, each the rows of its page that the step changed (the
//! same grid as `tessera tour`, the changed bytes again on the right),
//! the chunks that changed with their differences, and the bins.

use crate::film::Comparison;
use crate::model::BinRow;
use std::fmt::Write;
use tessera_viz::page::ROWS;
use tessera_viz::text::{self, compact_rows, GridOptions, Style};

/// `tcache 1 ×1 · small 6 ×2 · top`: a bins panel on one line.
pub fn bins_line(rows: &[BinRow]) -> String {
    if rows.is_empty() {
        return "(no free chunks)".into();
    }
    rows.iter()
        .map(|r| {
            if r.name == "top" {
                format!("top {} B", r.bytes)
            } else {
                format!("{} ({}) ×{}", r.name, r.sizes, r.count)
            }
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Frame `k`: the step's title and note, then one panel per heap.
pub fn frame(c: &Comparison, k: usize, style: Style, full: bool) -> String {
    let mut out = String::new();
    let (title, note) = &c.steps[k];
    let last = c.steps.len() - 1;
    let head = if k == 0 {
        format!("━━ {title} ")
    } else {
        format!("━━ step {k} of {last} ━━ {title} ")
    };
    let fill = 78usize.saturating_sub(head.chars().count());
    let _ = writeln!(out, "{head}{}", "━".repeat(fill));
    out.push_str(&text::wrap(note, 78, ""));
    for s in &c.sides {
        let f = &s.film.frames[k];
        let name = format!("── {} ", s.who.name());
        let _ = writeln!(
            out,
            "\n{name}{}",
            "─".repeat(78usize.saturating_sub(name.chars().count()))
        );
        let mut order: Vec<usize> = f
            .focus
            .into_iter()
            .filter(|p| f.pages.contains_key(p))
            .collect();
        order.extend(f.pages.keys().copied().filter(|p| Some(*p) != f.focus));
        let mut drawn = false;
        for p in order {
            let fp = &f.pages[&p];
            let rows = match (&fp.changes, full) {
                (_, true) | (None, _) => {
                    if k == 0 && !full {
                        // The fresh heap: its first rows.
                        let first = fp
                            .view
                            .chunks
                            .iter()
                            .find(|c| c.cell >= 0)
                            .map_or(0, |c| c.cell as usize / 32);
                        (first.saturating_sub(1)..(first + 3).min(ROWS)).collect()
                    } else {
                        (0..ROWS).collect()
                    }
                }
                (Some(ch), false) => {
                    let rows = compact_rows(&fp.view, ch, true);
                    text::squeeze(&fp.view, &rows, 1)
                }
            };
            if rows.is_empty() {
                continue;
            }
            let opts = GridOptions {
                rows,
                changes: fp.changes.clone(),
                annotate: fp.changes.is_none(),
                highlight: None,
            };
            out.push_str(&text::title(&fp.view, &opts));
            out.push('\n');
            out.push_str(&text::grid(&fp.view, &opts, style));
            drawn = true;
            break;
        }
        if !drawn {
            out.push_str(if k == 0 {
                "(no heap yet)\n"
            } else {
                "(no chunk bytes changed)\n"
            });
        }
        for line in &s.changed[k] {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "  bins: {}", bins_line(&s.bins[k]));
    }
    if k > 0 {
        if c.diffs[k].is_empty() {
            let _ = writeln!(
                out,
                "\nall heaps agree: every block at the same offset, the same free chunks"
            );
        } else {
            out.push_str("\ndifferences (offsets from each heap's first chunk):\n");
            for d in &c.diffs[k] {
                out.push_str(&text::wrap(d, 78, "  "));
            }
        }
    }
    out
}

/// The heaps compared, what each is, and what each walker inferred.
pub fn intro(c: &Comparison) -> String {
    let mut out = String::new();
    for s in &c.sides {
        out.push_str(&text::wrap(
            &format!("{}: {}.", s.who.name(), s.about),
            78,
            "  ",
        ));
        if let Some(n) = s.notes.last().and_then(|n| n.first()) {
            out.push_str(&text::wrap(&format!("({n})"), 78, "    "));
        }
    }
    for m in &c.missing {
        out.push_str(&text::wrap(&format!("left out: {m}"), 78, "  "));
    }
    out
}
