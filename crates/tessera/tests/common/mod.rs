//! Helpers shared by the integration tests that look at which arena a
//! block lives in.

use tessera::global;

/// The index of the arena whose heap holds `p` (panics if none does).
pub fn arena_of(p: *mut u8) -> usize {
    let mut found = None;
    global::for_each_heap(&mut |i, h| {
        if h.owns(p) {
            found = Some(i);
        }
    });
    found.unwrap_or_else(|| panic!("{p:?} is in no arena"))
}
