//! Real programs under LD_PRELOAD=libtessera.so, each compared with a run
//! without it: same exit status, same stdout, same stderr. Any difference,
//! crash or hang fails the test. Every process the script starts (the
//! shell, compilers, git's helpers, ...) runs on Tessera, and with
//! `TESSERA_CHECK=1` each one verifies its heap at exit.
//!
//! Outside programs: python3, gcc, git, perl, sort (coreutils), sqlite3.
//! A missing one fails the test when `CI=true`, else skips it loudly.
//! Wall times of the same workloads are measured by
//! `bench/real-programs.sh`, not here.

mod common;

use common::workloads;
use common::{lib_path, require, run, temp_dir};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `script` with `sh -e` twice, in two fresh directories prepared by
/// `setup`: without and with the library preloaded. `env` is set for both.
/// Compares exit status, stdout and stderr.
fn compare(
    name: &str,
    setup: &dyn Fn(&Path),
    env: &[(&str, &str)],
    script: &str,
    timeout: Duration,
) {
    let mut outs = Vec::new();
    for preload in [false, true] {
        let dir = temp_dir(&format!(
            "{name}-{}",
            if preload { "tessera" } else { "glibc" }
        ));
        setup(dir.path());
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-ec")
            .arg(script)
            .current_dir(dir.path())
            .env_remove("LD_PRELOAD")
            .env("LC_ALL", "C");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if preload {
            cmd.env("LD_PRELOAD", lib_path()).env("TESSERA_CHECK", "1");
        }
        let out = run(&mut cmd, timeout);
        eprintln!(
            "{name}: {} in {:.2}s",
            if preload { "tessera" } else { "glibc" },
            out.elapsed.as_secs_f64()
        );
        if !preload {
            out.assert_ok(&format!(
                "{name} without LD_PRELOAD (the test itself is broken)"
            ));
        }
        outs.push((out, dir));
    }
    let (base, _) = &outs[0];
    let (ours, _) = &outs[1];
    assert_eq!(
        ours.status,
        base.status,
        "{name}: exit status differs under LD_PRELOAD\n--- stderr\n{}",
        ours.stderr_str()
    );
    assert_same(name, "stdout", &base.stdout_str(), &ours.stdout_str());
    assert_same(name, "stderr", &base.stderr_str(), &ours.stderr_str());
    assert!(
        !base.stdout.is_empty(),
        "{name}: the script printed nothing"
    );
}

/// Fails with the first differing line.
fn assert_same(name: &str, what: &str, base: &str, ours: &str) {
    if base == ours {
        return;
    }
    let (i, (a, b)) = base
        .lines()
        .chain(std::iter::repeat("<end>"))
        .zip(ours.lines().chain(std::iter::repeat("<end>")))
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .unwrap_or((0, ("", "")));
    panic!(
        "{name}: {what} differs under LD_PRELOAD at line {}\n  glibc:   {a}\n  tessera: {b}\n\
         --- tessera {what} (tail)\n{}",
        i + 1,
        common::tail(ours, 2000)
    );
}

#[test]
fn python3_threads_dicts_json_re() {
    if !require("python3", "python3") {
        return;
    }
    let setup = |d: &Path| std::fs::write(d.join("threads.py"), workloads::PYTHON).unwrap();
    // Once with every object on malloc, once with Python's own small-object
    // allocator in front of it.
    compare(
        "python3",
        &setup,
        &[],
        "PYTHONMALLOC=malloc python3 threads.py; python3 threads.py",
        Duration::from_secs(180),
    );
}

#[test]
fn gcc_compiles_10000_lines_at_o2_and_the_result_runs() {
    if !require("gcc", "gcc") {
        return;
    }
    let setup = |d: &Path| {
        let src = workloads::c_program(workloads::C_FUNCTIONS);
        assert!(src.lines().count() >= 10_000);
        std::fs::write(d.join("big.c"), src).unwrap();
    };
    compare(
        "gcc",
        &setup,
        &[],
        "gcc -O2 -Wall -o prog big.c\n\
         ./prog\n\
         gcc -O2 -S -o big.s big.c\n\
         cksum < big.s",
        Duration::from_secs(240),
    );
}

#[test]
fn git_init_add_commit_gc_log() {
    if !require("git", "git") {
        return;
    }
    let setup = |d: &Path| workloads::source_tree(&d.join("repo"), workloads::GIT_FILES);
    let env = [
        ("GIT_AUTHOR_NAME", "Tessera Test"),
        ("GIT_AUTHOR_EMAIL", "test@example.com"),
        ("GIT_COMMITTER_NAME", "Tessera Test"),
        ("GIT_COMMITTER_EMAIL", "test@example.com"),
        ("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z"),
        ("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ];
    compare(
        "git",
        &setup,
        &env,
        "cd repo\n\
         git init -q -b main .\n\
         git add .\n\
         git commit -q -m first\n\
         for f in d00*/*.txt; do echo changed >> \"$f\"; done\n\
         git rm -q -r d029\n\
         git add -A\n\
         git commit -q -m second\n\
         git gc -q --aggressive\n\
         git log --format='%H %s'\n\
         git log --stat --format='%H' | cksum\n\
         git diff --stat HEAD~1 HEAD | tail -n 1\n\
         git ls-files | wc -l\n\
         git rev-list --objects --all | wc -l\n\
         git fsck --no-progress --full\n\
         git count-objects -v | grep -E '^(count|in-pack|packs)'",
        Duration::from_secs(240),
    );
}

#[test]
fn sort_and_perl_over_100_mb_of_text() {
    if !require("sort", "coreutils") || !require("perl", "perl") {
        return;
    }
    // One 100 MB text, shared by both runs (read only).
    let data = temp_dir("text");
    let text = data.path().join("text.txt");
    workloads::text(&text, workloads::TEXT_BYTES);
    let setup = |d: &Path| std::fs::write(d.join("wordfreq.pl"), workloads::PERL).unwrap();
    let text_var = text.to_str().unwrap();
    compare(
        "sort+perl",
        &setup,
        &[("TEXT", text_var)],
        "sort -S 200M \"$TEXT\" | cksum\n\
         sort -t ' ' -k2,2 -k1,1r -s \"$TEXT\" | tail -n 5 | cksum\n\
         perl wordfreq.pl < \"$TEXT\"",
        Duration::from_secs(240),
    );
}

#[test]
fn sqlite3_inserts_100000_rows_and_queries_them() {
    if !require("sqlite3", "sqlite3") {
        return;
    }
    let setup = |d: &Path| {
        std::fs::write(
            d.join("rows.sql"),
            workloads::sqlite_script(workloads::SQL_ROWS),
        )
        .unwrap()
    };
    compare(
        "sqlite3",
        &setup,
        &[],
        "sqlite3 rows.db < rows.sql\n\
         sqlite3 rows.db 'PRAGMA integrity_check; SELECT count(*), max(id) FROM t; VACUUM;'\n\
         sqlite3 :memory: 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) \
          SELECT count(*), sum(x % 7), max(length(hex(x * x))), length(group_concat(x)) FROM c;'",
        Duration::from_secs(180),
    );
}
