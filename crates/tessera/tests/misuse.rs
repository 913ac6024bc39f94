//! Detected misuse: each scenario runs in a child process (this binary,
//! re-executed on the ignored test `child`), which must die by SIGABRT with
//! the expected one-line message naming the pointer. A scenario that goes
//! unnoticed makes the child exit normally, and its test fails.

use std::process::Command;
use tessera::{global, Heap};

const SCENARIO: &str = "TESSERA_MISUSE_SCENARIO";

#[repr(align(16))]
struct Aligned([u8; 64]);
static GLOBAL_BYTES: Aligned = Aligned([0; 64]);

/// Frees 300 blocks of `size` bytes through the thread cache, so that its
/// overflow flushes park some on the arena's quick list; returns the
/// payload addresses of the parked ones (from a snapshot).
fn park_some(size: usize) -> Vec<*mut u8> {
    let blocks: Vec<*mut u8> = (0..300).map(|_| global::malloc(size)).collect();
    for &b in &blocks {
        // SAFETY: each block is live and freed once.
        unsafe { global::free(b) };
    }
    let parked: Vec<*mut u8> = tessera::testing::global_chunks()
        .into_iter()
        .filter(|c| c.kind == tessera::inspect::ChunkKind::Parked)
        .map(|c| c.mem() as *mut u8)
        .filter(|p| blocks.contains(p))
        .collect();
    assert!(!parked.is_empty(), "no chunk was parked");
    parked
}

