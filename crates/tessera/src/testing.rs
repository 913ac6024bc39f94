//! The random-action driver: a typed [`Op`] sequence applied to a [`Heap`]
//! and to a shadow model of live blocks. Proptest, the fault-injection
//! tests, the stress tests and the fuzz target all run through it.
//!
//! The model catches:
//! - overlap: every live block's range `[ptr, ptr + size)` is kept in an
//!   ordered map, and a new block that intersects one is an error;
//! - lost data: every block is filled with a pattern derived from its id
//!   and checked before it is freed or resized (the prefix must survive
//!   realloc);
//! - misalignment and short blocks (`usable_size < size`);
//! - a null return the heap had no reason for: a request fails only when
//!   the page source failed during it on purpose ([`InjectedFailures`]),
//!   when it would take the footprint past its limit, or when it is
//!   impossible (see [`Model::null_is_excused`]);
//! - a footprint grown past the footprint limit;
//! - any heap invariant, with `Heap::check` after every operation;
//! - leaks: at the end every block is freed and the footprint must drop
//!   back to what an empty heap keeps.
//!
//! # The fuzz entry point
//! [`fuzz_one`] turns any byte string into a heap setup and an operation
//! sequence ([`FuzzPlan::from_bytes`], [`ops_from_bytes`]) and runs it with
//! the whole-heap check after every operation. The AFL target in `fuzz/`
//! calls it, and so does the seeded test `tests/fuzz_driver.rs`, which also
//! replays the saved corpus and every regression input; see
//! `docs/fuzzing.md`.

use crate::heap::mspace::Heap;
use crate::heap::segment::MAX_SEGMENT_CHUNK;
use crate::heap::state::Config;
use crate::sys::os::{Faulty, Mmap, PageSource};
use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec::Vec;

/// One action on the heap. Slots index the list of live blocks modulo its
/// length, so any sequence is meaningful.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `malloc(size)`.
    Malloc(usize),
    /// `calloc(n, size)`; the block must read as zero.
    Calloc(usize, usize),
    /// `memalign(1 << log2, size)`.
    Memalign(u8, usize),
    /// `free` of a live block.
    Free(usize),
    /// `realloc` of a live block to a new size (0 frees it).
    Realloc(usize, usize),
    /// `realloc_in_place` of a live block.
    ReallocInPlace(usize, usize),
    /// `trim(pad)`.
    Trim(usize),
    /// `independent_calloc(n, size)`.
    IndependentCalloc(usize, usize),
    /// `independent_comalloc(sizes)`.
    IndependentComalloc(Vec<usize>),
    /// A thread cache's flush: a live block parked on the heap's quick
    /// list ([`Model::with_quick_lists`]); freed when it has no quick-list
    /// size, the budget is full or the heap has no lists.
    Park(usize),
    /// A thread cache's refill: the first parked chunk of small class
    /// `class % 64` (chunk size `32 + 16 class`) taken back, if any.
    Unpark(usize),
}

/// The OS failures a page source injected on purpose so far. The model
/// excuses a null return only if this count grew during the operation (or
/// the request was past the footprint limit, or impossible): a heap that
/// returns null for a request it can serve fails the model.
pub trait InjectedFailures {
    /// Failures injected so far (0 for a source that never injects any).
    fn injected_failures(&self) -> usize;
}

impl InjectedFailures for Mmap {
    fn injected_failures(&self) -> usize {
        0
    }
}

impl<S: PageSource> InjectedFailures for Faulty<S> {
    fn injected_failures(&self) -> usize {
        self.failures()
    }
}

/// Requests this large are refused by the machine whatever the heap does
/// (the address space or the kernel's overcommit check): a null for them
/// is no error.
pub const IMPOSSIBLE_REQUEST: usize = 1 << 40;

/// What a request may need beyond its own bytes when the heap grows: a
/// segment record and top's foot, page rounding, a mapping's header and
/// fencepost, and the minimum chunk left after a split.
const GROWTH_SLACK: usize = 64 << 10;

#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: usize,
    size: usize,
    id: u64,
}

