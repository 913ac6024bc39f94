//! The 32 tree bins: best-fit search over free chunks of 256 bytes and more.
//!
//! # Glossary
//! - **large chunk**: a free chunk with `size >= 256`.
//! - **tree bin i**: holds sizes in `[minsize(i), minsize(i + 1))`. Two bins
//!   per power of two: bin 0 is 256..383, bin 1 384..511, bin 2 512..767,
//!   bin 3 768..1023, ... bin 31 is everything from 12 MiB up.
//! - **trie**: each bin is a bitwise trie keyed on the size bits *below* the
//!   two that choose the bin: at depth d a node's child is picked by bit
//!   `(i >> 1) + 6 - d` of the size (left for 0, right for 1). Any node may
//!   hold any size of its subtree; the key only constrains where it hangs.
//! - **ring**: chunks of *equal* size share one tree node; the others hang
//!   off it in a circular `fd`/`bk` ring and have a null parent.
//! - **treemap**: bit i set when bin i is non-empty.
//!
//! # Invariants
//! - bit i of `map` ⟺ `roots[i]` non-null.
//! - for every tree node t in bin i: `t.index == i`, `minsize(i) <= size(t)
//!   < minsize(i + 1)`, `t.parent` is non-null (the root's parent is the
//!   address of `roots[i]`, used only as a marker), and for each child c,
//!   `c.parent == t`.
//! - a node reached by the path of bits b1..bd from the root has size bits
//!   `(i >> 1) + 6 ..= (i >> 1) + 7 - d` equal to b1..bd.
//! - ring members other than the node have `parent == null`; ring links are
//!   mutual (`c.fd.bk == c`).

use super::chunk::{checked_link_near, plausible_near, TreeChunk, WORD};
use core::ptr;

/// Number of tree bins (dlmalloc's NTREEBINS).
pub const NTREEBINS: usize = 32;
/// log2 of the smallest large size (dlmalloc's TREEBIN_SHIFT).
pub const TREEBIN_SHIFT: u32 = 8;

const _: () = assert!(NTREEBINS == 32, "the tree map is a u32");

/// The tree bin of a large chunk size (dlmalloc's `compute_tree_index`).
#[inline(always)]
pub const fn compute_tree_index(size: usize) -> usize {
    let x = size >> TREEBIN_SHIFT;
    if x == 0 {
        0
    } else if x > 0xFFFF {
        NTREEBINS - 1
    } else {
        let k = (usize::BITS - 1 - x.leading_zeros()) as usize;
        (k << 1) + ((size >> (k + (TREEBIN_SHIFT as usize - 1))) & 1)
    }
}

/// Shift that brings the first trie key bit of bin `i` to the top of a word
/// (dlmalloc's `leftshift_for_tree_index`).
#[inline(always)]
pub const fn leftshift_for_tree_index(i: usize) -> u32 {
    if i == NTREEBINS - 1 {
        0
    } else {
        (WORD * 8 - 1 - ((i >> 1) + TREEBIN_SHIFT as usize - 2)) as u32
    }
}

/// The smallest size bin `i` holds (dlmalloc's `minsize_for_tree_index`).
#[inline(always)]
pub const fn minsize_for_tree_index(i: usize) -> usize {
    (1 << ((i >> 1) + TREEBIN_SHIFT as usize))
        | ((i & 1) << ((i >> 1) + TREEBIN_SHIFT as usize - 1))
}

/// The tree bins of one heap.
pub struct TreeBins {
    /// Bit i set ⟺ bin i non-empty.
    pub map: u32,
    /// Root of each bin's trie, or null.
    pub roots: [*mut TreeChunk; NTREEBINS],
}

/// Outcome of [`TreeBins::unlink`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Unlinked {
    /// The chunk was removed.
    Ok,
    /// A link read from the heap did not point back: corruption.
    Corrupt,
}

impl TreeBins {
    /// All bins empty.
    pub const EMPTY: TreeBins = TreeBins {
        map: 0,
        roots: [ptr::null_mut(); NTREEBINS],
    };

    /// The marker stored as the parent of bin `i`'s root: the address of the
    /// bin slot. Compared, never dereferenced.
    #[inline(always)]
    pub fn root_marker(&self, i: usize) -> *mut TreeChunk {
        ptr::addr_of!(self.roots[i]).cast_mut().cast()
    }

