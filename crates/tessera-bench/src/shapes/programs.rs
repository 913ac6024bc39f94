//! Real programs, timed as whole processes under each door: the shape of
//! mimalloc-bench's cfrac and espresso (single-threaded programs that make
//! and drop many small objects), with programs every Debian machine has.
//!
//! - `python`: CPython 3 running our own script (`python_objects.py`
//!   beside this file) with `PYTHONMALLOC=malloc`, so that every object
//!   goes to `malloc` (with Python's own small-object allocator in front,
//!   as by default, the allocator under test would see little): word
//!   counts in dicts, sorting, JSON out and back, regular expressions, a
//!   tree of tuples, small class instances. `PYTHONHASHSEED=0` makes every
//!   run allocate the same way. It prints a checksum of its results.
//! - `gcc`: `gcc -O2 -c` of a C file that we generate (structs, loops,
//!   switches, inlined helpers; [`c_source`]): the compiler's many small
//!   allocations, in the driver, `cc1` and `as`. The checksum is a hash of
//!   the object file.
//!
//! The time is the process's wall time from spawn to exit (start-up and
//! exit included, as a user would see it); CPU time is in the JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python workload.
pub const PYTHON_SCRIPT: &str = include_str!("python_objects.py");

/// Rounds of the Python script at scale 1.
const PY_ROUNDS: usize = 12;
/// Functions in the generated C file at scale 1.
const C_FUNCTIONS: usize = 100;

/// A real program.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// `python` or `gcc`.
    pub name: &'static str,
    /// One line on what it runs.
    pub about: &'static str,
    /// The executable (found on the system) and the Debian package that has it.
    pub exe: &'static str,
    /// The Debian package to install when the program is missing.
    pub package: &'static str,
}

/// The real programs, in report order.
pub fn all() -> Vec<Program> {
    vec![
        Program {
            name: "python",
            about:
                "CPython 3, PYTHONMALLOC=malloc: dicts, lists, strings, json, re, tuples, objects",
            exe: "python3",
            package: "python3",
        },
        Program {
            name: "gcc",
            about:
                "gcc -O2 -c of a generated C file (100 functions that call each other, 2,200 lines)",
            exe: "gcc",
            package: "gcc",
        },
    ]
}

/// Finds `exe`: the system's own copy first (`/usr/bin`: not a version
/// manager's shim, which would run a shell script under the preload too),
/// else the PATH.
pub fn find_exe(exe: &str) -> Option<PathBuf> {
    let sys = Path::new("/usr/bin").join(exe);
    if sys.is_file() {
        return Some(sys);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(exe))
        .find(|p| p.is_file())
}

/// The program's inputs, written once into a work directory.
pub struct Inputs {
    dir: PathBuf,
}

