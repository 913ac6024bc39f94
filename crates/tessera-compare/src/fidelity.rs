//! The fidelity test's driver: random operations replayed into Tessera's
//! `Heap` and into dlmalloc 2.8.6 (the `dlmalloc` crate) must put every
//! block at the same offset from the segment's first chunk, and leave the
//! same chunks (boundaries, in use or free, the bin each free chunk is
//! in), after every step, while both heaps stay in one segment.
//!
//! Where the two may differ, the difference has a name ([`Departure`]),
//! `docs/dlmalloc-map.md` gives its reason, and the driver recognises it
//! by what it must look like; anything else is a [`Mismatch`]. A library
//! function, so the proptest (`tests/fidelity.rs`), a long seeded run and
//! a reader's own experiments drive the same code.

use crate::dl::DlHeap;
use crate::model::{Chunk, Kind};
use crate::replay::Subject;
use crate::tess::TesseraHeap;
use std::fmt;
use tessera::{Config, Heap};

/// One operation of a random program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `malloc(size)`.
    Malloc(usize),
    /// `calloc(1, size)`.
    Calloc(usize),
    /// `free` of live block number `i % live`.
    Free(usize),
    /// `realloc` of live block `i % live` to `size` (0: C's free).
    Realloc(usize, usize),
    /// `memalign(align, size)`.
    Memalign(usize, usize),
}

/// A way Tessera (or the crate) differs from malloc.c 2.8.6 on purpose or
/// by a known fault, as the driver recognises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Departure {
    /// `realloc(p, 0)` frees `p` in Tessera (REALLOC_ZERO_BYTES_FREES, the
    /// C library's rule); malloc.c's default shrinks `p` to a minimal
    /// chunk. The driver replays it to dlmalloc as `free(p)`, which is what
    /// malloc.c does when built with that option.
    ReallocZeroFrees,
    /// A block followed by top grows in place in Tessera even when top is
    /// too short, because Tessera grows top in place (its segments are
    /// reserved address space); dlmalloc's `try_realloc_chunk` fails then
    /// and `realloc` moves the block. The driver first makes dlmalloc's
    /// top long enough (a malloc of a chunk larger than any free one,
    /// which extends the segment, and its free, which gives it back to
    /// top), which is what growing top in place means.
    ReallocGrowsTop,
    /// The crate's `memalign` differs from malloc.c 2.8.6: where the
    /// leading slack would be exactly `MIN_CHUNK_SIZE` (32) it tests `>`
    /// where malloc.c tests `>=`, and moves the block one alignment
    /// further. Tessera follows malloc.c. The heaps then differ for good,
    /// so the run ends there.
    CrateMemalignLead,
}

impl Departure {
    /// Every departure.
    pub const ALL: [Departure; 3] = [
        Departure::ReallocZeroFrees,
        Departure::ReallocGrowsTop,
        Departure::CrateMemalignLead,
    ];

    /// Its name, as docs/dlmalloc-map.md spells it.
    pub fn name(self) -> &'static str {
        match self {
            Departure::ReallocZeroFrees => "realloc-zero-frees",
            Departure::ReallocGrowsTop => "realloc-grows-top",
            Departure::CrateMemalignLead => "crate-memalign-lead",
        }
    }
}

/// A difference no departure explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The operation (0-based) after which it showed.
    pub step: usize,
    /// The operation.
    pub op: Op,
    /// What differs.
    pub what: String,
    /// The operations up to and including this one, as a trace.
    pub trace: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "after operation {} ({:?}): {}\ntrace so far:\n{}",
            self.step, self.op, self.what, self.trace
        )
    }
}

/// How a run went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Operations compared (all of them unless the run ended early).
    pub compared: usize,
    /// Why the run ended early, if it did.
    pub ended: Option<String>,
    /// Departures seen, with the operation number.
    pub departures: Vec<(usize, Departure)>,
    /// The most blocks live at once.
    pub max_live: usize,
}

/// The configuration of Tessera's heap in the test: dlmalloc's defaults,
/// except that nothing is mapped directly (the crate has no `mmap_alloc`:
/// it serves every request from its segment, so Tessera's threshold is
/// put at its cap, 32 MiB, and requests stay far below it).
pub fn tessera_config() -> Config {
    Config {
        mmap_threshold: 32 << 20,
        ..Config::DEFAULT
    }
}

