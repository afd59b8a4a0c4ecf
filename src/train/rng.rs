//! The seeded generator of the data pipeline (caption shuffling and dropout): SplitMix64.
//!
//! kohya draws from Python's global `random`; its exact sequence is not reproduced (it depends on everything
//! else the process drew). What is kept is the rule each draw serves: `random.random() < p` for dropouts and
//! a uniform shuffle (Fisher-Yates, as `random.shuffle`).

/// A small, fast, seedable generator (SplitMix64, Steele et al. 2014).
#[derive(Debug, Clone)]
pub struct TrainRng {
    state: u64,
}

impl TrainRng {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> TrainRng {
        TrainRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1) with 53 random bits (as Python's `random.random()`).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Shuffles in place: Fisher-Yates from the end, as Python's `random.shuffle`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_floats_in_range() {
        let mut a = TrainRng::new(42);
        let mut b = TrainRng::new(42);
        for _ in 0..1000 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!((0.0..1.0).contains(&x));
        }
        assert_ne!(TrainRng::new(1).next_u64(), TrainRng::new(2).next_u64());
    }

    #[test]
    fn shuffle_is_a_permutation_and_covers_positions() {
        let mut rng = TrainRng::new(7);
        let mut first_seen = [0usize; 5];
        for _ in 0..2000 {
            let mut items = [0, 1, 2, 3, 4];
            rng.shuffle(&mut items);
            let mut sorted = items;
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3, 4]);
            first_seen[items[0]] += 1;
        }
        // Each item comes first about 400 times out of 2000.
        assert!(
            first_seen.iter().all(|&n| (300..500).contains(&n)),
            "{first_seen:?}"
        );
    }
}
