//! The paths of the `tessera` crate this crate uses beyond its root
//! re-exports, in one place (the core is being reorganised: when its
//! modules move, only this file changes).

pub use tessera::heap::chunk::Head;
pub use tessera::inspect::trace::{Applied, Event, Record, Trace};
pub use tessera::inspect::{ChunkInfo, ChunkKind, Role, PAGE};

/// Tessera's tree-bin index (the tests check the dlmalloc walker's own
/// against it).
pub use tessera::heap::treebins::compute_tree_index;
