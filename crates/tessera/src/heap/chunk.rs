//! Chunks: the unit of memory every other module manipulates.
//!
//! # Glossary
//! - **chunk**: a 16-byte aligned run of heap memory that starts with a
//!   two-word header. Every byte of a segment (between its header area and
//!   its fencepost) belongs to exactly one chunk.
//! - **mem** (user pointer): `chunk + 16`, the address handed to callers.
//! - **head**: the second header word: the chunk's size with three flag bits
//!   in the low bits (see [`Head`]).
//! - **prev_foot**: the first header word. It belongs to the *previous*
//!   chunk: while that chunk is free it holds its size (the boundary tag);
//!   while it is in use it is the last 8 bytes of its payload.
//! - **boundary tag**: that copy of a free chunk's size at its end, which lets
//!   `free` find the start of a free predecessor and merge with it.
//! - **overhead**: 8 bytes per in-use chunk (its head). The prev_foot of a
//!   chunk counts against its predecessor's payload, not against itself.
//!
//! # Layout on x86-64 (dlmalloc 2.8.6 without FOOTERS)
//!
//! ```text
//!  An in-use chunk                         A free chunk
//!
//!  chunk ->+-----------------------------+ chunk ->+-----------------------------+
//!          | prev_foot: previous chunk's |         | prev_foot: (in use before)  |
//!          | size if it is free, else    |         |                             |
//!          | its payload                 |         |                             |
//!          +-----------------------------+         +-----------------------------+
//!          | head: size | C=1 | P        |         | head: size | C=0 | P=1      |
//!  mem --->+-----------------------------+         +-----------------------------+
//!          | payload ...                 |         | fd: next chunk in the bin   |
//!          .                             .         +-----------------------------+
//!          .                             .         | bk: previous chunk in bin   |
//!          |                             |         +-----------------------------+
//!  next -->+ - - - - - - - - - - - - - - +         | (tree chunks: child[0],     |
//!          | ... last 8 payload bytes    |         |  child[1], parent, index)   |
//!          | (= next chunk's prev_foot)  |         | unused ...                  |
//!          +-----------------------------+ next -->+-----------------------------+
//!          | next head: size | C | P=1   |         | prev_foot = size (the tag)  |
//!          +-----------------------------+         +-----------------------------+
//!                                                  | next head: size | C=1 | P=0 |
//!                                                  +-----------------------------+
//! ```
//!
//! Flag bits of `head` (see [`Head`]): `P` = PINUSE (bit 0, the *previous*
//! chunk is in use), `C` = CINUSE (bit 1, this chunk is in use), `4` = FLAG4
//! (bit 2; unused by dlmalloc; Tessera sets it on chunks parked on an
//! arena's quick list, and in snapshots on chunks in a thread cache, see
//! [`Head::FLAG4`]). Chunks that were mapped
//! directly from the OS have both P and C clear; their prev_foot holds the
//! distance back to the start of their mapping. A fencepost has head
//! `8 | C | P` and ends a segment.
//!
//! Tessera addition: bits 48..63 of an in-use segment chunk's head hold a
//! **tag**: a mark bit (63, always set) and a 15-bit keyed hash of the
//! chunk's address, size and CINUSE bit ([`tag_for`]). Sizes never reach
//! 2^48, so dlmalloc's layout is unchanged below; `free` recomputes the tag,
//! which catches an overflow that rewrote the header and a pointer that is
//! not the start of a chunk (the odds that garbage carries the right tag are
//! 1 in 32,768). Free chunks, top, fenceposts and direct chunks carry no tag
//! (they are checked by boundary tags, links and keyed mapping headers), so
//! the mark bit alone tells a tagged head from theirs: a tag check passes
//! only on an in-use chunk, and the free fast path needs no separate test of
//! the flag bits.
//!
//! # Invariants (all chunks except fenceposts)
//! - `chunk % 16 == 0` and `size % 16 == 0` and `size >= MIN_CHUNK_SIZE`.
//! - `next(chunk).head.pinuse() == chunk.head.cinuse()` inside a segment.
//! - A free chunk's `next(chunk).prev_foot == size`.
//! - No two free chunks are adjacent (free merges them), so a free chunk
//!   always has PINUSE set and its next chunk has CINUSE set.

use core::fmt;
use core::ptr;