/// The shadow model and its heap.
pub struct Model<S: PageSource> {
    /// The heap under test.
    pub heap: Heap<S>,
    live: Vec<Block>,
    ranges: BTreeMap<usize, usize>,
    next_id: u64,
    /// Check the whole heap after every operation.
    pub check_every_op: bool,
    /// Null returns seen, each one excused (a page-source failure during
    /// the call, the footprint limit, an impossible request); a null
    /// without an excuse is an error of [`Model::apply`].
    pub failures: usize,
    /// The heap's quick lists, if any (after `heap`, so dropped after it).
    quick: Option<std::boxed::Box<crate::heap::quick::QuickLists>>,
}

fn pattern_byte(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u8 ^ (i as u8).wrapping_mul(31)
}

/// `pattern_byte(id, i)` depends on `i` only through `i as u8`, so the
/// pattern repeats every 256 bytes: fill and verify copy and compare whole
/// periods.
const PATTERN_PERIOD: usize = 256;

fn pattern_block(id: u64) -> [u8; PATTERN_PERIOD] {
    core::array::from_fn(|i| pattern_byte(id, i))
}

impl<S: PageSource + InjectedFailures> Model<S> {
    /// A model around `heap`.
    pub fn new(heap: Heap<S>) -> Self {
        Model {
            heap,
            live: Vec::new(),
            ranges: BTreeMap::new(),
            next_id: 1,
            check_every_op: true,
            failures: 0,
            quick: None,
        }
    }

    /// Gives the heap quick lists of its own, as an arena has (a
    /// standalone heap has none), so that [`Op::Park`] and [`Op::Unpark`]
    /// exercise parking, refills and consolidation.
    pub fn with_quick_lists(mut self) -> Self {
        let mut lists = std::boxed::Box::new(crate::heap::quick::QuickLists::EMPTY);
        self.heap.state_mut().quick = &mut *lists;
        self.quick = Some(lists);
        self
    }

