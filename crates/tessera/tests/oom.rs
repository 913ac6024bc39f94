//! Out of memory in the process allocator: requests past the footprint
//! limit return null (and the Rust runtime's `handle_alloc_error` reports
//! them), the heap stays consistent, and memory freed afterwards is reused.

use std::process::Command;
use std::sync::Mutex;
use tessera::global;

#[global_allocator]
static GLOBAL: tessera::Tessera = tessera::Tessera;

/// The footprint limit is process-wide: while one test holds it tight, a
/// sibling test's allocations (the harness runs tests on threads) would
/// fail, or move the footprint the test measures. Every test of this
/// binary holds this lock.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn requests_past_the_limit_fail_with_null_and_the_heap_recovers() {
    let _alone = alone();
    // The limit is process-wide: while it is tight, this test must not
    // allocate through Rust (the harness shares the allocator), so the
    // bookkeeping is sized up front and failures are reported after the
    // limit is lifted.
    let mut kept: Vec<usize> = Vec::with_capacity(10_000);
    let base = global::footprint();
    global::set_footprint_limit(base + (8 << 20));
    let big = global::malloc(64 << 20);
    while kept.len() < kept.capacity() {
        let p = global::malloc(100_000);
        if p.is_null() {
            break;
        }
        kept.push(p as usize);
    }
    let within = global::footprint() <= base + (8 << 20);
    let consistent = global::check().is_ok();
    global::set_footprint_limit(0);
    assert!(big.is_null(), "64 MiB past an 8 MiB allowance");
    assert!(kept.len() < kept.capacity(), "the limit never bit");
    assert!(within && consistent);
    global::set_footprint_limit(base + (8 << 20));
    // Freed memory is reused under the same limit.
    for &p in &kept[..10] {
        // SAFETY: live allocations, freed once.
        unsafe { global::free(p as *mut u8) };
    }
    let again = global::malloc(100_000);
    assert!(!again.is_null());
    kept.push(again as usize);
    for &p in &kept[10..] {
        // SAFETY: live allocations, freed once.
        unsafe { global::free(p as *mut u8) };
    }
    global::set_footprint_limit(0);
    global::check().unwrap();
}

#[test]
#[ignore = "run by rust_runtime_reports_allocation_failure in a child"]
fn child_exhausts_memory() {
    if std::env::var("TESSERA_OOM_CHILD").is_ok() {
        global::set_footprint_limit(global::footprint() + (1 << 20));
        let v: Vec<u8> = Vec::with_capacity(200 << 20);
        println!("allocated {} bytes past the limit", v.capacity());
    }
}

#[test]
fn rust_runtime_reports_allocation_failure() {
    let _alone = alone();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_exhausts_memory",
            "--ignored",
            "--nocapture",
        ])
        .env("TESSERA_OOM_CHILD", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains("memory allocation of 209715200 bytes failed"),
        "{stderr}"
    );
}
