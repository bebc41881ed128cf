//! Sums along one dimension and their gradient, the copy back along it.
//!
//! A tensor is seen as `[outer, size, inner]` around the dimension reduced
//! (a sum of everything is `[1, n, 1]`). Each output element starts from
//! zero and adds its `size` terms in index order — the order the plan SDK
//! always used — so the split over threads (over output elements, never
//! over the terms) changes no bit.

use crate::parallel::for_each_chunk_mut;

/// Output elements one task sums.
const CHUNK: usize = 1 << 12;

/// A tensor as `[outer, size, inner]`, reduced or expanded over `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    /// The product of the extents before the dimension.
    pub outer: usize,
    /// The dimension's extent.
    pub size: usize,
    /// The product of the extents after it.
    pub inner: usize,
}

impl Axis {
    /// `(outer·size·inner, outer·inner)`: the lengths of the full and the
    /// reduced tensor, or `None` when they overflow.
    pub fn lens(&self) -> Option<(usize, usize)> {
        let reduced = self.outer.checked_mul(self.inner)?;
        Some((reduced.checked_mul(self.size)?, reduced))
    }
}

/// `out[o, i] = 0 + Σ_k x[o, k, i]`, k in order.
pub fn sum_axis(axis: &Axis, x: &[f32], out: &mut [f32]) {
    let Axis { size, inner, .. } = *axis;
    if inner == 0 {
        return;
    }
    for_each_chunk_mut(out, CHUNK, |c, chunk| {
        let start = c * CHUNK;
        let mut done = 0;
        while done < chunk.len() {
            // One run of consecutive outputs within a row of `inner`.
            let (o, i) = ((start + done) / inner, (start + done) % inner);
            let run = (inner - i).min(chunk.len() - done);
            let seg = &mut chunk[done..done + run];
            seg.fill(0.0);
            for k in 0..size {
                let from = (o * size + k) * inner + i;
                for (s, &v) in seg.iter_mut().zip(&x[from..from + run]) {
                    *s += v;
                }
            }
            done += run;
        }
    });
}

/// `out[o, k, i] = g[o, i]`: the gradient of [`sum_axis`].
pub fn expand_axis(axis: &Axis, g: &[f32], out: &mut [f32]) {
    let Axis { size, inner, .. } = *axis;
    if inner == 0 || size == 0 {
        return;
    }
    let row = inner.max(1);
    let rows_per_task = (CHUNK / row).max(1);
    for_each_chunk_mut(out, rows_per_task * row, |c, chunk| {
        for (r, dst) in chunk.chunks_exact_mut(row).enumerate() {
            let o = (c * rows_per_task + r) / size;
            dst.copy_from_slice(&g[o * inner..(o + 1) * inner]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(axis: &Axis, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; axis.outer * axis.inner];
        for o in 0..axis.outer {
            for i in 0..axis.inner {
                let mut s = 0.0f32;
                for k in 0..axis.size {
                    s += x[(o * axis.size + k) * axis.inner + i];
                }
                out[o * axis.inner + i] = s;
            }
        }
        out
    }

    #[test]
    fn sums_match_the_index_order_whatever_the_shape() {
        for (outer, size, inner) in [
            (1, 9000, 1),
            (3, 7, 5000),
            (5000, 3, 1),
            (2, 1, 9),
            (4, 0, 3),
        ] {
            let axis = Axis { outer, size, inner };
            let (full, reduced) = axis.lens().unwrap();
            let x: Vec<f32> = (0..full)
                .map(|i| ((i * 7919) % 1000) as f32 / 37.0)
                .collect();
            let mut out = vec![f32::NAN; reduced];
            sum_axis(&axis, &x, &mut out);
            let want = naive(&axis, &x);
            assert!(
                out.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{axis:?}"
            );
            let mut back = vec![f32::NAN; full];
            expand_axis(&axis, &out, &mut back);
            for o in 0..outer {
                for k in 0..size {
                    for i in 0..inner {
                        assert_eq!(back[(o * size + k) * inner + i], out[o * inner + i]);
                    }
                }
            }
        }
    }
}