/// `(offset, size, kind)` of every chunk below top, then top's offset.
fn layout(chunks: &[Chunk], base: usize) -> (Vec<(usize, usize, Kind)>, Option<usize>) {
    let top = chunks
        .iter()
        .find(|c| c.kind == Kind::Top)
        .map(|c| c.addr - base);
    let v = chunks
        .iter()
        .filter(|c| {
            c.addr >= base && !matches!(c.kind, Kind::Top | Kind::Fencepost | Kind::TopFoot)
        })
        .map(|c| (c.addr - base, c.size, c.kind))
        .collect();
    (v, top)
}

/// Do two walks' chunks agree? Boundaries and in use or free must; a
/// dlmalloc chunk the walk calls the dv must be Tessera's dv, but
/// Tessera's dv may show in dlmalloc's walk as a small-bin chunk of the
/// same size (the one case the walk cannot tell apart: see `crate::dl`).
fn same_chunk(t: &(usize, usize, Kind), d: &(usize, usize, Kind)) -> bool {
    if t.0 != d.0 || t.1 != d.1 {
        return false;
    }
    match (t.2, d.2) {
        (a, b) if a == b => true,
        (Kind::Dv, Kind::SmallBin(_) | Kind::TreeBin(_)) => true,
        _ => false,
    }
}

