//! The same door for every allocator: `LD_PRELOAD`.
//!
//! The shapes ([`crate::shapes`]) and the service workload
//! ([`crate::service`]) run each measurement as a separate process of this
//! very binary (or of a real program), with the allocator put in front of
//! glibc by `LD_PRELOAD`, exactly as a user would try it. glibc is the
//! process without any preload. So every allocator is reached the same way:
//! a call through the PLT to whatever `malloc` the dynamic loader bound,
//! with no allocator's fast path inlined into the benchmark.
//!
//! | door        | library                                         | Debian package          |
//! |-------------|-------------------------------------------------|-------------------------|
//! | `glibc`     | none (the system allocator)                     | libc6                   |
//! | `tessera`   | `target/release/libtessera.so` (built if stale) | -                       |
//! | `mimalloc`  | `libmimalloc.so.2`                              | `libmimalloc2.0`        |
//! | `jemalloc`  | `libjemalloc.so.2`                              | `libjemalloc2`          |
//! | `tcmalloc`  | `libtcmalloc_minimal.so.4`                      | `libtcmalloc-minimal4`  |
//! | `jemalloc-bg` | `libjemalloc.so.2` with `MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000` | `libjemalloc2` |
//!
//! `NAME=PATH` names any other preloadable library (for example an older
//! build of `libtessera.so`, to compare two builds side by side).
//!
//! Each child reports which shared object its `malloc` resolved to
//! (`dlsym` + `dladdr`); the parent refuses a measurement whose `malloc`
//! is not the door's library, so a preload that silently failed cannot
//! pass for a result.

use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `MALLOC_CONF` of the `jemalloc-bg` door: jemalloc's background purging
/// thread and a 1 s decay for dirty and muzzy pages (issue 18's table).
pub const JEMALLOC_BG_CONF: &str = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000";

/// One way into an allocator.
#[derive(Clone, Debug, PartialEq)]
pub struct Door {
    /// Name in tables, JSON and on the command line.
    pub name: String,
    /// The library to preload (`None`: glibc, no preload).
    pub lib: Option<PathBuf>,
    /// Extra environment for the process.
    pub env: Vec<(String, String)>,
    /// What it is (version or package found at run time).
    pub about: String,
}

impl Door {
    /// A door that preloads `lib` with `env` set; `about` gets the
    /// environment appended (` KEY=VALUE` each), so tables tell apart two
    /// doors of one library.
    fn preloading(name: &str, lib: PathBuf, env: Vec<(String, String)>, about: String) -> Door {
        let mut about = about;
        for (k, v) in &env {
            about.push_str(&format!(" {k}={v}"));
        }
        Door {
            name: name.to_string(),
            lib: Some(lib),
            env,
            about,
        }
    }

    /// glibc: no preload.
    pub fn glibc() -> Door {
        Door {
            name: "glibc".into(),
            lib: None,
            env: Vec::new(),
            about: glibc_version(),
        }
    }

