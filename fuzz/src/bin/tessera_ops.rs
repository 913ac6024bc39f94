//! AFL++ target: each input is a heap setup plus an operation sequence,
//! decoded and checked by `tessera::testing::fuzz_one` (the shadow model
//! with `Heap::check` after every operation, under injected OS failures).
//! A panic there, or an abort from the allocator's own checks, is a crash.
//!
//! Outside `afl-fuzz` the binary reads one input from standard input, so a
//! crash file can be replayed with `target/release/tessera_ops < FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tessera::testing::fuzz_one(data);
    });
}
