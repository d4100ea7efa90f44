//! A tiny deterministic PRNG (SplitMix64), so that a seed fully determines
//! every generated flow on every platform and in every release of kopek.
//!
//! Not for cryptography. Written here rather than pulled from a crate so
//! that the stream can never change under us with a dependency update.

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, full period.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (multiply-shift; the bias is below 2^-32 for
    /// every bound this module uses). `bound == 0` yields 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`; `hi < lo` yields `lo`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `percent / 100`.
    pub fn percent(&mut self, percent: u8) -> bool {
        self.below(100) < u64::from(percent)
    }

    /// Index into a table of cumulative weights (strictly increasing, last
    /// = total). An empty table yields 0.
    pub fn pick_cumulative(&mut self, cumulative: &[u64]) -> usize {
        let Some(&total) = cumulative.last() else {
            return 0;
        };
        let x = self.below(total);
        cumulative.partition_point(|&c| c <= x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_first_outputs_for_seed_zero() {
        // Reference values of SplitMix64 seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn ranges_hold() {
        let mut r = SplitMix64::new(7);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let v = r.between(40, 1500);
            assert!((40..=1500).contains(&v));
        }
        assert_eq!(r.between(5, 5), 5);
        assert_eq!(r.between(6, 5), 6);
        assert_eq!(r.below(0), 0);
        let _ = r.between(0, u64::MAX);
    }

    #[test]
    fn cumulative_pick_respects_weights() {
        let mut r = SplitMix64::new(1);
        let cum = [10, 10, 40]; // weights 10, 0, 30
        let mut hits = [0u32; 3];
        for _ in 0..40_000 {
            hits[r.pick_cumulative(&cum)] += 1;
        }
        assert_eq!(hits[1], 0);
        assert!(hits[0] > 8_000 && hits[0] < 12_000, "{hits:?}");
    }
}
