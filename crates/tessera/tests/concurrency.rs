//! The process allocator under threads: random malloc/free/realloc with
//! cross-thread frees and verified contents; fork while other threads
//! allocate and write to stdio. (Thread churn with bounded memory reads the
//! process-wide footprint, so it has a binary of its own: thread_churn.rs.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};
use tessera::global;

#[global_allocator]
static GLOBAL: tessera::Tessera = tessera::Tessera;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A block: address, size, and the byte it is filled with.
#[derive(Clone, Copy)]
struct Block(usize, usize, u8);
// SAFETY: a Block is just an owned allocation's address; it moves between
// threads with its ownership.
unsafe impl Send for Block {}

fn fill(b: Block) {
    // SAFETY: b.1 bytes are usable at b.0.
    unsafe { std::ptr::write_bytes(b.0 as *mut u8, b.2, b.1) };
}

fn verify(b: Block) {
    // SAFETY: b.1 bytes are usable at b.0.
    let bytes = unsafe { std::slice::from_raw_parts(b.0 as *const u8, b.1) };
    if let Some(i) = bytes.iter().position(|&x| x != b.2) {
        panic!("block {:#x} (size {}) lost data at +{i}", b.0, b.1);
    }
}

fn size(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..=6 => rng.below(300) as usize,
        7 | 8 => rng.below(20_000) as usize,
        _ => rng.below(600_000) as usize,
    }
}

#[test]
fn threads_with_cross_thread_frees_keep_every_block_intact() {
    const THREADS: usize = 4;
    let deadline = Instant::now() + Duration::from_millis(2500);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
    let freed = Arc::new(AtomicUsize::new(0));
    let allocated = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next_tx = txs[(t + 1) % THREADS].clone();
            let (freed, allocated) = (freed.clone(), allocated.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x1234_5678 + t as u64 * 7919);
                let mut mine: Vec<Block> = Vec::new();
                let mut ops = 0u64;
                while Instant::now() < deadline || ops < 20_000 {
                    ops += 1;
                    // Blocks handed over by the previous thread: verify, free.
                    while let Ok(b) = rx.try_recv() {
                        verify(b);
                        // SAFETY: ownership came with the message.
                        unsafe { global::free(b.0 as *mut u8) };
                        freed.fetch_add(1, Ordering::Relaxed);
                    }
                    match rng.below(10) {
                        0..=3 => {
                            let n = size(&mut rng);
                            let p = global::malloc(n);
                            assert!(!p.is_null());
                            let b = Block(p as usize, n, rng.next() as u8);
                            fill(b);
                            mine.push(b);
                            allocated.fetch_add(1, Ordering::Relaxed);
                        }
                        4 | 5 if !mine.is_empty() => {
                            let b = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            verify(b);
                            // SAFETY: owned block.
                            unsafe { global::free(b.0 as *mut u8) };
                            freed.fetch_add(1, Ordering::Relaxed);
                        }
                        6 if !mine.is_empty() => {
                            let b = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            verify(b);
                            next_tx.send(b).unwrap();
                        }
                        7 if !mine.is_empty() => {
                            let i = rng.below(mine.len() as u64) as usize;
                            let b = mine[i];
                            verify(b);
                            let n = size(&mut rng) + 1;
                            // SAFETY: owned block.
                            let p = unsafe { global::realloc(b.0 as *mut u8, n) };
                            assert!(!p.is_null());
                            let kept = Block(p as usize, b.1.min(n), b.2);
                            verify(kept);
                            let nb = Block(p as usize, n, b.2.wrapping_add(1));
                            fill(nb);
                            mine[i] = nb;
                        }
                        8 => {
                            let n = rng.below(5000) as usize;
                            let p = global::calloc(1, n);
                            // SAFETY: n bytes usable.
                            assert!(unsafe { std::slice::from_raw_parts(p, n) }
                                .iter()
                                .all(|&x| x == 0));
                            let b = Block(p as usize, n, 0);
                            mine.push(b);
                            allocated.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            let align = 1usize << (4 + rng.below(10));
                            let n = rng.below(3000) as usize;
                            let p = global::memalign(align, n);
                            assert_eq!(p as usize % align, 0);
                            let b = Block(p as usize, n, 0x5A);
                            fill(b);
                            mine.push(b);
                            allocated.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    while mine.len() > 400 {
                        let b = mine.swap_remove(0);
                        verify(b);
                        // SAFETY: owned block.
                        unsafe { global::free(b.0 as *mut u8) };
                        freed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(next_tx);
                (mine, rx)
            })
        })
        .collect();
    drop(txs);
    // Join every thread before draining any channel: a thread still
    // running may send to a finished one's receiver, which must stay alive.
    let finished: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut leftovers = Vec::new();
    for (mine, rx) in finished {
        leftovers.extend(mine);
        leftovers.extend(rx.try_iter());
    }
    for b in leftovers {
        verify(b);
        // SAFETY: owned block.
        unsafe { global::free(b.0 as *mut u8) };
        freed.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(
        freed.load(Ordering::Relaxed),
        allocated.load(Ordering::Relaxed),
        "every block accounted for"
    );
    global::flush_thread_cache();
    global::check().expect("every arena consistent after the storm");
}

/// Blocks under a cache line handed around a ring of threads, most of
/// them freed by a thread other than their allocator: the thread caches'
/// foreign classes (held back, adopted as streams, flushed at exit) under
/// load, every block's contents verified and every arena checked at the
/// end.
#[test]
fn small_blocks_handed_around_a_ring_stay_intact() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 40_000;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next_tx = txs[(t + 1) % THREADS].clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9 + t as u64 * 104_729);
                let mut mine: Vec<Block> = Vec::new();
                let mut freed = 0usize;
                for _ in 0..ROUNDS {
                    while let Ok(b) = rx.try_recv() {
                        verify(b);
                        if rng.below(4) == 0 {
                            // Some stay a while, and are freed later.
                            mine.push(b);
                        } else {
                            // SAFETY: ownership came with the message.
                            unsafe { global::free(b.0 as *mut u8) };
                            freed += 1;
                        }
                    }
                    // 0..=40 bytes: the 32- and 48-byte chunks.
                    let n = rng.below(41) as usize;
                    let p = global::malloc(n);
                    assert!(!p.is_null());
                    let b = Block(p as usize, n, rng.next() as u8);
                    fill(b);
                    if rng.below(3) == 0 {
                        mine.push(b);
                    } else {
                        next_tx.send(b).unwrap();
                    }
                    while mine.len() > 200 {
                        let b = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        verify(b);
                        // SAFETY: owned block.
                        unsafe { global::free(b.0 as *mut u8) };
                        freed += 1;
                    }
                }
                // Then everything the thread before sends until it is done
                // (its sender dropped, also if it panics), so that how the
                // threads were scheduled does not decide how many blocks
                // they free.
                drop(next_tx);
                for b in rx.iter() {
                    verify(b);
                    // SAFETY: ownership came with the message.
                    unsafe { global::free(b.0 as *mut u8) };
                    freed += 1;
                }
                (mine, rx, freed)
            })
        })
        .collect();
    drop(txs);
    let finished: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut freed_by_threads = 0;
    let mut leftovers = Vec::new();
    for (mine, rx, freed) in finished {
        freed_by_threads += freed;
        leftovers.extend(mine);
        leftovers.extend(rx.try_iter());
    }
    assert!(
        freed_by_threads > THREADS * ROUNDS / 2,
        "most blocks were freed by the threads: {freed_by_threads}"
    );
    assert_eq!(freed_by_threads + leftovers.len(), THREADS * ROUNDS);
    for b in leftovers {
        verify(b);
        // SAFETY: owned block.
        unsafe { global::free(b.0 as *mut u8) };
    }
    global::flush_thread_cache();
    global::check().expect("every arena consistent after the ring");
}

