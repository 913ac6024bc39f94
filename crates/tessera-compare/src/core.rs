//! The paths of the `tessera` crate this crate uses beyond its root
//! re-exports, in one place (the core is being reorganised: when its
//! modules move, only this file changes).

pub use tessera::chunk::Head;
pub use tessera::inspect::{ChunkInfo, ChunkKind, Role, PAGE};
pub use tessera::trace::{Applied, Event, Record, Trace};

/// Tessera's tree-bin index (the tests check the dlmalloc walker's own
/// against it).
pub use tessera::treebins::compute_tree_index;