impl Inputs {
    /// Writes the inputs for `scale` into a fresh directory under the
    /// system's temporary directory (removed when dropped).
    pub fn write(scale: f64) -> std::io::Result<Inputs> {
        let dir =
            std::env::temp_dir().join(format!("tessera-bench-programs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("objects.py"), PYTHON_SCRIPT)?;
        let functions = ((C_FUNCTIONS as f64 * scale).round() as usize).max(10);
        std::fs::write(dir.join("gen.c"), c_source(functions))?;
        std::fs::write(dir.join("scale"), format!("{scale}"))?;
        Ok(Inputs { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The command that runs `p` at `scale` (the door is applied later).
    pub fn command(&self, p: &Program, exe: &Path, scale: f64) -> Command {
        let mut cmd = Command::new(exe);
        cmd.current_dir(&self.dir).env("LC_ALL", "C");
        match p.name {
            "python" => {
                let rounds = ((PY_ROUNDS as f64 * scale).round() as usize).max(1);
                cmd.args(["-S", "objects.py", &rounds.to_string()])
                    .env("PYTHONMALLOC", "malloc")
                    .env("PYTHONHASHSEED", "0")
                    .env("PYTHONDONTWRITEBYTECODE", "1");
            }
            "gcc" => {
                cmd.args(["-O2", "-c", "gen.c", "-o", "gen.o"]);
            }
            other => unreachable!("no program {other}"),
        }
        cmd
    }

    /// The checksum of a finished run: a hash of what it produced.
    pub fn checksum(&self, p: &Program, stdout: &str) -> Result<u64, String> {
        match p.name {
            "python" => {
                if !stdout.contains("checksum ") {
                    return Err(format!("python printed no checksum: {stdout:?}"));
                }
                Ok(fnv1a(stdout.as_bytes()))
            }
            "gcc" => {
                let o = self.dir.join("gen.o");
                let bytes = std::fs::read(&o).map_err(|e| format!("{}: {e}", o.display()))?;
                let _ = std::fs::remove_file(&o);
                Ok(fnv1a(&bytes))
            }
            other => Err(format!("no program {other}")),
        }
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A C file of `functions` functions, deterministic, that keeps `gcc -O2`
/// busy: a struct per function, an inlined helper with a loop, a switch
/// that calls earlier functions, and a table walk.
pub fn c_source(functions: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "/* generated by tessera-bench (shapes: gcc) */\n\
         #include <stddef.h>\n\
         static unsigned mix(unsigned x) { x ^= x >> 13; x *= 0x5bd1e995u; return x ^ (x >> 15); }\n",
    );
    let mut x: u64 = 0x9e37_79b9;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for i in 0..functions {
        let k = 3 + next(13);
        let m = 1 + next(97);
        let _ = writeln!(
            s,
            "struct s{i} {{ int a; long b; double c; unsigned char d[{k}]; short e[4]; }};\n\
             static inline int h{i}(const struct s{i} *p, int n) {{\n\
             \x20 int acc = {m};\n\
             \x20 for (int j = 0; j < n; j++) {{\n\
             \x20   acc += p->d[j % {k}] * (j ^ {m});\n\
             \x20   if (acc > {lim}) acc -= p->a + (int)p->b;\n\
             \x20   else if ((acc & 3) == {r}) acc ^= p->e[j & 3];\n\
             \x20 }}\n\
             \x20 return acc + (int)(p->c * {m}.5);\n\
             }}",
            lim = 1000 + next(100_000),
            r = next(4),
        );
        let _ = writeln!(
            s,
            "int f{i}(int x, int y) {{\n\
             \x20 struct s{i} v = {{ x, (long)y * {m}L, x * 0.25, {{0}}, {{1, 2, 3, {m}}} }};\n\
             \x20 for (int j = 0; j < {k}; j++) v.d[j] = (unsigned char)(x + j * {m});\n\
             \x20 int r = h{i}(&v, y & 255);"
        );
        if i > 0 {
            let _ = writeln!(s, "  switch (mix((unsigned)x) % 5) {{");
            for c in 0..4 {
                let callee = next(i as u64);
                let _ = writeln!(
                    s,
                    "  case {c}: r += f{callee}(x - {}, y ^ {c}) & 0xff; break;",
                    1 + c
                );
            }
            let _ = writeln!(s, "  default: r ^= {m}; }}");
        }
        let _ = writeln!(s, "  return r;\n}}");
    }
    let _ = writeln!(s, "typedef int (*fn)(int, int);\nconst fn table[] = {{");
    for i in 0..functions {
        let _ = write!(s, "f{i},");
        if i % 16 == 15 {
            s.push('\n');
        }
    }
    let _ = writeln!(
        s,
        "}};\nint walk(int x) {{ int r = 0; for (size_t i = 0; i < sizeof table / sizeof *table; i++) r += table[i](x, (int)i); return r; }}"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_source_is_deterministic_and_sized() {
        let a = c_source(50);
        assert_eq!(a, c_source(50));
        assert_eq!(a.matches("\nint f").count(), 50);
        assert!(a.contains("int walk(int x)"));
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