    /// Live blocks.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    fn add(&mut self, ptr: *mut u8, size: usize, zeroed: bool) -> Result<(), String> {
        let p = ptr as usize;
        if p % 16 != 0 {
            return Err(format!("block {p:#x} is not 16-aligned"));
        }
        // SAFETY: ptr is a live block of this heap.
        let usable = unsafe { self.heap.usable_size(ptr) };
        if usable < size {
            return Err(format!("block {p:#x}: usable {usable} < requested {size}"));
        }
        let end = p + size.max(1);
        if let Some((&s, &e)) = self.ranges.range(..end).next_back() {
            if e > p {
                return Err(format!(
                    "block {p:#x}+{size} overlaps live block {s:#x}..{e:#x}"
                ));
            }
        }
        if zeroed {
            // SAFETY: `size` bytes of a live block.
            let bytes = unsafe { core::slice::from_raw_parts(ptr, size) };
            const ZEROS: [u8; PATTERN_PERIOD] = [0; PATTERN_PERIOD];
            let dirty = bytes
                .chunks(PATTERN_PERIOD)
                .position(|piece| piece != &ZEROS[..piece.len()]);
            if let Some(k) = dirty {
                let piece = &bytes[k * PATTERN_PERIOD..];
                let i = k * PATTERN_PERIOD + piece.iter().position(|&b| b != 0).unwrap_or(0);
                return Err(format!("calloc block {p:#x} has a non-zero byte at +{i}"));
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.fill(ptr, size, id);
        self.ranges.insert(p, end);
        self.live.push(Block { ptr: p, size, id });
        Ok(())
    }

    fn fill(&self, ptr: *mut u8, size: usize, id: u64) {
        // SAFETY: `size` bytes of a live block.
        let bytes = unsafe { core::slice::from_raw_parts_mut(ptr, size) };
        let pattern = pattern_block(id);
        for piece in bytes.chunks_mut(PATTERN_PERIOD) {
            piece.copy_from_slice(&pattern[..piece.len()]);
        }
    }

    fn verify(&self, b: &Block, len: usize) -> Result<(), String> {
        // SAFETY: `len <= size` bytes of a live block.
        let bytes = unsafe { core::slice::from_raw_parts(b.ptr as *const u8, len) };
        let pattern = pattern_block(b.id);
        // Compare a period at a time (memcmp speed); look for the exact
        // byte only once a period differs.
        for (k, piece) in bytes.chunks(PATTERN_PERIOD).enumerate() {
            if piece == &pattern[..piece.len()] {
                continue;
            }
            for (j, &x) in piece.iter().enumerate() {
                if x != pattern[j] {
                    let i = k * PATTERN_PERIOD + j;
                    return Err(format!(
                        "block {:#x} (size {}) lost data at +{i}: {x:#x} != {:#x}",
                        b.ptr,
                        b.size,
                        pattern_byte(b.id, i)
                    ));
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, slot: usize) -> Option<Block> {
        if self.live.is_empty() {
            return None;
        }
        let b = self.live.swap_remove(slot % self.live.len());
        self.ranges.remove(&b.ptr);
        Some(b)
    }

    /// Whether a null return for a request of `need` bytes (`None`: the
    /// size overflowed) is allowed: the page source failed on purpose
    /// during the call (its count passed `injected_before`), the request is
    /// impossible ([`IMPOSSIBLE_REQUEST`]), it would take the footprint
    /// (`footprint_before`, measured before the call) past the footprint
    /// limit, or it is too large for a segment while the heap may map no
    /// more chunks directly (`Config::mmap_max`). Anything else the heap
    /// can serve, so null is an error.
    pub fn null_is_excused(
        &self,
        need: Option<usize>,
        injected_before: usize,
        footprint_before: usize,
    ) -> bool {
        let Some(need) = need else {
            return true;
        };
        if self.heap.source().injected_failures() != injected_before || need >= IMPOSSIBLE_REQUEST {
            return true;
        }
        let limit = self.heap.footprint_limit();
        if limit != 0 && footprint_before.saturating_add(need + GROWTH_SLACK) > limit {
            return true;
        }
        need + GROWTH_SLACK >= MAX_SEGMENT_CHUNK
            && self.heap.stats().hblks >= self.heap.config().mmap_max
    }

    /// Counts an excused null return, or names the unexcused one.
    fn null_returned(
        &mut self,
        op: &Op,
        need: Option<usize>,
        before: (usize, usize),
    ) -> Result<(), String> {
        if !self.null_is_excused(need, before.0, before.1) {
            return Err(format!(
                "{op:?} returned null with no reason: no OS failure was injected, \
                 footprint {} (limit {}), {} bytes asked",
                before.1,
                self.heap.footprint_limit(),
                need.unwrap_or(usize::MAX)
            ));
        }
        self.failures += 1;
        Ok(())
    }

    /// Applies one operation; returns an error naming what went wrong.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        // What a null return is measured against (see `null_is_excused`).
        let before = (
            self.heap.source().injected_failures(),
            self.heap.footprint(),
        );
        match *op {
            Op::Malloc(size) => {
                let p = self.heap.malloc(size);
                if p.is_null() {
                    self.null_returned(op, Some(size), before)?;
                } else {
                    self.add(p, size, false)?;
                }
            }
            Op::Calloc(n, size) => {
                let p = self.heap.calloc(n, size);
                if p.is_null() {
                    if n.checked_mul(size).is_some() {
                        self.null_returned(op, n.checked_mul(size), before)?;
                    }
                } else {
                    self.add(p, n * size, true)?;
                }
            }
            Op::Memalign(log2, size) => {
                let align = 1usize << log2.min(40);
                let p = self.heap.memalign(align, size);
                if p.is_null() {
                    self.null_returned(op, size.checked_add(align), before)?;
                } else {
                    if p as usize % align.max(16) != 0 {
                        return Err(format!("memalign({align}) returned {p:?}"));
                    }
                    self.add(p, size, false)?;
                }
            }
            Op::Free(slot) => {
                if let Some(b) = self.take(slot) {
                    self.verify(&b, b.size)?;
                    // SAFETY: a live block of this heap.
                    unsafe { self.heap.free(b.ptr as *mut u8) };
                }
            }
            Op::Realloc(slot, size) => {
                if let Some(b) = self.take(slot) {
                    self.verify(&b, b.size)?;
                    // SAFETY: a live block of this heap.
                    let p = unsafe { self.heap.realloc(b.ptr as *mut u8, size) };
                    if size == 0 {
                        if !p.is_null() {
                            return Err("realloc(p, 0) returned non-null".into());
                        }
                    } else if p.is_null() {
                        self.null_returned(op, Some(size), before)?;
                        self.verify(&b, b.size)?; // old block intact
                        self.ranges.insert(b.ptr, b.ptr + b.size.max(1));
                        self.live.push(b);
                    } else {
                        let kept = Block {
                            ptr: p as usize,
                            ..b
                        };
                        self.verify(&kept, b.size.min(size))?;
                        self.add(p, size, false)?;
                    }
                }
            }
            Op::ReallocInPlace(slot, size) => {
                if let Some(b) = self.take(slot) {
                    // SAFETY: a live block of this heap.
                    let ok = unsafe { self.heap.realloc_in_place(b.ptr as *mut u8, size) };
                    let new_size = if ok { size } else { b.size };
                    self.verify(&b, b.size.min(new_size))?;
                    self.add(b.ptr as *mut u8, new_size, false)?;
                }
            }
            Op::Trim(pad) => {
                self.heap.trim(pad);
            }
            Op::Park(slot) => {
                if let Some(b) = self.take(slot) {
                    self.verify(&b, b.size)?;
                    let p = crate::heap::chunk::Chunk::from_mem(b.ptr as *mut u8);
                    // SAFETY: a live block of this heap, given up here.
                    unsafe {
                        if !self.heap.state_mut().park(p) {
                            self.heap.free(b.ptr as *mut u8);
                        }
                    }
                }
            }
            Op::Unpark(class) => {
                let c = class % crate::heap::lists::NSMALL;
                // SAFETY: the heap's own lists, single-threaded.
                let p = unsafe { self.heap.state_mut().unpark(c) };
                if !p.is_null() {
                    let size = crate::heap::chunk::MIN_CHUNK_SIZE + 16 * c
                        - crate::heap::chunk::CHUNK_OVERHEAD;
                    self.add(p, size, false)?;
                }
            }
            Op::IndependentCalloc(n, size) => {
                let mut out = std::vec![core::ptr::null_mut(); n];
                if self.heap.independent_calloc(n, size, &mut out) {
                    for p in out {
                        self.add(p, size, true)?;
                    }
                } else if n > 0 {
                    let need = n
                        .checked_mul(size.max(16) + 16)
                        .and_then(|b| b.checked_add(n * 8 + 16));
                    self.null_returned(op, need, before)?;
                }
            }
            Op::IndependentComalloc(ref sizes) => {
                let mut out = std::vec![core::ptr::null_mut(); sizes.len()];
                if self.heap.independent_comalloc(sizes, &mut out) {
                    for (p, &s) in out.into_iter().zip(sizes) {
                        self.add(p, s, false)?;
                    }
                } else if !sizes.is_empty() {
                    let need = sizes.iter().try_fold(sizes.len() * 8 + 16, |t, &s| {
                        t.checked_add(s.max(16))?.checked_add(16)
                    });
                    self.null_returned(op, need, before)?;
                }
            }
        }
        // The footprint limit holds: an operation may not grow the
        // footprint past it (a limit set below the footprint is allowed:
        // the heap then only shrinks).
        let (limit, footprint) = (self.heap.footprint_limit(), self.heap.footprint());
        if limit != 0 && footprint > limit && footprint > before.1 {
            return Err(format!(
                "{op:?} grew the footprint from {} to {footprint}, past its limit {limit}",
                before.1
            ));
        }
        if self.check_every_op {
            self.heap
                .check()
                .map_err(|e| format!("after {op:?}: {e}"))?;
        }
        Ok(())
    }

    /// Applies every operation in order, then frees everything and checks.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        for (i, op) in ops.iter().enumerate() {
            self.apply(op).map_err(|e| format!("op {i}: {e}"))?;
        }
        self.free_all()
    }

    /// Frees every live block, verifying each; then checks the heap.
    pub fn free_all(&mut self) -> Result<(), String> {
        while let Some(b) = self.take(0) {
            self.verify(&b, b.size)?;
            // SAFETY: a live block of this heap.
            unsafe { self.heap.free(b.ptr as *mut u8) };
        }
        self.heap
            .check()
            .map_err(|e| format!("after freeing everything: {e}"))?;
        let st = self.heap.stats();
        if st.hblks != 0 || st.inuse_chunks != 0 {
            return Err(format!(
                "blocks left in use after freeing everything: {st:?}"
            ));
        }
        Ok(())
    }
}

/// Every chunk of every arena of the process allocator, as snapshots of
/// them show it (for tests that look for chunks of one kind, such as
/// `parked`). The snapshots are written into a buffer reserved first: the
/// sink runs under the arena locks and must not allocate.
pub fn global_chunks() -> Vec<crate::inspect::ChunkInfo> {
    let mut text = Vec::with_capacity(64 << 20);
    crate::inspect::process::write_snapshot(&mut text, 0);
    let text = String::from_utf8(text).expect("snapshots are text");
    text.split_inclusive("end\n")
        .flat_map(|part| {
            crate::inspect::Snapshot::parse(part)
                .expect("a snapshot that parses")
                .chunks
        })
        .collect()
}

/// A deterministic generator of operation sequences (xorshift), for long
/// runs outside proptest (stress tests, the 1,000,000-operation run).
pub struct OpGen {
    state: u64,
    /// Largest request size.
    pub max_size: usize,
    /// Largest alignment, as log2.
    pub max_align_log2: u8,
}

impl OpGen {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        OpGen {
            state: seed | 1,
            max_size: 4 << 20,
            max_align_log2: 20,
        }
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A request size: mostly small, sometimes medium, rarely large.
    pub fn size(&mut self) -> usize {
        match self.below(100) {
            0..=59 => self.below(257),
            60..=89 => self.below(8193),
            90..=97 => self.below(256 << 10),
            _ => self.below(self.max_size + 1),
        }
    }