    /// Inserts the free chunk `x` of `size` bytes (dlmalloc's
    /// `insert_large_chunk`).
    ///
    /// # Safety
    /// `x` must be a writable free chunk of `size >= 256` bytes not in any
    /// bin, and every chunk in the bins readable and writable.
    pub unsafe fn insert(&mut self, x: *mut TreeChunk, size: usize) {
        let i = compute_tree_index(size);
        // SAFETY: `x` is writable (caller); nodes reached from the root are
        // chunks of this bin, readable and writable (caller).
        unsafe {
            (*x).index = i as u32;
            (*x).child = [ptr::null_mut(); 2];
            if self.map & (1 << i) == 0 {
                self.map |= 1 << i;
                self.roots[i] = x;
                (*x).parent = self.root_marker(i);
                TreeChunk::set_links(x, x, x);
                return;
            }
            let mut t = self.roots[i];
            let mut key = size << leftshift_for_tree_index(i);
            loop {
                if TreeChunk::size(t) != size {
                    let dir = key >> (usize::BITS - 1);
                    key <<= 1;
                    let c = checked_link_near((*t).child[dir], t);
                    if !c.is_null() {
                        t = c;
                    } else {
                        (*t).child[dir] = x;
                        (*x).parent = t;
                        TreeChunk::set_links(x, x, x);
                        return;
                    }
                } else {
                    // Join the ring of equal sizes, right after the node.
                    let f = checked_link_near(TreeChunk::fd(t), t);
                    (*t).chunk.fd = x.cast();
                    (*f).chunk.bk = x.cast();
                    TreeChunk::set_links(x, f, t);
                    (*x).parent = ptr::null_mut();
                    return;
                }
            }
        }
    }

    /// Removes `x` from its bin (dlmalloc's `unlink_large_chunk`). When `x` is
    /// a tree node, its replacement is a ring sibling if it has one, else its
    /// rightmost-deepest leaf descendant, which keeps every key path valid.
    ///
    /// # Safety
    /// `x` must be a readable chunk header and every chunk reachable from
    /// the bins readable and writable.
    pub unsafe fn unlink(&mut self, x: *mut TreeChunk) -> Unlinked {
        // SAFETY: `x` and all chunks it links to are bin members (caller).
        unsafe {
            let xp = (*x).parent;
            let i = (*x).index as usize;
            // (The parent is tested for plausibility first: it is rarely null
            // or the root marker, and a plausible one needs no other test.)
            if i >= NTREEBINS
                || !(plausible_near(xp, x) || xp.is_null() || xp == self.root_marker(i))
            {
                return Unlinked::Corrupt;
            }
            let mut r;
            if TreeChunk::bk(x) != x {
                let f = TreeChunk::fd(x);
                r = TreeChunk::bk(x);
                if !plausible_near(f, x)
                    || !plausible_near(r, x)
                    || TreeChunk::bk(f) != x
                    || TreeChunk::fd(r) != x
                {
                    return Unlinked::Corrupt;
                }
                (*f).chunk.bk = r.cast();
                (*r).chunk.fd = f.cast();
            } else {
                // Find the replacement leaf and detach it from its parent.
                let mut slot: *mut *mut TreeChunk = ptr::addr_of_mut!((*x).child[1]);
                r = *slot;
                if r.is_null() {
                    slot = ptr::addr_of_mut!((*x).child[0]);
                    r = *slot;
                }
                if !r.is_null() {
                    let mut depth = 0;
                    loop {
                        if !plausible_near(r, x) || depth > 64 {
                            return Unlinked::Corrupt;
                        }
                        depth += 1;
                        let right = ptr::addr_of_mut!((*r).child[1]);
                        let left = ptr::addr_of_mut!((*r).child[0]);
                        if !(*right).is_null() {
                            slot = right;
                        } else if !(*left).is_null() {
                            slot = left;
                        } else {
                            break;
                        }
                        r = *slot;
                    }
                    *slot = ptr::null_mut();
                }
            }
            if xp.is_null() {
                // A ring member that is not the node: the ring fix was all.
                return Unlinked::Ok;
            }
            if x == self.roots[i] {
                if xp != self.root_marker(i) {
                    return Unlinked::Corrupt;
                }
                self.roots[i] = r;
                if r.is_null() {
                    self.map &= !(1 << i);
                }
            } else if (*xp).child[0] == x {
                (*xp).child[0] = r;
            } else if (*xp).child[1] == x {
                (*xp).child[1] = r;
            } else {
                return Unlinked::Corrupt;
            }
            if !r.is_null() {
                (*r).parent = xp;
                (*r).index = i as u32;
                for dir in 0..2 {
                    let c = (*x).child[dir];
                    if !(c.is_null() || plausible_near(c, x)) {
                        return Unlinked::Corrupt;
                    }
                    (*r).child[dir] = c;
                    if !c.is_null() {
                        (*c).parent = r;
                    }
                }
            }
        }
        Unlinked::Ok
    }

