//! One raw malloc/free interface over every allocator the suite compares.
//!
//! Each allocator is reached through its own C-shaped entry points, never
//! through `#[global_allocator]` (the harness's own bookkeeping stays on the
//! system allocator for all of them):
//!
//! | name       | entry points                                      |
//! |------------|---------------------------------------------------|
//! | `glibc`    | `malloc`, `free`, `realloc`, `calloc` of libc.so  |
//! | `tessera`  | `tessera::global::{malloc, free, realloc, calloc}`|
//! | `mimalloc` | `mi_malloc`, `mi_free`, `mi_realloc`, `mi_calloc` |
//! | `jemalloc` | `_rjem_malloc`, `_rjem_free`, ... (prefixed)      |
//! | `dlmalloc` | the `dlmalloc` crate's `GlobalDlmalloc` (one lock)|
//!
//! `free` and `realloc` take the block's requested size because the
//! `dlmalloc` crate needs it (its API is Rust's `GlobalAlloc`); the C
//! allocators ignore it, so every allocator is driven the way C drives it
//! (no sized free).
//!
//! [`check_baselines`] proves at start-up that each name really is the
//! allocator it claims, and that none of them replaced the system `malloc`.

use core::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_char, c_int, c_void, CStr};

/// The alignment every allocator guarantees for `malloc` on x86-64, and the
/// one the `dlmalloc` adapter asks for.
pub const ALIGN: usize = 16;

/// A process-wide allocator driven through malloc/free.
///
/// Implementations are thread-safe: any thread may free a block that another
/// thread allocated.
pub trait RawAlloc: Sync {
    /// Short name used in tables, JSON and on the command line.
    fn name(&self) -> &'static str;

    /// `malloc(size)`: at least `size` bytes aligned to [`ALIGN`], or null.
    ///
    /// # Safety
    /// `size` must be at least 1 (some adapters turn it into a `Layout`).
    unsafe fn malloc(&self, size: usize) -> *mut u8;

    /// `free(p)`.
    ///
    /// # Safety
    /// `p` is a live block of this allocator that was requested (or last
    /// resized) with `size` bytes.
    unsafe fn free(&self, p: *mut u8, size: usize);

    /// `realloc(p, new)`: the first `min(old, new)` bytes are kept.
    ///
    /// # Safety
    /// `p` is a live block of this allocator of requested size `old`;
    /// `new >= 1`. On success `p` is no longer valid.
    unsafe fn realloc(&self, p: *mut u8, old: usize, new: usize) -> *mut u8;

    /// `calloc(1, size)`: `size` zeroed bytes. The default zeroes a fresh
    /// `malloc` block; allocators with their own calloc (which may skip
    /// clearing fresh pages) override it.
    ///
    /// # Safety
    /// As [`RawAlloc::malloc`].
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        let p = unsafe { self.malloc(size) };
        if !p.is_null() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        p
    }

    /// What this allocator is, as found at run time (a version string).
    fn describe(&self) -> String;
}

/// Implements the four calls of [`RawAlloc`] for an allocator with C's
/// entry points: `malloc(size)`, `free(p)`, `realloc(p, new)` and
/// `calloc(count, size)`, each an `unsafe extern "C"` function of the given
/// path (the requested sizes that `free` and `realloc` receive are not
/// passed on: C does not pass them).
macro_rules! c_entry_points {
    ($malloc:path, $free:path, $realloc:path, $calloc:path) => {
        #[inline]
        unsafe fn malloc(&self, size: usize) -> *mut u8 {
            // SAFETY: a plain C call with any size.
            unsafe { $malloc(size).cast() }
        }
        #[inline]
        unsafe fn free(&self, p: *mut u8, _size: usize) {
            // SAFETY: `p` is a live block of this allocator (caller).
            unsafe { $free(p.cast()) }
        }
        #[inline]
        unsafe fn realloc(&self, p: *mut u8, _old: usize, new: usize) -> *mut u8 {
            // SAFETY: `p` is a live block of this allocator (caller).
            unsafe { $realloc(p.cast(), new).cast() }
        }
        #[inline]
        unsafe fn calloc(&self, size: usize) -> *mut u8 {
            // SAFETY: a plain C call with any size.
            unsafe { $calloc(1, size).cast() }
        }
    };
}

/// glibc's malloc, the system allocator.
pub struct Glibc;

