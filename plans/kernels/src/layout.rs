//! Operations that move values rather than compute them: nearest-neighbour
//! upsampling (a U-Net's decoder) and its gradient, and joining two tensors
//! along a dimension (its skip connections) and taking one part back.
//!
//! They cost a pass over memory each, but in a plan they would also carry
//! both operands into the sandbox and the result back out; here they run
//! where the tensors are, split over planes or rows. The only arithmetic,
//! the upsampling gradient's block sums, adds each block's values in row
//! order from zero, whatever the split.

use crate::parallel::for_each_chunk_mut;

/// Output values one task writes, at least (whole planes or rows).
const CHUNK: usize = 1 << 14;

/// Nearest-neighbour upsampling of `planes` images of height × width by an
/// integer `factor` in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upsample {
    pub planes: usize,
    pub height: usize,
    pub width: usize,
    pub factor: usize,
}

impl Upsample {
    /// Values of the input and of the output, or `None` when the factor is
    /// 0 or a size overflows.
    pub fn sizes(&self) -> Option<(usize, usize)> {
        if self.factor == 0 {
            return None;
        }
        let plane = self.height.checked_mul(self.width)?;
        let input = self.planes.checked_mul(plane)?;
        let output = input.checked_mul(self.factor)?.checked_mul(self.factor)?;
        Some((input, output))
    }
}

/// Whole items of `item` values that make a task of about [`CHUNK`] values.
fn items_per_task(item: usize) -> usize {
    (CHUNK / item.max(1)).max(1) * item.max(1)
}

/// Each pixel of `x` repeated into a factor × factor block of `out`.
pub fn upsample_nearest2d(u: &Upsample, x: &[f32], out: &mut [f32]) {
    let (h, w, f) = (u.height, u.width, u.factor);
    let (ow, plane, out_plane) = (w * f, h * w, h * w * f * f);
    if out_plane == 0 {
        return;
    }
    for_each_chunk_mut(out, items_per_task(out_plane), |i, chunk| {
        let first = i * items_per_task(out_plane) / out_plane;
        for (p, dst) in chunk.chunks_exact_mut(out_plane).enumerate() {
            let src = &x[(first + p) * plane..][..plane];
            for (r, row) in dst.chunks_exact_mut(ow).enumerate() {
                let from = &src[(r / f) * w..][..w];
                for (block, &v) in row.chunks_exact_mut(f).zip(from) {
                    block.fill(v);
                }
            }
        }
    });
}

/// The input gradient of [`upsample_nearest2d`]: each pixel's block of the
/// output gradient `g` summed, rows in order and each row's values in order.
pub fn upsample_nearest2d_grad(u: &Upsample, g: &[f32], out: &mut [f32]) {
    let (h, w, f) = (u.height, u.width, u.factor);
    let (ow, plane, out_plane) = (w * f, h * w, h * w * f * f);
    if plane == 0 {
        return;
    }
    for_each_chunk_mut(out, items_per_task(plane), |i, chunk| {
        let first = i * items_per_task(plane) / plane;
        for (p, dst) in chunk.chunks_exact_mut(plane).enumerate() {
            let grad = &g[(first + p) * out_plane..][..out_plane];
            dst.fill(0.0);
            for (r, row) in grad.chunks_exact(ow).enumerate() {
                let sums = &mut dst[(r / f) * w..][..w];
                for (sum, block) in sums.iter_mut().zip(row.chunks_exact(f)) {
                    for &v in block {
                        *sum += v;
                    }
                }
            }
        }
    });
}

/// `a` `[outer, left]` and `b` `[outer, right]` joined row by row into
/// `out` `[outer, left + right]` (`torch.cat` along a dimension, `outer`
/// the product of the extents before it).
pub fn cat(outer: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    if outer == 0 {
        return;
    }
    let (left, right) = (a.len() / outer, b.len() / outer);
    let row = left + right;
    if row == 0 {
        return;
    }
    for_each_chunk_mut(out, items_per_task(row), |i, chunk| {
        let first = i * items_per_task(row) / row;
        for (o, dst) in chunk.chunks_exact_mut(row).enumerate() {
            let o = first + o;
            dst[..left].copy_from_slice(&a[o * left..][..left]);
            dst[left..].copy_from_slice(&b[o * right..][..right]);
        }
    });
}

/// Columns `start..start + len` of `x` `[outer, inner]` into `out`
/// `[outer, len]`: the gradient [`cat`] passes back to one of its inputs.
pub fn cat_part(outer: usize, inner: usize, start: usize, x: &[f32], out: &mut [f32]) {
    let len = out.len().checked_div(outer).unwrap_or(0);
    if len == 0 {
        return;
    }
    for_each_chunk_mut(out, items_per_task(len), |i, chunk| {
        let first = i * items_per_task(len) / len;
        for (o, dst) in chunk.chunks_exact_mut(len).enumerate() {
            dst.copy_from_slice(&x[(first + o) * inner + start..][..len]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37) % 101) as f32 * 0.1 - 5.0)
            .collect()
    }

    /// Upsampling repeats each pixel into its block; the gradient sums each
    /// block in row order from zero, as a plain loop over the output does.
    #[test]
    fn upsampling_and_its_gradient_match_plain_loops() {
        for (planes, h, w, f) in [(3, 2, 3, 2), (40, 5, 7, 3), (2, 64, 64, 2)] {
            let u = Upsample {
                planes,
                height: h,
                width: w,
                factor: f,
            };
            let (input, output) = u.sizes().unwrap();
            let x = values(input);
            let mut y = vec![f32::NAN; output];
            upsample_nearest2d(&u, &x, &mut y);
            let (oh, ow) = (h * f, w * f);
            let mut want = vec![0.0f32; input];
            for p in 0..planes {
                for r in 0..oh {
                    for c in 0..ow {
                        let at = p * oh * ow + r * ow + c;
                        assert_eq!(y[at], x[p * h * w + (r / f) * w + c / f]);
                        want[p * h * w + (r / f) * w + c / f] += y[at] * 0.5;
                    }
                }
            }
            let g: Vec<f32> = y.iter().map(|v| v * 0.5).collect();
            let mut dx = vec![f32::NAN; input];
            upsample_nearest2d_grad(&u, &g, &mut dx);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&dx), bits(&want));
        }
        let zero = Upsample {
            planes: 1,
            height: 1,
            width: 1,
            factor: 0,
        };
        assert_eq!(zero.sizes(), None);
    }

    #[test]
    fn cat_joins_rows_and_cat_part_takes_them_back() {
        for (outer, left, right) in [(2, 3, 1), (1000, 24, 40), (3, 0, 5)] {
            let (a, b) = (
                values(outer * left),
                values(outer * right + 7)[7..].to_vec(),
            );
            let mut out = vec![f32::NAN; outer * (left + right)];
            cat(outer, &a, &b, &mut out);
            for o in 0..outer {
                let row = &out[o * (left + right)..][..left + right];
                assert_eq!(&row[..left], &a[o * left..][..left]);
                assert_eq!(&row[left..], &b[o * right..][..right]);
            }
            let (mut ga, mut gb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
            cat_part(outer, left + right, 0, &out, &mut ga);
            cat_part(outer, left + right, left, &out, &mut gb);
            assert_eq!((ga, gb), (a, b));
        }
    }
}
