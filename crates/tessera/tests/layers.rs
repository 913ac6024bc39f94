//! The layer ladder, enforced from the sources.
//!
//! [`TESSERA`] and [`CAPI`] are *the* ladder of the two allocator crates
//! (docs/ARCHITECTURE.md quotes them, and this test checks the quote).
//! Each rung lists modules (files, by module path); a module may use the
//! modules of its own rung and of the rungs below it, never one above, and
//! no modules may use each other in a circle, not even on one rung.
//!
//! "Uses" means: a `use` item, or a `crate::`/`super::`/`self::` path
//! anywhere in the code, outside comments, strings and `#[cfg(test)]`
//! items. (Method calls on a type defined elsewhere do not show; the rungs
//! inside `heap` follow dlmalloc's own order, which keeps those downward
//! too.) The test-support module `testing` is exempt.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Crate `tessera`, bottom up.
const TESSERA: &[(&str, &[&str])] = &[
    (
        "sys: pages, locks, fatal reports, the registry, fork, errno",
        &[
            "sys::report",
            "sys::os",
            "sys::lock",
            "sys::registry",
            "sys::errno",
            "sys::fork",
            "sys",
        ],
    ),
    (
        "heap: chunks, bins, classes and links",
        &[
            "heap::chunk",
            "heap::smallbins",
            "heap::treebins",
            "heap::lists",
        ],
    ),
    (
        "heap: segments, mappings, quick lists, the trust boundary",
        &[
            "heap::segment",
            "heap::mapping",
            "heap::quick",
            "heap::classify",
        ],
    ),
    ("heap: the state of one heap", &["heap::state"]),
    (
        "heap: reading it (checker, statistics, debug tier)",
        &["heap::check", "heap::stats", "heap::debug"],
    ),
    (
        "heap: the algorithms",
        &[
            "heap::bins",
            "heap::grow",
            "heap::direct",
            "heap::free",
            "heap::malloc",
            "heap::realloc",
        ],
    ),
    ("heap: the handle (Heap)", &["heap::mspace", "heap"]),
    ("threads: arenas", &["threads::arena"]),
    ("threads: giving memory back over time", &["threads::decay"]),
    ("threads: the thread cache", &["threads::tcache"]),
    (
        "threads: the global allocator",
        &["threads::global", "threads"],
    ),
    (
        "inspect: snapshots, traces, the process snapshot",
        &[
            "inspect::snapshot",
            "inspect::trace",
            "inspect::process",
            "inspect",
        ],
    ),
    ("the crate root (re-exports)", &[""]),
];

/// Modules outside the ladder: test support.
const TESSERA_EXEMPT: &[&str] = &["testing"];

/// Crate `tessera-capi` (libtessera.so), bottom up.
const CAPI: &[(&str, &[&str])] = &[
    (
        "errno, output without malloc, environment, stdio at fork",
        &["errno", "out", "env", "fork"],
    ),
    ("the trace recorder", &["trace"]),
    ("set-up, fork handlers, exit", &["runtime"]),
    ("the exported C API", &["exports", "heaps", "info"]),
    ("the crate root", &[""]),
];

// ---------------------------------------------------------------------
// Reading sources
// ---------------------------------------------------------------------

/// A crate's modules: module path ("" for the root) → source text.
type Sources = BTreeMap<String, String>;

