//! Layer 0, the system: what the heaps stand on.
//!
//! - [`os`]: the page source ([`os::PageSource`]: reserve, commit, map,
//!   purge), on `mmap`, and a fault-injecting double for tests.
//! - [`lock`]: the futex lock every arena and separate heap uses.
//! - [`report`]: one line on stderr naming a misuse, then `abort()` (or
//!   what M_CHECK_ACTION says); thread cancellation turned off meanwhile.
//! - [`registry`]: which addresses belong to some heap (one byte per
//!   segment slot, one bit per direct page) and the process secret.
//! - [`fork`]: whether the process has other threads, and the gate that
//!   tells fork handlers whether to lock (skipped with one thread, so that
//!   a signal handler may fork).
//! - [`errno`]: errno kept intact across the slow paths.
//!
//! Nothing here knows about chunks; no module here uses a higher layer.

pub mod errno;
pub mod fork;
pub mod lock;
pub mod os;
pub mod registry;
pub mod report;
