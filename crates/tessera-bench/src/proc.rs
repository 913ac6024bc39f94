//! Running a child process and measuring it as a whole: wall time, CPU
//! time and peak resident memory, from `wait4`'s resource usage.
//!
//! `ru_maxrss` of a reaped child is the largest resident set of the child
//! or of any of its own reaped descendants (for `gcc`, that is `cc1`), in
//! KiB: the same "maximum resident set size" that `/usr/bin/time` prints.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished child did.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Exit code (None: killed by a signal; see `signal`).
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Wall-clock seconds from spawn to reaping.
    pub wall: f64,
    /// User CPU seconds (the child and its reaped descendants).
    pub user: f64,
    /// System CPU seconds (the same).
    pub sys: f64,
    /// Peak resident set in bytes (the largest process of the tree).
    pub maxrss: u64,
}

impl Finished {
    /// Whether it exited with status 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// One line on how it ended, with the last line of its stderr.
    pub fn failure(&self) -> String {
        let how = match (self.code, self.signal) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "ended strangely".into(),
        };
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        format!("{how}: {last}")
    }
}

fn seconds(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6
}

/// Runs `cmd` to completion (stdin closed, stdout and stderr captured) and
/// reaps it with `wait4` to get its resource usage. A child still running
/// after `timeout` is killed (SIGKILL) and reported as killed.
pub fn run(cmd: &mut Command, timeout: Duration) -> std::io::Result<Finished> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    // Both pipes are drained on their own threads, so a child that writes
    // a lot to either never blocks.
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; status and usage are
        // valid for writes. WNOHANG: poll, so the timeout can be enforced.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if start.elapsed() > timeout {
            // SAFETY: signalling our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let wall = start.elapsed().as_secs_f64();
    // The child is reaped by hand: std must not wait for it again.
    std::mem::forget(child);
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Ok(Finished {
        code,
        signal,
        stdout,
        stderr,
        wall,
        user: seconds(usage.ru_utime),
        sys: seconds(usage.ru_stime),
        maxrss: usage.ru_maxrss.max(0) as u64 * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_child() {
        let f = run(
            Command::new("sh").args(["-c", "echo hi; echo oops >&2; exit 3"]),
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(f.code, Some(3));
        assert_eq!(f.stdout.trim(), "hi");
        assert!(f.failure().contains("oops"), "{}", f.failure());
        assert!(f.maxrss > 0 && f.wall > 0.0);
    }

    #[test]
    fn a_hung_child_is_killed() {
        let f = run(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap();
        assert_eq!(f.signal, Some(libc::SIGKILL));
        assert!(f.wall < 10.0);
    }
}
