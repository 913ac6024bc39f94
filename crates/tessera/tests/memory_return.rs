//! Memory goes back: after allocating and freeing hundreds of MiB, the
//! heap's footprint and the process RSS fall close to where they started.
//! (One test in its own binary, so no other test disturbs the RSS.)

use tessera::Heap;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn footprint_and_rss_drop_after_freeing_hundreds_of_mib() {
    let mut h = Heap::new();
    let fp0 = h.footprint();
    let rss0 = rss_bytes();
    let mut ptrs = Vec::new();
    let mut total = 0usize;
    let mut size = 1000usize;
    while total < 400 << 20 {
        let p = h.malloc(size);
        assert!(!p.is_null());
        // Touch every page so it is resident.
        // SAFETY: `size` bytes are usable.
        unsafe { p.write_bytes(1, size) };
        ptrs.push(p);
        total += size;
        size = if size > 200_000 { 1000 } else { size * 3 / 2 };
    }
    let fp_peak = h.footprint();
    let rss_peak = rss_bytes();
    assert!(fp_peak > 400 << 20);
    assert!(rss_peak > rss0 + (300 << 20), "rss {rss0} -> {rss_peak}");
    // Free in an interleaved order, so coalescing has work to do.
    for i in (0..ptrs.len()).step_by(2).chain((1..ptrs.len()).step_by(2)) {
        // SAFETY: each pointer is live and freed once.
        unsafe { h.free(ptrs[i]) };
    }
    h.check().unwrap();
    let fp_end = h.footprint();
    let rss_end = rss_bytes();
    println!(
        "footprint {} -> {} -> {} KiB; rss {} -> {} -> {} KiB",
        fp0 >> 10,
        fp_peak >> 10,
        fp_end >> 10,
        rss0 >> 10,
        rss_peak >> 10,
        rss_end >> 10
    );
    assert!(fp_end < fp0 + (4 << 20), "footprint back near the start");
    assert!(rss_end < rss0 + (16 << 20), "RSS back near the start");
}
