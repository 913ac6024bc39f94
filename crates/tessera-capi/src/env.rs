//! Configuration from the environment, read once at the first call.
//!
//! | Variable | Value | Default |
//! |---|---|---|
//! | `TESSERA_MMAP_THRESHOLD` | size (max 32M) | 256K |
//! | `TESSERA_TRIM_THRESHOLD` | size | 2M |
//! | `TESSERA_ARENA_MAX` | count (0 = 2 x cores, more with many threads: see `tessera`'s `arena::limit`) | 0 |
//! | `TESSERA_TCACHE_MEDIUM` | size (max 16M; 0 = no medium classes) | 128K |
//! | `TESSERA_CHECK` | 0, 1 or 2 | 0 |
//! | `TESSERA_CHECK_PERIOD` | count (with `TESSERA_CHECK=2`) | 1000 |
//! | `TESSERA_TRACE` | path (`%p` = pid) | off |
//! | `TESSERA_SNAPSHOT` | path (`%p` = pid) | off |
//! | `TESSERA_SNAPSHOT_PAGES` | count | 256 |
//! | `MALLOC_PERTURB_` | glibc's: a byte, 0..=255 (decimal, `0x` hex or `0` octal; 0 = off) | 0 |
//!
//! A *size* is decimal digits with an optional `K`, `M` or `G` suffix
//! (either case; powers of 1024). A malformed value costs one warning line
//! on stderr and the default. Values are read with `getenv`, which does not
//! allocate, and parsed here without allocating.

use crate::out::{stderr_raw, StackBuf};
use core::ffi::CStr;
use core::fmt::Write;

/// Default number of raw pages in an exit snapshot.
pub const DEFAULT_SNAPSHOT_PAGES: usize = 256;

/// The longest path kept for `TESSERA_TRACE` / `TESSERA_SNAPSHOT`.
pub const PATH_MAX: usize = 4096;

/// Parses a count: decimal digits only, no sign, no spaces.
pub fn parse_count(s: &[u8]) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    Some(n)
}

/// Parses a size: a count with an optional `K`/`M`/`G` suffix (x 1024^n).
pub fn parse_size(s: &[u8]) -> Option<usize> {
    let (digits, shift) = match s.last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    parse_count(digits)?.checked_mul(1 << shift)
}