/// Bytes in a machine word (`size_t`).
pub const WORD: usize = core::mem::size_of::<usize>();
/// Alignment of every chunk and every user pointer.
pub const MALLOC_ALIGNMENT: usize = 16;
/// `MALLOC_ALIGNMENT - 1`, dlmalloc's CHUNK_ALIGN_MASK.
pub const CHUNK_ALIGN_MASK: usize = MALLOC_ALIGNMENT - 1;
/// Bytes an in-use chunk spends on its header (only `head`; see the module docs).
pub const CHUNK_OVERHEAD: usize = WORD;
/// Bytes a directly mapped chunk spends on its header (it has no successor
/// whose prev_foot it could borrow).
pub const MMAP_CHUNK_OVERHEAD: usize = 2 * WORD;
/// Size of the smallest chunk: header plus the two free-list links.
pub const MIN_CHUNK_SIZE: usize = 32;
/// Largest request that still gets a [`MIN_CHUNK_SIZE`] chunk.
pub const MIN_REQUEST: usize = MIN_CHUNK_SIZE - CHUNK_OVERHEAD - 1;
/// Offset from a chunk to its user pointer.
pub const MEM_OFFSET: usize = 2 * WORD;
/// Requests at or above this size fail at once. Far beyond any address
/// space the kernel hands out, and small enough that rounding never
/// overflows.
pub const MAX_REQUEST: usize = isize::MAX as usize / 2;

const _: () = assert!(
    WORD == 8,
    "Tessera's chunk layout is written for 64-bit targets"
);
const _: () = assert!(MALLOC_ALIGNMENT.is_power_of_two());
const _: () = assert!(MIN_CHUNK_SIZE % MALLOC_ALIGNMENT == 0);
const _: () = assert!(core::mem::size_of::<Chunk>() == MIN_CHUNK_SIZE);

/// Pads a request to a chunk size: room for the head, rounded up to 16.
/// dlmalloc's `pad_request`. Only meaningful for `req < MAX_REQUEST`.
#[inline(always)]
pub const fn pad_request(req: usize) -> usize {
    (req + CHUNK_OVERHEAD + CHUNK_ALIGN_MASK) & !CHUNK_ALIGN_MASK
}

/// The chunk size that serves a request of `req` bytes (dlmalloc's
/// `request2size`): 32 for 0..=23 bytes, else [`pad_request`].
#[inline(always)]
pub const fn request2size(req: usize) -> usize {
    if req < MIN_REQUEST {
        MIN_CHUNK_SIZE
    } else {
        pad_request(req)
    }
}

/// Rounds `x` up to a multiple of `align` (a power of two). The caller
/// guarantees no overflow.
#[inline(always)]
pub const fn align_up(x: usize, align: usize) -> usize {
    (x + align - 1) & !(align - 1)
}

/// Rounds `x` down to a multiple of `align` (a power of two).
#[inline(always)]
pub const fn align_down(x: usize, align: usize) -> usize {
    x & !(align - 1)
}

/// The `head` word of a chunk: a size and three flag bits.
///
/// Size bits are everything above bit 2; for ordinary chunks the size is a
/// multiple of 16, for fenceposts it is 8. The `Debug` impl decodes the flags
/// (`Head(0x91 = 144 | P)`), which the visualiser reuses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Head(pub usize);

impl Head {
    /// The previous chunk is in use (dlmalloc's PINUSE_BIT).
    pub const PINUSE: usize = 1;
    /// This chunk is in use (dlmalloc's CINUSE_BIT).
    pub const CINUSE: usize = 2;
    /// Spare bit. Tessera: the chunk is parked (in use as far as the heap
    /// knows, free as far as the program knows). Kept set while the chunk
    /// sits on its arena's quick list (`crate::heap::quick`; only holders of the
    /// arena's lock write it). For a chunk in a thread cache, set only
    /// while a snapshot of its arena is written, by the cache's own thread
    /// holding the arena's lock (`tcache::mark_entries_of`): not while the
    /// chunk is cached, because the cache works without the arena lock,
    /// while another thread holding the lock may flip PINUSE in the same
    /// head word, and one of the two updates would be lost.
    ///
    /// In a *free* chunk (CINUSE clear, in a tree bin): the chunk is
    /// **purged**: its whole pages past its header and links
    /// ([`purgeable`]) were given back to the OS and read as zero (see
    /// `crate::heap::free`, "Purging"). Every head write that makes a free
    /// chunk anything else writes a fresh head and so clears it.
    pub const FLAG4: usize = 4;
    /// PINUSE | CINUSE.
    pub const INUSE_BITS: usize = Self::PINUSE | Self::CINUSE;
    /// All flag bits.
    pub const FLAG_BITS: usize = Self::PINUSE | Self::CINUSE | Self::FLAG4;
    /// First bit of the tag of an in-use chunk.
    pub const TAG_SHIFT: u32 = 48;
    /// The size bits: everything between the flags and the tag.
    pub const SIZE_MASK: usize = ((1 << Self::TAG_SHIFT) - 1) & !Self::FLAG_BITS;
    /// The bits a tag covers: the size and CINUSE (not PINUSE, which the
    /// neighbour's owner flips, nor FLAG4).
    pub const TAGGED: usize = Self::SIZE_MASK | Self::CINUSE;
    /// The tag bit every tag has set ("this head carries a tag").
    pub const TAG_MARK: usize = 1 << 63;
    /// The head of a fencepost: a pseudo chunk of size 8, in use, whose
    /// predecessor is in use. Ends every segment so that nothing coalesces
    /// past it.
    pub const FENCEPOST: usize = Self::INUSE_BITS | WORD;

