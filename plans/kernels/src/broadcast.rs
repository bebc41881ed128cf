//! `add`, `sub`, `mul` and `div` of two tensors with NumPy broadcasting,
//! and each operand's gradient.
//!
//! Shapes are aligned on the right and simplified before anything runs:
//! dimensions of extent one in the output are dropped and neighbours that
//! both operands read the same way are merged, which keeps the row-major
//! order of every element (so every sum keeps its order) and leaves at
//! most [`MAX_RANK`] dimensions for any shape a model uses. The forward
//! pass is split over output rows; a gradient sums, for each element of its
//! operand, the terms in output order from zero — one pass, on one thread,
//! in the order the plan SDK always used.

use crate::parallel::for_each_chunk_mut;

/// Dimensions left after simplification that the kernels accept.
pub const MAX_RANK: usize = 6;

/// Output elements one task computes.
const CHUNK: usize = 1 << 14;

/// The arithmetic of a binary operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

impl Binary {
    /// A short name, as in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
        }
    }

    #[inline(always)]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
        }
    }

    /// ∂(a op b)/∂a, or ∂/∂b when `second`.
    #[inline(always)]
    fn partial(self, a: f32, b: f32, second: bool) -> f32 {
        match (self, second) {
            (Binary::Add, _) | (Binary::Sub, false) => 1.0,
            (Binary::Sub, true) => -1.0,
            (Binary::Mul, false) => b,
            (Binary::Mul, true) => a,
            (Binary::Div, false) => 1.0 / b,
            (Binary::Div, true) => -a / (b * b),
        }
    }
}

/// Two operands' shapes, simplified: `rank` dimensions, each operand's
/// extent 1 where it is stretched over the output's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broadcast {
    rank: usize,
    out: [usize; MAX_RANK],
    a: [usize; MAX_RANK],
    b: [usize; MAX_RANK],
}

impl Broadcast {
    /// The simplified pair of `a` and `b` (extents aligned on the right), or
    /// why they do not broadcast.
    pub fn new(a: &[usize], b: &[usize]) -> Result<Broadcast, String> {
        let n = a.len().max(b.len());
        let at = |s: &[usize], i: usize| {
            let offset = n - s.len();
            if i < offset { 1 } else { s[i - offset] }
        };
        let mut dims: Vec<[usize; 3]> = Vec::new();
        for i in 0..n {
            let (x, y) = (at(a, i), at(b, i));
            let out = match (x, y) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => {
                    return Err(format!(
                        "shapes {a:?} and {b:?} do not broadcast (dimension {i}: {x} against {y})"
                    ));
                }
            };
            if out == 1 {
                continue;
            }
            let dim = [out, x, y];
            match dims.last_mut() {
                // Same reading by both operands: one longer dimension.
                Some(last) if (last[1] == 1) == (x == 1) && (last[2] == 1) == (y == 1) => {
                    for (l, d) in last.iter_mut().zip(dim) {
                        *l = l.checked_mul(d).ok_or("the sizes overflow")?;
                    }
                }
                _ => dims.push(dim),
            }
        }
        if dims.len() > MAX_RANK {
            return Err(format!(
                "shapes {a:?} and {b:?} broadcast over {} alternating dimensions; at most {MAX_RANK} are supported (reshape them first)",
                dims.len()
            ));
        }
        let mut s = Broadcast {
            rank: dims.len(),
            out: [1; MAX_RANK],
            a: [1; MAX_RANK],
            b: [1; MAX_RANK],
        };
        for (i, [o, x, y]) in dims.into_iter().enumerate() {
            (s.out[i], s.a[i], s.b[i]) = (o, x, y);
        }
        s.lens().ok_or("the sizes overflow")?;
        Ok(s)
    }

    /// The simplified extents of `a` and `b` (which simplify to
    /// themselves), as a plan passes them to the host.
    pub fn operand_shapes(&self) -> (&[usize], &[usize]) {
        (&self.a[..self.rank], &self.b[..self.rank])
    }

    /// `(a, b, output)` lengths, or `None` when they overflow.
    pub fn lens(&self) -> Option<(usize, usize, usize)> {
        let product = |s: &[usize]| s.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
        let r = self.rank;
        Some((
            product(&self.a[..r])?,
            product(&self.b[..r])?,
            product(&self.out[..r])?,
        ))
    }

    /// Row-major strides of an operand of extents `s`, 0 where stretched.
    fn strides(&self, s: &[usize; MAX_RANK]) -> [usize; MAX_RANK] {
        let mut strides = [0; MAX_RANK];
        let mut stride = 1;
        for i in (0..self.rank).rev() {
            if s[i] != 1 {
                strides[i] = stride;
            }
            stride *= s[i];
        }
        strides
    }

    /// Call `f(o, ia, ib, len, sa, sb)` for each run of `len` consecutive
    /// output elements from `o` (within one row of the last dimension, and
    /// within `range`), the operands read from `ia` and `ib` with steps
    /// `sa` and `sb` (0 or 1), in output order.
    fn runs(
        &self,
        range: std::ops::Range<usize>,
        mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
    ) {
        let (sa, sb) = (self.strides(&self.a), self.strides(&self.b));
        if self.rank == 0 {
            if range.contains(&0) {
                f(0, 0, 0, 1, 0, 0);
            }
            return;
        }
        let last = self.rank - 1;
        let row = self.out[last];
        let mut o = range.start;
        while o < range.end {
            let (mut rest, mut ia, mut ib) = (o / row, 0, 0);
            for d in (0..last).rev() {
                let i = rest % self.out[d];
                rest /= self.out[d];
                ia += i * sa[d];
                ib += i * sb[d];
            }
            let k = o % row;
            let len = (row - k).min(range.end - o);
            f(
                o,
                ia + k * sa[last],
                ib + k * sb[last],
                len,
                sa[last],
                sb[last],
            );
            o += len;
        }
    }
}