/// Commits one misuse. Returns only if the misuse went unnoticed.
fn commit(scenario: &str) {
    let mut h = Heap::new();
    // SAFETY: every scenario deliberately breaks the allocator contract;
    // that is the point: the allocator must stop the process.
    unsafe {
        match scenario {
            "double_free_small" => {
                let a = h.malloc(40);
                let _guard = h.malloc(16);
                h.free(a);
                h.free(a);
            }
            "double_free_tree" => {
                let a = h.malloc(1000);
                let _guard = h.malloc(16);
                h.free(a);
                h.free(a);
            }
            "double_free_merged" => {
                let a = h.malloc(100);
                let b = h.malloc(100);
                let _guard = h.malloc(16);
                h.free(a);
                h.free(b); // merges into a's chunk
                h.free(b);
            }
            "double_free_into_top" => {
                let a = h.malloc(100);
                h.free(a); // merges into top
                h.free(a);
            }
            "double_free_direct" => {
                let a = h.malloc(4 << 20);
                h.free(a);
                h.free(a);
            }
            "double_free_thread_cached" => {
                let a = global::malloc(64);
                global::free(a);
                global::free(a);
            }
            "double_free_flushed_small" => {
                // A cacheable chunk that is free in a small bin, not in any
                // cache: another thread freed it and exited, which flushed
                // its cache (its neighbours stay in use, so it is binned
                // whole, with a fresh head that carries no tag). The free
                // fast path must not take it and the slow path names the
                // double free.
                // (Blocks from the middle of 64: the cache refills in
                // batches, and the unused rest of a batch is flushed too.)
                let a = std::thread::spawn(|| {
                    let blocks: Vec<usize> = (0..64).map(|_| global::malloc(64) as usize).collect();
                    global::free(blocks[32] as *mut u8);
                    blocks[32]
                })
                .join()
                .unwrap() as *mut u8;
                global::free(a);
            }
            "double_free_parked" => {
                let parked = park_some(64);
                global::free(parked[0]);
            }
            "realloc_parked" => {
                let parked = park_some(64);
                global::realloc(parked[0], 100);
            }
            "realloc_thread_cached" => {
                let a = global::malloc(64);
                global::free(a);
                global::realloc(a, 100);
            }
            "parked_link_overwrite" => {
                // Write after free over the (mangled) links of parked
                // chunks; the refills that take them back must notice.
                for p in park_some(64) {
                    p.cast::<usize>().write(0x1234_5678);
                }
                for _ in 0..300 {
                    global::malloc(64);
                }
            }
            "parked_header_overwrite" => {
                // An overflow from the chunk before rewrites the head of
                // parked chunks (size 80 becomes 96).
                for p in park_some(64) {
                    let head = p.cast::<usize>().sub(1);
                    head.write(head.read() + 16);
                }
                for _ in 0..300 {
                    global::malloc(64);
                }
            }
            "double_free_medium_cached" => {
                // 5000 bytes: a medium class of the thread cache.
                let a = global::malloc(5000);
                global::free(a);
                global::free(a);
            }
            "double_free_global_small_bin" => {
                let a = global::malloc(5000);
                let _guard = global::malloc(5000);
                global::free(a);
                global::free(a);
            }
            "free_stack" => {
                let mut local = [0u64; 8];
                let p = local.as_mut_ptr().add(2).cast::<u8>();
                h.free(p);
            }
            "free_global" => {
                let p = GLOBAL_BYTES.0.as_ptr().add(16).cast_mut();
                global::free(p);
            }
            "free_interior" => {
                let a = h.malloc(200);
                a.write_bytes(b'A', 200);
                h.free(a.add(64));
            }
            "free_misaligned" => {
                let a = h.malloc(100);
                h.free(a.add(1));
            }
            "free_other_heap" => {
                let mut other = Heap::new();
                let a = other.malloc(100);
                h.free(a);
            }
            "free_destroyed_heap" => {
                let mut other = Heap::new();
                let a = other.malloc(100);
                drop(other);
                h.free(a);
            }
            "realloc_freed" => {
                let a = h.malloc(100);
                let _guard = h.malloc(16);
                h.free(a);
                h.realloc(a, 200);
            }
            "overflow_then_free_victim" => {
                let a = h.malloc(24);
                let b = h.malloc(24);
                let _guard = h.malloc(24);
                // 24 usable bytes; write 40: b's head is overwritten.
                a.write_bytes(0x41, 40);
                h.free(b);
            }
            "overflow_then_free_culprit" => {
                let a = h.malloc(24);
                let _b = h.malloc(24);
                let _guard = h.malloc(24);
                // Rewrite the low byte of b's head (just past a's 24 usable
                // bytes), as an off-by-one would: size 32 becomes 64.
                a.add(24).write(0x43);
                h.free(a);
            }
            "overflow_into_free_chunk" => {
                let a = h.malloc(24);
                let b = h.malloc(24);
                let _guard = h.malloc(24);
                h.free(b);
                a.write_bytes(0x42, 40);
                h.malloc(24); // reuses b's chunk
            }
            "corrupt_free_links" => {
                let a = h.malloc(100);
                let _g1 = h.malloc(16);
                let b = h.malloc(100);
                let _g2 = h.malloc(16);
                h.free(a);
                h.free(b);
                // Write after free over b's fd link.
                b.cast::<usize>().write(0x4141_4141_4140);
                h.malloc(100);
                h.malloc(100);
            }
            "use_after_free_debug" => {
                h.set_debug(2, 0);
                let a = h.malloc(300);
                let _guard = h.malloc(16);
                h.free(a);
                a.add(200).write(1);
                h.malloc(300);
            }
            "heap_check_debug_period" => {
                h.set_debug(2, 1);
                let a = h.malloc(100);
                let _b = h.malloc(100);
                // Flip b's PINUSE behind the allocator's back.
                let hb = a.add(112 - 16 + 8).cast::<usize>();
                hb.write(hb.read() ^ 1);
                h.malloc(10);
            }
            "tcache_link_overwrite" => {
                let a = global::malloc(48);
                let b = global::malloc(48);
                global::free(a);
                global::free(b);
                // Write after free over b's (mangled) link.
                b.cast::<usize>().write(0x1234_5678);
                global::malloc(48);
                global::malloc(48);
            }
            "overflow_into_cached_neighbour" | "overflow_into_cached_neighbour_pinuse" => {
                // In a fresh thread, three blocks from one refill of its
                // cache; one of them is followed in memory by a chunk that
                // is still cached. One byte past its end goes into that
                // chunk's head ('A' clears its CINUSE bit, 'b' its PINUSE
                // bit); freeing the block must say so.
                let byte = if scenario.ends_with("pinuse") {
                    b'b'
                } else {
                    b'A'
                };
                std::thread::spawn(move || {
                    let b: Vec<*mut u8> = (0..3).map(|_| global::malloc(24)).collect();
                    let x = *b
                        .iter()
                        .find(|&&x| !b.contains(&x.wrapping_add(32)))
                        .expect("a block whose successor is cached");
                    x.add(24).write(byte);
                    global::free(x);
                })
                .join()
                .unwrap();
            }
            "double_free_foreign" | "realloc_foreign_cached" => {
                // A block of the main thread's arena smaller than a cache
                // line, freed by a worker with an arena of its own: it sits
                // in the worker's foreign class (see `threads::tcache`), which the double-free scan
                // and realloc's check must search too.
                let a = global::malloc(24) as usize;
                let twice = scenario == "double_free_foreign";
                let scenario = scenario.to_string();
                std::thread::spawn(move || {
                    let own = global::malloc(24);
                    let a = a as *mut u8;
                    global::free(a);
                    if twice {
                        global::free(a);
                    } else {
                        global::realloc(a, 100);
                    }
                    // (Said here: the flush at this thread's exit would
                    // find the double free too late.)
                    println!("scenario {scenario} went unnoticed");
                    global::free(own);
                })
                .join()
                .unwrap();
            }
            other => panic!("unknown scenario {other}"),
        }
    }
}