    /// Sets up `cmd` to run through this door: `LD_PRELOAD` (or none) and
    /// the door's environment. Any `LD_PRELOAD` or `MALLOC_CONF` of the
    /// calling environment is removed first, so it cannot leak into the
    /// other doors.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env_remove("LD_PRELOAD").env_remove("MALLOC_CONF");
        if let Some(lib) = &self.lib {
            cmd.env("LD_PRELOAD", lib);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    /// Whether a child whose `malloc` lives in `object` went through this
    /// door.
    pub fn matches(&self, object: &str) -> bool {
        match &self.lib {
            None => Path::new(object)
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("libc.so")),
            Some(lib) => same_file(Path::new(object), lib),
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// glibc's version, from `gnu_get_libc_version`.
pub fn glibc_version() -> String {
    extern "C" {
        fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
    // SAFETY: returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(gnu_get_libc_version()) };
    format!("glibc {}", v.to_string_lossy())
}

/// A system library that can be preloaded, and where Debian ships it.
struct System {
    name: &'static str,
    file: &'static str,
    package: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const SYSTEM: [System; 4] = [
    System {
        name: "mimalloc",
        file: "libmimalloc.so.2",
        package: "libmimalloc2.0",
        env: &[],
    },
    System {
        name: "jemalloc",
        file: "libjemalloc.so.2",
        package: "libjemalloc2",
        env: &[],
    },
    System {
        name: "tcmalloc",
        file: "libtcmalloc_minimal.so.4",
        package: "libtcmalloc-minimal4",
        env: &[],
    },
    System {
        name: "jemalloc-bg",
        file: "libjemalloc.so.2",
        package: "libjemalloc2",
        env: &[("MALLOC_CONF", JEMALLOC_BG_CONF)],
    },
];

/// Every door name this module knows, glibc first.
pub const KNOWN: [&str; 6] = [
    "glibc",
    "tessera",
    "mimalloc",
    "jemalloc",
    "tcmalloc",
    "jemalloc-bg",
];

/// The directories searched for the system libraries.
fn lib_dirs() -> Vec<PathBuf> {
    let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("/usr/lib/{triple}"),
        format!("/lib/{triple}"),
        "/usr/lib64".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// Finds a library file in the usual directories.
pub fn find_lib(file: &str) -> Option<PathBuf> {
    lib_dirs()
        .into_iter()
        .map(|d| d.join(file))
        .find(|p| p.is_file())
}

/// The installed version of a Debian package, if dpkg knows it.
fn package_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// Whether a missing system library is fatal: under CI (`CI=true` or
/// `CI=1`), where `.ci/run` installs the packages.
pub fn strict() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Resolves the system door `name`; `Err` says which package to install.
pub fn system_door(name: &str) -> Option<Result<Door, String>> {
    let s = SYSTEM.iter().find(|s| s.name == name)?;
    Some(match find_lib(s.file) {
        Some(lib) => {
            let version = package_version(s.package)
                .map(|v| format!("{} {v}", s.package))
                .unwrap_or_else(|| s.file.to_string());
            let about = format!("{} ({version})", lib.display());
            let env = s.env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            Ok(Door::preloading(s.name, lib, env.collect(), about))
        }
        None => Err(format!(
            "{name}: {} not found; install the Debian package `{}` (apt-get install -y {})",
            s.file, s.package, s.package
        )),
    })
}

/// A door for any library: `NAME=PATH`, optionally followed by
/// environment variables for its processes only, `NAME=PATH?KEY=VALUE&...`
/// (to compare one library under two settings side by side:
/// `a2=target/release/libtessera.so?TESSERA_ARENA_MAX=2`).
pub fn custom_door(spec: &str) -> Option<Result<Door, String>> {
    let (name, rest) = spec.split_once('=')?;
    let (path, vars) = rest.split_once('?').unwrap_or((rest, ""));
    let mut env = Vec::new();
    for var in vars.split('&').filter(|v| !v.is_empty()) {
        match var.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            _ => {
                return Some(Err(format!(
                    "{name}: `{var}` is not KEY=VALUE (NAME=PATH?KEY=VALUE&KEY=VALUE)"
                )))
            }
        }
    }
    // Absolute: the real programs run in a directory of their own, where a
    // relative LD_PRELOAD path would name nothing.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    Some(if path.is_file() {
        let about = describe_file(&path);
        Ok(Door::preloading(name, path, env, about))
    } else {
        Err(format!("{name}: no file {}", path.display()))
    })
}

/// Path, size and modification time of a library (to tell builds apart).
pub fn describe_file(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let age = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.elapsed().ok())
        .map_or("?".into(), |d| format!("{} s ago", d.as_secs()));
    format!("{} ({size} bytes, built {age})", path.display())
}

/// `target/<profile>`: the directory of this executable, where
/// `cargo build -p tessera-capi` leaves `libtessera.so`.
pub fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    // Test binaries and examples live one level further down.
    if matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("deps" | "examples")
    ) {
        return dir.parent().map(Path::to_path_buf);
    }
    Some(dir.to_path_buf())
}

/// The workspace root this binary was built from, if it is still there.
fn workspace_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("Cargo.toml")
        .is_file()
        .then(|| root.canonicalize().ok())
        .flatten()
}

/// The short commit of the workspace, with `+dirty` when the work tree has
/// changes (so a JSON file says which source its libtessera.so came from).
pub fn workspace_commit() -> Option<String> {
    let root = workspace_root()?;
    let out = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["describe", "--always", "--dirty=+dirty", "--abbrev=10"])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// How to get `libtessera.so`.
#[derive(Clone, Debug, PartialEq)]
pub enum TesseraLib {
    /// Use this file as it is.
    Given(PathBuf),
    /// Build it with cargo first (a no-op when fresh), then use it; fall
    /// back to an existing file when cargo or the sources are not there.
    Build,
    /// Use the file next to this binary as it is.
    Existing,
}

/// Resolves the `tessera` door. With [`TesseraLib::Build`] this runs
/// `cargo build -p tessera-capi --lib` with this binary's profile and
/// target directory, so the library measured is the one of the current
/// sources, never a stale file. Progress goes to stderr.
pub fn tessera_door(how: &TesseraLib) -> Result<Door, String> {
    let lib = match how {
        TesseraLib::Given(p) => p.clone(),
        TesseraLib::Build | TesseraLib::Existing => {
            let dir = profile_dir().ok_or("cannot find this binary's directory")?;
            let lib = dir.join("libtessera.so");
            if *how == TesseraLib::Build {
                build_tessera(&dir)?;
            }
            lib
        }
    };
    if !lib.is_file() {
        return Err(format!(
            "tessera: no {} (build it with `cargo build --release -p tessera-capi`, \
             or give --tessera-lib PATH)",
            lib.display()
        ));
    }
    let mut about = describe_file(&lib);
    if !matches!(how, TesseraLib::Given(_)) {
        if let Some(c) = workspace_commit() {
            about.push_str(&format!(" from {c}"));
        }
    }
    let lib = lib.canonicalize().unwrap_or(lib);
    Ok(Door::preloading("tessera", lib, Vec::new(), about))
}

