//! Layer 0, the system: what the heaps stand on.
//!
//! - [`os`]: the page source ([`os::PageSource`]: reserve, commit, map,
//!   purge), on `mmap`, and a fault-injecting double for tests.
//! - [`lock`]: the futex lock every arena and separate heap uses.
//! - [`report`]: one line on stderr naming a misuse, then `abort()`.
//! - [`registry`]: which addresses belong to some heap (one bit per
//!   segment slot, one per direct page) and the process secret.
//! - [`errno`]: errno kept intact across the slow paths.
//! - [`tls`]: one thread-local pointer read in one instruction.
//!
//! Nothing here knows about chunks; no module here uses a higher layer.

pub mod errno;
pub mod lock;
pub mod os;
pub mod registry;
pub mod report;
#[cfg(feature = "std")]
pub mod tls;
