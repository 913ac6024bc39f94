//! Inputs of the real-program tests and of `bench/real-programs.sh`
//! (through `examples/gen-workloads.rs`): deterministic, generated in Rust,
//! so that the runs with and without LD_PRELOAD see exactly the same data.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Size of the text for sort and perl.
pub const TEXT_BYTES: usize = 100 << 20;
/// Functions in the generated C file (20 lines each: over 10,000 lines).
pub const C_FUNCTIONS: usize = 520;
/// Rows inserted by the SQL script.
pub const SQL_ROWS: usize = 100_000;
/// Files committed to git.
pub const GIT_FILES: usize = 3_000;

/// The Python workload (threads, dicts, lists, strings, json, re).
pub const PYTHON: &str = include_str!("../workloads/threads.py");
/// The Perl workload (word frequencies).
pub const PERL: &str = include_str!("../workloads/wordfreq.pl");

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(2685821657736338717)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A C program of `functions` generated functions (about 20 lines each)
/// and a `main` that calls them all and prints a checksum. 520 functions
/// make a little over 10,000 lines.
pub fn c_program(functions: usize) -> String {
    let mut s = String::new();
    s.push_str("#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>\n\n");
    let mut rng = Rng::new(0xc0ffee);
    for i in 0..functions {
        let k = rng.below(7) + 2;
        writeln!(s, "struct s{i} {{").unwrap();
        writeln!(s, "    long a;").unwrap();
        writeln!(s, "    int b[{k}];").unwrap();
        writeln!(s, "    double c;").unwrap();
        writeln!(s, "}};").unwrap();
        writeln!(s, "static long f{i}(long x) {{").unwrap();
        writeln!(s, "    struct s{i} v;").unwrap();
        writeln!(s, "    memset(&v, 0, sizeof v);").unwrap();
        writeln!(
            s,
            "    v.a = x * {} + {};",
            rng.below(1000) + 1,
            rng.below(100)
        )
        .unwrap();
        writeln!(s, "    for (int j = 0; j < {k}; j++) {{").unwrap();
        writeln!(s, "        switch ((int)((v.a + j) & 3)) {{").unwrap();
        writeln!(
            s,
            "        case 0: v.b[j] = (int)(v.a >> {}); break;",
            rng.below(9)
        )
        .unwrap();
        writeln!(s, "        case 1: v.b[j] = j * {}; break;", rng.below(50)).unwrap();
        writeln!(
            s,
            "        case 2: v.c += j / {}.0; break;",
            rng.below(9) + 1
        )
        .unwrap();
        writeln!(s, "        default: v.a ^= j + {}; break;", rng.below(77)).unwrap();
        writeln!(s, "        }}").unwrap();
        writeln!(s, "    }}").unwrap();
        writeln!(s, "    for (int j = 0; j < {k}; j++)").unwrap();
        writeln!(s, "        v.a += v.b[j];").unwrap();
        writeln!(s, "    return v.a + (long)v.c + {i};").unwrap();
        writeln!(s, "}}\n").unwrap();
    }
    s.push_str("int main(void) {\n    long t = 1;\n");
    for i in 0..functions {
        writeln!(s, "    t = (t ^ f{i}(t & 1023)) % 1000000007;").unwrap();
    }
    s.push_str("    printf(\"%ld\\n\", t);\n    return 0;\n}\n");
    s
}

/// `words` pseudo-words of 2 to 9 letters.
fn vocabulary(rng: &mut Rng, words: usize) -> Vec<String> {
    (0..words)
        .map(|_| {
            let len = 2 + rng.below(8) as usize;
            (0..len)
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        })
        .collect()
}

/// Writes about `bytes` bytes of text: lines of 3 to 14 words drawn from a
/// 30,000-word vocabulary (skewed towards the first words), ending with a
/// number.
pub fn text(path: &Path, bytes: usize) {
    let mut rng = Rng::new(0x5eed);
    let vocab = vocabulary(&mut rng, 30_000);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut written = 0;
    let mut line = String::new();
    while written < bytes {
        line.clear();
        let n = 3 + rng.below(12);
        for _ in 0..n {
            // Squaring a uniform number skews the choice towards the start.
            let u = rng.below(1 << 16);
            let index = ((u * u) as u128 * vocab.len() as u128) >> 32;
            line.push_str(&vocab[index as usize]);
            line.push(' ');
        }
        writeln!(line, "{}", rng.below(1_000_000)).unwrap();
        out.write_all(line.as_bytes()).unwrap();
        written += line.len();
    }
    out.flush().unwrap();
}

/// An SQL script: a table, `rows` INSERT statements in one transaction, an
/// index, and queries whose output is deterministic.
pub fn sqlite_script(rows: usize) -> String {
    let mut rng = Rng::new(0x5a1);
    let vocab = vocabulary(&mut rng, 5_000);
    let mut s = String::with_capacity(rows * 90);
    s.push_str(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL, payload TEXT);\n\
         BEGIN;\n",
    );
    for id in 1..=rows {
        let name = &vocab[rng.below(vocab.len() as u64) as usize];
        let payload: Vec<&str> = (0..1 + rng.below(6))
            .map(|_| vocab[rng.below(vocab.len() as u64) as usize].as_str())
            .collect();
        writeln!(
            s,
            "INSERT INTO t VALUES({id}, '{name}-{id}', {}, {}.{:02}, '{}');",
            rng.below(97),
            rng.below(10_000),
            rng.below(100),
            payload.join(" ")
        )
        .unwrap();
    }
    s.push_str(
        "COMMIT;\n\
         CREATE INDEX t_grp ON t(grp);\n\
         CREATE INDEX t_payload ON t(payload);\n\
         SELECT count(*), sum(grp), round(sum(val), 2) FROM t;\n\
         SELECT grp, count(*), max(length(payload)), round(avg(val), 3) FROM t GROUP BY grp ORDER BY grp;\n\
         SELECT id, name FROM t WHERE name LIKE '%77%' ORDER BY id LIMIT 20;\n\
         SELECT payload, count(*) AS n FROM t GROUP BY payload ORDER BY n DESC, payload LIMIT 20;\n\
         SELECT count(DISTINCT substr(payload, 1, 3)) FROM t;\n\
         SELECT a.id, b.id FROM t a JOIN t b ON a.payload = b.payload AND a.id < b.id ORDER BY a.id, b.id LIMIT 20;\n\
         UPDATE t SET val = val * 2 WHERE grp % 3 = 0;\n\
         DELETE FROM t WHERE grp = 5;\n\
         SELECT count(*), round(sum(val), 2) FROM t;\n\
         SELECT group_concat(name, ',') FROM (SELECT name FROM t ORDER BY val DESC, id LIMIT 50);\n",
    );
    s
}

/// Creates `files` text files in `dir` (in subdirectories of 100).
pub fn source_tree(dir: &Path, files: usize) {
    let mut rng = Rng::new(0x617);
    let vocab = vocabulary(&mut rng, 2_000);
    for i in 0..files {
        let sub = dir.join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        let mut body = String::new();
        for l in 0..5 + rng.below(40) {
            let words: Vec<&str> = (0..1 + rng.below(10))
                .map(|_| vocab[rng.below(vocab.len() as u64) as usize].as_str())
                .collect();
            writeln!(body, "{l}: {}", words.join(" ")).unwrap();
        }
        std::fs::write(sub.join(format!("f{i:05}.txt")), body).unwrap();
    }
}