impl RawAlloc for Glibc {
    fn name(&self) -> &'static str {
        "glibc"
    }
    c_entry_points!(libc::malloc, libc::free, libc::realloc, libc::calloc);
    fn describe(&self) -> String {
        extern "C" {
            fn gnu_get_libc_version() -> *const c_char;
        }
        // SAFETY: returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(gnu_get_libc_version()) };
        format!("glibc {}", v.to_string_lossy())
    }
}

/// Whatever `malloc` this process's dynamic loader bound: glibc's, or the
/// library put in front of it by `LD_PRELOAD`. The shapes and the service
/// workload run through this in their child processes ([`crate::preload`]).
/// Not in [`all`]: in the suite's own process it is simply glibc.
pub struct ProcessMalloc;

impl RawAlloc for ProcessMalloc {
    fn name(&self) -> &'static str {
        "malloc"
    }
    // (Bound to the preloaded library, if any.)
    c_entry_points!(libc::malloc, libc::free, libc::realloc, libc::calloc);
    fn describe(&self) -> String {
        format!(
            "this process's malloc, from {}",
            crate::preload::malloc_object()
        )
    }
}

/// Tessera's process-wide allocator, `tessera::global`.
pub struct Tessera;

impl RawAlloc for Tessera {
    fn name(&self) -> &'static str {
        "tessera"
    }
    #[inline]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        tessera::global::malloc(size)
    }
    #[inline]
    unsafe fn free(&self, p: *mut u8, _size: usize) {
        // SAFETY: `p` is a live Tessera block (caller).
        unsafe { tessera::global::free(p) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, _old: usize, new: usize) -> *mut u8 {
        // SAFETY: `p` is a live Tessera block (caller).
        unsafe { tessera::global::realloc(p, new) }
    }
    #[inline]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        tessera::global::calloc(1, size)
    }
    fn describe(&self) -> String {
        format!("tessera {} (tessera::global)", env!("CARGO_PKG_VERSION"))
    }
}

extern "C" {
    // Parts of mimalloc's public API that libmimalloc-sys does not declare
    // without its `extended` feature; the static library has them all.
    fn mi_calloc(count: usize, size: usize) -> *mut c_void;
    fn mi_version() -> c_int;
    fn mi_is_in_heap_region(p: *const c_void) -> bool;
}

/// mimalloc, statically linked by `libmimalloc-sys` (no override).
pub struct Mimalloc;

impl RawAlloc for Mimalloc {
    fn name(&self) -> &'static str {
        "mimalloc"
    }
    c_entry_points!(
        libmimalloc_sys::mi_malloc,
        libmimalloc_sys::mi_free,
        libmimalloc_sys::mi_realloc,
        mi_calloc
    );
    fn describe(&self) -> String {
        // SAFETY: no preconditions.
        let v = unsafe { mi_version() };
        format!("mimalloc {}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    }
}

/// jemalloc, statically linked by `tikv-jemalloc-sys` with its `_rjem_`
/// prefix (so it does not replace the system malloc).
pub struct Jemalloc;

impl RawAlloc for Jemalloc {
    fn name(&self) -> &'static str {
        "jemalloc"
    }
    c_entry_points!(
        tikv_jemalloc_sys::malloc,
        tikv_jemalloc_sys::free,
        tikv_jemalloc_sys::realloc,
        tikv_jemalloc_sys::calloc
    );
    fn describe(&self) -> String {
        let mut v: *const c_char = std::ptr::null();
        let mut len = std::mem::size_of::<*const c_char>();
        // SAFETY: "version" is a read-only `const char *` mallctl.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"version".as_ptr(),
                (&raw mut v).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 || v.is_null() {
            return "jemalloc (version unknown)".into();
        }
        // SAFETY: jemalloc returned a static NUL-terminated string.
        let s = unsafe { CStr::from_ptr(v) };
        format!("jemalloc {}", s.to_string_lossy())
    }
}

/// The `dlmalloc` crate's global allocator: one dlmalloc heap behind one
/// pthread mutex (the same shape as Tessera's global heap today).
pub struct Dlmalloc;

#[inline]
fn layout(size: usize) -> Layout {
    // Layout requires a non-zero size for GlobalAlloc; ALIGN is a power of
    // two and no size the workloads use comes near isize::MAX.
    Layout::from_size_align(size.max(1), ALIGN).expect("valid layout")
}

