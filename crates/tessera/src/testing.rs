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
//! - any heap invariant, with `Heap::check` after every operation;
//! - leaks: at the end every block is freed and the footprint must drop
//!   back to what an empty heap keeps.

use crate::heap::Heap;
use crate::os::PageSource;
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
}

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
    /// Allocation failures seen (expected with a failing page source).
    pub failures: usize,
}

fn pattern_byte(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u8 ^ (i as u8).wrapping_mul(31)
}

impl<S: PageSource> Model<S> {
    /// A model around `heap`.
    pub fn new(heap: Heap<S>) -> Self {
        Model {
            heap,
            live: Vec::new(),
            ranges: BTreeMap::new(),
            next_id: 1,
            check_every_op: true,
            failures: 0,
        }
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
            if let Some(i) = bytes.iter().position(|&b| b != 0) {
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
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = pattern_byte(id, i);
        }
    }

    fn verify(&self, b: &Block, len: usize) -> Result<(), String> {
        // SAFETY: `len <= size` bytes of a live block.
        let bytes = unsafe { core::slice::from_raw_parts(b.ptr as *const u8, len) };
        for (i, &x) in bytes.iter().enumerate() {
            if x != pattern_byte(b.id, i) {
                return Err(format!(
                    "block {:#x} (size {}) lost data at +{i}: {x:#x} != {:#x}",
                    b.ptr,
                    b.size,
                    pattern_byte(b.id, i)
                ));
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

    /// Applies one operation; returns an error naming what went wrong.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Malloc(size) => {
                let p = self.heap.malloc(size);
                if p.is_null() {
                    self.failures += 1;
                } else {
                    self.add(p, size, false)?;
                }
            }
            Op::Calloc(n, size) => {
                let p = self.heap.calloc(n, size);
                if p.is_null() {
                    if n.checked_mul(size).is_some() {
                        self.failures += 1;
                    }
                } else {
                    self.add(p, n * size, true)?;
                }
            }
            Op::Memalign(log2, size) => {
                let align = 1usize << log2.min(40);
                let p = self.heap.memalign(align, size);
                if p.is_null() {
                    self.failures += 1;
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
                        self.failures += 1;
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
            Op::IndependentCalloc(n, size) => {
                let mut out = std::vec![core::ptr::null_mut(); n];
                if self.heap.independent_calloc(n, size, &mut out) {
                    for p in out {
                        self.add(p, size, true)?;
                    }
                } else if n > 0 {
                    self.failures += 1;
                }
            }
            Op::IndependentComalloc(ref sizes) => {
                let mut out = std::vec![core::ptr::null_mut(); sizes.len()];
                if self.heap.independent_comalloc(sizes, &mut out) {
                    for (p, &s) in out.into_iter().zip(sizes) {
                        self.add(p, s, false)?;
                    }
                } else if !sizes.is_empty() {
                    self.failures += 1;
                }
            }
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
            40..=74 => Op::Free(slot),
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
