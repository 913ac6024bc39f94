//! Peak memory, measured in a child process.
//!
//! One process cannot tell how much memory each of five allocators needed:
//! whatever one of them freed stays cached in it and counts against the
//! next. So the harness re-executes its own binary once per (workload,
//! allocator, threads):
//!
//! ```text
//! /proc/self/exe --child <workload> <allocator> <threads> --scale <s> [--trace FILE]...
//! ```
//!
//! The child builds the workload (the trace is compiled here), resets the
//! kernel's peak-RSS counter (`echo 5 > /proc/self/clear_refs`, Linux 4.0+),
//! reads its resident set size (`VmRSS`) as the base, runs the workload
//! once, reads the peak (`VmHWM`) and prints one line:
//!
//! ```text
//! tessera-bench-child peak=<bytes> base=<bytes> hwm=<bytes> checksum=<n>
//! ```
//!
//! The peak of the workload is `hwm - base`: every page the allocator
//! touched for the workload, its metadata and thread caches included, plus
//! the harness's few slot arrays and thread stacks, which are the same for
//! every allocator. It is resident memory, not address space: an allocator
//! that reserves much but touches little is not charged for the reserve.

use crate::alloc::RawAlloc;
use crate::workloads::{Params, Workload};
use std::path::PathBuf;
use std::process::Command;

/// First word of the child's result line.
pub const CHILD_TAG: &str = "tessera-bench-child";

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`, ...).
pub fn status_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// Resets the peak resident set size (`VmHWM`) to the current one. Returns
/// false where the kernel does not allow it (then the peak still covers the
/// process's start-up, which only makes the measure coarser).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What a child measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildReport {
    /// `hwm - base`: the workload's peak memory.
    pub peak: u64,
    /// Resident bytes just before the workload.
    pub base: u64,
    /// Peak resident bytes of the whole child after the workload.
    pub hwm: u64,
    /// The workload's checksum.
    pub checksum: u64,
}

impl ChildReport {
    /// Parses the child's result line from its whole stdout.
    pub fn parse(stdout: &str) -> Option<ChildReport> {
        let line = stdout.lines().find(|l| l.starts_with(CHILD_TAG))?;
        let field = |name: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        Some(ChildReport {
            peak: field("peak")?,
            base: field("base")?,
            hwm: field("hwm")?,
            checksum: field("checksum")?,
        })
    }

    /// The result line.
    pub fn line(&self) -> String {
        format!(
            "{CHILD_TAG} peak={} base={} hwm={} checksum={}",
            self.peak, self.base, self.hwm, self.checksum
        )
    }
}

/// The child's side: runs `w` once on `a` and measures it.
pub fn measure_here(w: &dyn Workload, a: &dyn RawAlloc, p: &Params) -> ChildReport {
    reset_peak();
    let base = status_bytes("VmRSS").unwrap_or(0);
    let checksum = w.run(a, p);
    let hwm = status_bytes("VmHWM").unwrap_or(0);
    ChildReport {
        peak: hwm.saturating_sub(base),
        base,
        hwm,
        checksum,
    }
}

/// The parent's side: runs this binary as a child for one measurement.
pub fn measure_in_child(
    workload: &str,
    allocator: &str,
    p: &Params,
    traces: &[PathBuf],
) -> Result<ChildReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .arg(workload)
        .arg(allocator)
        .arg(p.threads.to_string())
        .arg("--scale")
        .arg(p.scale.to_string());
    for t in traces {
        cmd.arg("--trace").arg(t);
    }
    let out = cmd.output().map_err(|e| format!("cannot run child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match ChildReport::parse(&stdout) {
        Some(r) if out.status.success() => Ok(r),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!(
                "child {workload}/{allocator}/{}: {} {last}",
                p.threads, out.status
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read() {
        let rss = status_bytes("VmRSS").unwrap();
        assert!(rss > 100 << 10, "{rss}");
        assert!(status_bytes("VmHWM").unwrap() >= rss);
        assert_eq!(status_bytes("NoSuchField"), None);
    }

    #[test]
    fn report_line_round_trips() {
        let r = ChildReport {
            peak: 10,
            base: 20,
            hwm: 30,
            checksum: 40,
        };
        let text = format!("noise\n{}\n", r.line());
        assert_eq!(ChildReport::parse(&text), Some(r));
        assert_eq!(ChildReport::parse("nothing"), None);
    }
}
