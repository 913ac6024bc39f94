//! glibc's introspection and tuning: `mallinfo`, `mallinfo2`,
//! `malloc_stats`, `malloc_info`, `mallopt`, `malloc_trim`.
//!
//! # Field meanings (see `tessera_core::heap::stats` for the glossary)
//! | field | Tessera |
//! |---|---|
//! | `arena` | bytes committed in segments, all arenas |
//! | `ordblks` | free chunks, top included, parked ones excluded |
//! | `smblks`, `fsmblks` | chunks parked on the arenas' quick lists (Tessera's fastbins) and their bytes |
//! | `hblks`, `hblkhd` | directly mapped chunks and their bytes |
//! | `usmblks` | the largest footprint so far (dlmalloc's meaning; glibc has 0) |
//! | `uordblks` | bytes in use in segments (`arena - fordblks`) |
//! | `fordblks` | bytes free in segments, top and parked chunks included |
//! | `keepcost` | size of top (summed over arenas) |
//!
//! `mallinfo`'s `int` fields saturate at `INT_MAX` where glibc's wrap.
//!
//! Reports that cover every arena are formatted while the arenas are
//! locked, into a private `mmap` buffer ([`MapBuf`]), and handed to stdio
//! only after the locks are released (stdio may call `malloc`).

use crate::errno::Errno;
use crate::out::{fwrite_all, MapBuf};
use core::ffi::c_int;
use core::fmt::Write;
use tessera_core::global::{self, Tunable};
use tessera_core::inspect::{ChunkKind, Item};

/// glibc's `struct mallinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallInfo {
    /// See the module table.
    pub arena: c_int,
    /// See the module table.
    pub ordblks: c_int,
    /// See the module table.
    pub smblks: c_int,
    /// See the module table.
    pub hblks: c_int,
    /// See the module table.
    pub hblkhd: c_int,
    /// See the module table.
    pub usmblks: c_int,
    /// See the module table.
    pub fsmblks: c_int,
    /// See the module table.
    pub uordblks: c_int,
    /// See the module table.
    pub fordblks: c_int,
    /// See the module table.
    pub keepcost: c_int,
}

/// glibc's `struct mallinfo2` (2.33).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallInfo2 {
    /// See the module table.
    pub arena: usize,
    /// See the module table.
    pub ordblks: usize,
    /// See the module table.
    pub smblks: usize,
    /// See the module table.
    pub hblks: usize,
    /// See the module table.
    pub hblkhd: usize,
    /// See the module table.
    pub usmblks: usize,
    /// See the module table.
    pub fsmblks: usize,
    /// See the module table.
    pub uordblks: usize,
    /// See the module table.
    pub fordblks: usize,
    /// See the module table.
    pub keepcost: usize,
}

/// `mallinfo2()`.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn mallinfo2() -> MallInfo2 {
    let _ = crate::runtime::mode();
    let s = global::stats();
    MallInfo2 {
        arena: s.arena,
        ordblks: s.ordblks,
        smblks: s.smblks,
        hblks: s.hblks,
        hblkhd: s.hblkhd,
        usmblks: s.max_footprint,
        fsmblks: s.fsmblks,
        uordblks: s.uordblks,
        fordblks: s.fordblks,
        keepcost: s.keepcost,
    }
}

/// Saturating `size_t` -> `int`.
fn sat(x: usize) -> c_int {
    c_int::try_from(x).unwrap_or(c_int::MAX)
}

/// `mallinfo()`: `mallinfo2` with `int` fields that saturate.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn mallinfo() -> MallInfo {
    let m = mallinfo2();
    MallInfo {
        arena: sat(m.arena),
        ordblks: sat(m.ordblks),
        smblks: sat(m.smblks),
        hblks: sat(m.hblks),
        hblkhd: sat(m.hblkhd),
        usmblks: sat(m.usmblks),
        fsmblks: sat(m.fsmblks),
        uordblks: sat(m.uordblks),
        fordblks: sat(m.fordblks),
        keepcost: sat(m.keepcost),
    }
}

/// `malloc_trim(pad)`: gives free memory back to the OS (top beyond `pad`,
/// unused segments, and the whole pages inside free chunks). 1 if anything
/// was released.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn malloc_trim(pad: usize) -> c_int {
    let _ = crate::runtime::mode();
    let e = Errno::save();
    let r = global::trim(pad);
    e.restore();
    c_int::from(r)
}

