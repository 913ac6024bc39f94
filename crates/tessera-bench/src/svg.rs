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

/// The titles of a chart.
pub struct Labels<'a> {
    /// The name at the top left.
    pub title: &'a str,
    /// The time panel's title.
    pub time: &'a str,
    /// The memory panel's title.
    pub memory: &'a str,
}

/// The suite's titles.
pub const SUITE: Labels<'static> = Labels {
    title: "tessera-bench",
    time: "Time, ratio to glibc (median; lower is better)",
    memory: "Peak memory, ratio to glibc (resident; lower is better; ~ = glibc peak < 1 MiB)",
};

/// The chart for a summary; `with_memory` adds the memory panel.
pub fn chart(s: &Summary, with_memory: bool) -> String {
    chart_with(s, with_memory, &SUITE)
}

/// The chart for a summary, with its own titles.
pub fn chart_with(s: &Summary, with_memory: bool, labels: &Labels) -> String {
    let bars: Vec<usize> = (0..s.allocators.len())
        .filter(|&i| s.allocators[i] != REFERENCE)
        .collect();
    let group_w = bars.len().max(1) as f64 * BAR + GAP;
    let groups = s.cases.len() + 1;
    let width = LEFT + RIGHT + group_w * groups as f64 + GAP;
    let panel_h = TITLE_H + PLOT_H + LABELS_H;
    let mut panels = vec![Panel {
        title: labels.time,
        rows: &s.time,
        geomean: &s.time_geomean,
        small: None,
    }];
    if with_memory {
        panels.push(Panel {
            title: labels.memory,
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
        r#"<text x="{x:.1}" y="19" font-weight="bold">{}</text>"#,
        esc(labels.title)
    );
    x += 30.0 + 7.0 * labels.title.len() as f64;
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

/// A tick label: at most two decimals, trailing zeros dropped.
fn tick(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One line of a [`line_chart`].
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// (x, y) points in order of x.
    pub points: &'a [(f64, f64)],
    /// Drawn dashed and grey (a reference line such as the live bytes).
    pub reference: bool,
    /// Points marked with a dot (e.g. where an idle period starts).
    pub marks: &'a [(f64, f64)],
}

/// A self-contained SVG line chart with linear axes from 0, one colour per
/// series (reference series dashed grey), a legend and gridlines. Hovering
/// a line shows its name.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 420.0;
    const L: f64 = 64.0;
    const R: f64 = 150.0;
    const T: f64 = 40.0;
    const B: f64 = 44.0;
    let all = series.iter().flat_map(|s| s.points.iter().chain(s.marks));
    let (mut xmax, mut ymax) = (0f64, 0f64);
    for &(x, y) in all {
        xmax = xmax.max(x);
        ymax = ymax.max(y);
    }
    let nice = |v: f64| -> f64 {
        if v <= 0.0 {
            return 1.0;
        }
        let e = 10f64.powf(v.log10().floor());
        [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * e)
            .find(|&c| c >= v)
            .unwrap_or(10.0 * e)
    };
    let (xmax, ymax) = (nice(xmax), nice(ymax * 1.05));
    let px = |x: f64| L + x / xmax * (W - L - R);
    let py = |y: f64| H - B - y / ymax * (H - T - B);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{L}" y="22" font-size="13" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for k in 0..=5 {
        let (xv, yv) = (xmax * k as f64 / 5.0, ymax * k as f64 / 5.0);
        let _ = writeln!(
            o,
            r##"<line x1="{L}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end" fill="#555">{lab}</text>"##,
            y = py(yv),
            x2 = W - R,
            tx = L - 6.0,
            ty = py(yv) + 4.0,
            lab = tick(yv)
        );
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{y2:.1}" stroke="#eee"/><text x="{x:.1}" y="{ty:.1}" text-anchor="middle" fill="#555">{lab}</text>"##,
            x = px(xv),
            y2 = H - B,
            ty = H - B + 16.0,
            lab = tick(xv)
        );
    }
    let _ = writeln!(
        o,
        r##"<line x1="{L}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="#000"/><line x1="{L}" y1="{T}" x2="{L}" y2="{y:.1}" stroke="#000"/>"##,
        y = H - B,
        x2 = W - R
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (L + W - R) / 2.0,
        H - 8.0,
        esc(x_label)
    );
    let _ = writeln!(
        o,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0,
        esc(y_label)
    );
    let mut colour = 0;
    for (k, s) in series.iter().enumerate() {
        let (stroke, dash) = if s.reference {
            ("#777".to_string(), r#" stroke-dasharray="5,4""#)
        } else {
            colour += 1;
            (PALETTE[(colour - 1) % PALETTE.len()].to_string(), "")
        };
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{stroke}" stroke-width="1.6"{dash} points="{}"><title>{}</title></polyline>"#,
            pts.join(" "),
            esc(s.name)
        );
        for &(x, y) in s.marks {
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{stroke}"><title>{}</title></circle>"#,
                px(x),
                py(y),
                esc(s.name)
            );
        }
        let ly = T + 14.0 + 18.0 * k as f64;
        let _ = writeln!(
            o,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{stroke}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            W - R + 12.0,
            W - R + 34.0,
            W - R + 40.0,
            ly + 4.0,
            esc(s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
