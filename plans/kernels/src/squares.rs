//! Sums of squares in f64 — of a tensor (a gradient's share of the global
//! norm that `max_grad_norm` clips to) and of each row (DP-SGD's ghost
//! norms) — and how an f64 crosses the contract, which carries f32 only.
//!
//! The sum runs over fixed blocks of [`BLOCK`] values, each in eight
//! interleaved f64 lanes added in a fixed tree; the blocks' sums are then
//! added in order. The blocks are split over threads, never a block, so the
//! result is the same for any thread count and any CPU.

use crate::parallel::for_each_chunk_mut;

/// Values one block sums.
pub const BLOCK: usize = 1 << 15;

/// Lanes of a block's sum.
const LANES: usize = 8;

/// Σ v² of one block, in eight f64 lanes (value i in lane i mod 8), the
/// lanes added in a fixed tree.
fn block_squares(values: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for q in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(q) {
            *a += (v as f64) * (v as f64);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += (v as f64) * (v as f64);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Σ v² over `values`, in f64, in the fixed order above.
pub fn sum_of_squares(values: &[f32]) -> f64 {
    let blocks = values.len().div_ceil(BLOCK);
    let mut sums = vec![0.0f64; blocks];
    for_each_chunk_mut(&mut sums, 1, |b, s| {
        let end = ((b + 1) * BLOCK).min(values.len());
        s[0] = block_squares(&values[b * BLOCK..end]);
    });
    sums.iter().fold(0.0f64, |t, &s| t + s)
}

/// Σ v² of each row of `values` (rows of `width`), in f64 in index order,
/// each as four words ([`f64_to_words`]) in `out`: DP-SGD's ghost norms,
/// each sample's gradient norm from its rows alone. Rows are split over
/// threads.
pub fn row_squares(values: &[f32], width: usize, out: &mut [f32]) {
    const ROWS_PER_TASK: usize = 64;
    for_each_chunk_mut(out, 4 * ROWS_PER_TASK, |c, words| {
        for (r, slot) in words.chunks_exact_mut(4).enumerate() {
            let row = c * ROWS_PER_TASK + r;
            let v = &values[row * width..(row + 1) * width];
            let sum = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
            slot.copy_from_slice(&f64_to_words(sum));
        }
    });
}

/// An f64 as four f32 values, each a 16-bit piece of its bits (an integer
/// below 65,536, which every f32 holds exactly and no NaN rule touches).
pub fn f64_to_words(x: f64) -> [f32; 4] {
    let bits = x.to_bits();
    [48, 32, 16, 0].map(|shift| ((bits >> shift) & 0xffff) as f32)
}

/// The f64 [`f64_to_words`] wrote, or `None` when a word is not one of its
/// pieces.
pub fn words_to_f64(words: &[f32]) -> Option<f64> {
    let [a, b, c, d] = words else {
        return None;
    };
    let mut bits = 0u64;
    for &w in [a, b, c, d] {
        if !(0.0..65_536.0).contains(&w) || w.fract() != 0.0 {
            return None;
        }
        bits = (bits << 16) | w as u64;
    }
    Some(f64::from_bits(bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_f64_crosses_as_four_words_and_back() {
        for x in [
            0.0,
            -0.0,
            1.5,
            f64::MAX,
            f64::MIN_POSITIVE / 3.0,
            f64::INFINITY,
            1e-300,
        ] {
            assert_eq!(
                words_to_f64(&f64_to_words(x)).map(f64::to_bits),
                Some(x.to_bits())
            );
        }
        assert!(words_to_f64(&f64_to_words(f64::NAN)).unwrap().is_nan());
        assert_eq!(words_to_f64(&[1.0, 2.0, 3.0]), None);
        assert_eq!(words_to_f64(&[1.5, 0.0, 0.0, 0.0]), None);
        assert_eq!(words_to_f64(&[65_536.0, 0.0, 0.0, 0.0]), None);
    }

    #[test]
    fn each_row_crosses_its_own_sum() {
        let values: Vec<f32> = (0..600).map(|i| (i % 11) as f32 * 0.1 - 0.5).collect();
        let mut words = vec![f32::NAN; 4 * 200];
        row_squares(&values, 3, &mut words);
        for (r, w) in words.chunks_exact(4).enumerate() {
            let want: f64 = values[3 * r..3 * r + 3]
                .iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum();
            assert_eq!(words_to_f64(w), Some(want));
        }
    }

    #[test]
    fn squares_sum_exactly_where_f64_is_exact() {
        let values: Vec<f32> = (0..100_003).map(|i| (i % 7) as f32 - 3.0).collect();
        let want: f64 = values.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert_eq!(sum_of_squares(&values), want);
        assert_eq!(sum_of_squares(&[]), 0.0);
    }
}