/// glibc's `mallopt` parameter codes (`malloc.h`).
pub mod codes {
    use core::ffi::c_int;
    /// Largest request whose chunks go to fastbins (Tessera: quick lists).
    pub const M_MXFAST: c_int = 1;
    /// SVID; unused by glibc and Tessera.
    pub const M_NLBLKS: c_int = 2;
    /// SVID; unused by glibc and Tessera.
    pub const M_GRAIN: c_int = 3;
    /// SVID; unused by glibc and Tessera.
    pub const M_KEEP: c_int = 4;
    /// Trim top when it exceeds this many bytes.
    pub const M_TRIM_THRESHOLD: c_int = -1;
    /// Extra bytes to ask the OS for whenever the heap grows.
    pub const M_TOP_PAD: c_int = -2;
    /// Chunks from this size up get their own mapping.
    pub const M_MMAP_THRESHOLD: c_int = -3;
    /// Most direct mappings at once.
    pub const M_MMAP_MAX: c_int = -4;
    /// What detected corruption does.
    pub const M_CHECK_ACTION: c_int = -5;
    /// Fill blocks handed out and freed (0 = off).
    pub const M_PERTURB: c_int = -6;
    /// Arenas made before the number of cores limits them.
    pub const M_ARENA_TEST: c_int = -7;
    /// Most arenas.
    pub const M_ARENA_MAX: c_int = -8;
}

/// glibc's largest M_MXFAST (`80 * sizeof(size_t) / 4`).
pub const MAX_FAST_SIZE: usize = 160;

/// The largest M_TOP_PAD and M_MMAP_THRESHOLD Tessera applies: half a
/// segment (a larger pad could never be committed; a larger threshold
/// means the same, since larger chunks are always mapped directly).
pub const MAX_SEGMENT_SETTING: usize = tessera_core::heap::segment::MAX_SEGMENT_CHUNK;

/// `mallopt(param, value)`: glibc 2.36's parameters with glibc's value
/// ranges (`docs/c-library.md` has the table of both meanings). Returns 1
/// when glibc does; 0, with errno `EINVAL`, for M_MXFAST above 160 (or
/// negative) and for codes glibc does not know (glibc answers 1 to those
/// and does nothing). A negative value of a size parameter is a huge size
/// in glibc (`int` to `size_t`): no trimming, never a direct mapping, the
/// largest pad.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    use codes::*;
    let _ = crate::runtime::mode();
    // glibc's conversion of a size: negative values wrap to huge ones.
    let size = usize::try_from(value).unwrap_or(usize::MAX);
    let ok = match param {
        M_MXFAST => size <= MAX_FAST_SIZE && global::set_tunable(Tunable::MaxFast, size),
        M_TRIM_THRESHOLD => global::set_tunable(Tunable::TrimThreshold, size),
        M_TOP_PAD => global::set_tunable(Tunable::TopPad, size.min(MAX_SEGMENT_SETTING)),
        M_MMAP_THRESHOLD => {
            global::set_tunable(Tunable::MmapThreshold, size.min(MAX_SEGMENT_SETTING))
        }
        M_MMAP_MAX => global::set_tunable(Tunable::MmapMax, usize::try_from(value).unwrap_or(0)),
        M_CHECK_ACTION => {
            tessera_core::sys::report::set_check_action(value);
            true
        }
        M_PERTURB => global::set_tunable(Tunable::Perturb, value as u32 as usize),
        M_ARENA_TEST => {
            if value > 0 {
                global::set_tunable(Tunable::ArenaTest, size);
            }
            true
        }
        M_ARENA_MAX => {
            if value > 0 {
                global::set_tunable(Tunable::ArenaMax, size);
            }
            true
        }
        M_NLBLKS | M_GRAIN | M_KEEP => true,
        _ => false,
    };
    if !ok {
        crate::errno::set(libc::EINVAL);
    }
    c_int::from(ok)
}

/// Per-arena numbers for the reports.
#[derive(Clone, Copy, Default)]
struct Totals {
    arena: usize,
    uordblks: usize,
    hblks: usize,
    hblkhd: usize,
    rest_count: usize,
    rest_size: usize,
    fast_count: usize,
    fast_size: usize,
    max: usize,
    reserved: usize,
    committed: usize,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.arena += o.arena;
        self.uordblks += o.uordblks;
        self.hblks += o.hblks;
        self.hblkhd += o.hblkhd;
        self.rest_count += o.rest_count;
        self.rest_size += o.rest_size;
        self.fast_count += o.fast_count;
        self.fast_size += o.fast_size;
        self.max += o.max;
        self.reserved += o.reserved;
        self.committed += o.committed;
    }
}

