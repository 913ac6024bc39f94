//! # libtessera.so
//!
//! Tessera as a drop-in replacement for glibc's malloc family: link against
//! `-ltessera`, or run any program with `LD_PRELOAD=libtessera.so`.
//!
//! ## What it exports (and nothing else)
//! - the C and glibc allocation API: `malloc`, `free`, `calloc`, `realloc`,
//!   `reallocarray`, `memalign`, `posix_memalign`, `aligned_alloc`,
//!   `valloc`, `pvalloc`, `malloc_usable_size`, `free_sized`,
//!   `free_aligned_sized` ([`exports`]);
//! - glibc's introspection and tuning: `malloc_trim`, `malloc_stats`,
//!   `mallinfo`, `mallinfo2`, `mallopt`, `malloc_info` ([`info`]);
//! - the extra API of `include/tessera.h`: separate heaps (dlmalloc's
//!   mspaces), footprint and its limit, checks and snapshots ([`heaps`]).
//!
//! `tests/symbols.rs` holds the list and fails on any other defined dynamic
//! symbol.
//!
//! ## The hard places
//! The first call can come from the dynamic loader or from libc before any
//! Rust code has run, so every piece of state here is a const-initialised
//! static and set-up happens lazily in the first call ([`runtime`]): read the
//! environment with `getenv` (which does not allocate), apply the tunables,
//! open the trace file, register the `pthread_atfork` handlers. Nothing in
//! this crate allocates through `malloc`: Rust's own allocations go straight
//! to Tessera (`#[global_allocator]` below), and every line of output is
//! formatted on the stack or in a private `mmap` buffer ([`out`]).
//!
//! Every exported function is `extern "C"`: a panic cannot unwind into C
//! (it aborts the process).
//!
//! ## Layers
//! `tessera_core::global` (the process-wide allocator) ← [`runtime`]
//! (set-up, environment, fork, exit) ← [`exports`], [`info`], [`heaps`];
//! [`trace`] records calls for the visualiser. See `docs/c-library.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// Rust's own allocations inside this library (there are few) must not go
/// through the exported `malloc` (that is us, via the PLT): send them to
/// Tessera directly.
#[global_allocator]
static GLOBAL: tessera_core::Tessera = tessera_core::Tessera;

pub mod env;
pub mod errno;
pub mod exports;
pub mod fork;
pub mod heaps;
pub mod info;
pub mod out;
pub mod runtime;
pub mod trace;