impl RawAlloc for Dlmalloc {
    fn name(&self) -> &'static str {
        "dlmalloc"
    }
    #[inline]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: the layout has a non-zero size.
        unsafe { dlmalloc::GlobalDlmalloc.alloc(layout(size)) }
    }
    #[inline]
    unsafe fn free(&self, p: *mut u8, size: usize) {
        // SAFETY: `p` was allocated here with this layout (caller).
        unsafe { dlmalloc::GlobalDlmalloc.dealloc(p, layout(size)) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: `p` was allocated here with `old` bytes (caller).
        unsafe { dlmalloc::GlobalDlmalloc.realloc(p, layout(old), new.max(1)) }
    }
    #[inline]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        // SAFETY: the layout has a non-zero size.
        unsafe { dlmalloc::GlobalDlmalloc.alloc_zeroed(layout(size)) }
    }
    fn describe(&self) -> String {
        "dlmalloc crate 0.2 (GlobalDlmalloc, one pthread mutex)".into()
    }
}

/// Every allocator, glibc (the reference of every ratio) first.
pub fn all() -> Vec<&'static dyn RawAlloc> {
    vec![&Glibc, &Tessera, &Mimalloc, &Jemalloc, &Dlmalloc]
}

/// The allocator called `name`.
pub fn by_name(name: &str) -> Option<&'static dyn RawAlloc> {
    all().into_iter().find(|a| a.name() == name)
}

/// The file of the shared object that defines the symbol at `addr`.
fn object_of(addr: *const c_void) -> Option<String> {
    let mut info: libc::Dl_info = unsafe {
        // SAFETY: Dl_info is plain old data; all-zero is a valid value.
        std::mem::zeroed()
    };
    // SAFETY: dladdr only reads its arguments and fills `info`.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    Some(
        unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Checks that each baseline is the allocator it claims to be:
/// - the process's `malloc` is glibc's (found in libc.so, not in this
///   binary: neither jemalloc nor mimalloc overrides it);
/// - a `mi_malloc` block lies in mimalloc's heap, a glibc block does not;
/// - jemalloc answers its own `mallctl` and knows the size of its block;
/// - Tessera owns its block and not glibc's.
///
/// Returns one line per finding, or an error naming the first failure.
pub fn check_baselines() -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let malloc_addr = libc::malloc as *const c_void;
    let obj = object_of(malloc_addr).unwrap_or_else(|| "?".into());
    if !obj.contains("libc.so") {
        return Err(format!(
            "`malloc` resolves to {obj}, not glibc: an allocator overrides the system malloc"
        ));
    }
    notes.push(format!("malloc is glibc's ({obj})"));
    // SAFETY: small allocations freed by their own allocator below.
    unsafe {
        let g = libc::malloc(64);
        let m = libmimalloc_sys::mi_malloc(64);
        let j = tikv_jemalloc_sys::malloc(64);
        let t = tessera::global::malloc(64);
        let in_mi = mi_is_in_heap_region(m);
        let glibc_in_mi = mi_is_in_heap_region(g);
        let je_size = tikv_jemalloc_sys::malloc_usable_size(j);
        let t_owns = tessera::global::owns(t);
        let t_owns_glibc = tessera::global::owns(g.cast());
        libc::free(g);
        libmimalloc_sys::mi_free(m);
        tikv_jemalloc_sys::free(j);
        tessera::global::free(t);
        if !in_mi || glibc_in_mi {
            return Err("mimalloc does not recognise its own blocks".into());
        }
        if !(64..=128).contains(&je_size) {
            return Err(format!(
                "jemalloc reports {je_size} usable bytes for a 64-byte block"
            ));
        }
        if !t_owns || t_owns_glibc {
            return Err("tessera::global does not recognise its own blocks".into());
        }
    }
    for a in all() {
        notes.push(a.describe());
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allocator_round_trips() {
        for a in all() {
            // SAFETY: sizes >= 1; each block is freed by its allocator.
            unsafe {
                let p = a.malloc(40);
                assert!(!p.is_null(), "{}", a.name());
                assert_eq!(p as usize % ALIGN, 0, "{}", a.name());
                p.write_bytes(0xAB, 40);
                let q = a.realloc(p, 40, 5000);
                assert!(!q.is_null());
                assert_eq!(*q.add(39), 0xAB, "{} lost data in realloc", a.name());
                a.free(q, 5000);
                let z = a.calloc(300);
                assert!((0..300).all(|i| *z.add(i) == 0), "{}", a.name());
                a.free(z, 300);
            }
        }
    }

    #[test]
    fn baselines_are_what_they_claim() {
        let notes = check_baselines().unwrap();
        assert!(notes.iter().any(|n| n.starts_with("mimalloc ")));
        assert!(notes.iter().any(|n| n.starts_with("jemalloc 5")));
    }
}