    /// The next operation.
    pub fn op(&mut self) -> Op {
        let slot = self.next_u64() as usize;
        match self.below(100) {
            0..=39 => Op::Malloc(self.size()),
            40..=71 => Op::Free(slot),
            72..=73 => Op::Park(slot),
            74 => Op::Unpark(self.below(64)),
            75..=84 => Op::Realloc(slot, self.size()),
            85..=88 => Op::ReallocInPlace(slot, self.size()),
            89..=92 => Op::Calloc(self.below(16) + 1, self.size() / 8),
            93..=96 => {
                let log2 = self.below(self.max_align_log2 as usize + 1) as u8;
                Op::Memalign(log2, self.size())
            }
            97 => Op::Trim(self.below(1 << 20)),
            98 => Op::IndependentCalloc(self.below(8) + 1, self.below(300)),
            _ => {
                let n = self.below(6) + 1;
                Op::IndependentComalloc((0..n).map(|_| self.below(2000)).collect())
            }
        }
    }
}

/// Largest number of operations [`ops_from_bytes`] decodes from one input;
/// the rest of a longer input is ignored.
pub const FUZZ_MAX_OPS: usize = 1024;

/// Bytes at the front of a fuzz input that set up the heap (see
/// [`FuzzPlan::from_bytes`]); the operations follow.
pub const FUZZ_HEADER_LEN: usize = 3;

/// A reader that yields the input's bytes, then zeros forever, so every
/// byte string decodes to something.
struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Request sizes worth hitting exactly: bin and threshold boundaries, the
/// segment limits and requests too large to ever succeed. A delta of
/// -1024..=1016 bytes (a signed byte times 8) is added to each.
const EDGE_SIZES: [usize; 16] = [
    crate::heap::smallbins::MAX_SMALL_REQUEST,
    crate::heap::smallbins::MIN_LARGE_SIZE,
    1 << 10,
    4 << 10,
    64 << 10,
    Config::DEFAULT.mmap_threshold,
    1 << 20,
    Config::DEFAULT.trim_threshold,
    4 << 20,
    crate::heap::segment::MAX_SEGMENT_CHUNK,
    crate::heap::segment::SEGMENT_SIZE,
    1 << 47,
    crate::heap::chunk::MAX_REQUEST,
    isize::MAX as usize,
    usize::MAX - (64 << 10),
    usize::MAX,
];

impl ByteReader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A request size, biased like [`OpGen::size`]: one byte gives
    /// 0..=127 (half of all byte values), two give up to 16 KiB, three up
    /// to 3 MiB, and the top 16 byte values pick an [`EDGE_SIZES`] entry.
    fn size(&mut self) -> usize {
        let t = self.byte() as usize;
        match t {
            0..=127 => t,
            128..=191 => ((t - 128) << 8) | self.byte() as usize,
            192..=239 => {
                let hi = (t - 192) << 16;
                hi | (self.byte() as usize) << 8 | self.byte() as usize
            }
            _ => {
                let delta = self.byte() as i8 as isize * 8;
                EDGE_SIZES[t - 240].saturating_add_signed(delta)
            }
        }
    }

