//! The call recorder behind `TESSERA_TRACE=path`.
//!
//! Writes the format of [`tessera_core::inspect::trace`] (see its module docs): the
//! magic line, then one [`Record`] per call, then `exit <live>` from the
//! library's exit hook. Nothing here allocates: records are formatted on
//! the stack by [`write_record`] into one process-wide 64 KiB buffer, which
//! goes to the file with `write(2)` whenever it fills and at exit.
//!
//! # Ordering
//! A record's `seq` comes from [`SEQ`], taken under the recorder's lock, so
//! the file is in `seq` order. Callers record an allocation *after* the
//! allocator returned it and a free *before* the allocator sees it, so for
//! any address the `seq` order is the order in which the program saw the
//! block born and die (the rule of the format). `realloc` is recorded by the
//! C layer as "new block first, then the record, then the old block freed"
//! when it moves (see `exports::realloc`).
//!
//! # Live blocks
//! [`LIVE`] counts the blocks the program holds, from the records
//! themselves (+1 for a successful allocation, -1 for a free); the exit
//! record carries it.
//!
//! # Fork
//! A forked child stops recording (its records would collide with the
//! parent's `seq` numbers in the same file). A program started with `exec`
//! records afresh; give the path a `%p` so that it does not overwrite the
//! parent's file.

use crate::out::write_all;
use core::cell::UnsafeCell;
use core::ffi::{c_int, CStr};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use tessera_core::inspect::trace::{write_record, Event, Record, TRACE_MAGIC};
use tessera_core::inspect::Sink;
use tessera_core::sys::lock::RawLock;
use tessera_core::sys::report::CancelOff;

const BUF: usize = 64 << 10;

/// The process-wide sequence counter; the first record gets 1.
pub static SEQ: AtomicU64 = AtomicU64::new(1);

/// Blocks the program holds, according to the records so far.
pub static LIVE: AtomicI64 = AtomicI64::new(0);

/// Is a trace file open (and not yet finished)?
static ACTIVE: AtomicBool = AtomicBool::new(false);

struct Recorder {
    lock: RawLock,
    inner: UnsafeCell<Inner>,
}

/// Reachable only through [`locked`], so holding an `&mut Inner` means
/// holding the recorder's lock.
struct Inner {
    fd: c_int,
    len: usize,
}

// SAFETY: `inner` is only touched with `lock` held.
unsafe impl Sync for Recorder {}

static REC: Recorder = Recorder {
    lock: RawLock::new(),
    inner: UnsafeCell::new(Inner { fd: -1, len: 0 }),
};

/// The buffer, apart from `REC` so that it stays in `.bss` (all zero)
/// instead of adding 64 KiB to the library file.
struct Buffer(UnsafeCell<[u8; BUF]>);
// SAFETY: only touched through an `&mut Inner`, that is with REC's lock held.
unsafe impl Sync for Buffer {}
static BUFFER: Buffer = Buffer(UnsafeCell::new([0; BUF]));

impl Inner {
    fn buf(&mut self) -> &mut [u8; BUF] {
        // SAFETY: `&mut self` proves REC's lock is held (see `Inner`).
        unsafe { &mut *BUFFER.0.get() }
    }

    fn flush(&mut self) {
        let (fd, len) = (self.fd, self.len);
        if fd >= 0 && len > 0 && !write_all(fd, &self.buf()[..len]) {
            // A full disk or a closed descriptor: stop rather than write a
            // trace with holes in it.
            crate::out::stderr_raw(b"tessera: TESSERA_TRACE: write failed; recording stopped\n");
            let _off = CancelOff::new(); // close is a cancellation point
                                         // SAFETY: our own descriptor.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
            ACTIVE.store(false, Ordering::Relaxed);
        }
        self.len = 0;
    }
}

impl Sink for Inner {
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > BUF {
            self.flush();
        }
        let (len, n) = (self.len, bytes.len().min(BUF - self.len));
        self.buf()[len..len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }
}

/// Runs `f` on the recorder with its lock held.
fn locked<R>(f: impl FnOnce(&mut Inner) -> R) -> R {
    REC.lock.lock();
    // SAFETY: the lock is held, so this thread alone uses `inner`.
    let r = f(unsafe { &mut *REC.inner.get() });
    // SAFETY: taken above.
    unsafe { REC.lock.unlock() };
    r
}

