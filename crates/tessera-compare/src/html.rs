//! The comparison as one self-contained HTML page (no network):
//! `tessera-compare.html`. One step slider drives three heaps, each with
//! its byte grid, chunk table and bins panel; chunks whose offset or
//! merging differs from the other heaps are marked (an orange frame on
//! their bytes, `≠` and the reason in the chunk table), and the step's
//! differences are listed under its title. Each heap's pages are stored
//! as the explorer stores them ([`tessera_viz::html::PageTable`]).
//! Opening the page with `#selftest` runs its own checks, which the
//! headless-Chromium test reads.

use crate::film::Comparison;
use std::fmt::Write;
use tessera_viz::html::{escape_html, fill, roles_json, PageTable, EXPLORER_CSS};
use tessera_viz::json::string;

const TEMPLATE: &str = include_str!("../assets/compare.html");
const STYLE: &str = include_str!("../assets/compare.css");
const SCRIPT: &str = include_str!("../assets/compare.js");

fn strings(out: &mut String, v: &[String]) {
    out.push('[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, s);
    }
    out.push(']');
}

/// The comparison as the page's JSON data.
pub fn data_json(c: &Comparison) -> String {
    let mut out = String::from("{\"title\":");
    string(&mut out, &c.title);
    out.push_str(",\"roles\":");
    roles_json(&mut out);
    out.push_str(",\"missing\":");
    strings(&mut out, &c.missing);
    out.push_str(",\"steps\":[");
    for (k, (t, n)) in c.steps.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push_str("{\"title\":");
        string(&mut out, t);
        out.push_str(",\"note\":");
        string(&mut out, n);
        out.push_str(",\"diffs\":");
        strings(&mut out, &c.diffs[k]);
        out.push('}');
    }
    out.push_str("],\"heaps\":[");
    for (i, s) in c.sides.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str("{\"name\":");
        string(&mut out, s.who.name());
        out.push_str(",\"about\":");
        string(&mut out, &s.about);
        let table = PageTable::new(s.film.frames.iter().map(|f| &f.pages));
        out.push(',');
        table.write_tables(&mut out);
        out.push_str(",\"frames\":[");
        for (k, f) in s.film.frames.iter().enumerate() {
            if k > 0 {
                out.push_str(",\n");
            }
            out.push('{');
            table.write_frame(&mut out, f.focus, &f.pages, &f.gone);
            out.push_str(",\"bins\":[");
            for (j, b) in s.bins[k].iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push('[');
                string(&mut out, &b.name);
                out.push(',');
                string(&mut out, &b.sizes);
                let _ = write!(out, ",{},{}]", b.count, b.bytes);
            }
            out.push_str("],\"notes\":");
            strings(&mut out, &s.notes[k]);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

/// The page.
pub fn page(c: &Comparison) -> String {
    let title = escape_html(&c.title);
    let data = data_json(c);
    fill(
        TEMPLATE,
        &[
            ("{{TITLE}}", &title),
            ("/*EXPLORER*/", EXPLORER_CSS),
            ("/*STYLE*/", STYLE),
            ("/*SCRIPT*/", SCRIPT),
            ("/*DATA*/", &data),
        ],
    )
}
