//! Reporting detected heap corruption: one line on stderr, then `abort()`.
//!
//! Nothing here allocates: the line is assembled in a stack buffer and
//! written with a single `write(2)`, so it is safe inside malloc and free,
//! with any lock held.
//!
//! What happens then is glibc's M_CHECK_ACTION ([`set_check_action`]):
//! bit 0 prints the line, bit 1 ends the program with `abort()` (SIGABRT,
//! a core dump where enabled); without bit 1 it ends with `_exit(127)`.
//! The program never goes on: the heap it would go on with is corrupted.
//! The default, 3, prints and aborts.

use core::sync::atomic::{AtomicU8, Ordering};

/// M_CHECK_ACTION's bits that Tessera uses (module docs).
static CHECK_ACTION: AtomicU8 = AtomicU8::new(3);

/// Print the line.
pub const ACTION_PRINT: u8 = 1;
/// End with `abort()` rather than `_exit(127)`.
pub const ACTION_ABORT: u8 = 2;

/// Sets what detected corruption does (glibc's M_CHECK_ACTION; bits above
/// the two of the module docs are ignored).
pub fn set_check_action(value: i32) {
    CHECK_ACTION.store(
        value as u8 & (ACTION_PRINT | ACTION_ABORT),
        Ordering::Relaxed,
    );
}

/// What went wrong, in Tessera's words. The message names the problem; the
/// pointer is printed after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// `free` of a chunk that is already free.
    DoubleFree,
    /// A pointer that no heap handed out (stack, global, interior, ...).
    InvalidPointer,
    /// A pointer not aligned like any pointer malloc returns.
    Misaligned,
    /// A pointer owned by another heap than the one asked to free it.
    WrongHeap,
    /// A chunk header or boundary tag that contradicts its neighbours: most
    /// likely a buffer overflow from the previous chunk.
    CorruptHeader,
    /// Free-list links that do not point back: the free chunk was overwritten
    /// after it was freed.
    CorruptLinks,
    /// A segment record or mapping header whose check word is wrong.
    CorruptRecord,
    /// `realloc` of a chunk that is already free.
    ReallocFreed,
    /// Freed memory was written after the free (debug fill pattern broken).
    UseAfterFree,
    /// A block was written past its end: the header of the chunk after it
    /// is corrupted.
    Overflow,
}

impl Misuse {
    /// The one-line description printed before the pointer.
    pub const fn message(self) -> &'static str {
        match self {
            Misuse::DoubleFree => "double free",
            Misuse::InvalidPointer => "free of a pointer that no Tessera heap handed out",
            Misuse::Misaligned => "free of a misaligned pointer",
            Misuse::WrongHeap => "pointer belongs to another heap",
            Misuse::CorruptHeader => {
                "corrupted chunk header (overflow from the previous chunk, or not the start of a chunk)"
            }
            Misuse::CorruptLinks => "corrupted free-list links (write after free?)",
            Misuse::CorruptRecord => "corrupted segment record or mapping header",
            Misuse::ReallocFreed => "realloc of a freed pointer",
            Misuse::UseAfterFree => "write to freed memory (use after free)",
            Misuse::Overflow => "write past the end of the block",
        }
    }
}

/// Writes `tessera: <message> at 0x<ptr>` to stderr and aborts.
#[cold]
#[inline(never)]
pub fn fatal(what: Misuse, ptr: *const u8) -> ! {
    fatal_msg(what.message(), ptr as usize)
}

/// Like [`fatal`] with a free-form message.
#[cold]
#[inline(never)]
pub fn fatal_msg(msg: &str, addr: usize) -> ! {
    fatal_two(msg, addr, "", 0)
}

/// `tessera: <what> at 0x<ptr> (<second> 0x<addr>)`: a misuse that
/// involves two places, such as the block written past its end and the
/// chunk whose header that corrupted.
#[cold]
#[inline(never)]
pub fn fatal_with(what: Misuse, ptr: *const u8, second: &str, addr: usize) -> ! {
    fatal_two(what.message(), ptr as usize, second, addr)
}