fn read_crate(src: &Path) -> Sources {
    let mut out = Sources::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap();
                out.insert(module_path(rel), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

/// `heap/chunk.rs` → `heap::chunk`, `heap/mod.rs` → `heap`, `lib.rs` → "".
fn module_path(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// Tokens of Rust source with comments, string and char literals removed:
/// identifiers, `::`, and single punctuation characters.
fn tokens(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'r' && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) && {
            let mut j = i + 1;
            while b.get(j) == Some(&b'#') {
                j += 1;
            }
            b.get(j) == Some(&b'"')
        } {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if b[j] == b'"'
                    && b[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    i = j + 1 + hashes;
                    break;
                }
                j += 1;
            }
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                i += 3;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c == b'b' && b.get(i + 1) == Some(&b'\'') {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(src[s..i].to_string());
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push("::".to_string());
            i += 2;
        } else if c.is_ascii_whitespace() || c.is_ascii_digit() {
            i += 1;
        } else {
            out.push((c as char).to_string());
            i += 1;
        }
    }
    out
}

/// Index just past the item that starts at `i` (through its `;`, or its
/// balanced `{ }` block if one opens first).
fn skip_item(t: &[String], mut i: usize) -> usize {
    // Further attributes first.
    while i < t.len() && t[i] == "#" {
        i = skip_balanced(t, i + 1, "[", "]");
    }
    while i < t.len() {
        match t[i].as_str() {
            ";" => return i + 1,
            "{" => return skip_balanced(t, i, "{", "}"),
            _ => i += 1,
        }
    }
    i
}

/// `t[i]` is `open`: the index just past its matching `close`.
fn skip_balanced(t: &[String], mut i: usize, open: &str, close: &str) -> usize {
    let mut depth = 0;
    while i < t.len() {
        if t[i] == open {
            depth += 1;
        } else if t[i] == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

/// The paths a module's code names: `use` trees expanded, plus every
/// `crate::`/`super::`/`self::` path elsewhere, each with the inline-module
/// nesting it appears in (so `super` inside `mod owned { }` is resolved
/// from there). `#[cfg(test)]` items are skipped.
fn paths(src: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let t = tokens(src);
    let mut out = Vec::new();
    // Inline modules open at brace depths: (name, depth of its `{`).
    let mut nest: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < t.len() {
        let tok = t[i].as_str();
        if tok == "#" && t.get(i + 1).map(String::as_str) == Some("[") && test_only(&t[i + 2..]) {
            let after_attr = skip_balanced(&t, i + 1, "[", "]");
            i = skip_item(&t, after_attr);
            continue;
        }
        match tok {
            "{" => depth += 1,
            "}" => {
                if nest.last().is_some_and(|(_, d)| *d == depth) {
                    nest.pop();
                }
                depth -= 1;
            }
            "mod" if t.get(i + 2).map(String::as_str) == Some("{") => {
                nest.push((t[i + 1].clone(), depth + 1));
            }
            "use" => {
                let end = (i..t.len()).find(|&k| t[k] == ";").unwrap_or(t.len());
                let scope: Vec<String> = nest.iter().map(|(n, _)| n.clone()).collect();
                for p in expand_use(&t[i + 1..end]) {
                    out.push((scope.clone(), p));
                }
                i = end + 1;
                continue;
            }
            "crate" | "super" | "self"
                if t.get(i + 1).map(String::as_str) == Some("::")
                    && (i == 0 || t[i - 1] != "::") =>
            {
                let mut p = vec![tok.to_string()];
                let mut k = i + 1;
                while t.get(k).map(String::as_str) == Some("::")
                    && t.get(k + 1).is_some_and(|s| is_ident(s))
                {
                    p.push(t[k + 1].clone());
                    k += 2;
                }
                let scope: Vec<String> = nest.iter().map(|(n, _)| n.clone()).collect();
                out.push((scope, p));
                i = k;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Does the attribute starting at `t` (just past `#[`) compile its item
/// only for tests: `cfg(test)` or `cfg(all(.., test, ..))`?
fn test_only(t: &[String]) -> bool {
    let s = |k: usize| t.get(k).map(String::as_str);
    if s(0) != Some("cfg") || s(1) != Some("(") {
        return false;
    }
    if s(2) == Some("test") {
        return true;
    }
    if s(2) != Some("all") {
        return false;
    }
    // `test` directly inside `all( )` (not inside a `not( )`).
    let mut depth = 0;
    for tok in &t[3..] {
        match tok.as_str() {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return false;
                }
            }
            "test" if depth == 1 => return true,
            _ => {}
        }
    }
    false
}

fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
}

/// Expands a use tree (`a::b::{c, d::{e, f as g}, self, *}`) into paths.
fn expand_use(t: &[String]) -> Vec<Vec<String>> {
    fn tree(t: &[String], prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        let mut i = 0;
        while i < t.len() {
            match t[i].as_str() {
                "::" => i += 1,
                "{" => {
                    let end = skip_balanced(t, i, "{", "}");
                    // Split the group's contents at top-level commas.
                    let inner = &t[i + 1..end - 1];
                    let mut start = 0;
                    let mut d = 0;
                    for (k, s) in inner.iter().enumerate() {
                        match s.as_str() {
                            "{" => d += 1,
                            "}" => d -= 1,
                            "," if d == 0 => {
                                tree(&inner[start..k], &path, out);
                                start = k + 1;
                            }
                            _ => {}
                        }
                    }
                    tree(&inner[start..], &path, out);
                    return;
                }
                "as" => break,
                "*" => break,
                "self" if !path.is_empty() => i += 1,
                s if is_ident(s) => {
                    path.push(s.to_string());
                    i += 1;
                }
                _ => i += 1,
            }
        }
        if path.len() > prefix.len()
            || (!path.is_empty() && t.iter().any(|s| s == "self" || s == "*"))
        {
            out.push(path);
        }
    }
    let mut out = Vec::new();
    let start = usize::from(t.first().is_some_and(|s| s == "::"));
    tree(&t[start..], &[], &mut out);
    out
}

/// The module a path names, as seen from module `from` (inside the inline
/// modules `scope` of its file): the longest prefix that is a module of
/// the crate. None for paths into other crates.
fn resolve(
    modules: &BTreeSet<String>,
    from: &str,
    scope: &[String],
    p: &[String],
) -> Option<String> {
    let mut base: Vec<String> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").map(str::to_string).collect()
    };
    base.extend(scope.iter().cloned());
    let mut rest = p;
    let mut cur: Vec<String> = match rest.first().map(String::as_str) {
        Some("crate") => {
            rest = &rest[1..];
            Vec::new()
        }
        Some("super") => {
            let mut c = base.clone();
            while rest.first().map(String::as_str) == Some("super") {
                c.pop();
                rest = &rest[1..];
            }
            c
        }
        Some("self") => {
            rest = &rest[1..];
            base.clone()
        }
        // A path relative to the current module (in a `use`, edition 2018
        // paths start with a crate name or `crate`/`self`/`super`; a bare
        // name is a sibling item or an extern crate).
        _ => return None,
    };
    // Strip inline-module segments: they live in their file's module.
    let file_module = |c: &[String]| -> String {
        let mut c = c.to_vec();
        while !c.is_empty() && !modules.contains(&c.join("::")) {
            c.pop();
        }
        c.join("::")
    };
    let mut best = file_module(&cur);
    for seg in rest {
        cur.push(seg.clone());
        let joined = cur.join("::");
        if modules.contains(&joined) {
            best = joined;
        } else {
            break;
        }
    }
    Some(best)
}

/// Module → the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph(sources: &Sources, exempt: &[&str]) -> Graph {
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut g = Graph::new();
    for (m, src) in sources {
        if exempt.contains(&m.as_str()) {
            continue;
        }
        let uses = g.entry(m.clone()).or_default();
        for (scope, p) in paths(src) {
            if let Some(target) = resolve(&modules, m, &scope, &p) {
                if target != *m && !exempt.contains(&target.as_str()) {
                    uses.insert(target);
                }
            }
        }
    }
    g
}

// ---------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------

/// Everything wrong with `g` against `ladder`, one line each.
fn violations(g: &Graph, ladder: &[(&str, &[&str])]) -> Vec<String> {
    let mut rung = BTreeMap::new();
    for (r, (_, mods)) in ladder.iter().enumerate() {
        for m in mods.iter() {
            rung.insert(m.to_string(), r);
        }
    }
    let name = |m: &str| {
        if m.is_empty() {
            "<crate root>".to_string()
        } else {
            m.to_string()
        }
    };
    let mut out = Vec::new();
    for m in g.keys() {
        if !rung.contains_key(m) {
            out.push(format!(
                "module `{}` is on no rung of the ladder: add it to the table in tests/layers.rs",
                name(m)
            ));
        }
    }
    for m in rung.keys() {
        if !g.contains_key(m) {
            out.push(format!(
                "the ladder names `{}`, which does not exist",
                name(m)
            ));
        }
    }
    for (m, uses) in g {
        for u in uses {
            if let (Some(&a), Some(&b)) = (rung.get(m), rung.get(u)) {
                if b > a {
                    out.push(format!(
                        "upward import: `{}` (rung {a}, {}) uses `{}` (rung {b}, {})",
                        name(m),
                        ladder[a].0,
                        name(u),
                        ladder[b].0
                    ));
                }
            }
        }
    }
    for cycle in cycles(g) {
        let names: Vec<String> = cycle.iter().map(|m| name(m)).collect();
        out.push(format!(
            "import cycle: {} -> {}",
            names.join(" -> "),
            names[0]
        ));
    }
    out
}

/// One cycle through each strongly connected component of more than one
/// module (Tarjan's algorithm, then a walk inside the component).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        comps: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on.remove(w);
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                self.comps.push(comp);
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        comps: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    let mut out = Vec::new();
    for comp in t.comps.into_iter().filter(|c| c.len() > 1) {
        let inside: BTreeSet<&str> = comp.iter().copied().collect();
        let start = *inside.iter().next().unwrap();
        // Breadth-first from start's successors back to start, inside the
        // component: the shortest cycle through start.
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut seen = BTreeSet::from([start]);
        'bfs: while let Some(v) = queue.pop_front() {
            for w in g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !inside.contains(w) {
                    continue;
                }
                if w == start {
                    prev.insert(start, v);
                    break 'bfs;
                }
                if seen.insert(w) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut cycle = vec![start.to_string()];
        let mut v = prev[start];
        while v != start {
            cycle.push(v.to_string());
            v = prev[v];
        }
        cycle[1..].reverse();
        out.push(cycle);
    }
    out
}

/// The ladder as docs/ARCHITECTURE.md quotes it.
fn render(title: &str, ladder: &[(&str, &[&str])]) -> String {
    let mut s = format!("{title}, top to bottom:\n");
    for (name, mods) in ladder.iter().rev() {
        let mods: Vec<&str> = mods
            .iter()
            .map(|m| if m.is_empty() { "lib.rs" } else { m })
            .collect();
        let _ = writeln!(s, "  {name:<58} {}", mods.join(", "));
    }
    s
}

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

fn assert_clean(what: &str, v: Vec<String>) {
    assert!(
        v.is_empty(),
        "{what} breaks the layer ladder:\n  {}",
        v.join("\n  ")
    );
}

#[test]
fn crate_tessera_climbs_only_down() {
    let g = graph(&read_crate(&crate_src("tessera")), TESSERA_EXEMPT);
    assert!(g.len() > 30, "found only {} modules", g.len());
    assert_clean("crate tessera", violations(&g, TESSERA));
}

#[test]
fn crate_tessera_capi_climbs_only_down() {
    let g = graph(&read_crate(&crate_src("tessera-capi")), &[]);
    assert!(g.len() >= 8, "found only {} modules", g.len());
    assert_clean("crate tessera-capi", violations(&g, CAPI));
}

#[test]
fn the_architecture_doc_quotes_the_ladder() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&doc).unwrap();
    for quote in [
        render("crate tessera", TESSERA),
        render("crate tessera-capi", CAPI),
    ] {
        assert!(
            doc.contains(&quote),
            "docs/ARCHITECTURE.md must quote the ladder as it is; paste:\n\n{quote}"
        );
    }
}

