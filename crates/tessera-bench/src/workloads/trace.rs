//! `trace`: replays of allocation traces through the raw interface.
//!
//! A trace (format: `tessera::inspect::trace`) is compiled once, before any timing,
//! into a flat list of operations on *slots*: every recorded pointer is
//! mapped to a slot index when it is returned and the slot is recycled when
//! it is freed, so the replay itself is array indexing plus the allocator's
//! own work (no hash lookups in the timed part). Blocks still live at the
//! end of the trace are freed after it, so every run leaves the heap as it
//! found it.
//!
//! Recorded traces (`--trace FILE`, written by `libtessera.so` under
//! `TESSERA_TRACE`) replay on one thread in their recorded global order.
//! `memalign`-family calls replay as `malloc` (the raw interface has no
//! aligned entry point); calls that failed in the program are skipped;
//! frees of pointers the trace never returned (memory allocated before
//! recording started) are skipped and counted.
//!
//! Without a recorded trace the suite uses a built-in one, produced by a
//! deterministic program-like generator ([`generate`]): an indexer that
//! reads files into buffers, tokenises them into short-lived strings, keeps
//! a dictionary that grows its hash table by realloc and evicts entries,
//! builds and tears down a tree per file, and keeps a small summary per
//! file. `tessera-bench --dump-trace FILE` writes it out as a trace file.

use super::{Params, Slot, Workload};
use crate::alloc::RawAlloc;
use crate::rng::Rng;
use std::collections::HashMap;
use tessera::inspect::trace::{Event, Record, Trace};

/// One replay step on a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `slot = malloc(size)`.
    Malloc {
        /// Slot that receives the block.
        slot: u32,
        /// Bytes (>= 1).
        size: usize,
    },
    /// `slot = calloc(1, size)`.
    Calloc {
        /// Slot that receives the block.
        slot: u32,
        /// Bytes (>= 1).
        size: usize,
    },
    /// `slot = realloc(slot, size)`.
    Realloc {
        /// Slot whose block is resized.
        slot: u32,
        /// New size (>= 1).
        size: usize,
    },
    /// `free(slot)`.
    Free {
        /// Slot whose block is freed.
        slot: u32,
    },
}

/// Turns records into slot operations, one record at a time.
#[derive(Default)]
pub struct Compiler {
    ops: Vec<Op>,
    live: HashMap<usize, u32>,
    spare: Vec<u32>,
    slots: u32,
    /// Records that could not be mapped (unknown frees, double returns).
    pub anomalies: usize,
}

impl Compiler {
    fn take_slot(&mut self, recorded: usize) -> u32 {
        let s = self.spare.pop().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        if let Some(old) = self.live.insert(recorded, s) {
            // Returned again while we think it is live: its free was not
            // recorded. Free the old block so nothing leaks.
            self.anomalies += 1;
            self.ops.push(Op::Free { slot: old });
            self.spare.push(old);
        }
        s
    }

    /// Adds one record.
    pub fn push(&mut self, r: &Record) {
        match r.event {
            Event::Malloc { ret: 0, .. }
            | Event::Calloc { ret: 0, .. }
            | Event::Memalign { ret: 0, .. }
            | Event::Free { ptr: 0 }
            | Event::Exit { .. } => {}
            Event::Malloc { size, ret } | Event::Memalign { size, ret, .. } => {
                let slot = self.take_slot(ret);
                self.ops.push(Op::Malloc {
                    slot,
                    size: size.max(1),
                });
            }
            Event::Calloc { n, size, ret } => {
                let slot = self.take_slot(ret);
                self.ops.push(Op::Calloc {
                    slot,
                    size: n.saturating_mul(size).max(1),
                });
            }
            Event::Realloc { ptr: 0, size, ret } => {
                if ret != 0 {
                    let slot = self.take_slot(ret);
                    self.ops.push(Op::Malloc {
                        slot,
                        size: size.max(1),
                    });
                }
            }
            Event::Realloc { ptr, size: 0, .. } | Event::Free { ptr } => {
                match self.live.remove(&ptr) {
                    Some(slot) => {
                        self.ops.push(Op::Free { slot });
                        self.spare.push(slot);
                    }
                    None => self.anomalies += 1,
                }
            }
            Event::Realloc { ret: 0, .. } => {} // failed: the block stays
            Event::Realloc { ptr, size, ret } => match self.live.remove(&ptr) {
                Some(slot) => {
                    self.live.insert(ret, slot);
                    self.ops.push(Op::Realloc { slot, size });
                }
                None => {
                    self.anomalies += 1;
                    let slot = self.take_slot(ret);
                    self.ops.push(Op::Malloc { slot, size });
                }
            },
        }
    }

    /// The finished replay.
    pub fn finish(self, name: String) -> TraceReplay {
        TraceReplay {
            name,
            ops: self.ops,
            slots: self.slots as usize,
            anomalies: self.anomalies,
        }
    }
}