fn build_tessera(profile_dir: &Path) -> Result<(), String> {
    let Some(root) = workspace_root() else {
        eprintln!("tessera-bench: sources not found; using libtessera.so as it is");
        return Ok(());
    };
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(p) => p.to_string(),
        None => return Err("no profile directory".into()),
    };
    if profile == "dev" {
        eprintln!("tessera-bench: warning: a debug build measures nothing useful; use --release");
    }
    let target = profile_dir.parent().ok_or("no target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("tessera-bench: cargo build --profile {profile} -p tessera-capi --lib");
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "tessera-capi", "--lib", "--profile"])
        .arg(&profile)
        .arg("--target-dir")
        .arg(target)
        .current_dir(&root)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("building libtessera.so failed ({s})")),
        Err(e) => {
            eprintln!("tessera-bench: cannot run cargo ({e}); using libtessera.so as it is");
            Ok(())
        }
    }
}

/// The shared object that defines this process's `malloc` (the child's
/// proof of which allocator it ran on).
pub fn malloc_object() -> String {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the
    // global scope in load order, preloaded objects first.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
    object_of(addr).unwrap_or_else(|| "?".into())
}

fn object_of(addr: *const c_void) -> Option<String> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: Dl_info is plain old data; all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads its arguments and fills `info`.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(name.to_string_lossy().into_owned())
}

/// Resolves door names (`glibc` is always first and always present).
/// Unknown names are an error; system libraries that are not installed are
/// skipped with a loud message, or an error under CI. `defaults` is used
/// when `names` is empty.
pub fn resolve(
    names: &[String],
    defaults: &[&str],
    tessera: &TesseraLib,
) -> Result<Vec<Door>, String> {
    let wanted: Vec<String> = if names.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        names.to_vec()
    };
    let mut doors = vec![Door::glibc()];
    for n in &wanted {
        if doors.iter().any(|d| &d.name == n) {
            continue;
        }
        let door = if n == "tessera" {
            tessera_door(tessera)?
        } else if let Some(r) = system_door(n).or_else(|| custom_door(n)) {
            match r {
                Ok(d) => d,
                Err(msg) if strict() => return Err(msg),
                Err(msg) => {
                    eprintln!("\n**********\n*** SKIPPED {msg}\n**********\n");
                    continue;
                }
            }
        } else {
            return Err(format!(
                "unknown allocator `{n}`; known: {}, or NAME=PATH.so",
                KNOWN.join(", ")
            ));
        };
        if doors.iter().any(|d| d.name == door.name) {
            return Err(format!("allocator name `{}` given twice", door.name));
        }
        doors.push(door);
    }
    Ok(doors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `path` relative to `base` (both absolute), with `..` as needed.
    fn pathdiff(path: &Path, base: &Path) -> PathBuf {
        let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
        let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = PathBuf::new();
        for _ in common..b.len() {
            out.push("..");
        }
        for c in &p[common..] {
            out.push(c);
        }
        out
    }

    #[test]
    fn glibc_door_matches_libc_only() {
        let g = Door::glibc();
        assert!(g.matches("/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(!g.matches("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"));
        // This test process is not preloaded: its malloc is glibc's.
        assert!(g.matches(&malloc_object()), "{}", malloc_object());
    }

    #[test]
    fn unknown_and_custom_names() {
        let e = resolve(&["nope".into()], &[], &TesseraLib::Existing).unwrap_err();
        assert!(e.contains("unknown allocator"), "{e}");
        assert!(custom_door("x=/no/such/file.so").unwrap().is_err());
        assert!(custom_door("plain").is_none());
        let me = std::env::current_exe().unwrap();
        let spec = format!("a2={}?TESSERA_ARENA_MAX=2&X=", me.display());
        let d = custom_door(&spec).unwrap().unwrap();
        assert_eq!(d.name, "a2");
        assert_eq!(d.lib, Some(std::fs::canonicalize(&me).unwrap()));
        let env = [
            ("TESSERA_ARENA_MAX".into(), "2".into()),
            ("X".into(), "".into()),
        ];
        assert_eq!(d.env, env);
        // A relative path is made absolute (the programs run elsewhere).
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(&me, &cwd);
        let d = custom_door(&format!("r={}", rel.display()))
            .unwrap()
            .unwrap();
        assert!(d.lib.as_ref().unwrap().is_absolute(), "{:?}", d.lib);
        let bad = format!("b={}?NOVALUE", me.display());
        assert!(custom_door(&bad)
            .unwrap()
            .unwrap_err()
            .contains("KEY=VALUE"));
        let doors = resolve(&["glibc".into()], &[], &TesseraLib::Existing).unwrap();
        assert_eq!(doors.len(), 1);
    }
}