// ---------------------------------------------------------------------
// The checker itself, on made-up crates: it must see what it is for.
// ---------------------------------------------------------------------

fn fake(files: &[(&str, &str)]) -> Sources {
    files
        .iter()
        .map(|(m, s)| (m.to_string(), s.to_string()))
        .collect()
}

const FAKE_LADDER: &[(&str, &[&str])] = &[
    ("low", &["low::a", "low::b", "low"]),
    ("high", &["high::c", "high"]),
    ("root", &[""]),
];

#[test]
fn an_upward_import_is_named() {
    let src = fake(&[
        ("", "pub mod low; pub mod high;"),
        ("low", "pub mod a; pub mod b;"),
        ("high", "pub mod c;"),
        ("low::a", "use crate::high::c::Thing; // the offence"),
        ("low::b", ""),
        ("high::c", "use crate::low::{a, b::Other};"),
    ]);
    let v = violations(&graph(&src, &[]), FAKE_LADDER);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains("upward import: `low::a`"), "{v:?}");
    assert!(v[0].contains("uses `high::c`"), "{v:?}");
    assert!(v[1].starts_with("import cycle: high::c -> low::a"), "{v:?}");
}

#[test]
fn a_cycle_on_one_rung_is_named_even_through_super_and_inline_paths() {
    let src = fake(&[
        ("", ""),
        ("low", ""),
        ("high", ""),
        ("low::a", "fn f() { let x = super::b::g(); }"),
        ("low::b", "pub fn g() {} const C: usize = crate::low::a::N;"),
        ("high::c", ""),
    ]);
    let v = violations(&graph(&src, &[]), FAKE_LADDER);
    assert_eq!(v, ["import cycle: low::a -> low::b -> low::a"]);
}

