//! A small deterministic generator (xorshift64*), so every run of a workload
//! makes the same calls in the same order whatever the allocator.

/// xorshift64* (Marsaglia's xorshift with a multiplicative output step).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        // Spread nearby seeds (thread 0, 1, 2, ...) apart with splitmix64's
        // finaliser, and keep the state non-zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (no division).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Log-uniform in `lo..hi` (`lo` a power of two, `hi = lo << k`): each
    /// power-of-two band is equally likely, uniform within the band. Small
    /// sizes are common, large ones rare, as in real programs.
    #[inline]
    pub fn log_size(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(lo.is_power_of_two() && hi.is_power_of_two() && hi > lo);
        let bands = (hi.trailing_zeros() - lo.trailing_zeros()) as usize;
        let base = lo << self.below(bands);
        base + self.below(base)
    }

    /// True with probability `num / den`.
    #[inline]
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut r = Rng::new(1);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..100_000 {
            let s = r.log_size(16, 65536);
            assert!((16..65536).contains(&s));
            seen_low |= s < 32;
            seen_high |= s >= 32768;
            assert!(r.below(10) < 10);
            let x = r.range(3, 5);
            assert!((3..=5).contains(&x));
        }
        assert!(seen_low && seen_high);
        assert_ne!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
    }
}