/// A compiled trace, ready to replay.
pub struct TraceReplay {
    name: String,
    ops: Vec<Op>,
    slots: usize,
    /// Records skipped or patched while compiling (see the module docs).
    pub anomalies: usize,
}

impl TraceReplay {
    /// Compiles a parsed trace.
    pub fn from_trace(name: String, t: &Trace) -> TraceReplay {
        let mut c = Compiler::default();
        for r in &t.records {
            c.push(r);
        }
        c.finish(name)
    }

    /// Reads, parses and compiles a trace file; the workload is named
    /// `trace:<file stem>`.
    pub fn from_file(path: &std::path::Path) -> Result<TraceReplay, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let t = Trace::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        Ok(TraceReplay::from_trace(format!("trace:{stem}"), &t))
    }

    /// The built-in generated trace at `scale` (1.0 = full size).
    pub fn builtin(scale: f64) -> TraceReplay {
        let mut c = Compiler::default();
        generate(scale, &mut |r| c.push(&r));
        c.finish("trace".into())
    }

    /// Operations in the replay.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the replay has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations (for tests and tools).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

/// Tag of the block made by operation `i`.
#[inline]
fn tag_at(i: usize) -> u32 {
    (i as u32).wrapping_mul(0x9E37_79B1) | 1
}

impl Workload for TraceReplay {
    fn name(&self) -> &str {
        &self.name
    }
    fn about(&self) -> &str {
        if self.name == "trace" {
            "trace replay: built-in program-like trace (indexer: files, tokens, dictionary, trees)"
        } else {
            "trace replay: recorded trace (TESSERA_TRACE), one thread, recorded order"
        }
    }
    fn threaded(&self) -> bool {
        false
    }
    fn run(&self, a: &dyn RawAlloc, _p: &Params) -> u64 {
        let what = self.name.as_str();
        let mut slots = vec![Slot::default(); self.slots];
        let mut sum = 0u64;
        for (i, op) in self.ops.iter().enumerate() {
            match *op {
                Op::Malloc { slot, size } => {
                    let s = Slot::new(a, size, tag_at(i));
                    s.touch();
                    slots[slot as usize] = s;
                }
                Op::Calloc { slot, size } => {
                    // SAFETY: size >= 1.
                    let p = unsafe { a.calloc(size) };
                    assert!(!p.is_null(), "{}: calloc({size}) failed", a.name());
                    // SAFETY: a fresh block of `size` bytes.
                    let zero = unsafe { *p == 0 && *p.add(size - 1) == 0 };
                    assert!(zero, "{}: calloc({size}) returned dirty memory", a.name());
                    let s = Slot {
                        ptr: p as usize,
                        size: size as u32,
                        tag: tag_at(i),
                    };
                    s.stamp();
                    s.touch();
                    slots[slot as usize] = s;
                }
                Op::Realloc { slot, size } => {
                    let s = &mut slots[slot as usize];
                    sum = sum.wrapping_add(s.verify(a, what));
                    let old = s.size as usize;
                    // SAFETY: a live block of `a` with requested size `old`.
                    let q = unsafe { a.realloc(s.ptr as *mut u8, old, size) };
                    assert!(!q.is_null(), "{}: realloc to {size} failed", a.name());
                    s.ptr = q as usize;
                    if size >= old {
                        s.verify(a, what);
                    }
                    s.size = size as u32;
                    s.stamp();
                    s.touch();
                }
                Op::Free { slot } => {
                    let s = std::mem::take(&mut slots[slot as usize]);
                    sum = sum.wrapping_add(s.release(a, what));
                }
            }
        }
        for s in slots {
            if s.ptr != 0 {
                sum = sum.wrapping_add(s.release(a, what));
            }
        }
        sum
    }
}