    /// A slot: any value is fine, the model takes it modulo the live count.
    fn slot(&mut self) -> usize {
        self.byte() as usize
    }

    fn op(&mut self) -> Op {
        match self.byte() {
            0..=85 => Op::Malloc(self.size()),
            86..=87 => Op::Park(self.slot()),
            88..=89 => Op::Unpark(self.slot()),
            90..=169 => Op::Free(self.slot()),
            170..=199 => Op::Realloc(self.slot(), self.size()),
            200..=211 => Op::ReallocInPlace(self.slot(), self.size()),
            212..=223 => {
                // 0..=16 elements, or (from 248 up) a count so large that
                // `n * size` overflows for nearly any size.
                let n = match self.byte() {
                    b @ 248.. => usize::MAX >> (b - 248),
                    b => b as usize % 17,
                };
                Op::Calloc(n, self.size() >> 3)
            }
            224..=237 => {
                // 1 B ..= 1 MiB, or (from 252 up) 2 MiB ..= 64 GiB.
                let log2 = match self.byte() {
                    b @ 252.. => 21 + (b - 252) * 5,
                    b => b % 21,
                };
                Op::Memalign(log2, self.size())
            }
            238..=241 => Op::Trim(self.size()),
            242..=248 => {
                let n = self.byte() as usize % 9;
                Op::IndependentCalloc(n, self.size() >> 4)
            }
            _ => {
                let n = self.byte() as usize % 7;
                Op::IndependentComalloc((0..n).map(|_| self.size() >> 2).collect())
            }
        }
    }
}

