//! Output without `malloc`: lines formatted on the stack, files written with
//! `write(2)`, and a growable buffer on private `mmap` pages for reports
//! whose length depends on the number of arenas.
//!
//! `core::fmt` formats into any [`core::fmt::Write`] without allocating, so
//! `write!` into a [`StackBuf`] or a [`MapBuf`] is safe inside the
//! allocator, with any lock held.
//!
//! # Cancellation
//! `open`, `write`, `close` and stdio's writes are cancellation points: a
//! thread cancelled (`pthread_cancel`) while it writes a report would
//! unwind through the library's frames, which cannot unwind, and the
//! process would abort. Every function here that reaches one turns
//! cancellation off for its length ([`CancelOff`], as glibc does around
//! `malloc_stats`); a cancellation requested meanwhile is acted upon at
//! the thread's next cancellation point outside the library.

use core::ffi::{c_int, CStr};
use core::fmt;
use tessera_core::inspect::Sink;
use tessera_core::sys::report::CancelOff;

/// Writes all of `bytes` to `fd`, retrying on `EINTR` and short writes.
/// Returns false on any other error. Leaves errno as the failing call set
/// it; callers that must not change errno save it first.
pub fn write_all(fd: c_int, mut bytes: &[u8]) -> bool {
    let _off = CancelOff::new();
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice; write(2) reads at most its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            // SAFETY: this thread's errno slot.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

/// Writes a line to fd 2 (warnings from inside the allocator, where stdio
/// cannot be used). errno is left as it was.
pub fn stderr_raw(bytes: &[u8]) {
    let e = crate::errno::Errno::save();
    write_all(2, bytes);
    e.restore();
}

/// A fixed buffer on the stack; text past its end is dropped.
pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends raw bytes (truncating at capacity).
    pub fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// The contents followed by a NUL, for system calls taking a path.
    /// None if it does not fit or contains a NUL.
    pub fn as_cstr(&mut self) -> Option<&CStr> {
        if self.len >= N {
            return None;
        }
        self.buf[self.len] = 0;
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).ok()
    }
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// A [`Sink`] that writes to a file descriptor through an 8 KiB stack
/// buffer. Remembers whether any write failed.
pub struct FdSink {
    fd: c_int,
    buf: [u8; 8192],
    len: usize,
    /// A write failed; later output is dropped.
    pub failed: bool,
}

impl FdSink {
    /// A sink over `fd` (not closed by the sink).
    pub fn new(fd: c_int) -> Self {
        FdSink {
            fd,
            buf: [0; 8192],
            len: 0,
            failed: false,
        }
    }

    /// Writes out the buffer; returns false if any write failed so far.
    pub fn flush(&mut self) -> bool {
        if !self.failed && self.len > 0 && !write_all(self.fd, &self.buf[..self.len]) {
            self.failed = true;
        }
        self.len = 0;
        !self.failed
    }
}

impl Sink for FdSink {
    fn put(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if self.len + bytes.len() > self.buf.len() {
            self.flush();
        }
        if bytes.len() > self.buf.len() {
            if !write_all(self.fd, bytes) {
                self.failed = true;
            }
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }
}

/// A growable text buffer on anonymous `mmap` pages (never `malloc`), for
/// reports that cover every arena: `malloc_stats` and `malloc_info` fill it
/// while the arenas are locked and hand it to stdio after unlocking. If the
/// kernel refuses memory, text is dropped and [`MapBuf::truncated`] says so.
pub struct MapBuf {
    ptr: *mut u8,
    cap: usize,
    len: usize,
    /// Some text did not fit.
    pub truncated: bool,
}

impl MapBuf {
    /// An empty buffer (maps nothing until written to).
    pub const fn new() -> Self {
        MapBuf {
            ptr: core::ptr::null_mut(),
            cap: 0,
            len: 0,
            truncated: false,
        }
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: `ptr..ptr + len` is mapped and written.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    fn grow(&mut self, need: usize) -> bool {
        let Some(want) = self.len.checked_add(need) else {
            return false;
        };
        let new_cap = want.max(self.cap * 2).max(64 << 10).next_multiple_of(4096);
        let e = crate::errno::Errno::save();
        // SAFETY: a fresh private anonymous mapping, or the resizing of the
        // one this buffer owns; a failure leaves the old one intact.
        let p = unsafe {
            if self.ptr.is_null() {
                libc::mmap(
                    core::ptr::null_mut(),
                    new_cap,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            } else {
                libc::mremap(self.ptr.cast(), self.cap, new_cap, libc::MREMAP_MAYMOVE)
            }
        };
        e.restore();
        if p == libc::MAP_FAILED {
            return false;
        }
        self.ptr = p.cast();
        self.cap = new_cap;
        true
    }

    /// Appends bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.cap - self.len < bytes.len() && !self.grow(bytes.len()) {
            self.truncated = true;
            return;
        }
        // SAFETY: `len + bytes.len() <= cap`, all mapped; the source is a
        // live slice outside the mapping.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(self.len), bytes.len())
        };
        self.len += bytes.len();
    }
}