    /// The size encoded in this head (flag bits masked off).
    #[inline(always)]
    pub const fn size(self) -> usize {
        self.0 & Self::SIZE_MASK
    }
    /// The tag bits (0 for chunks that carry none).
    #[inline(always)]
    pub const fn tag(self) -> usize {
        self.0 >> Self::TAG_SHIFT
    }
    /// Is the previous chunk in use?
    #[inline(always)]
    pub const fn pinuse(self) -> bool {
        self.0 & Self::PINUSE != 0
    }
    /// Is this chunk in use (CINUSE set)?
    #[inline(always)]
    pub const fn cinuse(self) -> bool {
        self.0 & Self::CINUSE != 0
    }
    /// Is FLAG4 set?
    #[inline(always)]
    pub const fn flag4(self) -> bool {
        self.0 & Self::FLAG4 != 0
    }
    /// In use from the program's point of view: CINUSE set, or directly
    /// mapped (both inuse bits clear). dlmalloc's `is_inuse`.
    #[inline(always)]
    pub const fn is_inuse(self) -> bool {
        self.0 & Self::INUSE_BITS != Self::PINUSE
    }
    /// Directly mapped from the OS (both inuse bits clear). dlmalloc's
    /// `is_mmapped`.
    #[inline(always)]
    pub const fn is_mmapped(self) -> bool {
        self.0 & Self::INUSE_BITS == 0
    }
    /// Is this the head of a fencepost?
    #[inline(always)]
    pub const fn is_fencepost(self) -> bool {
        self.0 & !Self::PINUSE == Self::FENCEPOST & !Self::PINUSE
    }

    /// Is PINUSE set, and do the tag's mark (bit 63) and CINUSE agree, as
    /// in the head of every chunk after an in-use one but a fencepost (in-use
    /// heads carry a tag, free ones none)? The check the free fast path
    /// makes of the head after the block it frees, in four instructions:
    /// rotated left by one, the three bits are the low three, and a shift
    /// of a constant with bits 2 (`0b010`, free) and 7 (`0b111`, in use)
    /// set picks the answer. A one-byte overflow that clears PINUSE or
    /// CINUSE there (a NUL, `A`, `a`, any byte whose low two bits are not
    /// both set: three byte values in four) breaks it; the rest change only
    /// the size bits, which the neighbour's tag covers when it is next used.
    #[inline(always)]
    pub const fn mark_agrees(self) -> bool {
        // Rotated left by one: the mark at bit 0, PINUSE at 1, CINUSE at 2.
        // Fine: 0b010 (free, no mark) and 0b111 (in use, marked).
        (0x84u8 >> (self.0.rotate_left(1) & 7)) & 1 != 0
    }

    /// [`Self::mark_agrees`], and a head without the mark carries no other
    /// tag bit either (as a free chunk's does not): also broken by text
    /// written over the whole head. The slower frees' quick look at the
    /// next chunk's head.
    #[inline(always)]
    pub const fn looks_real(self) -> bool {
        self.mark_agrees() && (self.0 as isize) < (1 << Self::TAG_SHIFT)
    }
}

/// Are the cheap always-on checks compiled in? (Only the `unchecked`
/// feature, for measuring their cost, turns them off.)
pub const CHECKS: bool = !cfg!(feature = "unchecked");

/// The tag an in-use chunk at `p` of `size` bytes carries in its head
/// (already shifted into bits 48..63): [`Head::TAG_MARK`] and bits 48..62
/// of a multiply-shift hash of its payload address, size and CINUSE,
/// keyed by the process secret as the multiplier.
#[inline(always)]
pub fn tag_for(p: *mut Chunk, size: usize) -> usize {
    if !CHECKS {
        return 0;
    }
    let mem = (p as usize).wrapping_add(MEM_OFFSET);
    tag_keyed(mem, size, crate::sys::registry::key_initialized())
}

/// [`tag_for`] for the chunk whose payload is at `mem`, under the key
/// `secret`.
#[inline(always)]
fn tag_keyed(mem: usize, size: usize, secret: usize) -> usize {
    let hash = tag_hash(mem, size | Head::CINUSE, secret);
    (hash | Head::TAG_MARK) & !((1 << Head::TAG_SHIFT) - 1)
}

/// The hash whose bits 48..62 are the tag (the others are discarded):
/// `(mem ^ tagged) * secret`, where `tagged` is the head's size and CINUSE
/// bits, shifted right once so that bit 63 is clear and the top 15 bits of
/// the product land in bits 48..62. Multiply-shift hashing with the odd
/// random process key as the multiplier: for two different (address, size)
/// pairs the tags agree with odds of about 2 in 32,768 over the choice of
/// key. Three instructions (xor, multiply, shift) on top of the free
/// path's loads. The payload address rather than the chunk's, so that
/// `free` hashes the pointer it is given.
#[inline(always)]
fn tag_hash(mem: usize, tagged: usize, secret: usize) -> usize {
    (mem ^ tagged).wrapping_mul(secret) >> 1
}

