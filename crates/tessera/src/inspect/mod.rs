//! Layer 3, inspection: seeing a heap without changing it. Snapshots (every
//! chunk with its role, and the raw bytes), the process allocator's
//! snapshot (every arena, with the caller's cached chunks marked), and
//! traces (recording and replaying calls).
//!
//! Bottom up: [`snapshot`] ← [`process`]; [`trace`] uses [`snapshot`]'s
//! line sink.

#[cfg(feature = "std")]
pub mod process;
pub mod snapshot;
pub mod trace;

pub use snapshot::*;