/// `malloc_stats()`: on stderr, one block per arena, then the totals, in
/// glibc's layout ("max mmap" lines: the sum of each arena's high-water
/// marks).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn malloc_stats() {
    let _ = crate::runtime::mode();
    let e = Errno::save();
    let mut out = MapBuf::new();
    let mut all = Totals::default();
    let (mut max_regions, mut max_bytes) = (0usize, 0usize);
    global::for_each_heap(&mut |i, h| {
        let s = h.stats();
        let _ = write!(
            out,
            "Arena {i}:\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\n",
            s.arena, s.uordblks
        );
        all.add(&Totals {
            arena: s.arena,
            uordblks: s.uordblks,
            hblks: s.hblks,
            hblkhd: s.hblkhd,
            ..Totals::default()
        });
        max_regions += s.max_hblks;
        max_bytes += s.max_hblkhd;
    });
    let _ = write!(
        out,
        "Total (incl. mmap):\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\n\
         max mmap regions = {:>10}\nmax mmap bytes   = {:>10}\n",
        all.arena + all.hblkhd,
        all.uordblks + all.hblkhd,
        max_regions,
        max_bytes
    );
    // SAFETY: stderr is a valid stream, and no allocator lock is held now.
    unsafe { fwrite_all(crate::heaps::stderr_stream(), out.as_bytes()) };
    e.restore();
}

/// Free chunks of one bin: smallest and largest size, bytes, count.
#[derive(Clone, Copy)]
struct Bin {
    from: usize,
    to: usize,
    total: usize,
    count: usize,
}

impl Bin {
    const EMPTY: Bin = Bin {
        from: usize::MAX,
        to: 0,
        total: 0,
        count: 0,
    };
    fn add(&mut self, size: usize) {
        self.from = self.from.min(size);
        self.to = self.to.max(size);
        self.total += size;
        self.count += 1;
    }
}

/// Small bins 0..32, tree bins 32..64, the dv last.
const DV_SLOT: usize = 64;

/// The `<heap>` element of one arena.
fn heap_xml(out: &mut MapBuf, nr: usize, h: &tessera_core::Heap) -> Totals {
    let mut bins = [Bin::EMPTY; DV_SLOT + 1];
    // Parked chunks by size (16-byte steps up to the largest class).
    let mut parked = [Bin::EMPTY; 66];
    let mut t = Totals::default();
    h.walk(&mut |item| match item {
        Item::Segment(s) => {
            t.committed += s.committed;
            t.reserved += s.reserved;
        }
        Item::Chunk(c) => match c.kind {
            ChunkKind::SmallBin(i) => bins[usize::from(i) % 32].add(c.size),
            ChunkKind::TreeBin(i) => bins[32 + usize::from(i) % 32].add(c.size),
            ChunkKind::Dv => bins[DV_SLOT].add(c.size),
            ChunkKind::Cached | ChunkKind::Parked => {
                t.fast_count += 1;
                t.fast_size += c.size;
                if c.kind == ChunkKind::Parked {
                    parked[(c.size / 16) % parked.len()].add(c.size);
                }
            }
            _ => {}
        },
        Item::Direct(_) => {}
        Item::Heap(_) => {}
    });
    let s = h.stats();
    t.arena = s.arena;
    t.uordblks = s.uordblks;
    t.hblks = s.hblks;
    t.hblkhd = s.hblkhd;
    t.rest_count = s.ordblks;
    t.rest_size = s.fordblks - s.fsmblks;
    t.max = s.max_arena;
    let _ = write!(out, "<heap nr=\"{nr}\">\n<sizes>\n");
    // As glibc lists its fastbins: first, one element per size.
    for b in parked.iter().filter(|b| b.count > 0) {
        let _ = writeln!(
            out,
            "  <size from=\"{}\" to=\"{}\" total=\"{}\" count=\"{}\"/>",
            b.from, b.to, b.total, b.count
        );
    }
    for (i, b) in bins.iter().enumerate().filter(|(_, b)| b.count > 0) {
        let tag = if i == DV_SLOT { "unsorted" } else { "size" };
        let _ = writeln!(
            out,
            "  <{tag} from=\"{}\" to=\"{}\" total=\"{}\" count=\"{}\"/>",
            b.from, b.to, b.total, b.count
        );
    }
    let _ = write!(
        out,
        "</sizes>\n<total type=\"fast\" count=\"{}\" size=\"{}\"/>\n\
         <total type=\"rest\" count=\"{}\" size=\"{}\"/>\n\
         <system type=\"current\" size=\"{}\"/>\n<system type=\"max\" size=\"{}\"/>\n\
         <aspace type=\"total\" size=\"{}\"/>\n<aspace type=\"mprotect\" size=\"{}\"/>\n</heap>\n",
        t.fast_count,
        t.fast_size,
        t.rest_count,
        t.rest_size,
        s.arena,
        t.max,
        t.reserved,
        t.committed
    );
    t
}