/// The whole pages inside a free chunk at address `p` of `size` bytes that
/// purging gives back to the OS, as `(start, end)`: from the first page
/// boundary past its header and tree links to the last page boundary
/// before its end (its boundary tag, the next chunk's `prev_foot`, lies
/// beyond). `start == end` when it has no such page. Pages are the
/// kernel's 4 KiB ones, whatever the page source says, so that snapshots
/// can draw the range without knowing the source.
#[inline]
pub const fn purgeable(p: usize, size: usize) -> (usize, usize) {
    let start = align_up(p + core::mem::size_of::<TreeChunk>(), PAGE);
    let end = (p + size) & !(PAGE - 1);
    if end > start {
        (start, end)
    } else {
        (start, start)
    }
}

/// Bytes of [`purgeable`].
#[inline]
pub const fn purgeable_bytes(p: usize, size: usize) -> usize {
    let (start, end) = purgeable(p, size);
    end - start
}

const PAGE: usize = crate::sys::os::PAGE_SIZE;

/// Could `p` (non-null, read from heap memory) be a chunk of some Tessera
/// heap? Checks alignment and the segment registry, reading nothing.
#[inline(always)]
pub fn plausible<T>(p: *mut T) -> bool {
    !CHECKS || crate::sys::registry::aligned_in_segment((p as usize).wrapping_add(MEM_OFFSET))
}

/// [`plausible`], with a fast path for links read out of a chunk `near`
/// that lies in a live segment: a link in the same segment slot as `near`
/// lies in that live segment too (the same guarantee the registry gives),
/// so only 16-byte alignment is left to check. Other links go to the
/// registry.
#[inline(always)]
pub fn plausible_near<T, U>(p: *mut T, near: *mut U) -> bool {
    // `near` is 16-aligned, so one masked test asks both questions: same
    // slot (the high bits agree) and aligned (the low four bits are 0).
    const SAME_SLOT_ALIGNED: usize = !(crate::sys::registry::SEGMENT_SIZE - 1) | CHUNK_ALIGN_MASK;
    !CHECKS || (p as usize ^ near as usize) & SAME_SLOT_ALIGNED == 0 || plausible(p)
}

/// Returns `p` if it is null or [`plausible_near`] the chunk `near` it was
/// read from; otherwise reports corrupted free-list links, naming the
/// chunk that holds the link (and the link), and aborts. For every link
/// read out of a free chunk before it is followed.
#[inline(always)]
pub fn checked_link_near<T, U>(p: *mut T, near: *mut U) -> *mut T {
    if !p.is_null() && !plausible_near(p, near) {
        crate::sys::report::fatal_with(
            crate::sys::report::Misuse::CorruptLinks,
            (near as *mut u8).wrapping_add(MEM_OFFSET),
            "link",
            p as usize,
        );
    }
    p
}

/// Does the head `head` of chunk `p` carry the right tag? Only an in-use
/// chunk's can (CINUSE is hashed, and untagged heads lack the mark).
/// Always true without the checks.
#[inline(always)]
pub fn tag_ok(p: *mut Chunk, head: Head) -> bool {
    let mem = (p as usize).wrapping_add(MEM_OFFSET) as *mut u8;
    tag_ok_keyed(mem, head, crate::sys::registry::key_initialized())
}

/// [`tag_ok`] for the chunk whose payload is at `mem`, with the process key
/// already loaded (`secret`): for the free fast path, which has the payload
/// pointer and needs the key again to mangle the cache link.
#[inline(always)]
pub fn tag_ok_keyed(mem: *mut u8, head: Head, secret: usize) -> bool {
    // The hash's bit 63 is clear: what is left after the xor must be the
    // mark alone.
    let hash = tag_hash(mem as usize, head.0 & Head::TAGGED, secret);
    !CHECKS || (head.0 ^ hash) >> Head::TAG_SHIFT == Head::TAG_MARK >> Head::TAG_SHIFT
}

impl fmt::Debug for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Head({:#x} = {}", self.0, self.size())?;
        if self.tag() != 0 {
            write!(f, " | tag {:#06x}", self.tag())?;
        }
        if self.is_mmapped() {
            f.write_str(" | MMAPPED")?;
        }
        if self.pinuse() {
            f.write_str(" | P")?;
        }
        if self.cinuse() {
            f.write_str(" | C")?;
        }
        if self.flag4() {
            f.write_str(" | 4")?;
        }
        f.write_str(")")
    }
}

/// A chunk header as dlmalloc's `struct malloc_chunk`. The `fd`/`bk` words
/// are only meaningful while the chunk is free and lie in what is payload
/// while it is in use.
///
/// Chunks are never handled by reference: all access goes through the
/// associated functions below, which take raw pointers, because the memory
/// is shared with user payloads and with neighbouring chunks' fields.
#[repr(C)]
pub struct Chunk {
    /// Size of the previous chunk if it is free (else its payload).
    pub prev_foot: usize,
    /// Size and flags of this chunk.
    pub head: Head,
    /// Next chunk in the same bin (free chunks only).
    pub fd: *mut Chunk,
    /// Previous chunk in the same bin (free chunks only).
    pub bk: *mut Chunk,
}

