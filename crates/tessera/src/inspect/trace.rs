//! Allocation traces: one line per call, written without allocating (by the
//! C library under `TESSERA_TRACE=path`), parsed and replayed into a fresh
//! heap (by the visualiser and the benchmarks).
//!
//! # Format, version 1
//! ```text
//! tessera-trace 1
//! <seq> <tid> malloc <size> <ret>
//! <seq> <tid> calloc <n> <size> <ret>
//! <seq> <tid> realloc <ptr> <size> <ret>
//! <seq> <tid> memalign <align> <size> <ret>
//! <seq> <tid> free <ptr>
//! <seq> <tid> exit <live>
//! ```
//! `seq` is a process-wide sequence number, `tid` the kernel thread id;
//! pointers are hex with `0x` (`0x0` for null), sizes decimal. Lines of
//! different threads may appear out of order in the file; replay sorts by
//! `seq`. The recorder takes `seq` *after* an allocation returns and
//! *before* a free starts, so for any address the order of events is the
//! order in which the program saw them. `memalign` covers every aligned
//! entry point (memalign, posix_memalign, aligned_alloc, valloc, pvalloc).
//! `exit` is written once, at process exit, with the number of blocks the
//! program still held; a trace without it was cut short. Lines starting
//! with `#` are comments.

use super::Line;
use super::Sink;

/// One call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `malloc(size) = ret`.
    Malloc {
        /// Bytes requested.
        size: usize,
        /// Result (0 = null).
        ret: usize,
    },
    /// `calloc(n, size) = ret`.
    Calloc {
        /// Element count.
        n: usize,
        /// Element size.
        size: usize,
        /// Result.
        ret: usize,
    },
    /// `realloc(ptr, size) = ret`.
    Realloc {
        /// Old pointer (0 = null).
        ptr: usize,
        /// New size.
        size: usize,
        /// Result.
        ret: usize,
    },
    /// An aligned allocation.
    Memalign {
        /// Alignment.
        align: usize,
        /// Bytes requested.
        size: usize,
        /// Result.
        ret: usize,
    },
    /// `free(ptr)`.
    Free {
        /// The pointer (0 = null).
        ptr: usize,
    },
    /// End of the program, with its live block count.
    Exit {
        /// Blocks still allocated at exit.
        live: usize,
    },
}

/// One line of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Process-wide order.
    pub seq: u64,
    /// Thread id.
    pub tid: u64,
    /// The call.
    pub event: Event,
}

/// The first line of every trace.
pub const TRACE_MAGIC: &str = "tessera-trace 1";

/// Writes one record as a line, without allocating.
pub fn write_record(r: &Record, sink: &mut dyn Sink) {
    let mut l = Line::new();
    l.dec(r.seq as usize);
    l.str(" ");
    l.dec(r.tid as usize);
    match r.event {
        Event::Malloc { size, ret } => {
            l.str(" malloc ");
            l.dec(size);
            l.str(" ");
            l.hex(ret);
        }
        Event::Calloc { n, size, ret } => {
            l.str(" calloc ");
            l.dec(n);
            l.str(" ");
            l.dec(size);
            l.str(" ");
            l.hex(ret);
        }
        Event::Realloc { ptr, size, ret } => {
            l.str(" realloc ");
            l.hex(ptr);
            l.str(" ");
            l.dec(size);
            l.str(" ");
            l.hex(ret);
        }
        Event::Memalign { align, size, ret } => {
            l.str(" memalign ");
            l.dec(align);
            l.str(" ");
            l.dec(size);
            l.str(" ");
            l.hex(ret);
        }
        Event::Free { ptr } => {
            l.str(" free ");
            l.hex(ptr);
        }
        Event::Exit { live } => {
            l.str(" exit ");
            l.dec(live);
        }
    }
    l.end(sink);
}

#[cfg(feature = "std")]
pub use owned::*;