/// Decodes an operation sequence from bytes. Every byte string is valid:
/// decoding stops at the end of the input (a truncated operation reads
/// zeros) or after [`FUZZ_MAX_OPS`] operations.
///
/// Each operation is an opcode byte followed by its arguments. Opcodes by
/// range: `0..=85` malloc, `86..=87` park (a thread-cache flush; a
/// free unless the plan gives the heap quick lists), `88..=89` unpark (a
/// refill of class `byte % 64`), `90..=169` free, `170..=199` realloc,
/// `200..=211` realloc in place, `212..=223` calloc, `224..=237` memalign,
/// `238..=241` trim, `242..=248` independent calloc, `249..=255`
/// independent comalloc. A slot is one byte; an alignment is one byte
/// (log2 = byte % 21, so up to 1 MiB, with four huge ones at the top);
/// a size takes one to three bytes and is mostly small, sometimes up to
/// 3 MiB, and sometimes a boundary value such as the mmap threshold,
/// the segment size or an impossible request.
pub fn ops_from_bytes(data: &[u8]) -> Vec<Op> {
    let mut r = ByteReader { data, pos: 0 };
    let mut ops = Vec::new();
    while !r.at_end() && ops.len() < FUZZ_MAX_OPS {
        ops.push(r.op());
    }
    ops
}

/// How the page source under a fuzzed heap fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPlan {
    /// The OS never fails.
    Never,
    /// Each fallible OS call fails with probability `per_65536 / 65536`,
    /// from a sequence seeded with `seed` ([`Faulty::fail_randomly`]).
    Random {
        /// Failure probability in 1/65536ths.
        per_65536: usize,
        /// Seed of the failure sequence.
        seed: u64,
    },
    /// `n` OS calls succeed, then every one fails ([`Faulty::fail_after`]).
    After(usize),
}

