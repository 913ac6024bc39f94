//! # tessera-bench
//!
//! Workloads and a harness that compare Tessera with glibc, mimalloc,
//! jemalloc and the `dlmalloc` crate in one process run. See `README.md`
//! beside this crate for what each workload models, how time and memory
//! are measured, and how to reproduce the numbers.
//!
//! Layers, bottom up:
//! - [`alloc`]: one raw malloc/free interface ([`alloc::RawAlloc`]) over
//!   every allocator, and the start-up check that each is what it claims;
//! - [`rng`], [`workloads`]: deterministic programs driving that interface;
//! - [`harness`] (time, in process) and [`mem`] (peak memory, in a child);
//! - [`report`] (ratios, targets, table, JSON) and [`svg`] (the chart);
//! - [`cli`]: the options of the `tessera-bench` binary;
//! - [`patterns`]: the core-only criterion benchmark's patterns (`benches/core.rs`);
//! - [`preload`], [`proc`], [`shapes`], [`service`]: `tessera-bench shapes`
//!   and `tessera-bench service`, every allocator through the same door
//!   (`LD_PRELOAD`), each run a separate process.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod alloc;
pub mod cli;
pub mod harness;
pub mod mem;
pub mod patterns;
pub mod preload;
pub mod proc;
pub mod report;
pub mod rng;
pub mod service;
pub mod shapes;
pub mod svg;
pub mod workloads;