/// Trace text of the operations so far, for a mismatch report.
fn trace_of(ops: &[Op]) -> String {
    ops.iter()
        .map(|o| format!("{o:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `ops` in both heaps, comparing after every one.
pub fn run(ops: &[Op]) -> Result<Report, Mismatch> {
    let mut t =
        TesseraHeap::with_heap(Heap::with_config(tessera::Mmap, tessera_config()).expect("a heap"));
    // dlmalloc's first chunk at Tessera's offset modulo 1 MiB, so that
    // aligned requests find the same alignment at the same offsets.
    let first = t.chunks().1;
    let mut d = DlHeap::new(first).expect("address space for the dlmalloc heap");
    // (Tessera block, dlmalloc block, asked).
    let mut live: Vec<(usize, usize, usize)> = Vec::new();
    let mut report = Report::default();
    for (step, &op) in ops.iter().enumerate() {
        let fail = |what: String| Mismatch {
            step,
            op,
            what,
            trace: trace_of(&ops[..=step]),
        };
        let mut after: Option<Departure> = None;
        match op {
            Op::Malloc(n) => {
                let (a, b) = (t.malloc(n), d.malloc(n));
                if a == 0 || b == 0 {
                    report.ended = Some(format!("out of memory at operation {step}"));
                    break;
                }
                live.push((a, b, n));
            }
            Op::Calloc(n) => {
                let (a, b) = (t.calloc(1, n), d.calloc(1, n));
                if a == 0 || b == 0 {
                    report.ended = Some(format!("out of memory at operation {step}"));
                    break;
                }
                live.push((a, b, n));
            }
            Op::Free(i) | Op::Realloc(i, 0) if !live.is_empty() => {
                let (a, b, _) = live.swap_remove(i % live.len());
                t.free(a);
                d.free(b);
                if matches!(op, Op::Realloc(..)) {
                    report.departures.push((step, Departure::ReallocZeroFrees));
                }
            }
            Op::Realloc(i, n) if !live.is_empty() => {
                let k = i % live.len();
                let (a, b, _) = live[k];
                if grows_into_short_top(&mut d, b, n) {
                    grow_top(&mut d, n);
                    report.departures.push((step, Departure::ReallocGrowsTop));
                }
                let (a2, b2) = (t.realloc(a, n), d.realloc(b, n));
                if a2 == 0 || b2 == 0 {
                    report.ended = Some(format!("out of memory at operation {step}"));
                    break;
                }
                live[k] = (a2, b2, n);
            }
            Op::Memalign(al, n) => {
                let (a, b) = (t.memalign(al, n), d.memalign(al, n));
                if a == 0 || b == 0 {
                    report.ended = Some(format!("out of memory at operation {step}"));
                    break;
                }
                live.push((a, b, n));
                after = Some(Departure::CrateMemalignLead);
            }
            Op::Free(_) | Op::Realloc(..) => {}
        }
        report.max_live = report.max_live.max(live.len());
        if d.segment().0 == d.segment().1 {
            // dlmalloc makes its segment at its first malloc; nothing yet.
            report.compared = step + 1;
            continue;
        }
        let (tchunks, tb) = t.chunks();
        let (dchunks, dnotes) = d.walk();
        let db = d.segment().0;
        if tchunks.iter().any(|c| c.kind == Kind::Direct)
            || tchunks.iter().filter(|c| c.kind == Kind::Fencepost).count() > 1
        {
            report.ended = Some(format!(
                "Tessera's heap left one segment at operation {step}"
            ));
            break;
        }
        // Every block at the same offset.
        let moved: Vec<String> = live
            .iter()
            .filter(|&&(a, b, _)| a - tb != b - db)
            .map(|&(a, b, n)| {
                format!(
                    "block of {n} B at +{:#x} in Tessera, +{:#x} in dlmalloc",
                    a - tb,
                    b - db
                )
            })
            .collect();
        if !moved.is_empty() {
            if after == Some(Departure::CrateMemalignLead)
                && memalign_lead(&tchunks, tb, &dchunks, db, live.last(), op)
            {
                report.departures.push((step, Departure::CrateMemalignLead));
                report.compared = step + 1;
                report.ended = Some(format!(
                    "the crate's memalign departure at operation {step}"
                ));
                return Ok(report);
            }
            return Err(fail(moved.join("; ")));
        }
        // The same chunks.
        let (lt, top_t) = layout(&tchunks, tb);
        let (ld, top_d) = layout(&dchunks, db);
        if top_t != top_d {
            return Err(fail(format!(
                "top at +{top_t:x?} in Tessera, +{top_d:x?} in dlmalloc ({})",
                dnotes.join("; ")
            )));
        }
        if lt.len() != ld.len() || lt.iter().zip(&ld).any(|(x, y)| !same_chunk(x, y)) {
            let first = lt
                .iter()
                .zip(&ld)
                .find(|(x, y)| !same_chunk(x, y))
                .map(|(x, y)| {
                    format!(
                        "Tessera +{:#x} {} B {:?}, dlmalloc +{:#x} {} B {:?}",
                        x.0, x.1, x.2, y.0, y.1, y.2
                    )
                })
                .unwrap_or_else(|| {
                    format!("{} chunks in Tessera, {} in dlmalloc", lt.len(), ld.len())
                });
            return Err(fail(format!("the chunks differ: {first}")));
        }
        report.compared = step + 1;
    }
    Ok(report)
}

/// Would dlmalloc's `try_realloc_chunk` fail on block `mem` growing to
/// `n` bytes because it borders top and top is too short?
fn grows_into_short_top(d: &mut DlHeap, mem: usize, n: usize) -> bool {
    let nb = request2size(n);
    let (chunks, _) = d.walk();
    let Some(i) = chunks.iter().position(|c| c.mem() == mem) else {
        return false;
    };
    let (c, next) = (&chunks[i], chunks.get(i + 1));
    match next {
        Some(top) if top.kind == Kind::Top => c.size < nb && c.size + top.size <= nb,
        _ => false,
    }
}

/// Lengthens dlmalloc's top by more than `n` bytes without moving any
/// chunk: a chunk larger than every free chunk comes from a longer top
/// and goes straight back into it.
fn grow_top(d: &mut DlHeap, n: usize) {
    let (chunks, _) = d.walk();
    let largest = chunks
        .iter()
        .filter(|c| c.kind.free())
        .map(|c| c.size)
        .max()
        .unwrap_or(0);
    let x = d.malloc(largest.max(n) + 64);
    assert!(x != 0, "dlmalloc could not grow its top");
    d.free(x);
}

/// dlmalloc's `request2size`.
pub fn request2size(n: usize) -> usize {
    if n < 23 {
        32
    } else {
        (n + 8 + 15) & !15
    }
}

/// The crate's memalign departure, by its signature: its block one
/// alignment above Tessera's, and a free chunk starting at the same
/// offset in both heaps that ends at Tessera's block there and at the
/// crate's block in the crate.
fn memalign_lead(
    tc: &[Chunk],
    tb: usize,
    dc: &[Chunk],
    db: usize,
    last: Option<&(usize, usize, usize)>,
    op: Op,
) -> bool {
    let (Some(&(a, b, _)), Op::Memalign(align, _)) = (last, op) else {
        return false;
    };
    let align = align.max(32).next_power_of_two();
    if align < 64 || b - db != a - tb + align {
        return false;
    }
    let before = |cs: &[Chunk], mem: usize| cs.iter().find(|c| c.end() == mem - 16).cloned();
    match (before(tc, a), before(dc, b)) {
        (Some(x), Some(y)) => x.kind.free() && y.kind.free() && x.addr - tb == y.addr - db,
        _ => false,
    }
}
