//! One thread-local pointer that costs one instruction to read, even from
//! inside `libtessera.so`.
//!
//! Rust's `thread_local!` in a shared library uses the general-dynamic TLS
//! model: every access calls `__tls_get_addr` (about a dozen instructions
//! and a call), which was 5% of a `malloc`/`free`-heavy benchmark's
//! instructions under `LD_PRELOAD` (two calls per pair). Stable Rust has no
//! attribute for another model, so this slot is declared in assembly in
//! the thread-local BSS and read with the initial-exec model: the offset of
//! the slot from the thread pointer is loaded from the GOT and the slot read
//! through `%fs`. The linker marks the library `STATIC_TLS`, which is what
//! a preloaded library (or any library linked at start-up) gets anyway; a
//! library `dlopen`ed later takes 8 bytes of glibc's static TLS surplus.
//!
//! The thread cache keeps its own address here after the first access
//! (the cache itself stays an ordinary `thread_local!`). Other targets fall
//! back to a `thread_local!` cell.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    // The slot: 8 zero bytes of `.tbss`, a global symbol so that code
    // inlined into other codegen units (and crates) links to it, hidden so
    // that it is never exported or interposed.
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl __tessera_tls_slot_v1",
        ".hidden __tessera_tls_slot_v1",
        ".type __tessera_tls_slot_v1,@object",
        ".size __tessera_tls_slot_v1,8",
        "__tessera_tls_slot_v1:",
        ".zero 8",
        ".popsection",
    );

    /// The calling thread's slot (null until stored).
    #[inline(always)]
    pub fn load() -> *mut u8 {
        let p: *mut u8;
        // SAFETY: reads the calling thread's copy of the slot: the GOT entry
        // holds the slot's offset from the thread pointer (initial-exec).
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + __tessera_tls_slot_v1@GOTTPOFF]",
                "mov {p}, qword ptr fs:[{p}]",
                p = out(reg) p,
                options(nostack, readonly, preserves_flags)
            );
        }
        p
    }

    /// Sets the calling thread's slot.
    #[inline(always)]
    pub fn store(p: *mut u8) {
        // SAFETY: writes the calling thread's copy of the slot (see `load`).
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + __tessera_tls_slot_v1@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {p}",
                t = out(reg) _,
                p = in(reg) p,
                options(nostack, preserves_flags)
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use core::cell::Cell;

    std::thread_local! {
        static SLOT: Cell<*mut u8> = const { Cell::new(core::ptr::null_mut()) };
    }

    /// The calling thread's slot (null until stored).
    #[inline(always)]
    pub fn load() -> *mut u8 {
        SLOT.with(Cell::get)
    }

    /// Sets the calling thread's slot.
    #[inline(always)]
    pub fn store(p: *mut u8) {
        SLOT.with(|s| s.set(p))
    }
}

pub use imp::{load, store};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_has_its_own_slot() {
        let mine = 0x1000 as *mut u8;
        store(mine);
        let other = std::thread::spawn(|| {
            let before = load();
            store(0x2000 as *mut u8);
            (before, load())
        })
        .join()
        .unwrap();
        assert_eq!(other, (core::ptr::null_mut(), 0x2000 as *mut u8));
        assert_eq!(load(), mine);
        store(core::ptr::null_mut());
    }
}