#[cfg(feature = "std")]
mod owned {
    use super::*;
    use crate::heap::mspace::Heap;
    use crate::sys::os::PageSource;
    use std::collections::HashMap;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    /// A trace line that could not be parsed.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct TraceError {
        /// 1-based line number (0 when the problem is the file as a whole).
        pub line: usize,
        /// What is wrong.
        pub msg: String,
    }

    impl std::fmt::Display for TraceError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.line == 0 {
                write!(f, "{}", self.msg)
            } else {
                write!(f, "line {}: {}", self.line, self.msg)
            }
        }
    }

    impl std::error::Error for TraceError {}

    /// A parsed trace: records sorted by `seq`, each with its line number.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Trace {
        /// The records in `seq` order.
        pub records: Vec<Record>,
        /// The file line of each record (same order).
        pub lines: Vec<usize>,
        /// The live count of the `exit` record, if the trace has one.
        pub exit_live: Option<usize>,
    }

    fn num(s: &str) -> Result<usize, String> {
        let r = if let Some(h) = s.strip_prefix("0x") {
            usize::from_str_radix(h, 16)
        } else {
            s.parse()
        };
        r.map_err(|_| {
            format!(
                "`{}` is not a number",
                s.chars().take(40).collect::<String>()
            )
        })
    }

    /// Parses one line (without its newline).
    pub fn parse_line(line: &str) -> Result<Record, String> {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 3 {
            return Err("expected `<seq> <tid> <op> ...`".into());
        }
        let seq = num(f[0])? as u64;
        let tid = num(f[1])? as u64;
        let want = |n: usize| -> Result<(), String> {
            if f.len() == n + 3 {
                Ok(())
            } else {
                Err(format!(
                    "`{}` takes {n} fields, found {}",
                    f[2],
                    f.len() - 3
                ))
            }
        };
        let event = match f[2] {
            "malloc" => {
                want(2)?;
                Event::Malloc {
                    size: num(f[3])?,
                    ret: num(f[4])?,
                }
            }
            "calloc" => {
                want(3)?;
                Event::Calloc {
                    n: num(f[3])?,
                    size: num(f[4])?,
                    ret: num(f[5])?,
                }
            }
            "realloc" => {
                want(3)?;
                Event::Realloc {
                    ptr: num(f[3])?,
                    size: num(f[4])?,
                    ret: num(f[5])?,
                }
            }
            "memalign" => {
                want(3)?;
                Event::Memalign {
                    align: num(f[3])?,
                    size: num(f[4])?,
                    ret: num(f[5])?,
                }
            }
            "free" => {
                want(1)?;
                Event::Free { ptr: num(f[3])? }
            }
            "exit" => {
                want(1)?;
                Event::Exit { live: num(f[3])? }
            }
            other => return Err(format!("unknown operation `{other}`")),
        };
        Ok(Record { seq, tid, event })
    }

    impl Trace {
        /// Parses a whole trace. Errors name the line.
        pub fn parse(text: &str) -> Result<Trace, TraceError> {
            let mut lines = text.lines().enumerate();
            match lines.next() {
                Some((_, l)) if l.trim_end() == TRACE_MAGIC => {}
                Some((n, l)) => {
                    return Err(TraceError {
                        line: n + 1,
                        msg: format!(
                            "expected `{TRACE_MAGIC}`, found `{}`",
                            l.chars().take(40).collect::<String>()
                        ),
                    })
                }
                None => {
                    return Err(TraceError {
                        line: 0,
                        msg: "empty file: expected a trace".into(),
                    })
                }
            }
            let mut recs: Vec<(Record, usize)> = Vec::new();
            for (n, line) in lines {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let r = parse_line(line).map_err(|msg| TraceError { line: n + 1, msg })?;
                recs.push((r, n + 1));
            }
            recs.sort_by_key(|(r, _)| r.seq);
            for w in recs.windows(2) {
                if w[0].0.seq == w[1].0.seq {
                    return Err(TraceError {
                        line: w[1].1,
                        msg: format!(
                            "sequence number {} appears twice (also line {})",
                            w[1].0.seq, w[0].1
                        ),
                    });
                }
            }
            let exit_live = recs.iter().rev().find_map(|(r, _)| match r.event {
                Event::Exit { live } => Some(live),
                _ => None,
            });
            Ok(Trace {
                lines: recs.iter().map(|(_, l)| *l).collect(),
                records: recs.into_iter().map(|(r, _)| r).collect(),
                exit_live,
            })
        }

        /// The trace as text.
        pub fn to_text(&self) -> String {
            let mut out: Vec<u8> = Vec::new();
            out.extend_from_slice(TRACE_MAGIC.as_bytes());
            out.push(b'\n');
            for r in &self.records {
                write_record(r, &mut out);
            }
            String::from_utf8(out).expect("trace text is ASCII")
        }
    }

    /// What one replayed step did, in replay addresses.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Applied {
        /// The block freed or resized away from (0 if none).
        pub old: usize,
        /// The block created (0 if none).
        pub new: usize,
        /// Its requested size.
        pub size: usize,
    }

    /// A replay problem: the record's line and what is wrong.
    pub type ReplayError = TraceError;

    /// Replays a trace into a heap, mapping the recorded addresses to the
    /// replay heap's own.
    pub struct Replayer<S: PageSource> {
        /// The heap the trace is replayed into.
        pub heap: Heap<S>,
        /// Recorded address -> (replay address, requested size).
        live: HashMap<usize, (usize, usize)>,
    }

    impl<S: PageSource> Replayer<S> {
        /// A replayer over `heap`.
        pub fn new(heap: Heap<S>) -> Self {
            Replayer {
                heap,
                live: HashMap::new(),
            }
        }

        /// Blocks live in the replay.
        pub fn live(&self) -> usize {
            self.live.len()
        }

        /// The replay address and requested size of a recorded block.
        pub fn lookup(&self, recorded: usize) -> Option<(usize, usize)> {
            self.live.get(&recorded).copied()
        }

        /// Every live block: (recorded address, replay address, requested
        /// size), in no particular order.
        pub fn live_blocks(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
            self.live.iter().map(|(&rec, &(a, s))| (rec, a, s))
        }

        /// Requested size of the live replay block at `addr`, if any.
        pub fn requested_sizes(&self) -> HashMap<usize, usize> {
            self.live.values().map(|&(a, s)| (a, s)).collect()
        }

        fn take(
            &mut self,
            ptr: usize,
            line: usize,
            what: &str,
        ) -> Result<(usize, usize), ReplayError> {
            self.live.remove(&ptr).ok_or_else(|| TraceError {
                line,
                msg: format!("{what} of unknown pointer {ptr:#x} (never allocated in this trace, or already freed)"),
            })
        }

        fn add(
            &mut self,
            recorded: usize,
            p: *mut u8,
            size: usize,
            line: usize,
        ) -> Result<usize, ReplayError> {
            if p.is_null() {
                return Err(TraceError {
                    line,
                    msg: format!("the replay heap could not allocate {size} bytes"),
                });
            }
            if self.live.insert(recorded, (p as usize, size)).is_some() {
                return Err(TraceError {
                    line,
                    msg: format!("pointer {recorded:#x} returned while still live"),
                });
            }
            Ok(p as usize)
        }

        /// Applies one record (`line` is for error messages).
        pub fn apply(&mut self, r: &Record, line: usize) -> Result<Applied, ReplayError> {
            let none = Applied {
                old: 0,
                new: 0,
                size: 0,
            };
            match r.event {
                Event::Malloc { size, ret } | Event::Memalign { size, ret, .. } if ret == 0 => {
                    let _ = size;
                    Ok(none)
                }
                Event::Malloc { size, ret } => {
                    let p = self.heap.malloc(size);
                    let new = self.add(ret, p, size, line)?;
                    Ok(Applied { old: 0, new, size })
                }
                Event::Memalign { align, size, ret } => {
                    let p = self.heap.memalign(align, size);
                    let new = self.add(ret, p, size, line)?;
                    Ok(Applied { old: 0, new, size })
                }
                Event::Calloc { ret: 0, .. } => Ok(none),
                Event::Calloc { n, size, ret } => {
                    let p = self.heap.calloc(n, size);
                    let new = self.add(ret, p, n.saturating_mul(size), line)?;
                    Ok(Applied {
                        old: 0,
                        new,
                        size: n * size,
                    })
                }
                Event::Free { ptr: 0 } | Event::Exit { .. } => Ok(none),
                Event::Free { ptr } => {
                    let (old, _) = self.take(ptr, line, "free")?;
                    // SAFETY: `old` is a live block of the replay heap.
                    unsafe { self.heap.free(old as *mut u8) };
                    Ok(Applied {
                        old,
                        new: 0,
                        size: 0,
                    })
                }
                Event::Realloc { ptr: 0, size, ret } => {
                    if ret == 0 {
                        return Ok(none);
                    }
                    let p = self.heap.malloc(size);
                    let new = self.add(ret, p, size, line)?;
                    Ok(Applied { old: 0, new, size })
                }
                Event::Realloc { ptr, size, ret } => {
                    if ret == 0 && size != 0 {
                        // Failed in the program: the old block stays.
                        if !self.live.contains_key(&ptr) {
                            return Err(TraceError {
                                line,
                                msg: format!("realloc of unknown pointer {ptr:#x}"),
                            });
                        }
                        return Ok(none);
                    }
                    let (old, _) = self.take(ptr, line, "realloc")?;
                    // SAFETY: `old` is a live block of the replay heap.
                    let p = unsafe { self.heap.realloc(old as *mut u8, size) };
                    if size == 0 {
                        return Ok(Applied {
                            old,
                            new: 0,
                            size: 0,
                        });
                    }
                    let new = self.add(ret, p, size, line)?;
                    Ok(Applied { old, new, size })
                }
            }
        }

        /// Replays a whole trace; returns the number of steps applied.
        pub fn run(&mut self, t: &Trace) -> Result<usize, ReplayError> {
            for (r, &line) in t.records.iter().zip(&t.lines) {
                self.apply(r, line)?;
            }
            Ok(t.records.len())
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::Heap;

    const SAMPLE: &str = "tessera-trace 1
1 7 malloc 100 0x1000
3 7 free 0x1000
2 8 calloc 4 10 0x2000
# a comment
4 8 realloc 0x2000 500 0x3000
5 7 memalign 64 10 0x4000
6 7 malloc 10 0x0
7 7 exit 2
";

    #[test]
    fn parse_sorts_by_seq_and_round_trips() {
        let t = Trace::parse(SAMPLE).unwrap();
        let seqs: std::vec::Vec<u64> = t.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(t.lines[1], 4);
        assert_eq!(t.exit_live, Some(2));
        assert_eq!(Trace::parse(&t.to_text()).unwrap().records, t.records);
    }

    #[test]
    fn replay_ends_with_the_recorded_live_count() {
        let t = Trace::parse(SAMPLE).unwrap();
        let mut r = Replayer::new(Heap::new());
        r.run(&t).unwrap();
        assert_eq!(Some(r.live()), t.exit_live);
        r.heap.check().unwrap();
    }

    #[test]
    fn errors_name_the_line() {
        let e = Trace::parse("tessera-trace 1\n1 2 malloc x 0x0\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.msg.contains("not a number"));
        let e = Trace::parse("tessera-trace 1\n1 2 frob 1\n").unwrap_err();
        assert!(e.msg.contains("unknown operation"));
        let e = Trace::parse("garbage\n").unwrap_err();
        assert_eq!(e.line, 1);
        let t = Trace::parse("tessera-trace 1\n1 2 free 0x1234\n").unwrap();
        let mut r = Replayer::new(Heap::new());
        let e = r.run(&t).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.msg.contains("unknown pointer 0x1234"), "{e}");
    }
}
