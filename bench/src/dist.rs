//! Which account a generated command touches: uniform over the accounts, or
//! zipfian (rank 1 hottest) with exponent `s`, sampled from a precomputed
//! cumulative table by binary search. Floats are fine here: this is the load
//! generator, never the engine.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// Most accounts a distribution may cover (bounds the zipf table: 8 B each).
pub const MAX_ACCOUNTS: u64 = 10_000_000;

/// How account ranks are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Every account equally likely.
    Uniform,
    /// Zipf with exponent `s` (> 0): rank `k` has weight `1 / k^s`.
    Zipf(f64),
}

impl FromStr for Distribution {
    type Err = String;

    /// `uniform`, `zipf` (s = 1) or `zipf:<s>` with `0 < s <= 5`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().to_ascii_lowercase();
        if text == "uniform" {
            return Ok(Distribution::Uniform);
        }
        if text == "zipf" {
            return Ok(Distribution::Zipf(1.0));
        }
        let Some(s) = text.strip_prefix("zipf:") else {
            return Err(format!(
                "unknown distribution {text:?}: use uniform, zipf or zipf:<s>"
            ));
        };
        match s.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 5.0 => Ok(Distribution::Zipf(s)),
            _ => Err(format!("zipf exponent {s:?} must be a number in (0, 5]")),
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Uniform => f.write_str("uniform"),
            Distribution::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Draws 0-based account ranks in `0..n`.
#[derive(Clone, Debug)]
pub struct Picker {
    n: u64,
    /// Zipf only: `cdf[k]` = P(rank <= k), non-decreasing, last = 1.
    cdf: Option<Vec<f64>>,
}

impl Picker {
    /// A picker over `n` ranks (`1..=MAX_ACCOUNTS`).
    pub fn new(distribution: Distribution, n: u64) -> Picker {
        assert!(
            (1..=MAX_ACCOUNTS).contains(&n),
            "picker over {n} accounts (1..={MAX_ACCOUNTS})"
        );
        let cdf = match distribution {
            Distribution::Uniform => None,
            Distribution::Zipf(s) => {
                let mut cdf = Vec::with_capacity(n as usize);
                let mut total = 0.0;
                for k in 1..=n {
                    total += 1.0 / (k as f64).powf(s);
                    cdf.push(total);
                }
                for c in &mut cdf {
                    *c /= total;
                }
                if let Some(last) = cdf.last_mut() {
                    *last = 1.0;
                }
                Some(cdf)
            }
        };
        Picker { n, cdf }
    }

    /// Number of ranks.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Always false: a picker covers at least one rank.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A rank in `0..n`.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match &self.cdf {
            None => rng.random_range(0..self.n),
            Some(cdf) => {
                let u: f64 = rng.random();
                let rank = cdf.partition_point(|&c| c < u) as u64;
                rank.min(self.n - 1)
            }
        }
    }

    /// A rank different from `other` (when there are at least two).
    pub fn pick_other<R: Rng + ?Sized>(&self, rng: &mut R, other: u64) -> u64 {
        if self.n < 2 {
            return other;
        }
        for _ in 0..8 {
            let rank = self.pick(rng);
            if rank != other {
                return rank;
            }
        }
        // A very hot rank 0 under a steep zipf: take a uniform neighbour.
        (other + 1 + rng.random_range(0..self.n - 1)) % self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn parses() {
        assert_eq!("uniform".parse(), Ok(Distribution::Uniform));
        assert_eq!("zipf".parse(), Ok(Distribution::Zipf(1.0)));
        assert_eq!("ZIPF:1.2".parse(), Ok(Distribution::Zipf(1.2)));
        assert!("zipf:0".parse::<Distribution>().is_err());
        assert!("zipf:x".parse::<Distribution>().is_err());
        assert!("normal".parse::<Distribution>().is_err());
    }

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let picker = Picker::new(Distribution::Zipf(1.0), 10_000);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut hits = vec![0u32; 10_000];
        for _ in 0..100_000 {
            hits[picker.pick(&mut rng) as usize] += 1;
        }
        // Rank 0 carries about 1/H(10000) ~ 10% of the draws.
        assert!(hits[0] > 8_000 && hits[0] < 12_000, "{}", hits[0]);
        assert!(hits[0] > hits[9] * 5);
        let uniform = Picker::new(Distribution::Uniform, 3);
        for _ in 0..100 {
            let a = uniform.pick(&mut rng);
            assert!(a < 3);
            assert_ne!(uniform.pick_other(&mut rng, a), a);
        }
    }
}
