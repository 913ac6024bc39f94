//! Heap snapshots and traces drawn as byte grids ("mem-art").
//!
//! One 4 KiB page is drawn as 128 rows of 32 cells, one cell per byte,
//! numbered 0..4095 within the page. Every cell shows its byte's role in the
//! allocator's layout (prev_foot, head, payload, slack, fd, bk, `child[0]`,
//! `child[1]`, parent, index, top, fencepost, segment record, ...), taken from
//! the core's inspection module ([`tessera::inspect`]).
//!
//! # Modules, bottom up
//! - [`role`]: a byte's role as drawn ([`ByteRole`]: the core's roles plus
//!   slack), glyphs and colours.
//! - [`page`]: one page cell by cell ([`PageView`]), with the chunks that
//!   touch it and their decoded heads.
//! - [`bins`]: the bins at a glance and the free-chunk size histogram.
//! - [`text`]: the plain and ANSI renderers.
//! - [`session`]: replaying a trace step by step with page tracking.
//! - [`film`]: the frames of a replay (pages, bins, histogram per step),
//!   the shared input of the HTML explorer and of `tessera tour`.
//! - [`html`]: the self-contained HTML explorer.
//! - [`tour`]: the built-in demo trace and its one-line explanations.
//! - [`files`]: loading traces and snapshots with errors that name the
//!   file and the line.
//!
//! The layer ladder continues the core's: `tessera` ← `role` ← `page` ←
//! `bins`, `text`, `session` ← `film` ← `html`, `tour` ← the CLI.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod bins;
pub mod files;
pub mod film;
pub mod html;
pub mod json;
pub mod page;
pub mod role;
pub mod session;
pub mod text;
pub mod tour;

pub use bins::{Bins, Histogram};
pub use page::{PageView, Requests};
pub use role::ByteRole;
pub use session::Session;
pub use text::{GridOptions, Style};