#[test]
fn fork_while_other_threads_allocate_and_print() {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (stop, barrier) = (stop.clone(), barrier.clone());
            std::thread::spawn(move || {
                // SAFETY: opening /dev/null for writing through glibc stdio.
                let f = unsafe { libc::fopen(c"/dev/null".as_ptr(), c"w".as_ptr()) };
                assert!(!f.is_null());
                let mut rng = Rng(99 + t);
                let mut keep = Vec::new();
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    let n = size(&mut rng);
                    keep.push(vec![t as u8; n]);
                    if keep.len() > 100 {
                        keep.drain(..50);
                    }
                    // SAFETY: a valid FILE and format string.
                    unsafe { libc::fprintf(f, c"%d %s\n".as_ptr(), n as i32, c"line".as_ptr()) };
                }
                // SAFETY: f is open.
                unsafe { libc::fclose(f) };
            })
        })
        .collect();
    barrier.wait();
    for round in 0..40 {
        // SAFETY: the child only allocates, frees and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut v: Vec<Vec<u8>> = Vec::new();
            for i in 0..2000 {
                v.push(vec![i as u8; i % 3000]);
            }
            let ok = v
                .iter()
                .enumerate()
                .all(|(i, x)| x.len() == i % 3000 && x.iter().all(|&b| b == i as u8));
            drop(v);
            let big = global::malloc(5 << 20);
            let code = if ok && !big.is_null() && global::check().is_ok() {
                0
            } else {
                3
            };
            // SAFETY: leaving the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: killing our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("round {round}: the child hung (deadlock after fork)");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "round {round}: child status {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    global::check().unwrap();
}
