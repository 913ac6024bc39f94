//! # Tessera
//!
//! A memory allocator built on Doug Lea's dlmalloc 2.8.6: boundary tags, 32
//! exact-fit small bins, 32 tree bins kept as bitwise tries, a designated
//! victim, a top chunk, segments from the OS, direct mappings for large
//! blocks and trimming. Written to be *read*: every structure carries its
//! picture, its glossary and its invariants.
//!
//! ```text
//!  An in-use chunk (x86-64)            A free chunk
//!  +------------------------+          +------------------------+
//!  | prev_foot (8)          |          | prev_foot (8)          |
//!  | head: size | C=1 | P   |          | head: size | C=0 | P=1 |
//!  +------------------------+ <- mem   | fd, bk (+ tree fields) |
//!  | payload                |          | ...                    |
//!  +------------------------+          +------------------------+
//!  | next.prev_foot =       |          | next.prev_foot = size  |
//!  |   last payload bytes   |          | next.head: P=0         |
//! ```
//! See [`heap::chunk`] for the full picture.
//!
//! ## The layers, bottom up
//! 0. [`sys`]: pages from the OS, locks, fatal reports, the address
//!    registry, what fork handlers need.
//! 1. [`heap`]: one heap (dlmalloc's mspace): chunks, bins, segments,
//!    direct mappings, malloc/free/realloc, the checker, statistics;
//!    [`Heap`] is its handle.
//! 2. [`threads`]: the process allocator: arenas, thread caches and
//!    [`Tessera`], the `#[global_allocator]` ([`global`] is its C-shaped
//!    API, which `libtessera.so` exports).
//! 3. [`inspect`]: snapshots, the process snapshot, traces.
//!
//! **The one rule:** a module uses only modules of its own layer and of
//! the layers below it, and no two modules use each other (test-only code
//! and [`testing`] aside). `tests/layers.rs` enforces it from the sources;
//! its table is the ladder, and `docs/ARCHITECTURE.md` quotes it.

#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod heap;
pub mod inspect;
pub mod sys;
#[cfg(feature = "std")]
pub mod testing;
#[cfg(feature = "std")]
pub mod threads;

pub use heap::{CheckError, Config, Heap, Stats};
#[cfg(feature = "std")]
pub use inspect::Snapshot;
pub use sys::os::{Faulty, Mmap, PageSource};
#[cfg(feature = "std")]
pub use threads::global::{self, Tessera};
