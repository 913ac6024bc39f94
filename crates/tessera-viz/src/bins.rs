//! The bins at a glance and the free-chunk size histogram, from a snapshot.
//!
//! Everything here is counted from the walk's chunk kinds, so it agrees
//! with the grid by construction: `Σ small + Σ tree + dv` are the free
//! chunks outside top.

use crate::page::tree_bin_range;
use std::fmt::Write;
use tessera::heap::smallbins::small_index2size;
use tessera::inspect::ChunkKind;
use tessera::Snapshot;

/// One non-empty bin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinLine {
    /// Bin index.
    pub index: u8,
    /// Smallest and largest chunk size it holds.
    pub range: (usize, usize),
    /// Free chunks in it.
    pub count: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Their addresses (at most 8 kept).
    pub chunks: Vec<usize>,
}

/// The bins of one arena.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bins {
    /// Small-bin bitmap as the heap reports it.
    pub smallmap: u32,
    /// Tree-bin bitmap.
    pub treemap: u32,
    /// Non-empty small bins.
    pub small: Vec<BinLine>,
    /// Non-empty tree bins.
    pub tree: Vec<BinLine>,
    /// The designated victim: (address, size).
    pub dv: Option<(usize, usize)>,
    /// Top: (address, size).
    pub top: Option<(usize, usize)>,
    /// In-use chunks (count, bytes), direct ones excluded.
    pub in_use: (usize, usize),
    /// Chunks parked in thread caches (count, bytes).
    pub cached: (usize, usize),
    /// Chunks parked on the arena's quick lists (count, bytes).
    pub parked: (usize, usize),
    /// Direct chunks (count, bytes).
    pub direct: (usize, usize),
    /// Bytes obtained from the OS, and the peak.
    pub footprint: (usize, usize),
}

fn add(lines: &mut Vec<BinLine>, index: u8, range: (usize, usize), addr: usize, size: usize) {
    let line = match lines.iter_mut().find(|l| l.index == index) {
        Some(l) => l,
        None => {
            lines.push(BinLine {
                index,
                range,
                count: 0,
                bytes: 0,
                chunks: Vec::new(),
            });
            lines.last_mut().expect("just pushed")
        }
    };
    line.count += 1;
    line.bytes += size;
    if line.chunks.len() < 8 {
        line.chunks.push(addr);
    }
}

impl Bins {
    /// Counts the bins of `snap`.
    pub fn of(snap: &Snapshot) -> Bins {
        let mut b = Bins {
            smallmap: snap.heap.smallmap,
            treemap: snap.heap.treemap,
            footprint: (snap.heap.footprint, snap.heap.max_footprint),
            ..Bins::default()
        };
        for c in &snap.chunks {
            match c.kind {
                ChunkKind::SmallBin(i) => {
                    let s = small_index2size(i as usize);
                    add(&mut b.small, i, (s, s), c.addr, c.size)
                }
                ChunkKind::TreeBin(i) => add(&mut b.tree, i, tree_bin_range(i), c.addr, c.size),
                ChunkKind::Dv => b.dv = Some((c.addr, c.size)),
                ChunkKind::Top => b.top = Some((c.addr, c.size)),
                ChunkKind::InUse => {
                    b.in_use.0 += 1;
                    b.in_use.1 += c.size;
                }
                ChunkKind::Cached => {
                    b.cached.0 += 1;
                    b.cached.1 += c.size;
                }
                ChunkKind::Parked => {
                    b.parked.0 += 1;
                    b.parked.1 += c.size;
                }
                ChunkKind::Direct => {
                    b.direct.0 += 1;
                    b.direct.1 += c.size;
                }
                ChunkKind::Fencepost => {}
            }
        }
        b.small.sort_by_key(|l| l.index);
        b.tree.sort_by_key(|l| l.index);
        b
    }

    /// The bins as text, `name` naming the arena. Chunk addresses are shown
    /// through `name_ptr` (e.g. as cells of the page on screen).
    pub fn text(&self, name: &str, name_ptr: &dyn Fn(usize) -> String) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bins of {name}: smallmap {:#010x} · treemap {:#010x} · footprint {} (peak {})",
            self.smallmap,
            self.treemap,
            bytes(self.footprint.0),
            bytes(self.footprint.1)
        );
        let list = |l: &BinLine| {
            let mut v: Vec<String> = l.chunks.iter().take(4).map(|&a| name_ptr(a)).collect();
            if l.count > v.len() {
                v.push("…".into());
            }
            v.join(" ")
        };
        if self.small.is_empty() && self.tree.is_empty() {
            out.push_str("  (all small and tree bins are empty)\n");
        }
        for l in &self.small {
            let _ = writeln!(
                out,
                "  small bin {:>2}  {:>11}  {:>3} chunk{} {:>9}  {}",
                l.index,
                format!("{} B", l.range.0),
                l.count,
                if l.count == 1 { " " } else { "s" },
                bytes(l.bytes),
                list(l)
            );
        }
        for l in &self.tree {
            let range = if l.range.1 == usize::MAX {
                format!("{}..", l.range.0)
            } else {
                format!("{}..{}", l.range.0, l.range.1)
            };
            let _ = writeln!(
                out,
                "  tree bin  {:>2}  {:>11}  {:>3} chunk{} {:>9}  {}",
                l.index,
                range,
                l.count,
                if l.count == 1 { " " } else { "s" },
                bytes(l.bytes),
                list(l)
            );
        }
        match self.dv {
            Some((a, s)) => {
                let _ = writeln!(out, "  dv         {:>11}  at {}", bytes(s), name_ptr(a));
            }
            None => out.push_str("  dv                none\n"),
        }
        if let Some((a, s)) = self.top {
            let _ = writeln!(out, "  top        {:>11}  at {}", bytes(s), name_ptr(a));
        }
        let _ = writeln!(
            out,
            "  in use: {} chunk{}, {} · direct: {}, {}{}{}",
            self.in_use.0,
            if self.in_use.0 == 1 { "" } else { "s" },
            bytes(self.in_use.1),
            self.direct.0,
            bytes(self.direct.1),
            if self.cached.0 > 0 {
                format!(" · cached: {}, {}", self.cached.0, bytes(self.cached.1))
            } else {
                String::new()
            },
            if self.parked.0 > 0 {
                format!(" · parked: {}, {}", self.parked.0, bytes(self.parked.1))
            } else {
                String::new()
            }
        );
        out
    }
}