    /// The smallest chunk of the smallest non-empty bin, for a small request
    /// that no small bin serves (the search half of dlmalloc's
    /// `tmalloc_small`). Null when all tree bins are empty.
    ///
    /// # Safety
    /// Every chunk in the bins must be readable.
    pub unsafe fn smallest(&self) -> *mut TreeChunk {
        if self.map == 0 {
            return ptr::null_mut();
        }
        let i = self.map.trailing_zeros() as usize;
        let mut t = self.roots[i];
        let mut best = t;
        // SAFETY: nodes of the trie are readable bin members (caller).
        unsafe {
            let mut best_size = TreeChunk::size(t);
            loop {
                t = checked_link_near(TreeChunk::leftmost_child(t), t);
                if t.is_null() {
                    break;
                }
                let s = TreeChunk::size(t);
                if s < best_size {
                    best_size = s;
                    best = t;
                }
            }
        }
        best
    }

    /// The best (smallest sufficient) chunk for a chunk size `nb >= 256`, as
    /// dlmalloc's `tmalloc_large` searches: walk the trie of `nb`'s bin along
    /// `nb`'s key, remembering the last right subtree not taken; if nothing
    /// fits, take the smallest chunk of that subtree or of the next non-empty
    /// bin. Returns the chunk and its leftover `size - nb`, or null.
    ///
    /// # Safety
    /// Every chunk in the bins must be readable.
    pub unsafe fn best_fit(&self, nb: usize) -> (*mut TreeChunk, usize) {
        let mut v: *mut TreeChunk = ptr::null_mut();
        let mut rsize = usize::MAX;
        let idx = compute_tree_index(nb);
        let mut t = self.roots[idx];
        // SAFETY: nodes reached from the roots are readable (caller).
        unsafe {
            if !t.is_null() {
                let mut sizebits = nb << leftshift_for_tree_index(idx);
                // Deepest right subtree not taken on the way down, and the
                // node it hangs from.
                let mut rst: *mut TreeChunk = ptr::null_mut();
                let mut rst_from = t;
                loop {
                    let s = TreeChunk::size(t);
                    if s >= nb && s - nb < rsize {
                        v = t;
                        rsize = s - nb;
                        if rsize == 0 {
                            break;
                        }
                    }
                    // Only links that are followed are checked: the child
                    // taken now, and the remembered right subtree if the
                    // walk falls back to it.
                    let rt = (*t).child[1];
                    let from = t;
                    t = checked_link_near((*t).child[sizebits >> (usize::BITS - 1)], from);
                    if !rt.is_null() && rt != t {
                        rst = rt;
                        rst_from = from;
                    }
                    if t.is_null() {
                        // Everything in rst is larger than nb.
                        t = checked_link_near(rst, rst_from);
                        break;
                    }
                    sizebits <<= 1;
                }
            }
            if t.is_null() && v.is_null() {
                // Nothing in nb's bin: the next non-empty bin, any chunk fits.
                let above = if idx + 1 >= NTREEBINS {
                    0
                } else {
                    self.map & (u32::MAX << (idx + 1))
                };
                if above != 0 {
                    t = self.roots[above.trailing_zeros() as usize];
                }
            }
            // Smallest chunk of the subtree rooted at t.
            while !t.is_null() {
                let s = TreeChunk::size(t);
                if s >= nb && s - nb < rsize {
                    rsize = s - nb;
                    v = t;
                }
                t = checked_link_near(TreeChunk::leftmost_child(t), t);
            }
        }
        (v, rsize)
    }

    /// Calls `f` on every chunk of bin `i`, tree nodes and ring members, with
    /// its depth and key path (bit d-1 of `path` is the direction taken at
    /// depth d; ring members get their node's depth and path). Used by the
    /// checker and the inspector; does not allocate.
    ///
    /// # Safety
    /// Every chunk in the bin must be readable and the trie acyclic.
    pub unsafe fn for_each_in_bin(
        &self,
        i: usize,
        f: &mut dyn FnMut(*mut TreeChunk, TreeNodeInfo) -> bool,
    ) -> bool {
        let root = self.roots[i];
        if root.is_null() {
            return true;
        }
        // SAFETY: forwarded to the caller.
        unsafe { walk(root, 0, 0, f) }
    }
}

