//! The comparison as one self-contained HTML page (no network):
//! `tessera-compare.html`. One step slider drives three heaps, each with
//! its byte grid, chunk table and bins panel; chunks whose offset or
//! merging differs from the other heaps are marked. Opening it with
//! `#selftest` runs its own checks (the headless-Chromium test reads
//! them).

use crate::film::Comparison;

/// The page.
pub fn page(c: &Comparison) -> String {
    let _ = c;
    String::new()
}