/// `out = a op b`, broadcast.
pub fn binary(op: Binary, shapes: &Broadcast, a: &[f32], b: &[f32], out: &mut [f32]) {
    for_each_chunk_mut(out, CHUNK, |c, chunk| {
        let start = c * CHUNK;
        shapes.runs(start..start + chunk.len(), |o, ia, ib, len, sa, sb| {
            let dst = &mut chunk[o - start..o - start + len];
            match (sa, sb) {
                (1, 1) => {
                    for ((d, &x), &y) in dst.iter_mut().zip(&a[ia..]).zip(&b[ib..]) {
                        *d = op.apply(x, y);
                    }
                }
                (1, _) => {
                    let y = b[ib];
                    for (d, &x) in dst.iter_mut().zip(&a[ia..]) {
                        *d = op.apply(x, y);
                    }
                }
                (_, 1) => {
                    let x = a[ia];
                    for (d, &y) in dst.iter_mut().zip(&b[ib..]) {
                        *d = op.apply(x, y);
                    }
                }
                _ => dst.fill(op.apply(a[ia], b[ib])),
            }
        });
    });
}

/// Which operand's gradient [`binary_grad`] gives, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operand {
    /// `b`'s rather than `a`'s.
    pub second: bool,
    /// 1: summed over everything; B: each of the B samples' own (the
    /// output's first dimension being the batch), `[B, operand]`.
    pub samples: usize,
}

