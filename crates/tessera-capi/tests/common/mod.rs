//! Helpers shared by the integration tests: find the library, compile the
//! C programs, run anything with a timeout, and skip (or, on CI, fail) when
//! an outside program is missing.
#![allow(dead_code)]

pub mod workloads;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>`: the test binary lives in `target/<profile>/deps`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_path_buf()
}

/// The library under test, built for this test run.
///
/// Cargo does not build a `cdylib`-only library for the package's
/// integration tests, so the first call runs `cargo build -p tessera-capi`
/// with the test binary's own profile and target directory (a no-op when
/// the library is fresh; cargo releases its build lock before it runs
/// tests). `cargo build` leaves it in `target/<profile>/libtessera.so`.
pub fn lib_path() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = profile_dir();
            let profile = match dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") => "dev".to_string(),
                Some(other) => other.to_string(),
                None => panic!("no profile directory above {}", dir.display()),
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .args([
                    "build",
                    "-p",
                    "tessera-capi",
                    "--lib",
                    "--profile",
                    &profile,
                ])
                .arg("--target-dir")
                .arg(dir.parent().unwrap())
                .current_dir(crate_dir());
            run(&mut build, Duration::from_secs(900)).assert_ok("cargo build -p tessera-capi");
            let lib = dir.join("libtessera.so");
            assert!(
                lib.exists(),
                "cargo build did not produce {}",
                lib.display()
            );
            lib
        })
        .clone()
}

/// `crates/tessera-capi`.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Is `program` on the PATH?
pub fn have(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        let f = d.join(program);
        f.is_file()
            && std::fs::metadata(&f)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                .unwrap_or(false)
    })
}

/// True when running under CI (`CI=true` or `CI=1`), where a missing
/// outside program fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Writes `text` straight to file descriptor 2. The test harness captures
/// `eprintln!` (and shows it only for failing tests), so a skipped test
/// would look like a pass; a skip must be seen.
pub fn loud(text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writes from a live buffer to a file descriptor.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

/// True if `program` is available. If not: on CI (`CI=true` or `CI=1`)
/// the test fails; elsewhere it says loudly, on the real stderr, that it
/// is skipped and what to install.
pub fn require(program: &str, debian_package: &str) -> bool {
    if have(program) {
        return true;
    }
    let msg = format!(
        "`{program}` is not installed: install the Debian package `{debian_package}` \
         (apt-get install -y {debian_package})"
    );
    if in_ci() {
        panic!("CI is set and {msg}");
    }
    loud(&format!("\n**********\n*** SKIPPED: {msg}\n**********\n"));
    false
}

/// What a finished process did.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Panics with everything the process said unless it exited with 0.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what}: {}\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
            self.status,
            tail(&self.stdout_str(), 3000),
            tail(&self.stderr_str(), 3000)
        );
        self
    }
}

/// The last `n` bytes of `s` (or a little less, on a character boundary).
pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Runs `cmd` to completion, capturing its output. A process (group) still
/// running after `timeout` is killed and the test fails: a hang is a
/// failure.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > timeout {
            // SAFETY: kill(2) on the process group we created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("timed out after {timeout:?} (a hang is a failure): {desc}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Grandchildren that outlive the child would keep the pipes open.
    // SAFETY: as above.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        elapsed: start.elapsed(),
    }
}

/// How a C test program reaches the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Linked with `-ltessera` (and an rpath to it).
    Linked,
    /// Built without it and run with `LD_PRELOAD`.
    Preload,
}

impl Mode {
    pub const BOTH: [Mode; 2] = [Mode::Linked, Mode::Preload];
}

/// Compiles `tests/c/<name>.c` for `mode` into `dir`; returns the program.
pub fn compile(name: &str, mode: Mode, dir: &Path) -> PathBuf {
    let c_dir = crate_dir().join("tests/c");
    let exe = dir.join(format!("{name}-{mode:?}"));
    let mut cc = Command::new("cc");
    cc.args([
        "-O2",
        "-g",
        "-fno-builtin",
        "-Wall",
        "-Wno-alloc-size-larger-than",
        "-Wno-deprecated-declarations",
        "-pthread",
    ])
    .arg("-I")
    .arg(crate_dir().join("include"))
    .arg("-I")
    .arg(&c_dir);
    match mode {
        Mode::Linked => {
            let lib_dir = lib_path().parent().unwrap().to_path_buf();
            cc.arg(c_dir.join(format!("{name}.c")))
                .arg("-o")
                .arg(&exe)
                .arg(format!("-L{}", lib_dir.display()))
                .args(["-Wl,--no-as-needed", "-ltessera"])
                .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
        }
        Mode::Preload => {
            cc.arg("-include")
                .arg(c_dir.join("weak.h"))
                .arg(c_dir.join(format!("{name}.c")))
                .arg("-o")
                .arg(&exe);
        }
    }
    run(&mut cc, Duration::from_secs(120)).assert_ok(&format!("compiling {name}.c"));
    exe
}

/// A command for a compiled C program in `mode` (LD_PRELOAD set when
/// preloading).
pub fn c_command(exe: &Path, mode: Mode) -> Command {
    let mut c = Command::new(exe);
    c.env_remove("LD_PRELOAD");
    if mode == Mode::Preload {
        c.env("LD_PRELOAD", lib_path());
    }
    c
}

/// A temporary directory under `target/<profile>/capi-tests`.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    let base = profile_dir().join("capi-tests");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(base)
        .unwrap()
}