/// The built-in trace's program: see the module docs. Calls `emit` for
/// every record, in order, with fake but consistent addresses.
pub fn generate(scale: f64, emit: &mut dyn FnMut(Record)) {
    let mut g = Gen {
        emit,
        seq: 0,
        next: 0x10_0000,
        rng: Rng::new(0x7ace),
    };
    let files = Params { threads: 1, scale }.ops(600);
    let mut dict: Vec<(usize, usize)> = Vec::new(); // (entry node, string)
    let mut table = g.calloc(64, 8); // hash table: grows by doubling
    let mut table_cap = 64usize;
    let mut summaries: Vec<usize> = Vec::new();
    let mut summary_vec = g.malloc(8 * 16);
    let mut summary_cap = 16usize;
    for f in 0..files {
        // Read the file into one buffer.
        let file_size = g.rng.log_size(4096, 1 << 20);
        let buf = g.malloc(file_size);
        // Tokenise: a growing token vector and short strings, some kept.
        let mut tok_cap = 16usize;
        let mut toks = g.malloc(tok_cap * 16);
        let ntok = g.rng.range(800, 4000);
        for t in 0..ntok {
            if t == tok_cap {
                tok_cap *= 2;
                toks = g.realloc(toks, tok_cap * 16);
            }
            let len = g.rng.range(4, 48);
            let s = g.malloc(len);
            if g.rng.chance(1, 12) {
                // A new word: an entry node plus the string, kept.
                let node = g.malloc(48);
                dict.push((node, s));
                if dict.len() * 4 > table_cap * 3 {
                    table_cap *= 2;
                    table = g.realloc(table, table_cap * 8);
                }
            } else {
                g.free(s);
            }
        }
        // Build a tree, transform it (free a random half), tear it down.
        let nodes = g.rng.range(300, 3000);
        let mut tree: Vec<usize> = (0..nodes)
            .map(|_| {
                let size = [32, 48, 64, 96, 128][g.rng.below(5)];
                g.malloc(size)
            })
            .collect();
        for _ in 0..nodes / 2 {
            let i = g.rng.below(tree.len());
            let n = tree.swap_remove(i);
            g.free(n);
        }
        for _ in 0..nodes / 4 {
            let size = g.rng.range(24, 200);
            tree.push(g.malloc(size));
        }
        let size = g.rng.range(64, 512);
        let summary = g.malloc(size);
        summaries.push(summary);
        if summaries.len() == summary_cap {
            summary_cap *= 2;
            summary_vec = g.realloc(summary_vec, summary_cap * 8);
        }
        while let Some(n) = tree.pop() {
            g.free(n);
        }
        g.free(toks);
        g.free(buf);
        // Every tenth file, evict a third of the dictionary.
        if f % 10 == 9 {
            for _ in 0..dict.len() / 3 {
                let i = g.rng.below(dict.len());
                let (node, s) = dict.swap_remove(i);
                g.free(s);
                g.free(node);
            }
        }
    }
    for (node, s) in dict {
        g.free(s);
        g.free(node);
    }
    for p in summaries {
        g.free(p);
    }
    g.free(summary_vec);
    g.free(table);
    g.record(Event::Exit { live: 0 });
}

struct Gen<'a> {
    emit: &'a mut dyn FnMut(Record),
    seq: u64,
    next: usize,
    rng: Rng,
}

impl Gen<'_> {
    fn record(&mut self, event: Event) {
        self.seq += 1;
        (self.emit)(Record {
            seq: self.seq,
            tid: 1,
            event,
        });
    }
    fn addr(&mut self, size: usize) -> usize {
        let a = self.next;
        self.next += (size + 31) & !15;
        a
    }
    fn malloc(&mut self, size: usize) -> usize {
        let ret = self.addr(size);
        self.record(Event::Malloc { size, ret });
        ret
    }
    fn calloc(&mut self, n: usize, size: usize) -> usize {
        let ret = self.addr(n * size);
        self.record(Event::Calloc { n, size, ret });
        ret
    }
    fn realloc(&mut self, ptr: usize, size: usize) -> usize {
        let ret = self.addr(size);
        self.record(Event::Realloc { ptr, size, ret });
        ret
    }
    fn free(&mut self, ptr: usize) {
        self.record(Event::Free { ptr });
    }
}

/// The built-in trace at `scale` as a parsed [`Trace`] (for `--dump-trace`).
pub fn builtin_trace(scale: f64) -> Trace {
    let mut records = Vec::new();
    generate(scale, &mut |r| records.push(r));
    Trace {
        lines: (2..records.len() + 2).collect(),
        exit_live: Some(0),
        records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_round_trips_through_the_trace_format() {
        let t = builtin_trace(0.01);
        let text = t.to_text();
        let parsed = Trace::parse(&text).unwrap();
        assert_eq!(parsed.records, t.records);
        let a = TraceReplay::from_trace("x".into(), &parsed);
        let b = TraceReplay::builtin(0.01);
        assert_eq!(a.ops(), b.ops());
        assert_eq!(a.anomalies, 0);
        // The generated program frees everything it allocates.
        let mut live = 0i64;
        for op in a.ops() {
            match op {
                Op::Malloc { .. } | Op::Calloc { .. } => live += 1,
                Op::Free { .. } => live -= 1,
                Op::Realloc { .. } => {}
            }
        }
        assert_eq!(live, 0);
    }

    #[test]
    fn recorded_oddities_are_tolerated() {
        let text = "tessera-trace 1
1 5 malloc 10 0x100
2 5 free 0x999
3 5 realloc 0x100 0 0x0
4 5 realloc 0x0 32 0x200
5 5 malloc 8 0x200
6 5 memalign 64 100 0x300
7 5 calloc 0 4 0x400
";
        let t = Trace::parse(text).unwrap();
        let r = TraceReplay::from_trace("odd".into(), &t);
        assert_eq!(r.anomalies, 2); // unknown free, 0x200 returned twice
        let sum = r.run(
            &crate::alloc::Glibc,
            &Params {
                threads: 1,
                scale: 1.0,
            },
        );
        assert_ne!(sum, 0);
    }
}