/// A free chunk of at least 256 bytes, kept in a tree bin (dlmalloc's
/// `struct malloc_tree_chunk`). The first four words are those of [`Chunk`];
/// `fd`/`bk` link chunks of *equal* size into a ring.
#[repr(C)]
pub struct TreeChunk {
    /// Shared header and ring links.
    pub chunk: Chunk,
    /// Subtrees: keys with the next bit 0 go left (`child[0]`), 1 right.
    pub child: [*mut TreeChunk; 2],
    /// The parent node; for the root, the address of its bin slot (never
    /// dereferenced); null for ring members that are not the tree node.
    pub parent: *mut TreeChunk,
    /// Index of the tree bin this chunk lives in.
    pub index: u32,
    /// Tessera: when the chunk entered its bin, in the heap's ticks
    /// (`State::epoch`; in dlmalloc this word is padding). Purging leaves
    /// alone a chunk freed less than the decay delay ago: it is likely to
    /// be reused, and purging it would only cost page faults.
    pub freed_at: u32,
}

impl Chunk {
    /// The user pointer of a chunk (dlmalloc's `chunk2mem`).
    #[inline(always)]
    pub fn to_mem(p: *mut Chunk) -> *mut u8 {
        p.cast::<u8>().wrapping_add(MEM_OFFSET)
    }

    /// The chunk of a user pointer (dlmalloc's `mem2chunk`). Pure address
    /// arithmetic: the result is only safe to read once validated.
    #[inline(always)]
    pub fn from_mem(mem: *mut u8) -> *mut Chunk {
        mem.wrapping_sub(MEM_OFFSET).cast()
    }

    /// The chunk `offset` bytes after `p` (dlmalloc's `chunk_plus_offset`).
    #[inline(always)]
    pub fn plus_offset(p: *mut Chunk, offset: usize) -> *mut Chunk {
        p.cast::<u8>().wrapping_add(offset).cast()
    }

    /// The chunk `offset` bytes before `p` (dlmalloc's `chunk_minus_offset`).
    #[inline(always)]
    pub fn minus_offset(p: *mut Chunk, offset: usize) -> *mut Chunk {
        p.cast::<u8>().wrapping_sub(offset).cast()
    }

    /// Reads the head word.
    ///
    /// # Safety
    /// `p` must point to a readable chunk header.
    #[inline(always)]
    pub unsafe fn head(p: *mut Chunk) -> Head {
        // SAFETY: the caller guarantees `p` points to a readable header.
        unsafe { ptr::addr_of!((*p).head).read() }
    }

    /// Writes the head word.
    ///
    /// # Safety
    /// `p` must point to a writable chunk header.
    #[inline(always)]
    pub unsafe fn set_head(p: *mut Chunk, head: usize) {
        // SAFETY: the caller guarantees `p` points to a writable header.
        unsafe { ptr::addr_of_mut!((*p).head).write(Head(head)) }
    }

    /// Reads the prev_foot word.
    ///
    /// # Safety
    /// `p` must point to a readable chunk header.
    #[inline(always)]
    pub unsafe fn prev_foot(p: *mut Chunk) -> usize {
        // SAFETY: the caller guarantees `p` points to a readable header.
        unsafe { ptr::addr_of!((*p).prev_foot).read() }
    }

    /// Writes the prev_foot word.
    ///
    /// # Safety
    /// `p` must point to a writable chunk header.
    #[inline(always)]
    pub unsafe fn set_prev_foot(p: *mut Chunk, foot: usize) {
        // SAFETY: the caller guarantees `p` points to a writable header.
        unsafe { ptr::addr_of_mut!((*p).prev_foot).write(foot) }
    }

    /// The chunk's size, flags masked off (dlmalloc's `chunksize`).
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn size(p: *mut Chunk) -> usize {
        // SAFETY: forwarded to the caller.
        unsafe { Self::head(p).size() }
    }

