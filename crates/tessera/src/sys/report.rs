//! Reporting detected heap corruption: one line on stderr, then `abort()`.
//!
//! Nothing here allocates: the line is assembled in a stack buffer and
//! written with a single `write(2)`, so it is safe inside malloc and free,
//! with any lock held.

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
    let mut buf = [0u8; 256];
    let mut n = 0;
    for part in [
        b"tessera: ".as_slice(),
        msg.as_bytes(),
        b" at 0x".as_slice(),
    ] {
        for &b in part {
            if n < buf.len() - 20 {
                buf[n] = b;
                n += 1;
            }
        }
    }
    n += write_hex(&mut buf[n..], addr);
    buf[n] = b'\n';
    n += 1;
    // SAFETY: writes `n` initialised bytes of `buf` to fd 2; abort never returns.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n);
        libc::abort()
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
