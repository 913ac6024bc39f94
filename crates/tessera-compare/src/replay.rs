//! Replaying a trace into any of the three allocators: the recorded
//! pointers are mapped to the allocator's own, as `tessera replay` does,
//! with the C library's meaning of every call.

use crate::core::{Applied, Event, Record};
use crate::model::Picture;
use std::collections::{BTreeMap, HashMap};

/// An allocator a trace can be replayed into, and walked.
pub trait Subject {
    /// `malloc(size)`; 0 on failure.
    fn malloc(&mut self, size: usize) -> usize;
    /// `calloc(n, size)`; 0 on failure or overflow.
    fn calloc(&mut self, n: usize, size: usize) -> usize;
    /// `realloc(p, size)` for a live `p` and `size > 0`; 0 on failure
    /// (then `p` is still live).
    fn realloc(&mut self, p: usize, size: usize) -> usize;
    /// `memalign(align, size)`; 0 on failure.
    fn memalign(&mut self, align: usize, size: usize) -> usize;
    /// `free(p)` of a live `p`.
    fn free(&mut self, p: usize);
    /// The heap as it is now.
    fn picture(&mut self) -> Picture;
}

/// A trace being replayed into a subject.
pub struct Replay<S: Subject> {
    /// The allocator.
    pub subject: S,
    /// Recorded address -> (address here, requested size).
    live: HashMap<usize, (usize, usize)>,
}

impl<S: Subject> Replay<S> {
    /// A replay into `subject`.
    pub fn new(subject: S) -> Self {
        Replay {
            subject,
            live: HashMap::new(),
        }
    }

    /// The user pointers of the live blocks and what was asked for them.
    pub fn requests(&self) -> BTreeMap<usize, usize> {
        self.live.values().copied().collect()
    }

    /// Live blocks: recorded address -> address here.
    pub fn blocks(&self) -> BTreeMap<usize, usize> {
        self.live.iter().map(|(&r, &(a, _))| (r, a)).collect()
    }

    fn take(&mut self, ptr: usize, what: &str) -> Result<usize, String> {
        self.live.remove(&ptr).map(|(a, _)| a).ok_or_else(|| {
            format!("{what} of unknown pointer {ptr:#x} (never allocated in this trace, or already freed)")
        })
    }

    fn add(&mut self, recorded: usize, p: usize, size: usize) -> Result<usize, String> {
        if p == 0 {
            return Err(format!("could not allocate {size} bytes"));
        }
        if self.live.insert(recorded, (p, size)).is_some() {
            return Err(format!("pointer {recorded:#x} returned while still live"));
        }
        Ok(p)
    }

    /// Applies one record, as `tessera::trace::Replayer` does: calls that
    /// failed in the program are skipped, `realloc(p, 0)` frees `p`.
    pub fn apply(&mut self, r: &Record) -> Result<Applied, String> {
        let none = Applied {
            old: 0,
            new: 0,
            size: 0,
        };
        let s = &mut self.subject;
        match r.event {
            Event::Malloc { ret: 0, .. }
            | Event::Memalign { ret: 0, .. }
            | Event::Calloc { ret: 0, .. }
            | Event::Free { ptr: 0 }
            | Event::Exit { .. } => Ok(none),
            Event::Malloc { size, ret } => {
                let p = s.malloc(size);
                let new = self.add(ret, p, size)?;
                Ok(Applied { old: 0, new, size })
            }
            Event::Memalign { align, size, ret } => {
                let p = s.memalign(align, size);
                let new = self.add(ret, p, size)?;
                Ok(Applied { old: 0, new, size })
            }
            Event::Calloc { n, size, ret } => {
                let p = s.calloc(n, size);
                let size = n.saturating_mul(size);
                let new = self.add(ret, p, size)?;
                Ok(Applied { old: 0, new, size })
            }
            Event::Free { ptr } => {
                let old = self.take(ptr, "free")?;
                self.subject.free(old);
                Ok(Applied {
                    old,
                    new: 0,
                    size: 0,
                })
            }
            Event::Realloc { ptr: 0, ret: 0, .. } => Ok(none),
            Event::Realloc { ptr: 0, size, ret } => {
                let p = s.malloc(size);
                let new = self.add(ret, p, size)?;
                Ok(Applied { old: 0, new, size })
            }
            Event::Realloc { ptr, size, ret } => {
                if ret == 0 && size != 0 {
                    // Failed in the program: the old block stays.
                    return if self.live.contains_key(&ptr) {
                        Ok(none)
                    } else {
                        Err(format!("realloc of unknown pointer {ptr:#x}"))
                    };
                }
                let old = self.take(ptr, "realloc")?;
                if size == 0 {
                    self.subject.free(old);
                    return Ok(Applied {
                        old,
                        new: 0,
                        size: 0,
                    });
                }
                let p = self.subject.realloc(old, size);
                if p == 0 {
                    self.live.insert(ptr, (old, 0));
                    return Err(format!("could not reallocate to {size} bytes"));
                }
                let new = self.add(ret, p, size)?;
                Ok(Applied { old, new, size })
            }
        }
    }
}