    /// Is CINUSE set?
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn cinuse(p: *mut Chunk) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe { Self::head(p).cinuse() }
    }

    /// Is PINUSE set?
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn pinuse(p: *mut Chunk) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe { Self::head(p).pinuse() }
    }

    /// The chunk after `p`, found through `p`'s size (dlmalloc's `next_chunk`).
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn next(p: *mut Chunk) -> *mut Chunk {
        // SAFETY: forwarded to the caller.
        Self::plus_offset(p, unsafe { Self::size(p) })
    }

    /// The chunk before `p`, found through the boundary tag. Only valid while
    /// PINUSE of `p` is clear (dlmalloc's `prev_chunk`).
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn prev(p: *mut Chunk) -> *mut Chunk {
        // SAFETY: forwarded to the caller.
        Self::minus_offset(p, unsafe { Self::prev_foot(p) })
    }

    /// Clears PINUSE of `p` (its predecessor became free).
    ///
    /// # Safety
    /// `p` must point to a writable chunk header.
    #[inline(always)]
    pub unsafe fn clear_pinuse(p: *mut Chunk) {
        // SAFETY: forwarded to the caller.
        unsafe { Self::set_head(p, Self::head(p).0 & !Head::PINUSE) }
    }

    /// Sets PINUSE of `p` (its predecessor is in use).
    ///
    /// # Safety
    /// `p` must point to a writable chunk header.
    #[inline(always)]
    pub unsafe fn set_pinuse(p: *mut Chunk) {
        // SAFETY: forwarded to the caller.
        unsafe { Self::set_head(p, Self::head(p).0 | Head::PINUSE) }
    }

    /// Writes the boundary tag of a free chunk of `size` bytes at `p`: the
    /// next chunk's prev_foot (dlmalloc's `set_foot`).
    ///
    /// # Safety
    /// `p + size` must be a writable chunk header.
    #[inline(always)]
    pub unsafe fn set_foot(p: *mut Chunk, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { Self::set_prev_foot(Self::plus_offset(p, size), size) }
    }

    /// Makes `p` a free chunk of `size` bytes whose predecessor is in use:
    /// head and boundary tag (dlmalloc's `set_size_and_pinuse_of_free_chunk`).
    ///
    /// # Safety
    /// `p` and `p + size` must be writable chunk headers.
    #[inline(always)]
    pub unsafe fn set_free_with_pinuse_only(p: *mut Chunk, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe {
            Self::set_head(p, size | Head::PINUSE);
            Self::set_foot(p, size);
        }
    }

    /// As [`Chunk::set_free_with_pinuse_only`], and clears PINUSE of the
    /// chunk `next` that follows (dlmalloc's `set_free_with_pinuse`).
    ///
    /// # Safety
    /// `p` and `next == p + size` must be writable chunk headers.
    #[inline(always)]
    pub unsafe fn set_free_with_pinuse(p: *mut Chunk, size: usize, next: *mut Chunk) {
        // SAFETY: forwarded to the caller.
        unsafe {
            Self::clear_pinuse(next);
            Self::set_free_with_pinuse_only(p, size);
        }
    }

    /// Marks `p` in use with `size` bytes (and its tag), keeping its PINUSE,
    /// and sets PINUSE of the chunk after it (dlmalloc's `set_inuse`).
    ///
    /// # Safety
    /// `p` and `p + size` must be writable chunk headers.
    #[inline(always)]
    pub unsafe fn set_inuse(p: *mut Chunk, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe {
            let pinuse = Self::head(p).0 & Head::PINUSE;
            Self::set_head(p, tag_for(p, size) | pinuse | size | Head::CINUSE);
            Self::set_pinuse(Self::plus_offset(p, size));
        }
    }

    /// Marks `p` in use with `size` bytes and PINUSE, and sets PINUSE of the
    /// chunk after it (dlmalloc's `set_inuse_and_pinuse`).
    ///
    /// # Safety
    /// `p` and `p + size` must be writable chunk headers.
    #[inline(always)]
    pub unsafe fn set_inuse_and_pinuse(p: *mut Chunk, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe {
            Self::set_head(p, tag_for(p, size) | size | Head::PINUSE | Head::CINUSE);
            Self::set_pinuse(Self::plus_offset(p, size));
        }
    }

    /// Marks `p` in use with `size` bytes and PINUSE without touching the
    /// next chunk (dlmalloc's `set_size_and_pinuse_of_inuse_chunk`); used
    /// when the caller writes the next chunk's head itself.
    ///
    /// # Safety
    /// `p` must be a writable chunk header.
    #[inline(always)]
    pub unsafe fn set_size_and_pinuse_of_inuse(p: *mut Chunk, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { Self::set_head(p, tag_for(p, size) | size | Head::PINUSE | Head::CINUSE) }
    }

    /// Bytes of payload the program may use in an in-use chunk (dlmalloc's
    /// `chunksize(p) - overhead_for(p)`).
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn usable_size(p: *mut Chunk) -> usize {
        // SAFETY: forwarded to the caller.
        let head = unsafe { Self::head(p) };
        if head.is_mmapped() {
            head.size() - MMAP_CHUNK_OVERHEAD
        } else {
            head.size() - CHUNK_OVERHEAD
        }
    }
}

impl TreeChunk {
    /// Views a chunk pointer as a tree chunk pointer.
    #[inline(always)]
    pub fn from_chunk(p: *mut Chunk) -> *mut TreeChunk {
        p.cast()
    }

    /// Views a tree chunk pointer as a plain chunk pointer.
    #[inline(always)]
    pub fn as_chunk(t: *mut TreeChunk) -> *mut Chunk {
        t.cast()
    }