#[test]
#[ignore = "run by the misuse tests in a child process"]
fn child() {
    if let Ok(s) = std::env::var(SCENARIO) {
        commit(&s);
        println!("scenario {s} went unnoticed");
    }
}

fn expect_abort(scenario: &str, message: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, scenario)
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Caught while the scenario ran, not by some later check at exit.
    assert!(
        !stdout.contains("went unnoticed"),
        "{scenario}: the misuse went unnoticed while it happened\nstderr: {stderr}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{scenario}: expected SIGABRT, got {:?}\nstdout: {}\nstderr: {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("tessera: "))
        .unwrap_or_else(|| panic!("{scenario}: no tessera line in stderr: {stderr}"));
    assert!(
        line.contains(message),
        "{scenario}: `{line}` lacks `{message}`"
    );
    assert!(
        line.contains(" at 0x"),
        "{scenario}: `{line}` names no pointer"
    );
}

macro_rules! misuse {
    ($($name:ident => $msg:expr;)*) => {$(
        #[test]
        fn $name() {
            expect_abort(stringify!($name), $msg);
        }
    )*};
}

misuse! {
    double_free_small => "double free";
    double_free_tree => "double free";
    double_free_merged => "double free";
    double_free_into_top => "double free";
    double_free_direct => "double free";
    double_free_thread_cached => "double free";
    double_free_flushed_small => "double free";
    double_free_medium_cached => "double free";
    double_free_parked => "double free";
    double_free_foreign => "double free";
    realloc_foreign_cached => "realloc of a freed pointer";
    realloc_parked => "realloc of a freed pointer";
    realloc_thread_cached => "realloc of a freed pointer";
    parked_link_overwrite => "corrupted free-list links";
    parked_header_overwrite => "corrupted chunk header";
    double_free_global_small_bin => "double free";
    free_stack => "no Tessera heap handed out";
    free_global => "no Tessera heap handed out";
    free_interior => "no Tessera heap handed out";
    free_misaligned => "misaligned";
    free_other_heap => "another heap";
    free_destroyed_heap => "no Tessera heap handed out";
    realloc_freed => "realloc of a freed pointer";
    overflow_then_free_victim => "corrupted chunk header";
    overflow_then_free_culprit => "corrupted chunk header";
    overflow_into_free_chunk => "corrupted chunk header";
    corrupt_free_links => "corrupted free-list links";
    use_after_free_debug => "use after free";
    heap_check_debug_period => "PINUSE";
    tcache_link_overwrite => "corrupted free-list links";
    overflow_into_cached_neighbour => "write past the end of the block";
    overflow_into_cached_neighbour_pinuse => "write past the end of the block";
}
