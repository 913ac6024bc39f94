//! Layer 1, one heap: dlmalloc 2.8.6's chunks, bins, segments, direct
//! mappings and algorithms, an mspace of its own ([`Heap`]). Knows nothing
//! of threads: it takes `&mut self`, and the layers above lock around it.
//!
//! The modules, bottom up (each uses only those before it, and `sys`):
//! - [`chunk`]: the chunk layout, head bits, tags, navigation, sizes.
//! - [`smallbins`], [`treebins`]: the free-chunk indexes.
//! - [`lists`]: small classes and mangled links, for lists of in-use
//!   chunks (thread caches, quick lists).
//! - [`segment`]: the segment record, top and fencepost layout.
//! - [`mapping`]: the header of a direct mapping; orphan mappings.
//! - `quick`: an arena's quick lists (parked chunks), as a structure.
//! - `classify`: the trust boundary: validating a pointer from outside.
//! - [`state`]: [`State`](state::State), dlmalloc's `malloc_state`, and
//!   [`Config`].
//! - [`check`], [`stats`]: the full checker and the numbers (they read).
//! - [`debug`]: the expensive tier: freed memory filled and verified.
//! - `bins`: routing free chunks into and out of the bins.
//! - `grow`: the footprint, growing top, new and empty segments, trim.
//! - `direct`: the heap's direct chunks.
//! - `free`: free, coalescing, the quick lists' side, trimming.
//! - `malloc`: malloc and its variants (calloc, memalign, ialloc).
//! - `realloc`: resizing a live block.
//! - [`mspace`]: [`Heap`], the public handle.

// Without `std` there is no process allocator (layer 2), and the parts of
// the heap only it uses (parking, orphans, raw handles) go unused.
#![cfg_attr(not(feature = "std"), allow(dead_code))]

pub(crate) mod bins;
pub mod check;
pub mod chunk;
pub(crate) mod classify;
pub mod debug;
pub(crate) mod direct;
pub(crate) mod free;
pub(crate) mod grow;
pub mod lists;
pub(crate) mod malloc;
pub mod mapping;
pub mod mspace;
pub(crate) mod quick;
pub(crate) mod realloc;
pub mod segment;
pub mod smallbins;
pub mod state;
pub mod stats;
pub mod treebins;

pub use check::CheckError;
pub use mspace::{Heap, FIRST_CHUNK_OFFSET};
pub use state::Config;
pub use stats::Stats;