/// The gradient of operand `which` of `a op b` from the output gradient
/// `g`: per element, `Σ g·∂(a op b)/∂operand` over the outputs it took part
/// in, from zero, in output order.
pub fn binary_grad(
    op: Binary,
    shapes: &Broadcast,
    which: Operand,
    a: &[f32],
    b: &[f32],
    g: &[f32],
    acc: &mut [f32],
) {
    acc.fill(0.0);
    let Some((la, lb, lo)) = shapes.lens() else {
        return;
    };
    let size = if which.second { lb } else { la };
    let per_sample = lo / which.samples.max(1);
    shapes.runs(0..lo, |o, ia, ib, len, sa, sb| {
        let base = o.checked_div(per_sample).map_or(0, |sample| sample * size);
        for k in 0..len {
            let (i, j) = (ia + k * sa, ib + k * sb);
            let at = base + if which.second { j } else { i };
            acc[at] += g[o + k] * op.partial(a[i], b[j], which.second);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_simplify_without_changing_the_order() {
        let s = Broadcast::new(&[8, 3, 4, 5], &[3, 1, 1]).unwrap();
        assert_eq!(s.rank, 3);
        assert_eq!(&s.out[..3], &[8, 3, 20]);
        assert_eq!(&s.a[..3], &[8, 3, 20]);
        assert_eq!(&s.b[..3], &[1, 3, 1]);
        assert_eq!(s.lens(), Some((480, 3, 480)));
        let (a, b) = s.operand_shapes();
        assert_eq!(Broadcast::new(a, b), Ok(s));
        let same = Broadcast::new(&[2, 3], &[2, 3]).unwrap();
        assert_eq!((same.rank, same.out[0]), (1, 6));
        assert!(
            Broadcast::new(&[2, 3], &[3, 2])
                .unwrap_err()
                .contains("do not broadcast")
        );
        let alternating = Broadcast::new(&[2, 1, 2, 1, 2, 1, 2], &[1, 2, 1, 2, 1, 2, 1]);
        assert!(alternating.unwrap_err().contains("at most 6"));
        assert!(Broadcast::new(&[usize::MAX, 2], &[1]).is_err());
    }

    /// The plan SDK's former walk over every output element.
    fn naive(a_shape: &[usize], b_shape: &[usize]) -> Vec<(usize, usize, usize)> {
        let n = a_shape.len().max(b_shape.len());
        let pad = |s: &[usize]| [vec![1; n - s.len()], s.to_vec()].concat();
        let (pa, pb) = (pad(a_shape), pad(b_shape));
        let out: Vec<usize> = pa.iter().zip(&pb).map(|(x, y)| *x.max(y)).collect();
        let total: usize = out.iter().product();
        let offset = |s: &[usize], idx: &[usize]| {
            s.iter()
                .zip(idx)
                .fold(0, |acc, (&d, &i)| acc * d + if d == 1 { 0 } else { i })
        };
        (0..total)
            .map(|o| {
                let mut rest = o;
                let mut idx = vec![0; n];
                for d in (0..n).rev() {
                    idx[d] = rest % out[d];
                    rest /= out[d];
                }
                (o, offset(&pa, &idx), offset(&pb, &idx))
            })
            .collect()
    }

    #[test]
    fn outputs_and_gradients_match_the_element_walk() {
        let cases: [(&[usize], &[usize]); 5] = [
            (&[4, 3, 5, 7], &[3, 1, 1]),
            (&[6, 1], &[1, 9]),
            (&[2, 3], &[2, 3]),
            (&[], &[5]),
            (&[3, 1, 4], &[5, 1]),
        ];
        for (sa, sb) in cases {
            let s = Broadcast::new(sa, sb).unwrap();
            let (la, lb, lo) = s.lens().unwrap();
            let a: Vec<f32> = (0..la).map(|i| 1.0 + (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..lb).map(|i| 2.0 + (i as f32 * 0.91).cos()).collect();
            let g: Vec<f32> = (0..lo).map(|i| (i as f32 * 0.13).sin()).collect();
            for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div] {
                let mut out = vec![f32::NAN; lo];
                binary(op, &s, &a, &b, &mut out);
                let walk = naive(sa, sb);
                let (mut da, mut db) = (vec![0.0f32; la], vec![0.0f32; lb]);
                for &(o, i, j) in &walk {
                    assert_eq!(out[o].to_bits(), op.apply(a[i], b[j]).to_bits(), "{op:?}");
                    da[i] += g[o] * op.partial(a[i], b[j], false);
                    db[j] += g[o] * op.partial(a[i], b[j], true);
                }
                for (second, want) in [(false, &da), (true, &db)] {
                    let mut got = vec![f32::NAN; want.len()];
                    let which = Operand { second, samples: 1 };
                    binary_grad(op, &s, which, &a, &b, &g, &mut got);
                    assert_eq!(&got, want, "{op:?} {sa:?} {sb:?} second: {second}");
                }
            }
        }
    }

    #[test]
    fn per_sample_gradients_keep_each_sample_apart() {
        // A per-feature scale [3] over a batch of 2: each sample's own.
        let s = Broadcast::new(&[2, 3], &[3]).unwrap();
        let (a, b, g) = ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0; 3], [1.0; 6]);
        let mut each = [f32::NAN; 6];
        let which = Operand {
            second: true,
            samples: 2,
        };
        binary_grad(Binary::Mul, &s, which, &a, &b, &g, &mut each);
        assert_eq!(each, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
