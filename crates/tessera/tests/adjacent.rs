//! Consecutive small mallocs lie next to each other, as in dlmalloc and
//! glibc: a refill carves its chunks side by side and hands them out in
//! ascending address order (a one-byte overflow of a block then reaches
//! the next block handed out, where the checks can see it, not a cached
//! chunk from the far end of a run). Its own test binary: no other test
//! has touched the arenas.

use tessera::global;

#[test]
fn three_mallocs_in_a_fresh_thread_are_adjacent_and_ascending() {
    std::thread::spawn(|| {
        for request in [24usize, 100, 1000] {
            let chunk = (request + 8 + 15) & !15;
            let p: Vec<usize> = (0..3).map(|_| global::malloc(request) as usize).collect();
            assert!(p.iter().all(|&x| x != 0));
            assert_eq!(p[1], p[0] + chunk, "request {request}: {p:x?}");
            assert_eq!(p[2], p[1] + chunk, "request {request}: {p:x?}");
            for &x in &p {
                // SAFETY: live blocks of the process allocator, freed once.
                unsafe { global::free(x as *mut u8) };
            }
        }
    })
    .join()
    .unwrap();
}