/// Byte counts as people read them: `336 B`, `18.5 KiB`, `3.2 MiB`.
pub fn bytes(n: usize) -> String {
    if n < 10 * 1024 {
        format!("{n} B")
    } else if n < 10 * 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

/// A histogram over power-of-two buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// (lowest value, highest value, count, sum) per non-empty bucket, in
    /// ascending order.
    pub buckets: Vec<(usize, usize, usize, usize)>,
}

impl Histogram {
    /// Buckets `[0, 32)`, `[32, 64)`, `[64, 128)`, ... of `values`.
    pub fn of(values: impl IntoIterator<Item = usize>) -> Histogram {
        let mut counts = [(0usize, 0usize); 65];
        for v in values {
            let b = if v < 32 {
                0
            } else {
                (usize::BITS - v.leading_zeros()) as usize - 5
            };
            counts[b].0 += 1;
            counts[b].1 += v;
        }
        let buckets = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.0 > 0)
            .map(|(b, c)| {
                let (lo, hi) = if b == 0 {
                    (0, 31)
                } else {
                    let lo = 16usize << b;
                    (lo, lo.wrapping_mul(2).wrapping_sub(1))
                };
                (lo, hi, c.0, c.1)
            })
            .collect();
        Histogram { buckets }
    }

    /// Sizes of the free chunks of `snap` in bins and the dv (top apart).
    pub fn free_chunks(snap: &Snapshot) -> Histogram {
        Histogram::of(
            snap.chunks
                .iter()
                .filter(|c| {
                    matches!(
                        c.kind,
                        ChunkKind::SmallBin(_) | ChunkKind::TreeBin(_) | ChunkKind::Dv
                    )
                })
                .map(|c| c.size),
        )
    }

    /// Total count.
    pub fn total(&self) -> usize {
        self.buckets.iter().map(|b| b.2).sum()
    }

    /// Bars of at most `width` cells, one line per bucket.
    pub fn text(&self, title: &str, width: usize) -> String {
        let mut out = format!("{title}\n");
        if self.buckets.is_empty() {
            out.push_str("  (none)\n");
            return out;
        }
        let max = self.buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1);
        for &(lo, hi, n, _) in &self.buckets {
            let bar = (n * width).div_ceil(max);
            let range = if hi == usize::MAX {
                format!("{lo}..")
            } else {
                format!("{lo}..{hi}")
            };
            let _ = writeln!(out, "  {range:>17}  {:<width$} {n}", "█".repeat(bar));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::Heap;

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        let h = Histogram::of([0, 31, 32, 63, 64, 100, 4096]);
        let b: Vec<_> = h.buckets.iter().map(|b| (b.0, b.1, b.2)).collect();
        assert_eq!(
            b,
            vec![(0, 31, 2), (32, 63, 2), (64, 127, 2), (4096, 8191, 1)]
        );
        assert_eq!(h.total(), 7);
        let t = h.text("sizes", 10);
        assert!(t.contains("32..63"), "{t}");
    }

    #[test]
    fn bins_count_what_the_walk_reports() {
        let mut h = Heap::new();
        let a = h.malloc(100);
        let _g = h.malloc(10);
        let b = h.malloc(1000);
        let _g2 = h.malloc(10);
        // SAFETY: live pointers, freed once.
        unsafe {
            h.free(a);
            h.free(b);
        }
        let snap = Snapshot::capture(&h, 0);
        let bins = Bins::of(&snap);
        assert_eq!(bins.small.len(), 1);
        assert_eq!(bins.small[0].index, 14);
        assert_eq!(bins.tree.len(), 1);
        assert_eq!(bins.tree[0].bytes, 1008);
        assert!(bins.top.is_some());
        assert_eq!(bins.in_use.0, 2);
        let text = bins.text("arena 0", &|a| format!("{a:#x}"));
        assert!(text.contains("small bin 14"), "{text}");
        assert!(text.contains("tree bin   3"), "{text}");
        assert_eq!(Histogram::free_chunks(&snap).total(), 2);
    }

    #[test]
    fn parked_chunks_have_their_own_count() {
        let mut h = Heap::new();
        let a = h.malloc(100);
        let _g = h.malloc(10);
        let mut text = Vec::new();
        h.write_snapshot(&mut text, 0);
        let text = String::from_utf8(text).unwrap();
        // Only arenas park chunks: mark `a` as parked in the text form.
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("chunk {:#x} ", a as usize - 16)))
            .unwrap();
        let text = text.replace(line, &line.replace(" inuse", " parked"));
        let snap = Snapshot::parse(&text).unwrap();
        let bins = Bins::of(&snap);
        assert_eq!(bins.parked, (1, 112));
        assert_eq!(bins.in_use.0, 1);
        let out = bins.text("arena 0", &|a| format!("{a:#x}"));
        assert!(out.contains("parked: 1, 112 B"), "{out}");
    }
}
