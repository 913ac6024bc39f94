//! Layer 2, threads: the process allocator. Arenas (whole heaps behind
//! locks, with lock-free remote frees and fork handling), the per-thread
//! cache in front of them, and the global allocator on top.
//!
//! Bottom up: `arena` ← [`decay`] (giving memory back over time) ←
//! `tcache` ← [`global`]. A `malloc` or `free`
//! reads straight down: `global` → `tcache` (the lock-free fast paths, and
//! their refills and flushes) → `arena` (locking, binding) → the heap.

pub(crate) mod arena;
pub mod decay;
pub mod global;
pub(crate) mod tcache;