/// The value of an environment variable, if set.
pub fn get(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv neither allocates nor keeps
    // the pointer. The value lives in the environment block, which the
    // caller copies from before returning to the program.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: getenv returns a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// Prints `tessera: ignoring NAME=value (expected ...); using the default`.
pub fn warn(name: &CStr, value: &[u8], expected: &str) {
    let mut line = StackBuf::<512>::new();
    line.push(b"tessera: ignoring ");
    line.push(name.to_bytes());
    line.push(b"=\"");
    line.push(&value[..value.len().min(64)]);
    if value.len() > 64 {
        line.push(b"...");
    }
    // Names, the cut value and the texts of `expected` fit in 512 bytes.
    let _ = writeln!(line, "\" (expected {expected}); using the default");
    stderr_raw(line.as_bytes());
}

/// Reads a size variable; None if unset or malformed (after a warning).
pub fn size_var(name: &CStr) -> Option<usize> {
    let v = get(name)?;
    let r = parse_size(v);
    if r.is_none() {
        warn(name, v, "a size such as 65536, 256K, 4M or 1G");
    }
    r
}

/// Reads a count variable; None if unset or malformed (after a warning).
pub fn count_var(name: &CStr) -> Option<usize> {
    let v = get(name)?;
    let r = parse_count(v);
    if r.is_none() {
        warn(name, v, "a whole number");
    }
    r
}

/// Parses a number as C's `strtoul` with base 0 does (and glibc's
/// tunables): `0x` hex, a leading `0` octal, else decimal; the whole
/// string must be digits.
pub fn parse_c_number(s: &[u8]) -> Option<u64> {
    let (digits, radix) = match s {
        [b'0', b'x' | b'X', rest @ ..] => (rest, 16),
        [b'0', rest @ ..] if !rest.is_empty() => (rest, 8),
        _ => (s, 10),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        let d = (b as char).to_digit(radix)?;
        n = n.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// glibc's `MALLOC_PERTURB_`: the perturb byte (0 = off); None if unset,
/// or malformed or above 255 (after a warning).
pub fn perturb_var() -> Option<u8> {
    let name = c"MALLOC_PERTURB_";
    let v = get(name)?;
    match parse_c_number(v).map(u8::try_from) {
        Some(Ok(b)) => Some(b),
        _ => {
            warn(name, v, "a byte, 0 to 255");
            None
        }
    }
}

/// `TESSERA_CHECK`: 0, 1 or 2 (anything else warns and gives 0).
pub fn check_level() -> u8 {
    let name = c"TESSERA_CHECK";
    match get(name) {
        None => 0,
        Some(b"0") => 0,
        Some(b"1") => 1,
        Some(b"2") => 2,
        Some(v) => {
            warn(name, v, "0, 1 or 2");
            0
        }
    }
}

/// Copies a path variable into `out`, replacing each `%p` with `pid`.
/// Returns false if unset, empty, or too long (after a warning).
pub fn path_var(name: &CStr, pid: u32, out: &mut StackBuf<PATH_MAX>) -> bool {
    let Some(v) = get(name) else {
        return false;
    };
    if v.is_empty() {
        return false;
    }
    if !expand_pid(v, pid, out) {
        warn(name, v, "a path shorter than 4096 bytes");
        return false;
    }
    true
}

/// Writes `template` to `out` with every `%p` replaced by `pid`; false if
/// the result does not fit (with its NUL).
pub fn expand_pid(template: &[u8], pid: u32, out: &mut StackBuf<PATH_MAX>) -> bool {
    let mut i = 0;
    while i < template.len() {
        if template[i] == b'%' && template.get(i + 1) == Some(&b'p') {
            let _ = write!(out, "{pid}");
            i += 2;
        } else {
            out.push(&template[i..=i]);
            i += 1;
        }
    }
    out.as_cstr().is_some()
}

/// Does a path template contain `%p`?
pub fn has_pid(template: &[u8]) -> bool {
    template.windows(2).any(|w| w == b"%p")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"65536"), Some(65536));
        assert_eq!(parse_size(b"256K"), Some(256 << 10));
        assert_eq!(parse_size(b"256k"), Some(256 << 10));
        assert_eq!(parse_size(b"4M"), Some(4 << 20));
        assert_eq!(parse_size(b"1g"), Some(1 << 30));
        for bad in [
            &b""[..],
            b"K",
            b"-1",
            b" 5",
            b"5 ",
            b"5KB",
            b"1.5M",
            b"0x10",
            b"99999999999999999999999",
            b"18014398509481984G",
        ] {
            assert_eq!(parse_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count(b"8"), Some(8));
        assert_eq!(parse_count(b"18446744073709551615"), Some(usize::MAX));
        assert_eq!(parse_count(b"18446744073709551616"), None);
        assert_eq!(parse_count(b"8K"), None);
        assert_eq!(parse_count(b""), None);
    }

    #[test]
    fn c_numbers_as_strtoul_base_0() {
        assert_eq!(parse_c_number(b"90"), Some(90));
        assert_eq!(parse_c_number(b"0x5a"), Some(0x5a));
        assert_eq!(parse_c_number(b"0X5A"), Some(0x5a));
        assert_eq!(parse_c_number(b"0132"), Some(0o132));
        assert_eq!(parse_c_number(b"0"), Some(0));
        for bad in [&b""[..], b"0x", b"09", b"5a", b"-1", b" 1", b"0x1g"] {
            assert_eq!(
                parse_c_number(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn pid_expansion() {
        let mut out = StackBuf::<PATH_MAX>::new();
        assert!(expand_pid(b"/tmp/t.%p.trace", 4242, &mut out));
        assert_eq!(out.as_bytes(), b"/tmp/t.4242.trace");
        let mut out = StackBuf::<PATH_MAX>::new();
        assert!(expand_pid(b"a%b%", 1, &mut out));
        assert_eq!(out.as_bytes(), b"a%b%");
        let long = [b'x'; PATH_MAX];
        let mut out = StackBuf::<PATH_MAX>::new();
        assert!(!expand_pid(&long, 1, &mut out));
        assert!(has_pid(b"x%py"));
        assert!(!has_pid(b"x%y"));
    }
}
