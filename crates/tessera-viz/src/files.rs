//! Loading traces and snapshots from files, with errors that name the
//! file, the line and what is wrong.
//!
//! A snapshot file may hold several snapshots one after the other (one per
//! arena, each from its `tessera-snapshot 1` line to its `end`).

use std::fmt;
use std::path::{Path, PathBuf};
use tessera::inspect::trace::Trace;
use tessera::inspect::SNAPSHOT_MAGIC;
use tessera::Snapshot;

/// A file that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, or 0 when the problem is the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.msg)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.msg)
        }
    }
}

impl std::error::Error for FileError {}

impl FileError {
    /// An error about `path` at `line`.
    pub fn new(path: &Path, line: usize, msg: impl Into<String>) -> FileError {
        FileError {
            path: path.to_owned(),
            line,
            msg: msg.into(),
        }
    }
}

fn read(path: &Path) -> Result<String, FileError> {
    let bytes =
        std::fs::read(path).map_err(|e| FileError::new(path, 0, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        FileError::new(path, line, "not UTF-8 text")
    })
}

/// Reads and parses a trace.
pub fn load_trace(path: &Path) -> Result<Trace, FileError> {
    let text = read(path)?;
    Trace::parse(&text).map_err(|e| FileError::new(path, e.line, e.msg))
}

/// Parses one or more snapshots written back to back; errors carry the
/// line in the whole text.
pub fn parse_snapshots(text: &str) -> Result<Vec<Snapshot>, (usize, String)> {
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    let mut line_starts: Vec<(usize, usize)> = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == SNAPSHOT_MAGIC {
            starts.push(offset);
            line_starts.push((offset, n));
        }
        offset += line.len();
    }
    if starts.first() != Some(&0) {
        // Let the core name the problem with the first line.
        return Snapshot::parse(text)
            .map(|s| vec![s])
            .map_err(|e| (e.line, e.msg));
    }
    let mut out = Vec::new();
    for (k, &(start, first_line)) in line_starts.iter().enumerate() {
        let end = line_starts.get(k + 1).map_or(text.len(), |&(s, _)| s);
        let part = &text[start..end];
        let snap = Snapshot::parse(part).map_err(|e| {
            let line = if e.line == 0 { 0 } else { e.line + first_line };
            let msg = if line_starts.len() > 1 {
                format!("{} (snapshot {} of {})", e.msg, k + 1, line_starts.len())
            } else {
                e.msg
            };
            (line, msg)
        })?;
        out.push(snap);
    }
    Ok(out)
}

/// Reads a snapshot file: one snapshot per arena.
pub fn load_snapshots(path: &Path) -> Result<Vec<Snapshot>, FileError> {
    let text = read(path)?;
    parse_snapshots(&text).map_err(|(line, msg)| FileError::new(path, line, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::Heap;

    #[test]
    fn several_snapshots_in_one_file_and_errors_keep_their_line() {
        let mut h = Heap::new();
        let _a = h.malloc(10);
        let one = Snapshot::capture(&h, 1).to_text();
        let two = format!("{one}{one}");
        assert_eq!(parse_snapshots(&two).unwrap().len(), 2);
        let lines = one.lines().count();
        let broken = format!("{one}{}", one.replacen("chunk 0x", "chunk 0q", 1));
        let (line, msg) = parse_snapshots(&broken).unwrap_err();
        let first_chunk = one.lines().position(|l| l.starts_with("chunk")).unwrap() + 1;
        assert_eq!(line, lines + first_chunk);
        assert!(
            msg.contains("not a number") && msg.contains("snapshot 2 of 2"),
            "{msg}"
        );
        let (line, _) = parse_snapshots("hello\n").unwrap_err();
        assert_eq!(line, 1);
    }
}
