//! Lists of in-use chunks: the small size classes and the mangled single
//! links shared by the two places that keep freed chunks *in use* on a
//! list instead of freeing them: the thread caches (`threads::tcache`)
//! and the arenas' quick lists (`heap::quick`).
//!
//! # Glossary
//! - **small class c**: chunk size `32 + 16 c`, for c in `0..NSMALL`
//!   (chunks of 32 to 1040 bytes; requests up to 1032 bytes, as glibc's
//!   tcache).
//! - **entry**: a chunk on such a list. The heap sees it as in use; the
//!   program has freed it. Its first payload word holds the *mangled* link
//!   to the next entry, its second word the key.
//! - **mangling**: `stored = next ^ (slot >> 12) ^ secret`, where `slot` is
//!   the address the link is stored at and `secret` the process key
//!   (glibc's safe-linking plus a secret). A stray write into a freed chunk
//!   turns into a misaligned link (15 times in 16), caught before anything
//!   follows it, never into an allocation at an address of the attacker's
//!   choosing.
//! - **key**: [`key_word`] in the second payload word marks an entry; a
//!   `free` of a chunk carrying it is checked for a double free.
//! - **[`EMPTY`]**: the head of an empty list and what the last entry's
//!   link holds (mangled): misaligned, unlike every entry, so one test of
//!   the low four bits tells an entry from "empty" and from a link that
//!   demangled to garbage.

use super::chunk::{CHUNK_OVERHEAD, MIN_CHUNK_SIZE};
use crate::sys::registry;
use core::ptr;

/// Number of small classes.
pub const NSMALL: usize = 64;
/// The largest chunk size of a small class (the free fast path's limit).
pub const MAX_CACHED_SIZE: usize = MIN_CHUNK_SIZE + 16 * (NSMALL - 1);
/// The largest request served from a small class.
pub const MAX_CACHED_REQUEST: usize = MAX_CACHED_SIZE - CHUNK_OVERHEAD;

/// The class of a chunk size (32..=1040). Flag bits of a head word may be
/// left in `size`: they fall below the shift.
#[inline(always)]
pub const fn class_of(size: usize) -> usize {
    (size - MIN_CHUNK_SIZE) >> 4
}

/// Chunk size of small class `c`.
#[inline(always)]
pub const fn class_size(c: usize) -> usize {
    MIN_CHUNK_SIZE + 16 * c
}

/// Is `size` the chunk size of a small class?
#[inline(always)]
pub const fn is_small_class(size: usize) -> bool {
    size >= MIN_CHUNK_SIZE && size <= MAX_CACHED_SIZE && size % 16 == 0
}

/// The request that gets a chunk of exactly small class `c`'s size.
#[inline(always)]
pub const fn class_request(c: usize) -> usize {
    class_size(c) - CHUNK_OVERHEAD
}

/// The head of an empty list, and what the last entry's link holds
/// (mangled). See the module docs.
pub const EMPTY: *mut u8 = ptr::without_provenance_mut(1);

/// Could `e`, read as a list head or demangled from a link, be an entry?
#[inline(always)]
pub fn is_entry(e: *mut u8) -> bool {
    e as usize & 15 == 0
}

/// The key an entry carries in its second payload word, for the process
/// key `secret`: the key itself (odd, so never an aligned pointer; a salt
/// xored in, as there used to be, hid nothing, being public, and cost the
/// free fast path two instructions).
#[inline(always)]
pub const fn key_word(secret: usize) -> usize {
    secret
}

/// A link as stored: `next` mangled with the address `slot` it is stored at
/// and the process key `secret` (see the module docs).
#[inline(always)]
pub fn mangle(next: *mut u8, slot: *mut u8, secret: usize) -> usize {
    next as usize ^ (slot as usize >> 12) ^ secret
}

/// The link stored at `slot`, demangled.
#[inline(always)]
pub fn demangle(stored: usize, slot: *mut u8) -> *mut u8 {
    (stored ^ (slot as usize >> 12) ^ registry::key_initialized()) as *mut u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::chunk::request2size;

    #[test]
    fn small_classes_cover_glibc_tcache_range() {
        assert_eq!(MAX_CACHED_REQUEST, 1032);
        for c in 0..NSMALL {
            assert_eq!(class_of(class_size(c)), c);
            assert_eq!(request2size(class_request(c)), class_size(c));
            // Flag bits do not change the class.
            assert_eq!(class_of(class_size(c) | 7), c);
        }
    }

    #[test]
    fn mangled_links_differ_from_plain_pointers() {
        // Chunks exist only after a heap drew the key; do the same here.
        registry::key();
        let slot = 0x7f00_0000_1230usize as *mut u8;
        let next = 0x7f00_0000_4560usize as *mut u8;
        let m = mangle(next, slot, registry::key_initialized());
        assert_ne!(m, next as usize);
        assert_eq!(demangle(m, slot), next);
        // The secret matters: without it the link would be glibc's.
        assert_ne!(m, next as usize ^ (slot as usize >> 12));
        assert!(!is_entry(EMPTY));
    }
}