/// `malloc_info(options, fp)`: the state of every arena as XML in glibc's
/// shape (`<malloc version="1">`, one `<heap nr>` per arena with its free
/// chunks by bin, then totals). Returns 0, or `EINVAL` for nonzero
/// `options` or a NULL stream (glibc returns the code, not -1; errno is
/// set to it too), or -1 when the write fails (errno from the write) or
/// the report did not fit in memory (`ENOMEM`).
///
/// In `<sizes>`, each `<size>` is one small or tree bin and `<unsorted>`
/// the designated victim, after one `<size>` per size of the chunks parked
/// on the arena's quick lists (where glibc lists its fastbins); `fast`
/// counts those parked chunks (`smblks`/`fsmblks`) plus the chunks parked
/// in the calling thread's cache (which `mallinfo` counts as in use);
/// `rest` is every free chunk in the bins, dv and top; `mmap` the direct chunks; `system max`
/// the largest footprint; `aspace total` the reserved address space and
/// `mprotect` the committed part.
///
/// # Safety
/// `fp` is null or a valid, open `FILE`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_info(options: c_int, fp: *mut libc::FILE) -> c_int {
    if options != 0 || fp.is_null() {
        crate::errno::set(libc::EINVAL);
        return libc::EINVAL;
    }
    let _ = crate::runtime::mode();
    let e = Errno::save();
    let mut out = MapBuf::new();
    let _ = writeln!(out, "<malloc version=\"1\">");
    let mut all = Totals::default();
    global::for_each_heap(&mut |i, h| {
        let t = heap_xml(&mut out, i, h);
        all.add(&t);
    });
    let _ = write!(
        out,
        "<total type=\"fast\" count=\"{}\" size=\"{}\"/>\n\
         <total type=\"rest\" count=\"{}\" size=\"{}\"/>\n\
         <total type=\"mmap\" count=\"{}\" size=\"{}\"/>\n\
         <system type=\"current\" size=\"{}\"/>\n<system type=\"max\" size=\"{}\"/>\n\
         <aspace type=\"total\" size=\"{}\"/>\n<aspace type=\"mprotect\" size=\"{}\"/>\n</malloc>\n",
        all.fast_count,
        all.fast_size,
        all.rest_count,
        all.rest_size,
        all.hblks,
        all.hblkhd,
        all.arena,
        all.max,
        all.reserved,
        all.committed
    );
    // SAFETY: a valid stream (caller), and no allocator lock is held now.
    let ok = unsafe { fwrite_all(fp, out.as_bytes()) };
    if !ok {
        // errno is the failed write's.
        return -1;
    }
    if out.truncated {
        // The report did not fit in the memory the kernel gave.
        e.fail(libc::ENOMEM);
        return -1;
    }
    e.restore();
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mallinfo_saturates() {
        assert_eq!(sat(5), 5);
        assert_eq!(sat(usize::MAX), c_int::MAX);
        assert_eq!(sat(1 << 31), c_int::MAX);
    }

    #[test]
    fn mallopt_codes() {
        use codes::*;
        assert_eq!(mallopt(M_MMAP_THRESHOLD, 64 << 20), 1, "glibc 2.35+: any");
        assert_eq!(mallopt(M_MMAP_THRESHOLD, -1), 1);
        assert_eq!(mallopt(M_MMAP_THRESHOLD, 256 << 10), 1);
        assert_eq!(mallopt(M_TRIM_THRESHOLD, 2 << 20), 1);
        assert_eq!(mallopt(M_TOP_PAD, 128 << 10), 1);
        assert_eq!(mallopt(M_TOP_PAD, -5), 1);
        assert_eq!(mallopt(M_TOP_PAD, 128 << 10), 1);
        assert_eq!(mallopt(M_MMAP_MAX, 65536), 1);
        assert_eq!(mallopt(M_ARENA_MAX, 0), 1);
        assert_eq!(mallopt(M_ARENA_TEST, -1), 1);
        assert_eq!(mallopt(M_MXFAST, 160), 1);
        assert_eq!(mallopt(M_MXFAST, 161), 0);
        assert_eq!(mallopt(M_MXFAST, -1), 0);
        assert_eq!(mallopt(M_MXFAST, 1032), 0, "beyond glibc's range");
        assert_eq!(mallopt(M_CHECK_ACTION, 3), 1);
        assert_eq!(mallopt(M_KEEP, 1), 1);
        assert_eq!(mallopt(12345, 1), 0, "unknown code");
    }
}