/// Writes the line of [`fatal_msg`], with `(second 0x<b>)` after it
/// unless `second` is empty, and ends the program.
#[cold]
fn fatal_two(msg: &str, a: usize, second: &str, b: usize) -> ! {
    let mut buf = [0u8; 320];
    let mut n = 0;
    let put = |buf: &mut [u8; 320], n: &mut usize, part: &[u8]| {
        for &byte in part {
            if *n < buf.len() - 40 {
                buf[*n] = byte;
                *n += 1;
            }
        }
    };
    put(&mut buf, &mut n, b"tessera: ");
    put(&mut buf, &mut n, msg.as_bytes());
    put(&mut buf, &mut n, b" at 0x");
    n += write_hex(&mut buf[n..], a);
    if !second.is_empty() {
        put(&mut buf, &mut n, b" (");
        put(&mut buf, &mut n, second.as_bytes());
        put(&mut buf, &mut n, b" 0x");
        n += write_hex(&mut buf[n..], b);
        buf[n] = b')';
        n += 1;
    }
    buf[n] = b'\n';
    n += 1;
    stop(&buf[..n])
}

/// Prints `line` (a whole line, newline included; unless M_CHECK_ACTION
/// says not to) and ends the program as M_CHECK_ACTION says: every report
/// of detected corruption ends here.
#[cold]
pub fn stop(line: &[u8]) -> ! {
    let action = CHECK_ACTION.load(Ordering::Relaxed);
    // SAFETY: write(2) of a live buffer to fd 2; `pthread_setcancelstate`
    // with a valid out pointer; abort and _exit never return.
    unsafe {
        // The write is a cancellation point: acted upon here, cancellation
        // would unwind through frames that cannot unwind.
        let _off = CancelOff::new();
        if action & ACTION_PRINT != 0 {
            libc::write(2, line.as_ptr().cast(), line.len());
        }
        if action & ACTION_ABORT != 0 {
            libc::abort()
        }
        libc::_exit(127)
    }
}

extern "C" {
    /// POSIX; not in the `libc` crate.
    fn pthread_setcancelstate(
        state: core::ffi::c_int,
        old: *mut core::ffi::c_int,
    ) -> core::ffi::c_int;
}

/// `PTHREAD_CANCEL_DISABLE` (glibc's value).
const PTHREAD_CANCEL_DISABLE: core::ffi::c_int = 1;

/// Thread cancellation turned off for as long as this lives (restored as
/// it was when dropped): for code that reaches a cancellation point (a
/// `write`, stdio) inside frames that must not unwind, as glibc does around
/// its `malloc_stats`. A cancellation requested meanwhile is acted upon at
/// the thread's next cancellation point after that.
pub struct CancelOff {
    old: core::ffi::c_int,
}

impl CancelOff {
    /// Turns cancellation off.
    pub fn new() -> CancelOff {
        let mut old = 0;
        // SAFETY: a valid state and a valid pointer for the old one.
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
        CancelOff { old }
    }
}

impl Default for CancelOff {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CancelOff {
    fn drop(&mut self) {
        let mut ignored = 0;
        // SAFETY: as in `new`; `old` is what the call there returned.
        unsafe { pthread_setcancelstate(self.old, &mut ignored) };
    }
}

/// Writes `x` as lower-case hex without leading zeros; returns the length.
pub fn write_hex(out: &mut [u8], x: usize) -> usize {
    let digits = if x == 0 {
        1
    } else {
        (usize::BITS - x.leading_zeros()).div_ceil(4) as usize
    };
    for (i, slot) in out.iter_mut().take(digits).enumerate() {
        let nibble = (x >> (4 * (digits - 1 - i))) & 0xF;
        *slot = b"0123456789abcdef"[nibble];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_formatting() {
        let mut b = [0u8; 20];
        let n = write_hex(&mut b, 0x7f00_dead_beef);
        assert_eq!(&b[..n], b"7f00deadbeef");
        let n = write_hex(&mut b, 0);
        assert_eq!(&b[..n], b"0");
        let n = write_hex(&mut b, usize::MAX);
        assert_eq!(&b[..n], b"ffffffffffffffff");
    }
}