/// Where a chunk sits in its trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeNodeInfo {
    /// Distance from the root (0 for the root).
    pub depth: u32,
    /// Directions taken from the root: bit d-1 for depth d.
    pub path: u64,
    /// Is this chunk the tree node (as opposed to a ring member)?
    pub is_node: bool,
}

/// Depth-first walk; stops and returns false when `f` does. Depth is bounded
/// by the key width (at most 64 levels), so recursion is shallow.
unsafe fn walk(
    t: *mut TreeChunk,
    depth: u32,
    path: u64,
    f: &mut dyn FnMut(*mut TreeChunk, TreeNodeInfo) -> bool,
) -> bool {
    if depth > 64 {
        return false;
    }
    let node = TreeNodeInfo {
        depth,
        path,
        is_node: true,
    };
    if !f(t, node) {
        return false;
    }
    // SAFETY: `t` is a readable bin member (caller); ring and children too.
    unsafe {
        let mut r = TreeChunk::fd(t);
        let mut guard = 0usize;
        while r != t {
            if !f(
                r,
                TreeNodeInfo {
                    is_node: false,
                    ..node
                },
            ) {
                return false;
            }
            r = TreeChunk::fd(r);
            guard += 1;
            if guard > 1 << 40 || r.is_null() {
                return false;
            }
        }
        for dir in 0..2u64 {
            let c = (*t).child[dir as usize];
            if !c.is_null() && !walk(c, depth + 1, path | (dir << depth), f) {
                return false;
            }
        }
    }
    true
}