    /// The chunk's size.
    ///
    /// # Safety
    /// `t` must point to a readable chunk header.
    #[inline(always)]
    pub unsafe fn size(t: *mut TreeChunk) -> usize {
        // SAFETY: forwarded to the caller.
        unsafe { Chunk::size(Self::as_chunk(t)) }
    }

    /// `child[0]` if present, else `child[1]` (dlmalloc's `leftmost_child`).
    ///
    /// # Safety
    /// `t` must point to a readable tree chunk.
    #[inline(always)]
    pub unsafe fn leftmost_child(t: *mut TreeChunk) -> *mut TreeChunk {
        // SAFETY: forwarded to the caller.
        unsafe {
            let left = (*t).child[0];
            if left.is_null() {
                (*t).child[1]
            } else {
                left
            }
        }
    }

    /// Next tree chunk of equal size in the ring.
    ///
    /// # Safety
    /// `t` must point to a readable tree chunk.
    #[inline(always)]
    pub unsafe fn fd(t: *mut TreeChunk) -> *mut TreeChunk {
        // SAFETY: forwarded to the caller.
        unsafe { (*t).chunk.fd.cast() }
    }

    /// Previous tree chunk of equal size in the ring.
    ///
    /// # Safety
    /// `t` must point to a readable tree chunk.
    #[inline(always)]
    pub unsafe fn bk(t: *mut TreeChunk) -> *mut TreeChunk {
        // SAFETY: forwarded to the caller.
        unsafe { (*t).chunk.bk.cast() }
    }

