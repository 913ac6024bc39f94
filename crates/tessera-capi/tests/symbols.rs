//! The dynamic symbol table of libtessera.so holds exactly the intended
//! functions: the malloc family, glibc's extras, and `include/tessera.h`.
//! Nothing else (no Rust-mangled names, no stray `#[no_mangle]`).

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

/// Every name the library may define, and must define.
const EXPORTS: &[&str] = &[
    // C and POSIX
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "aligned_alloc",
    "posix_memalign",
    "free_sized",
    "free_aligned_sized",
    // glibc
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "malloc_trim",
    "malloc_stats",
    "mallinfo",
    "mallinfo2",
    "mallopt",
    "malloc_info",
    // tessera.h
    "tessera_heap_create",
    "tessera_heap_destroy",
    "tessera_heap_malloc",
    "tessera_heap_calloc",
    "tessera_heap_realloc",
    "tessera_heap_memalign",
    "tessera_heap_free",
    "tessera_heap_usable_size",
    "tessera_heap_trim",
    "tessera_heap_stats",
    "tessera_heap_malloc_stats",
    "tessera_heap_footprint",
    "tessera_heap_max_footprint",
    "tessera_heap_footprint_limit",
    "tessera_heap_set_footprint_limit",
    "tessera_heap_check",
    "tessera_heap_write_snapshot",
    "tessera_footprint",
    "tessera_max_footprint",
    "tessera_footprint_limit",
    "tessera_set_footprint_limit",
    "tessera_stats",
    "tessera_check",
    "tessera_write_snapshot",
];

fn defined_symbols() -> BTreeSet<String> {
    let out = common::run(
        Command::new("nm")
            .args(["-D", "--defined-only", "--format=posix"])
            .arg(common::lib_path()),
        Duration::from_secs(30),
    );
    out.assert_ok("nm -D --defined-only");
    out.stdout_str()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|name| name.split('@').next().unwrap().to_string())
        .collect()
}

#[test]
fn exported_names_are_exactly_the_intended_list() {
    let got = defined_symbols();
    let want: BTreeSet<String> = EXPORTS.iter().map(|s| s.to_string()).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "unexpected exports: {extra:?}\nmissing exports: {missing:?}"
    );
}

#[test]
fn every_declared_function_of_the_header_is_exported() {
    let header = std::fs::read_to_string(common::crate_dir().join("include/tessera.h")).unwrap();
    let declared: BTreeSet<String> = header
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tessera_"))
        .filter(|w| header.contains(&format!("{w}(")))
        .map(String::from)
        .collect();
    assert!(declared.len() >= 20, "{declared:?}");
    let got = defined_symbols();
    for name in &declared {
        assert!(
            got.contains(name),
            "{name} is declared in tessera.h but not exported"
        );
    }
    for name in got.iter().filter(|n| n.starts_with("tessera_")) {
        assert!(
            declared.contains(name),
            "{name} is exported but not in tessera.h"
        );
    }
}
