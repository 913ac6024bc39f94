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
//! See [`chunk`] for the full picture.
//!
//! ## Modules, bottom up
//! - [`chunk`]: layout, head flags, navigation, size rounding.
//! - [`smallbins`], [`treebins`]: the free-chunk indexes.
//! - [`segment`], [`direct`]: where memory comes from and how it is closed.
//! - [`os`]: the page source (mmap, and a fault-injecting double).
//! - [`heap`]: the state and the algorithms; [`Heap`] is its handle.
//! - [`check`], [`inspect`], [`stats`]: the checker, the walker and
//!   snapshots, the numbers.
//! - [`global`]: [`Tessera`], the `#[global_allocator]`.
//!
//! The layer ladder (never climbed backwards): `chunk` ← bins ← `segment` /
//! `direct` ← `heap` ← `global`; `os` and `registry` are leaves used by
//! `segment`, `direct` and `heap`. See `docs/ARCHITECTURE.md`.

#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
mod arena;
pub mod check;
pub mod chunk;
pub mod debug;
pub mod direct;
#[cfg(feature = "std")]
pub mod global;
pub mod heap;
pub mod inspect;
pub mod lock;
pub mod os;
#[cfg(feature = "std")]
mod quick;
pub mod registry;
pub mod report;
pub mod segment;
pub mod smallbins;
pub mod stats;
#[cfg(feature = "std")]
mod tcache;
#[cfg(feature = "std")]
pub mod testing;
pub mod trace;
pub mod treebins;

pub use check::CheckError;
#[cfg(feature = "std")]
pub use global::Tessera;
pub use heap::{Config, Heap};
#[cfg(feature = "std")]
pub use inspect::Snapshot;
pub use os::{Faulty, Mmap, PageSource};
pub use stats::Stats;
