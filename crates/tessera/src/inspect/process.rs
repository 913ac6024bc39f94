//! The process allocator seen whole: a snapshot of every arena, one after
//! the other, with the calling thread's cached chunks told apart from the
//! chunks in use.

use super::snapshot::Sink;
use crate::heap::mspace::Heap;
use crate::threads::{arena, tcache};

/// Writes a snapshot of every arena (see [`crate::inspect::snapshot`]),
/// one after the other, without allocating. The calling thread's cached
/// chunks show as `cached`. The sink is called with an arena's lock held,
/// so it must not allocate either (a file descriptor, or a buffer reserved
/// beforehand).
pub fn write_snapshot(sink: &mut dyn Sink, max_pages: usize) {
    arena::for_each(&mut |_, a| {
        // SAFETY: `a` is locked by for_each until this closure returns, and
        // the marks are cleared before it does.
        unsafe { tcache::mark_entries_of(a, true) };
        // SAFETY: a temporary handle over a locked arena, never dropped.
        let h = core::mem::ManuallyDrop::new(unsafe { Heap::from_raw(a) });
        h.write_snapshot(sink, max_pages);
        // SAFETY: as above.
        unsafe { tcache::mark_entries_of(a, false) };
    });
}
