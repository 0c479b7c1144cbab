//! The one integer hash the crate derives seeds with: a SplitMix64 step (Steele, Lea and
//! Flood 2014). Plain integers, so every layer may use it.

/// One SplitMix64 step: the golden-ratio increment, then the finaliser.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_outputs_of_the_reference_generator() {
        // SplitMix64 seeded with 0: its state advances by the increment before each output,
        // which is what one step on 0, 0 + γ, … gives.
        assert_eq!(super::splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(super::splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }
}
