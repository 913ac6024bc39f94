//! One trace in three heaps: Tessera's own `Heap`, dlmalloc 2.8.6 (the
//! `dlmalloc` crate) and glibc's malloc (ptmalloc2, in a child process),
//! each walked chunk by chunk from memory after every step and drawn with
//! the same grid (`tessera compare`, `tessera tour`).
//!
//! # Modules, bottom up
//! - [`core`]: the paths of `tessera` used beyond its root re-exports.
//! - [`model`]: the chunk model all walkers report into, bins, pages.
//! - [`replay`]: replaying a trace into any allocator ([`replay::Subject`]).
//! - [`tess`], [`dl`], [`glibc`]: the three allocators and their walkers.
//! - [`fidelity`]: the driver of the fidelity test (Tessera vs dlmalloc).
//! - [`film`]: the three heaps' frames and their differences.
//! - [`text`], [`html`]: the terminal panels and `tessera-compare.html`.
//!
//! The layer ladder continues the viewer's: `tessera` ← `tessera-viz` ←
//! this crate ← the CLI.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod core;
pub mod dl;
pub mod fidelity;
pub mod film;
pub mod glibc;
pub mod html;
pub mod model;
pub mod replay;
pub mod tess;
pub mod text;