    /// Sets the ring links.
    ///
    /// # Safety
    /// `t` must point to a writable tree chunk.
    #[inline(always)]
    pub unsafe fn set_links(t: *mut TreeChunk, fd: *mut TreeChunk, bk: *mut TreeChunk) {
        // SAFETY: forwarded to the caller.
        unsafe {
            (*t).chunk.fd = fd.cast();
            (*t).chunk.bk = bk.cast();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mark_agrees` against its definition, for every low byte a write
    /// past a block could leave in the next head, with and without the
    /// mark, above both kinds of tag bits.
    #[test]
    fn mark_agrees_is_pinuse_and_mark_equals_cinuse() {
        let mut caught = 0;
        for byte in 0..=255usize {
            for high in [
                0,
                Head::TAG_MARK,
                Head::TAG_MARK | 0x1234 << Head::TAG_SHIFT,
            ] {
                let h = Head(high | 0x300 | byte);
                let marked = h.0 & Head::TAG_MARK != 0;
                let want = h.pinuse() && marked == h.cinuse();
                assert_eq!(h.mark_agrees(), want, "{h:?}");
            }
            // A one-byte overflow into a marked in-use head (`0x...33`).
            if !Head(Head::TAG_MARK | 0x300 | byte).mark_agrees() {
                caught += 1;
            }
        }
        // Every byte whose low two bits are not both set: three in four.
        assert_eq!(caught, 192);
    }

    /// The naive definition: the smallest multiple of 16 that holds the
    /// request plus an 8-byte head, and at least 32.
    fn naive_request2size(req: usize) -> usize {
        let mut size = MIN_CHUNK_SIZE;
        while size - CHUNK_OVERHEAD < req {
            size += MALLOC_ALIGNMENT;
        }
        size
    }

    #[test]
    fn request2size_matches_naive_up_to_1mib() {
        for req in 0..=(1 << 20) {
            assert_eq!(request2size(req), naive_request2size(req), "req {req}");
        }
    }

    #[test]
    fn request2size_matches_closed_form_on_samples_beyond_1mib() {
        let mut req = 1usize << 20;
        while req < MAX_REQUEST / 4 {
            for delta in [0usize, 1, 7, 8, 9, 15, 16, 17] {
                let r = req + delta;
                let size = request2size(r);
                assert!(size >= r + CHUNK_OVERHEAD, "req {r}");
                assert!(size - (r + CHUNK_OVERHEAD) < MALLOC_ALIGNMENT, "req {r}");
                assert_eq!(size % MALLOC_ALIGNMENT, 0);
            }
            req = req * 3 / 2 + 1;
        }
    }

    #[test]
    fn dlmalloc_documented_sizes() {
        assert_eq!(request2size(0), 32);
        assert_eq!(request2size(24), 32);
        assert_eq!(request2size(25), 48);
        assert_eq!(request2size(40), 48);
        assert_eq!(request2size(41), 64);
        assert_eq!(MIN_REQUEST, 23);
    }

    #[test]
    fn head_flags_decode() {
        let h = Head(144 | Head::PINUSE | Head::CINUSE);
        assert_eq!(h.size(), 144);
        assert!(h.pinuse() && h.cinuse() && h.is_inuse() && !h.is_mmapped());
        assert_eq!(format!("{h:?}"), "Head(0x93 = 144 | P | C)");
        let free = Head(64 | Head::PINUSE);
        assert!(!free.is_inuse());
        let mapped = Head(4096);
        assert!(mapped.is_mmapped() && mapped.is_inuse());
        assert_eq!(format!("{mapped:?}"), "Head(0x1000 = 4096 | MMAPPED)");
        assert!(Head(Head::FENCEPOST).is_fencepost());
        assert!(Head(Head::FENCEPOST & !Head::PINUSE).is_fencepost());
        assert!(!Head(16 | Head::INUSE_BITS).is_fencepost());
    }

    #[test]
    fn tags_depend_on_address_and_size_and_leave_size_alone() {
        crate::sys::registry::key();
        let p = 0x7f00_1234_5670usize as *mut Chunk;
        let h = Head(tag_for(p, 144) | 144 | Head::CINUSE | Head::PINUSE);
        assert_eq!(h.size(), 144);
        assert!(tag_ok(p, h));
        // The same head is wrong at other addresses and with other sizes
        // (each mismatch has a 1 in 32,768 chance to pass: allow one).
        let wrong_addr = (1..=16)
            .filter(|&i| tag_ok(Chunk::plus_offset(p, 16 * i), h))
            .count();
        assert!(wrong_addr <= 1, "{wrong_addr}");
        let wrong_size = (1..=16)
            .filter(|&i| tag_ok(p, Head((h.0 & !Head::SIZE_MASK) | (144 + 16 * i))))
            .count();
        assert!(wrong_size <= 1, "{wrong_size}");
        // Neighbouring chunks get well-spread tags: over 200 keys, 1000
        // chunks in a row have 1000 - 30 distinct 15-bit tags on average
        // (multiply-shift hashing: each pair collides with odds of ~2 in
        // 32,768, so about 30 of the 499,500 pairs do), and most keys do
        // better.
        let mut r = 0x2545_F491_4F6C_DD1Du64;
        let mut distinct = Vec::new();
        for _ in 0..200 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let secret = crate::sys::registry::compose_key(r) as usize;
            let base = Chunk::plus_offset(p, (r as usize >> 20) & 0xFFFF_FFF0);
            let mut seen = std::collections::HashSet::new();
            for i in 0..1000usize {
                let q = Chunk::plus_offset(base, 16 * i);
                let hash = tag_hash(q as usize + MEM_OFFSET, 48 | Head::CINUSE, secret);
                seen.insert((hash >> Head::TAG_SHIFT) & 0x7FFF);
            }
            distinct.push(seen.len());
        }
        let mean = distinct.iter().sum::<usize>() as f64 / distinct.len() as f64;
        assert!(mean >= 970.0, "{mean}");
        distinct.sort_unstable();
        assert!(distinct[distinct.len() / 2] >= 985, "{distinct:?}");
    }

    #[test]
    fn only_tagged_in_use_heads_pass_and_deterministically_so() {
        // Under 200 keys and 1000 addresses each: a head without a tag (a
        // free chunk, top, or in-use garbage with a zero top) never passes,
        // whatever its flags, because every tag carries the mark bit; a
        // tagged head whose CINUSE was cleared passes only by the 1 in
        // 32,768 chance of a hash collision.
        let mut r = 0x9E37_79B9_7F4A_7C15u64;
        let mut cleared_passes = 0;
        for _ in 0..200 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let secret = crate::sys::registry::compose_key(r) as usize;
            for i in 0..1000usize {
                let mem = (0x7f00_0000_0000 + (r as usize & 0xFFF_FFF0) + 16 * i) as *mut u8;
                let size = 32 + 16 * (i % 64);
                for flags in 0..8 {
                    assert!(!tag_ok_keyed(mem, Head(size | flags), secret));
                }
                let head = Head(tag_keyed(mem as usize, size, secret) | size | Head::CINUSE);
                assert!(tag_ok_keyed(mem, head, secret));
                assert!(tag_ok_keyed(
                    mem,
                    Head(head.0 | Head::PINUSE | Head::FLAG4),
                    secret
                ));
                if tag_ok_keyed(mem, Head(head.0 & !Head::CINUSE), secret) {
                    cleared_passes += 1;
                }
            }
        }
        // 200,000 tries at odds of 1 in 32,768: about 6 expected.
        assert!(cleared_passes <= 30, "{cleared_passes}");
    }

    #[test]
    fn navigation_round_trips() {
        let mut buf = [0u128; 16]; // 256 bytes, 16-aligned
        let base: *mut Chunk = buf.as_mut_ptr().cast();
        // SAFETY: all headers written and read lie inside `buf`.
        unsafe {
            Chunk::set_inuse_and_pinuse(base, 64);
            let next = Chunk::next(base);
            assert_eq!(next as usize - base as usize, 64);
            Chunk::set_free_with_pinuse(next, 96, Chunk::plus_offset(next, 96));
            let after = Chunk::next(next);
            assert!(!Chunk::pinuse(after));
            assert_eq!(Chunk::prev(after), next);
            assert_eq!(Chunk::from_mem(Chunk::to_mem(next)), next);
            assert_eq!(Chunk::usable_size(base), 56);
        }
    }
}
