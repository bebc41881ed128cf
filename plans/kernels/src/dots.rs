//! Many dot products of long rows at once, each in [`LANES`] fixed lanes.
//!
//! Value `p` of a pair of rows goes to lane `p mod 8`; each lane is a fused
//! running sum in order, and the caller adds the lanes in the tree of
//! [`crate::sum::add_lanes`]. The lanes are part of the definition, not of
//! the hardware: AVX2 holds them in one register, other CPUs in an array,
//! with the same bits. This is for reductions with few outputs and long
//! rows (the weight gradient of a convolution of few channels), where the
//! outputs are too few to split among threads and too few for a matrix
//! product's register tiles.

#[cfg(target_arch = "x86_64")]
use crate::isa::active;
pub use crate::sum::LANES;

/// Rows of `a` per register tile.
const TA: usize = 4;
/// Rows of `b` per register tile.
const TB: usize = 3;

/// How each row of one side lies in its slice: `count` segments of `len`
/// values, `stride` apart, read in order as one row (the rows of an image
/// inside a zero-padded copy of it, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub count: usize,
    pub len: usize,
    pub stride: usize,
}

impl Segments {
    /// A row of `len` contiguous values.
    pub fn row(len: usize) -> Segments {
        Segments {
            count: 1,
            len,
            stride: len,
        }
    }

    /// Values a row's slice must hold.
    fn span(&self) -> usize {
        match self.count {
            0 => 0,
            n => (n - 1) * self.stride + self.len,
        }
    }
}

/// `acc[i·b.len() + j][q mod 8] ← fma(a_i[q], b_j[q], …)` for every value
/// `q` of the rows (segment after segment), in order.
///
/// # Panics
/// When the two sides' rows differ in length, a row's slice is shorter than
/// its segments, several segments are not a whole number of lanes each, or
/// `acc` does not hold a lane set per pair (a caller's bug).
pub fn add_dots(a: &[&[f32]], sa: Segments, b: &[&[f32]], sb: Segments, acc: &mut [[f32; LANES]]) {
    assert!(
        sa.count == sb.count && sa.len == sb.len,
        "rows differ in length"
    );
    assert!(
        sa.count <= 1 || sa.len.is_multiple_of(LANES),
        "segments split a lane set"
    );
    assert!(a.iter().all(|r| r.len() >= sa.span()) && b.iter().all(|r| r.len() >= sb.span()));
    assert_eq!(acc.len(), a.len() * b.len(), "a lane set per pair");
    for i0 in (0..a.len()).step_by(TA) {
        for j0 in (0..b.len()).step_by(TB) {
            let (ta, tb) = (TA.min(a.len() - i0), TB.min(b.len() - j0));
            let mut tile = [[[0.0f32; LANES]; TB]; TA];
            for (i, lanes) in tile.iter_mut().enumerate().take(ta) {
                for (j, lane) in lanes.iter_mut().enumerate().take(tb) {
                    *lane = acc[(i0 + i) * b.len() + j0 + j];
                }
            }
            let pair = Pair {
                a: &a[i0..i0 + ta],
                sa,
                b: &b[j0..j0 + tb],
                sb,
            };
            tile_dots(pair, &mut tile);
            for (i, lanes) in tile.iter().enumerate().take(ta) {
                for (j, lane) in lanes.iter().enumerate().take(tb) {
                    acc[(i0 + i) * b.len() + j0 + j] = *lane;
                }
            }
        }
    }
}

/// The rows of one register tile and their layouts.
#[derive(Clone, Copy)]
struct Pair<'r, 'v> {
    a: &'r [&'v [f32]],
    sa: Segments,
    b: &'r [&'v [f32]],
    sb: Segments,
}

/// One register tile of up to `TA × TB` pairs.
fn tile_dots(pair: Pair<'_, '_>, tile: &mut [[[f32; LANES]; TB]; TA]) {
    #[cfg(target_arch = "x86_64")]
    if active().avx2() {
        // A partial tile repeats its first rows; their lanes are computed
        // and never read.
        let a: [&[f32]; TA] = std::array::from_fn(|i| pair.a[i.min(pair.a.len() - 1)]);
        let b: [&[f32]; TB] = std::array::from_fn(|j| pair.b[j.min(pair.b.len() - 1)]);
        let full = Pair {
            a: &a,
            b: &b,
            ..pair
        };
        // SAFETY: `isa::active` found AVX2 and FMA.
        return unsafe { avx2_4x3(full, tile) };
    }
    let (sa, sb) = (pair.sa, pair.sb);
    for s in 0..sa.count {
        for q in 0..sa.len {
            let lane = (s * sa.len + q) % LANES;
            for (ra, lanes) in pair.a.iter().zip(tile.iter_mut()) {
                let av = ra[s * sa.stride + q];
                for (rb, acc) in pair.b.iter().zip(lanes.iter_mut()) {
                    acc[lane] = av.mul_add(rb[s * sb.stride + q], acc[lane]);
                }
            }
        }
    }
}