/// Opens (creates or truncates) the trace file and writes the magic line.
/// Returns false, after a warning, if the file cannot be opened.
pub fn start(path: &CStr) -> bool {
    let fd = crate::out::create_file(path);
    if fd < 0 {
        let mut line = crate::out::StackBuf::<600>::new();
        line.push(b"tessera: TESSERA_TRACE: cannot open ");
        line.push(&path.to_bytes()[..path.to_bytes().len().min(400)]);
        line.push(b"; not recording\n");
        crate::out::stderr_raw(line.as_bytes());
        return false;
    }
    // The magic line goes out at once, so that even a process that ends
    // without the exit hook (`_exit`, a signal) leaves a parseable file.
    let mut magic = crate::out::StackBuf::<32>::new();
    magic.push(TRACE_MAGIC.as_bytes());
    magic.push(b"\n");
    write_all(fd, magic.as_bytes());
    locked(|r| {
        r.fd = fd;
        r.len = 0;
    });
    ACTIVE.store(true, Ordering::Relaxed);
    true
}

fn gettid() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// The change in live blocks an event makes.
pub fn live_delta(ev: &Event) -> i64 {
    match *ev {
        Event::Malloc { ret, .. } | Event::Calloc { ret, .. } | Event::Memalign { ret, .. } => {
            i64::from(ret != 0)
        }
        Event::Free { ptr } => -i64::from(ptr != 0),
        Event::Realloc { ptr: 0, ret, .. } => i64::from(ret != 0),
        Event::Realloc { size: 0, .. } => -1,
        Event::Realloc { .. } | Event::Exit { .. } => 0,
    }
}

/// Records one call (see the module docs for when to call it).
#[cold]
#[inline(never)]
pub fn record(event: Event) {
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    let tid = gettid();
    locked(|r| {
        if r.fd < 0 {
            return;
        }
        LIVE.fetch_add(live_delta(&event), Ordering::Relaxed);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        write_record(&Record { seq, tid, event }, r);
    });
}

/// Writes the `exit <live>` record, flushes and closes the file. Calls
/// recorded afterwards (by destructors that run later) are dropped.
pub fn finish() {
    if !ACTIVE.swap(false, Ordering::Relaxed) {
        return;
    }
    let tid = gettid();
    locked(|r| {
        if r.fd < 0 {
            return;
        }
        let live = LIVE.load(Ordering::Relaxed).max(0) as usize;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        write_record(
            &Record {
                seq,
                tid,
                event: Event::Exit { live },
            },
            r,
        );
        r.flush();
        let _off = CancelOff::new(); // close is a cancellation point
                                     // SAFETY: our own descriptor, not used after this.
        unsafe { libc::close(r.fd) };
        r.fd = -1;
    });
}

/// Fork: the forking thread takes the recorder's lock (no record is half
/// written when the address space is copied).
pub fn fork_prepare() {
    REC.lock.lock();
}

/// Fork, parent side.
pub fn fork_parent() {
    // SAFETY: taken in `fork_prepare` by this thread.
    unsafe { REC.lock.unlock() };
}

/// Fork, child side: stop recording. The parent's unwritten records stay
/// the parent's to write. When `fork_prepare` ran (`locked`), the child
/// also closes its copy of the descriptor and drops the buffer; when it
/// did not (a process with one thread, maybe a fork from a signal handler
/// that interrupted a record), the recorder is left as it is for the
/// interrupted code to finish, and the descriptor (close-on-exec) stays.
pub fn fork_child(locked: bool) {
    ACTIVE.store(false, Ordering::Relaxed);
    if !locked {
        return;
    }
    // SAFETY: the child has a single thread, which holds the lock (taken in
    // `fork_prepare`); the buffer is dropped, never written.
    unsafe {
        let r = &mut *REC.inner.get();
        if r.fd >= 0 {
            libc::close(r.fd);
        }
        r.fd = -1;
        r.len = 0;
        REC.lock.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_counting_follows_the_format() {
        assert_eq!(live_delta(&Event::Malloc { size: 0, ret: 16 }), 1);
        assert_eq!(live_delta(&Event::Malloc { size: 1, ret: 0 }), 0);
        assert_eq!(
            live_delta(&Event::Calloc {
                n: 1,
                size: 1,
                ret: 32
            }),
            1
        );
        assert_eq!(live_delta(&Event::Free { ptr: 16 }), -1);
        assert_eq!(live_delta(&Event::Free { ptr: 0 }), 0);
        let re = |ptr, size, ret| live_delta(&Event::Realloc { ptr, size, ret });
        assert_eq!(re(0, 10, 16), 1, "realloc(NULL, n) is malloc");
        assert_eq!(re(16, 0, 0), -1, "realloc(p, 0) frees");
        assert_eq!(re(16, 10, 32), 0, "a move keeps the count");
        assert_eq!(re(16, 10, 0), 0, "a failure keeps the old block");
    }
}