/// Is `size`'s key bit at `depth` in bin `i` equal to `dir`? Used by the
/// checker to verify the trie property.
/// (Bin 31 is unbounded above and keys on the whole size word, as in dlmalloc.)
pub const fn key_bit(size: usize, i: usize, depth: u32) -> u64 {
    let key = size << leftshift_for_tree_index(i);
    if depth >= usize::BITS {
        0
    } else {
        ((key << depth) >> (usize::BITS - 1)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::chunk::Chunk;

    /// The naive definition: bins split each power of two in half.
    fn naive_index(size: usize) -> usize {
        if size < 256 {
            return 0;
        }
        for i in 0..NTREEBINS - 1 {
            let lo = naive_min(i);
            let hi = naive_min(i + 1);
            if size >= lo && size < hi {
                return i;
            }
        }
        NTREEBINS - 1
    }

    fn naive_min(i: usize) -> usize {
        let pow = 256usize << (i / 2);
        if i % 2 == 0 {
            pow
        } else {
            pow + pow / 2
        }
    }

    #[test]
    fn documented_bin_bounds() {
        assert_eq!(minsize_for_tree_index(0), 256);
        assert_eq!(minsize_for_tree_index(1), 384);
        assert_eq!(minsize_for_tree_index(2), 512);
        assert_eq!(minsize_for_tree_index(3), 768);
        assert_eq!(minsize_for_tree_index(31), 12 << 20);
    }

    #[test]
    fn index_matches_naive_for_every_size_up_to_1mib() {
        for size in 256..=(1usize << 20) {
            assert_eq!(compute_tree_index(size), naive_index(size), "size {size}");
        }
        for i in 0..NTREEBINS {
            assert_eq!(minsize_for_tree_index(i), naive_min(i), "bin {i}");
        }
    }

    #[test]
    fn index_matches_naive_on_samples_beyond_1mib() {
        let mut size = 1usize << 20;
        while size < 1 << 46 {
            for s in [
                size - 16,
                size,
                size + 16,
                size + size / 2 - 16,
                size + size / 2,
            ] {
                assert_eq!(compute_tree_index(s), naive_index(s), "size {s}");
            }
            size <<= 1;
        }
    }

    #[test]
    fn leftshift_puts_the_first_key_bit_on_top() {
        for i in 0..NTREEBINS - 1 {
            // The first key bit is the one below the bin's two leading bits.
            let lead = (i >> 1) + TREEBIN_SHIFT as usize;
            let first_key_bit = lead - 2;
            let shift = leftshift_for_tree_index(i);
            assert_eq!(first_key_bit + shift as usize, 63, "bin {i}");
            // Sizes in the bin, with the key bit set, have it at bit 63.
            let size = minsize_for_tree_index(i) | (1 << first_key_bit);
            assert_eq!(key_bit(size, i, 0), 1);
            assert_eq!(key_bit(minsize_for_tree_index(i), i, 0), 0);
        }
    }

    /// `n` 64-byte chunk slots in a registered segment (the link checks
    /// only follow pointers into live segments).
    struct Slots {
        seg: crate::heap::segment::TestSegment,
    }
    impl Slots {
        fn new(n: usize) -> Self {
            Slots {
                seg: crate::heap::segment::TestSegment::new(n * 64 + 64),
            }
        }
        fn chunk(&mut self, k: usize, size: usize) -> *mut TreeChunk {
            let p: *mut Chunk = self.seg.at(k * 64).cast();
            // SAFETY: slot k has 64 bytes, enough for a tree chunk header.
            unsafe { Chunk::set_head(p, size | crate::heap::chunk::Head::PINUSE) };
            p.cast()
        }
    }

    /// Checks the trie property of every bin; returns the number of chunks.
    fn verify(bins: &TreeBins) -> usize {
        let mut n = 0;
        for i in 0..NTREEBINS {
            assert_eq!(bins.map & (1 << i) != 0, !bins.roots[i].is_null());
            // SAFETY: all chunks come from a live `Slots`.
            unsafe {
                bins.for_each_in_bin(i, &mut |t, info| {
                    let size = TreeChunk::size(t);
                    assert_eq!(compute_tree_index(size), i);
                    if info.is_node {
                        assert_eq!((*t).index as usize, i);
                        for d in 0..info.depth {
                            assert_eq!(key_bit(size, i, d), (info.path >> d) & 1);
                        }
                    } else {
                        assert!((*t).parent.is_null());
                    }
                    n += 1;
                    true
                });
            }
        }
        n
    }

    #[test]
    fn insert_unlink_and_best_fit_against_a_sorted_list() {
        let sizes: Vec<usize> = (0..200)
            .map(|k| 256 + ((k * 7919) % 4000) / 16 * 16)
            .collect();
        let mut slots = Slots::new(sizes.len());
        let mut bins = TreeBins::EMPTY;
        let mut live: Vec<(usize, *mut TreeChunk)> = Vec::new();
        for (k, &s) in sizes.iter().enumerate() {
            let c = slots.chunk(k, s);
            // SAFETY: c is a fresh slot.
            unsafe { bins.insert(c, s) };
            live.push((s, c));
        }
        assert_eq!(verify(&bins), live.len());
        // Best fit must equal the smallest size >= nb.
        for nb in (256..4400).step_by(48) {
            // SAFETY: bins hold only live slots.
            let (v, rsize) = unsafe { bins.best_fit(nb) };
            let want = live.iter().map(|&(s, _)| s).filter(|&s| s >= nb).min();
            match want {
                None => assert!(v.is_null(), "nb {nb}"),
                Some(s) => {
                    assert!(!v.is_null(), "nb {nb}");
                    // SAFETY: v is a live slot.
                    assert_eq!(unsafe { TreeChunk::size(v) }, s, "nb {nb}");
                    assert_eq!(rsize, s - nb);
                }
            }
        }
        // Remove in a scrambled order, checking the structure as we go.
        let mut order: Vec<usize> = (0..live.len()).collect();
        order.sort_by_key(|&k| (k * 37) % live.len());
        for (n, &k) in order.iter().enumerate() {
            // SAFETY: live slot, in the bins.
            assert_eq!(unsafe { bins.unlink(live[k].1) }, Unlinked::Ok);
            if n % 17 == 0 {
                assert_eq!(verify(&bins), live.len() - n - 1);
            }
        }
        assert_eq!(bins.map, 0);
    }

    #[test]
    fn smallest_finds_the_minimum_of_the_lowest_bin() {
        let mut slots = Slots::new(5);
        let mut bins = TreeBins::EMPTY;
        for (k, s) in [352usize, 272, 304, 256 + 16, 1024].into_iter().enumerate() {
            let c = slots.chunk(k, s);
            // SAFETY: fresh slot.
            unsafe { bins.insert(c, s) };
        }
        // SAFETY: bins hold live slots.
        let t = unsafe { bins.smallest() };
        // SAFETY: t is live.
        assert_eq!(unsafe { TreeChunk::size(t) }, 272);
    }
}