/// [`tile_dots`] for a full tile on AVX2: twelve accumulators of 8 lanes.
///
/// # Safety
/// The CPU has AVX2 and FMA; the tile is full (`TA × TB` rows).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_4x3(pair: Pair<'_, '_>, tile: &mut [[[f32; LANES]; TB]; TA]) {
    use std::arch::x86_64::*;
    let (sa, sb) = (pair.sa, pair.sb);
    let full = sa.len / LANES * LANES;
    // SAFETY (whole body): every load reads 8 values at s·stride + p with
    // p + 8 ≤ full ≤ len, inside each row's span (checked by `add_dots`);
    // every tile lane set holds 8 values.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); TB]; TA];
        for (i, row) in acc.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(tile[i][j].as_ptr());
            }
        }
        let mut ra: [*const f32; TA] = std::array::from_fn(|i| pair.a[i].as_ptr());
        let mut rb: [*const f32; TB] = std::array::from_fn(|j| pair.b[j].as_ptr());
        for _ in 0..sa.count {
            for p in (0..full).step_by(LANES) {
                let bv: [__m256; TB] = std::array::from_fn(|j| _mm256_loadu_ps(rb[j].add(p)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_loadu_ps(ra[i].add(p));
                    for (v, &bj) in row.iter_mut().zip(&bv) {
                        *v = _mm256_fmadd_ps(av, bj, *v);
                    }
                }
            }
            // The next segment (past the slice after the last: never read).
            ra = ra.map(|r| r.wrapping_add(sa.stride));
            rb = rb.map(|r| r.wrapping_add(sb.stride));
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                _mm256_storeu_ps(tile[i][j].as_mut_ptr(), *v);
            }
        }
    }
    // One segment's last len mod 8 values (several segments have none),
    // into lanes 0.. in order.
    for q in full..sa.len {
        for (row_a, lanes) in pair.a.iter().zip(tile.iter_mut()) {
            for (row_b, acc) in pair.b.iter().zip(lanes.iter_mut()) {
                acc[q - full] = row_a[q].mul_add(row_b[q], acc[q - full]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::force_portable;

    fn row(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn segments_are_read_in_order_as_one_row() {
        // Rows of 3 segments of 8 values, 11 apart in `a`, contiguous in `b`.
        let (count, len, stride) = (3, 8, 11);
        let a = row(stride * 2 + len, 1);
        let b = row(count * len, 2);
        let joined: Vec<f32> = (0..count)
            .flat_map(|s| a[s * stride..s * stride + len].to_vec())
            .collect();
        for portable in [false, true] {
            force_portable(portable);
            let mut got = vec![[0.0f32; LANES]];
            let segments = Segments { count, len, stride };
            let contiguous = Segments {
                count,
                len,
                stride: len,
            };
            add_dots(&[&a], segments, &[&b], contiguous, &mut got);
            let mut want = vec![[0.0f32; LANES]];
            add_dots(
                &[&joined],
                Segments::row(count * len),
                &[&b],
                Segments::row(count * len),
                &mut want,
            );
            force_portable(false);
            assert_eq!(got, want, "portable {portable}");
        }
    }

    #[test]
    fn lanes_are_fused_running_sums_on_every_path() {
        for (na, nb, len) in [(4usize, 3usize, 64usize), (9, 7, 101), (1, 1, 5), (5, 2, 8)] {
            let a: Vec<Vec<f32>> = (0..na).map(|i| row(len, i as u32)).collect();
            let b: Vec<Vec<f32>> = (0..nb).map(|j| row(len, 100 + j as u32)).collect();
            let (ra, rb): (Vec<&[f32]>, Vec<&[f32]>) = (
                a.iter().map(|r| r.as_slice()).collect(),
                b.iter().map(|r| r.as_slice()).collect(),
            );
            let start: Vec<[f32; LANES]> = (0..na * nb)
                .map(|k| std::array::from_fn(|l| (k * 8 + l) as f32 * 0.01))
                .collect();
            let mut want = start.clone();
            for i in 0..na {
                for j in 0..nb {
                    for p in 0..len {
                        let lane = &mut want[i * nb + j][p % LANES];
                        *lane = a[i][p].mul_add(b[j][p], *lane);
                    }
                }
            }
            let bits =
                |v: &[[f32; LANES]]| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
            for portable in [false, true] {
                force_portable(portable);
                let mut got = start.clone();
                add_dots(&ra, Segments::row(len), &rb, Segments::row(len), &mut got);
                force_portable(false);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{na}×{nb}×{len}, portable {portable}"
                );
            }
        }
    }
}