impl FaultPlan {
    fn arm<S: PageSource>(self, source: &Faulty<S>) {
        match self {
            FaultPlan::Never => source.reset(),
            FaultPlan::Random { per_65536, seed } => source.fail_randomly(per_65536, seed),
            FaultPlan::After(n) => source.fail_after(n),
        }
    }
}

/// Everything a fuzz input decodes to: how the heap is set up and what is
/// done to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzPlan {
    /// OS failures injected once the heap exists.
    pub faults: FaultPlan,
    /// The heap's tunables.
    pub config: Config,
    /// The footprint limit (never 0, so that no input can exhaust the
    /// machine's memory).
    pub footprint_limit: usize,
    /// Debug tier ([`Heap::set_debug`]): level and check period.
    pub debug: (u8, u32),
    /// Give the heap quick lists ([`Model::with_quick_lists`]).
    pub quick_lists: bool,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// What one fuzz run saw, for tests that want to know the input did
/// something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// Operations applied.
    pub ops: usize,
    /// Requests that returned null (or failed) while the plan ran.
    pub null_returns: usize,
    /// OS calls the page source failed on purpose.
    pub injected_faults: usize,
}

/// The footprint limit when the input asks for none: bounds the memory one
/// input can take (the largest ordinary request is a few MiB).
const FUZZ_DEFAULT_LIMIT: usize = 256 << 20;

