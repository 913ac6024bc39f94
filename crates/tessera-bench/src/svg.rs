//! A self-contained SVG bar chart of the ratios, written by hand (no
//! plotting library, no external tools).
//!
//! One panel for time and one for peak memory. Each case is a group of
//! bars, one per allocator other than glibc; the y axis is logarithmic and
//! centred on 1 (glibc), so a bar going up is worse than glibc and a bar
//! going down better, by the same distance for 2x and 0.5x. Bars beyond
//! 1/8 or 8 are clipped and labelled with their value. The last group is
//! the geometric mean. Hovering a bar shows its exact value.

use crate::report::{Summary, REFERENCE};
use std::fmt::Write as _;

const BAR: f64 = 9.0;
const GAP: f64 = 14.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const PLOT_H: f64 = 240.0;
const LABELS_H: f64 = 96.0;
const TITLE_H: f64 = 44.0;
/// The y axis spans 2^-LOG_SPAN ..= 2^LOG_SPAN.
const LOG_SPAN: f64 = 3.0;
const PALETTE: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// Escapes text for XML content and attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

struct Panel<'a> {
    title: &'a str,
    rows: &'a [Vec<Option<f64>>],
    geomean: &'a [Option<f64>],
    small: Option<&'a [bool]>,
}

/// The chart for a summary; `with_memory` adds the memory panel.
pub fn chart(s: &Summary, with_memory: bool) -> String {
    let bars: Vec<usize> = (0..s.allocators.len())
        .filter(|&i| s.allocators[i] != REFERENCE)
        .collect();
    let group_w = bars.len().max(1) as f64 * BAR + GAP;
    let groups = s.cases.len() + 1;
    let width = LEFT + RIGHT + group_w * groups as f64 + GAP;
    let panel_h = TITLE_H + PLOT_H + LABELS_H;
    let mut panels = vec![Panel {
        title: "Time, ratio to glibc (median; lower is better)",
        rows: &s.time,
        geomean: &s.time_geomean,
        small: None,
    }];
    if with_memory {
        panels.push(Panel {
            title:
                "Peak memory, ratio to glibc (resident; lower is better; ~ = glibc peak < 1 MiB)",
            rows: &s.mem,
            geomean: &s.mem_geomean,
            small: Some(&s.small_peak),
        });
    }
    let legend_h = 30.0;
    let height = legend_h + panel_h * panels.len() as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // Legend.
    let mut x = LEFT;
    let _ = writeln!(
        o,
        r#"<text x="{x:.1}" y="19" font-weight="bold">tessera-bench</text>"#
    );
    x += 100.0;
    for (k, &i) in bars.iter().enumerate() {
        let _ = writeln!(
            o,
            r#"<rect x="{x:.1}" y="9" width="12" height="12" fill="{}"/><text x="{:.1}" y="19">{}</text>"#,
            PALETTE[k % PALETTE.len()],
            x + 16.0,
            esc(&s.allocators[i])
        );
        x += 24.0 + 7.0 * s.allocators[i].len() as f64;
    }
    let _ = writeln!(
        o,
        r##"<text x="{x:.1}" y="19" fill="#555">(glibc = 1)</text>"##
    );
    for (pi, p) in panels.iter().enumerate() {
        let top = legend_h + pi as f64 * panel_h;
        draw_panel(&mut o, s, p, &bars, top, width, group_w);
    }
    o.push_str("</svg>\n");
    o
}

fn y_of(top: f64, ratio: f64) -> f64 {
    let l = ratio.log2().clamp(-LOG_SPAN, LOG_SPAN);
    top + TITLE_H + PLOT_H / 2.0 - l / LOG_SPAN * (PLOT_H / 2.0)
}

fn draw_panel(
    o: &mut String,
    s: &Summary,
    p: &Panel,
    bars: &[usize],
    top: f64,
    width: f64,
    group_w: f64,
) {
    let _ = writeln!(
        o,
        r#"<text x="{LEFT:.1}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
        top + 22.0,
        esc(p.title)
    );
    // Grid and y labels at powers of two.
    for e in -3i32..=3 {
        let r = 2f64.powi(e);
        let y = y_of(top, r);
        let (stroke, w) = if e == 0 { ("#000", 1.2) } else { ("#ddd", 0.8) };
        let _ = writeln!(
            o,
            r#"<line x1="{LEFT:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}" stroke-width="{w}"/>"#,
            width - RIGHT
        );
        let label = if e >= 0 {
            format!("{}", 1 << e)
        } else {
            format!("1/{}", 1 << -e)
        };
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{label}</text>"##,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let base = y_of(top, 1.0);
    let groups = s.cases.len() + 1;
    for g in 0..groups {
        let gx = LEFT + GAP + g as f64 * group_w;
        let (label, row): (String, &[Option<f64>]) = if g < s.cases.len() {
            let (w, t) = &s.cases[g];
            let small = p.small.is_some_and(|sm| sm[g]);
            (
                format!("{w} x{t}{}", if small { " ~" } else { "" }),
                &p.rows[g],
            )
        } else {
            ("geomean".to_string(), p.geomean)
        };
        if g == s.cases.len() {
            let sep = gx - GAP / 2.0;
            let _ = writeln!(
                o,
                r##"<line x1="{sep:.1}" y1="{:.1}" x2="{sep:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="3,3"/>"##,
                top + TITLE_H,
                top + TITLE_H + PLOT_H
            );
        }
        for (k, &ai) in bars.iter().enumerate() {
            let Some(r) = row[ai] else { continue };
            let x = gx + k as f64 * BAR;
            let y = y_of(top, r);
            let (y0, h) = if y < base {
                (y, base - y)
            } else {
                (base, y - base)
            };
            let _ = writeln!(
                o,
                r#"<rect x="{x:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {r:.3}</title></rect>"#,
                BAR - 1.0,
                h.max(0.5),
                PALETTE[k % PALETTE.len()],
                esc(&label),
                esc(&s.allocators[ai])
            );
            if r.log2().abs() > LOG_SPAN {
                // Neighbouring labels are staggered so they do not overlap.
                let step = 9.0 * (k % 2) as f64;
                let ty = if r > 1.0 {
                    y - 3.0 - step
                } else {
                    y + 10.0 + step
                };
                let _ = writeln!(
                    o,
                    r#"<text x="{:.1}" y="{ty:.1}" font-size="8" text-anchor="middle">{:.0}</text>"#,
                    x + BAR / 2.0,
                    if r > 1.0 { r } else { 1.0 / r }
                );
            }
        }
        let lx = gx + bars.len() as f64 * BAR / 2.0;
        let ly = top + TITLE_H + PLOT_H + 10.0;
        let _ = writeln!(
            o,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-55 {lx:.1} {ly:.1})">{}</text>"#,
            esc(&label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
