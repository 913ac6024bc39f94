//! The tour's last chapter says what Tessera and dlmalloc do with its five
//! calls; these checks replay it into both (glibc's side is checked by the
//! CLI's tests, which can start the glibc child).

use tessera_compare::film::{differences, runs};
use tessera_compare::model::Kind;

#[test]
fn the_chapter_shows_what_its_text_says() {
    let t = tessera_viz::tour::compare_trace();
    assert_eq!(t.records.len(), 5, "five calls");
    let (runs, missing) = runs(&t, 5, None).unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(runs.len(), 2);
    for r in &runs {
        let at = |k: usize, off: usize| {
            let p = &r.pictures[k];
            p.chunks
                .iter()
                .find(|c| c.addr == p.base + off)
                .map(|c| (c.size, c.kind))
        };
        // x, y, z at +0, +0x70, +0xe0, 112 bytes each.
        for (k, off) in [(1, 0), (2, 0x70), (3, 0xe0)] {
            assert_eq!(at(k, off), Some((112, Kind::InUse)), "{:?} step {k}", r.who);
        }
        // free(x): small bin 14.
        assert_eq!(at(4, 0), Some((112, Kind::SmallBin(14))), "{:?}", r.who);
        // free(y): merged with x, 224 bytes in small bin 28.
        assert_eq!(at(5, 0), Some((224, Kind::SmallBin(28))), "{:?}", r.who);
        assert_eq!(at(5, 0xe0), Some((112, Kind::InUse)), "{:?}", r.who);
    }
    // Tessera and dlmalloc agree at every step.
    for k in 0..=5 {
        let (_, lines) = differences(&runs, k);
        assert!(lines.is_empty(), "step {k}: {lines:?}");
    }
}