impl FuzzPlan {
    /// Decodes a plan. Missing bytes read as zero, so an empty input is the
    /// default heap, no faults and no operations.
    ///
    /// - byte 0, faults: `b >> 6` selects never (0), a random rate of
    ///   `((b & 63) + 1) * 256 / 65536` (1, up to 25%), a random rate of
    ///   `((b & 63) + 1) * 1024 / 65536` (2, up to 100%), or failing after
    ///   `b & 63` calls (3); the random seed derives from `b`.
    /// - byte 1, tunables: bits 0–1 the mmap threshold (256 KiB, 16 KiB,
    ///   1 MiB, 32 MiB), bits 2–3 the trim threshold (2 MiB, 0, 128 KiB,
    ///   never), bits 4–5 the top pad (128 KiB, 0, 4 KiB, 2 MiB), bit 6 a
    ///   4 KiB granularity, bit 7 no direct mappings (`mmap_max = 0`).
    /// - byte 2: bits 0–1 the footprint limit (256 MiB, 512 KiB, 4 MiB,
    ///   32 MiB); bits 2–3 the debug tier (off, off, level 2, level 2 with
    ///   a full check every 7 operations); bit 4 the dynamic mmap threshold
    ///   (`Config::dynamic_threshold`); bit 5 quick lists
    ///   ([`Model::with_quick_lists`]); bits 6–7 are ignored.
    /// - the rest: [`ops_from_bytes`].
    pub fn from_bytes(data: &[u8]) -> FuzzPlan {
        let mut r = ByteReader { data, pos: 0 };
        let (f, c, l) = (r.byte(), r.byte(), r.byte());
        let seed = (f as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let faults = match f >> 6 {
            0 => FaultPlan::Never,
            1 => FaultPlan::Random {
                per_65536: ((f & 63) as usize + 1) * 256,
                seed,
            },
            2 => FaultPlan::Random {
                per_65536: ((f & 63) as usize + 1) * 1024,
                seed,
            },
            _ => FaultPlan::After((f & 63) as usize),
        };
        let pick = |bits: u8, choices: [usize; 4]| choices[bits as usize & 3];
        let d = Config::DEFAULT;
        let config = Config {
            mmap_threshold: pick(c, [d.mmap_threshold, 16 << 10, 1 << 20, 32 << 20]),
            trim_threshold: pick(c >> 2, [d.trim_threshold, 0, 128 << 10, usize::MAX]),
            top_pad: pick(c >> 4, [d.top_pad, 0, 4 << 10, 2 << 20]),
            granularity: if c & 0x40 != 0 {
                4 << 10
            } else {
                d.granularity
            },
            mmap_max: if c & 0x80 != 0 { 0 } else { d.mmap_max },
            dynamic_threshold: l & 0x10 != 0,
            perturb: d.perturb,
            max_fast: d.max_fast,
        };
        let footprint_limit = pick(l, [FUZZ_DEFAULT_LIMIT, 512 << 10, 4 << 20, 32 << 20]);
        let debug = match (l >> 2) & 3 {
            0 | 1 => (0, 0),
            2 => (2, 0),
            _ => (2, 7),
        };
        let rest = data.get(FUZZ_HEADER_LEN..).unwrap_or(&[]);
        FuzzPlan {
            faults,
            config,
            footprint_limit,
            debug,
            quick_lists: l & 0x20 != 0,
            ops: ops_from_bytes(rest),
        }
    }

    /// Runs the plan on a fresh heap over a [`Faulty`] page source, with the
    /// whole-heap check after every operation. Then, with the faults still
    /// armed, frees everything (verifying every block) and checks; then the
    /// OS recovers and the footprint limit is lifted, and the heap must
    /// serve a small, a medium and a directly mapped request, and give its
    /// memory back on `trim(0)`.
    ///
    /// Returns what happened, or the first error, naming the operation.
    pub fn run(&self) -> Result<FuzzOutcome, String> {
        let heap = Heap::with_config(Faulty::new(Mmap), self.config)
            .ok_or("the OS refused the first segment (no fault was armed yet)")?;
        let mut m = Model::new(heap);
        if self.quick_lists {
            m = m.with_quick_lists();
        }
        m.check_every_op = true;
        m.heap.set_footprint_limit(self.footprint_limit);
        if self.debug.0 != 0 {
            m.heap.set_debug(self.debug.0, self.debug.1);
        }
        let fresh_footprint = m.heap.footprint();
        self.faults.arm(m.heap.source());
        for (i, op) in self.ops.iter().enumerate() {
            m.apply(op)
                .map_err(|e| format!("op {i} of {} ({op:?}): {e}", self.ops.len()))?;
        }
        m.free_all()
            .map_err(|e| format!("freeing everything, faults still armed: {e}"))?;
        let outcome = FuzzOutcome {
            ops: self.ops.len(),
            null_returns: m.failures,
            injected_faults: m.heap.source().failures(),
        };

        // The OS recovers: the heap must work as new.
        m.heap.source().reset();
        m.heap.set_footprint_limit(0);
        let before = m.failures;
        for size in [100, 100_000, 1 << 20] {
            m.apply(&Op::Malloc(size))
                .map_err(|e| format!("after the OS recovered: {e}"))?;
            if m.failures != before {
                return Err(format!(
                    "after the OS recovered, malloc({size}) still returned null"
                ));
            }
        }
        m.free_all()
            .map_err(|e| format!("after the OS recovered: {e}"))?;
        m.heap.trim(0);
        m.heap
            .check()
            .map_err(|e| format!("after the final trim(0): {e}"))?;
        let slack = self.config.top_pad.max(self.config.granularity) + (1 << 20);
        let end = m.heap.footprint();
        if end > fresh_footprint + slack {
            return Err(format!(
                "memory not given back: footprint {end} after freeing everything and \
                 trim(0), {fresh_footprint} when new"
            ));
        }
        Ok(outcome)
    }
}

/// Runs the plan decoded from `data` ([`FuzzPlan::from_bytes`],
/// [`FuzzPlan::run`]); returns what happened or the first error.
pub fn try_fuzz_one(data: &[u8]) -> Result<FuzzOutcome, String> {
    FuzzPlan::from_bytes(data).run()
}

/// The fuzz entry point: decodes `data` into a heap setup and operation
/// sequence, runs it against the shadow model with the whole-heap check
/// after every operation, and panics with the error and the decoded plan
/// if anything is wrong. Heap corruption the allocator itself detects
/// aborts the process with its one-line report instead.
pub fn fuzz_one(data: &[u8]) {
    if let Err(e) = try_fuzz_one(data) {
        let plan = FuzzPlan::from_bytes(data);
        panic!(
            "tessera fuzz failure: {e}\n\
             input ({} bytes): {data:02x?}\n\
             plan: faults {:?}, {:?}, footprint limit {}, debug {:?}\n\
             ops: {:?}",
            data.len(),
            plan.faults,
            plan.config,
            plan.footprint_limit,
            plan.debug,
            plan.ops
        );
    }
}