#[test]
fn tests_comments_strings_and_other_crates_do_not_count() {
    let src = fake(&[
        ("", ""),
        ("low", ""),
        ("high", ""),
        (
            "low::a",
            r#"
            // use crate::high::c;
            /* crate::high::c::X */
            const S: &str = "crate::high::c";
            use core::ptr;
            use tessera_core::high::c;
            #[cfg(test)]
            mod tests { use crate::high::c::X; }
            #[cfg(test)]
            use crate::high::c::Y;
            #[cfg(all(test, feature = "std"))]
            mod more_tests { use crate::high::c::Z; }
            mod inner { use super::super::b; }
            "#,
        ),
        ("low::b", ""),
        ("high::c", ""),
    ]);
    let g = graph(&src, &[]);
    assert_eq!(g["low::a"], BTreeSet::from(["low::b".to_string()]));
    assert!(violations(&g, FAKE_LADDER).is_empty());
}

#[test]
fn a_module_missing_from_the_ladder_is_named() {
    let src = fake(&[
        ("", ""),
        ("low", ""),
        ("high", ""),
        ("low::a", ""),
        ("low::b", ""),
        ("high::c", ""),
        ("high::new_one", ""),
    ]);
    let v = violations(&graph(&src, &[]), FAKE_LADDER);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("`high::new_one` is on no rung"), "{v:?}");
}

#[test]
fn use_trees_expand() {
    let t = tokens("crate::a::{b, c::{d as e, self}, f::*}");
    let got = expand_use(&t);
    let want: Vec<Vec<String>> = [
        vec!["crate", "a", "b"],
        vec!["crate", "a", "c", "d"],
        vec!["crate", "a", "c"],
        vec!["crate", "a", "f"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, want);
}