impl Default for MapBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for MapBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl Drop for MapBuf {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: the buffer owns this mapping of `cap` bytes.
            unsafe { libc::munmap(self.ptr.cast(), self.cap) };
        }
    }
}

/// Writes `bytes` to a C stream with `fwrite`. Must not be called with any
/// allocator lock held: stdio may allocate the stream's buffer.
///
/// # Safety
/// `fp` must be a valid, open `FILE`.
pub unsafe fn fwrite_all(fp: *mut libc::FILE, bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let _off = CancelOff::new();
    // SAFETY: `fp` is valid (caller); `bytes` is a live slice.
    unsafe { libc::fwrite(bytes.as_ptr().cast(), 1, bytes.len(), fp) == bytes.len() }
}

/// Creates (or truncates) `path` for writing, close-on-exec, without
/// allocating. Returns the descriptor, or -1 with errno set.
pub fn create_file(path: &CStr) -> libc::c_int {
    let _off = CancelOff::new();
    // SAFETY: `path` is NUL-terminated; open allocates nothing.
    unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    }
}

/// Creates (or truncates) `path` and lets `write` fill it through a
/// buffered sink. Returns false with errno set if the file could not be
/// opened or written.
pub fn write_file(path: &CStr, write: impl FnOnce(&mut FdSink)) -> bool {
    let fd = create_file(path);
    if fd < 0 {
        return false;
    }
    let mut sink = FdSink::new(fd);
    write(&mut sink);
    let ok = sink.flush();
    let _off = CancelOff::new();
    // SAFETY: our own descriptor.
    let closed = unsafe { libc::close(fd) } == 0;
    ok && closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn stack_buf_truncates_and_terminates() {
        let mut b = StackBuf::<8>::new();
        write!(b, "{}-{}", 1234, 56789).unwrap();
        assert_eq!(b.as_bytes(), b"1234-567");
        assert!(b.as_cstr().is_none(), "no room for the NUL");
        let mut b = StackBuf::<8>::new();
        b.push(b"/tmp");
        assert_eq!(b.as_cstr().unwrap().to_bytes(), b"/tmp");
    }

    #[test]
    fn map_buf_grows_past_its_first_mapping() {
        let mut b = MapBuf::new();
        for i in 0..20_000 {
            writeln!(b, "line {i:>6}").unwrap();
        }
        assert!(!b.truncated);
        assert_eq!(b.as_bytes().len(), 20_000 * 12);
        assert!(b.as_bytes().ends_with(b"line  19999\n"));
    }

    #[test]
    fn fd_sink_writes_everything_in_order() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let writer = std::thread::spawn(move || {
            let mut s = FdSink::new(fds[1]);
            for i in 0..3000u32 {
                s.put(&i.to_le_bytes());
            }
            s.put(&[7u8; 20_000]);
            assert!(s.flush());
            // SAFETY: our own descriptor.
            unsafe { libc::close(fds[1]) };
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: reads into a live buffer.
            let n = unsafe { libc::read(fds[0], chunk.as_mut_ptr().cast(), chunk.len()) };
            if n <= 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n as usize]);
        }
        writer.join().unwrap();
        // SAFETY: our own descriptor.
        unsafe { libc::close(fds[0]) };
        assert_eq!(got.len(), 3000 * 4 + 20_000);
        assert_eq!(&got[4..8], &1u32.to_le_bytes());
        assert!(got[12_000..].iter().all(|&b| b == 7));
    }
}
