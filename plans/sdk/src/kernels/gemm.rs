//! Matrix products with a fixed summation order.
//!
//! Every element of `C = A·B` is the left-to-right sum
//! `(((c + a₀b₀) + a₁b₁) + …)` over the inner dimension in order, whatever the
//! blocking, the packing or the vector width. That makes the kernel fast
//! (packed panels, a register tile of 4×8 outputs, four lanes at a time) and
//! still bit-identical to the naive triple loop, natively and in wasm, on every
//! host: vectorising across columns never reorders one element's sum, and no
//! multiply-add is fused.

use super::simd::{F32x4, copy};

/// Rows of the register tile.
const MR: usize = 4;
/// Columns of the register tile (two vectors of four).
const NR: usize = 8;
/// Depth of one packed block of the inner dimension.
const KC: usize = 512;
/// Rows of A packed at once.
const MC: usize = 128;
/// Columns of B packed at once.
const NC: usize = 1024;

/// A read-only matrix view with arbitrary strides, so transposes cost nothing.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix over `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix data too short");
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, sharing the data.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.row_stride + c * self.col_stride]
    }
}

/// `C ← A·B`, or `C ← C + A·B` when `accumulate`, for a row-major `C` of
/// `a.rows() × b.cols()` (its previous values are not read unless accumulating).
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert!(c.len() >= m * n, "output too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let depth = KC.min(k);
    PACKS.with(|packs| {
        let mut packs = packs.borrow_mut();
        let (packed_a, packed_b) = &mut *packs;
        grow(packed_b, depth * NC.min(n).next_multiple_of(NR));
        grow(packed_a, MC.min(m).next_multiple_of(MR) * depth);
        blocked(a, b, c, accumulate, packed_a, packed_b);
    });
}

thread_local! {
    /// Packing buffers reused across calls: every element a product reads
    /// is written by its packing first, so they are never cleared.
    static PACKS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
}

/// The blocked product proper, with packing space at hand.
fn blocked(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    accumulate: bool,
    packed_a: &mut [f32],
    packed_b: &mut [f32],
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(&b, pc, kc, jc, nc, packed_b);
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                pack_a(&a, ic, mc, pc, kc, packed_a);
                for jr in (0..nc).step_by(NR) {
                    let bp = &packed_b[jr * kc..(jr + NR) * kc];
                    for ir in (0..mc).step_by(MR) {
                        let ap = &packed_a[ir * kc..(ir + MR) * kc];
                        let tile = Tile {
                            row: ic + ir,
                            col: jc + jr,
                            rows: MR.min(mc - ir),
                            cols: NR.min(nc - jr),
                            ldc: n,
                        };
                        // Without accumulation the first depth block starts from zero.
                        kernel(ap, bp, c, tile, pc == 0 && !accumulate);
                    }
                }
            }
        }
    }
}

/// Panels of `NR` columns of `B[pc..pc+kc, jc..jc+nc]`: for each depth `p`,
/// `NR` consecutive values, zero past the last column.
fn pack_b(b: &MatRef<'_>, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]) {
    for (panel, j0) in (0..nc).step_by(NR).enumerate() {
        let dst = &mut out[panel * NR * kc..(panel + 1) * NR * kc];
        let width = NR.min(nc - j0);
        for p in 0..kc {
            let row = &mut dst[p * NR..(p + 1) * NR];
            if b.col_stride == 1 && width == NR {
                // Two vector moves: a copy call per eight floats would cost
                // more than the copy (in wasm `memory.copy` is a host call).
                let start = (pc + p) * b.row_stride + jc + j0;
                let src = &b.data[start..start + NR];
                F32x4::load(src).store(row);
                F32x4::load(&src[4..]).store(&mut row[4..]);
                continue;
            } else if b.row_stride == 1 && width == NR && p + 4 <= kc {
                // B is a transpose: each panel column runs along the depth.
                // Four depths of eight columns at once, as two 4×4 transposes
                // (every fourth p does the work, the others are done).
                if p % 4 == 0 {
                    pack_b_transposed(b, pc + p, jc + j0, &mut dst[p * NR..(p + 4) * NR]);
                }
                continue;
            } else if b.col_stride == 1 {
                let start = (pc + p) * b.row_stride + jc + j0;
                for (v, &x) in row[..width].iter_mut().zip(&b.data[start..start + width]) {
                    *v = x;
                }
            } else {
                for (jj, v) in row[..width].iter_mut().enumerate() {
                    *v = b.at(pc + p, jc + j0 + jj);
                }
            }
            super::simd::zero(&mut row[width..]);
        }
    }
}

/// Four depths (`p..p+4`) of eight columns (`j..j+8`) of a transposed `B`
/// (`B[p, j]` at `data[j·col_stride + p]`), packed as four rows of eight.
#[inline(always)]
fn pack_b_transposed(b: &MatRef<'_>, p: usize, j: usize, dst: &mut [f32]) {
    let column = |jj: usize| F32x4::load(&b.data[(j + jj) * b.col_stride + p..]);
    let low = F32x4::transpose([column(0), column(1), column(2), column(3)]);
    let high = F32x4::transpose([column(4), column(5), column(6), column(7)]);
    for q in 0..4 {
        low[q].store(&mut dst[q * NR..]);
        high[q].store(&mut dst[q * NR + 4..]);
    }
}

/// Panels of `MR` rows of `A[ic..ic+mc, pc..pc+kc]`: for each depth `p`, `MR`
/// consecutive values, zero past the last row.
fn pack_a(a: &MatRef<'_>, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [f32]) {
    for (panel, i0) in (0..mc).step_by(MR).enumerate() {
        let dst = &mut out[panel * MR * kc..(panel + 1) * MR * kc];
        let height = MR.min(mc - i0);
        for p in 0..kc {
            let col = &mut dst[p * MR..(p + 1) * MR];
            if a.row_stride == 1 && height == MR {
                let start = (pc + p) * a.col_stride + ic + i0;
                F32x4::load(&a.data[start..start + MR]).store(col);
                continue;
            } else if a.col_stride == 1 && height == MR && p + 4 <= kc {
                // A is row-major: four depths of the panel's four rows at once,
                // as one 4×4 transpose (every fourth p does the work).
                if p % 4 == 0 {
                    let rows = [0, 1, 2, 3]
                        .map(|r| F32x4::load(&a.data[(ic + i0 + r) * a.row_stride + pc + p..]));
                    let block = &mut dst[p * MR..(p + 4) * MR];
                    for (q, v) in F32x4::transpose(rows).into_iter().enumerate() {
                        v.store(&mut block[q * MR..]);
                    }
                }
                continue;
            } else if a.row_stride == 1 {
                let start = (pc + p) * a.col_stride + ic + i0;
                for (v, &x) in col[..height].iter_mut().zip(&a.data[start..start + height]) {
                    *v = x;
                }
            } else {
                for (ii, v) in col[..height].iter_mut().enumerate() {
                    *v = a.at(ic + i0 + ii, pc + p);
                }
            }
            super::simd::zero(&mut col[height..]);
        }
    }
}

/// Where a register tile lands in C.
#[derive(Clone, Copy)]
struct Tile {
    row: usize,
    col: usize,
    rows: usize,
    cols: usize,
    ldc: usize,
}

/// One `MR × NR` tile: start from C (or from zero when `fresh`), add the
/// packed products in depth order, store it back. Full tiles move straight
/// between C and registers; edge tiles go through a small buffer.
#[inline(always)]
fn kernel(ap: &[f32], bp: &[f32], c: &mut [f32], t: Tile, fresh: bool) {
    let full = t.rows == MR && t.cols == NR;
    let mut buf = [0.0f32; MR * NR];
    if !fresh && !full {
        for r in 0..t.rows {
            let at = (t.row + r) * t.ldc + t.col;
            copy(&mut buf[r * NR..r * NR + t.cols], &c[at..at + t.cols]);
        }
    }
    let mut acc = [[F32x4::splat(0.0); 2]; MR];
    if !fresh {
        for (r, lanes) in acc.iter_mut().enumerate() {
            let src: &[f32] = if full {
                &c[(t.row + r) * t.ldc + t.col..]
            } else {
                &buf[r * NR..]
            };
            lanes[0] = F32x4::load(src);
            lanes[1] = F32x4::load(&src[4..]);
        }
    }
    for (a, b) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)) {
        let b0 = F32x4::load(&b[..4]);
        let b1 = F32x4::load(&b[4..]);
        // One vector load of the four A values, each broadcast by a lane shuffle.
        let a4 = F32x4::load(a);
        let rows = [
            a4.lane::<0>(),
            a4.lane::<1>(),
            a4.lane::<2>(),
            a4.lane::<3>(),
        ];
        for (lanes, av) in acc.iter_mut().zip(rows) {
            lanes[0] = lanes[0].add(av.mul(b0));
            lanes[1] = lanes[1].add(av.mul(b1));
        }
    }
    if full {
        for (r, lanes) in acc.iter().enumerate() {
            let dst = &mut c[(t.row + r) * t.ldc + t.col..];
            lanes[0].store(dst);
            lanes[1].store(&mut dst[4..]);
        }
        return;
    }
    for (r, lanes) in acc.iter().enumerate() {
        lanes[0].store(&mut buf[r * NR..]);
        lanes[1].store(&mut buf[r * NR + 4..]);
    }
    for r in 0..t.rows {
        let at = (t.row + r) * t.ldc + t.col;
        copy(&mut c[at..at + t.cols], &buf[r * NR..r * NR + t.cols]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The definition: each element summed left to right over the depth.
    fn naive(a: &MatRef<'_>, b: &MatRef<'_>, c0: &[f32]) -> Vec<f32> {
        let mut c = c0.to_vec();
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = c[i * b.cols + j];
                for p in 0..a.cols {
                    s += a.at(i, p) * b.at(p, j);
                }
                c[i * b.cols + j] = s;
            }
        }
        c
    }

    #[test]
    fn blocked_products_equal_the_naive_sum_bit_for_bit() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (4, 8, 8),
            (13, 300, 9),
            (130, 17, 1030),
            (64, 784, 128),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let da = values(m * k, 1);
                let db = values(k * n, 2);
                let a = if ta {
                    MatRef::row_major(&da, k, m).t()
                } else {
                    MatRef::row_major(&da, m, k)
                };
                let b = if tb {
                    MatRef::row_major(&db, n, k).t()
                } else {
                    MatRef::row_major(&db, k, n)
                };
                let c0 = values(m * n, 3);
                let mut c = c0.clone();
                gemm(a, b, &mut c, true);
                let expected = naive(&a, &b, &c0);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&c), bits(&expected), "{m}x{k}x{n} {ta} {tb}");
                gemm(a, b, &mut c, false);
                let expected = naive(&a, &b, &vec![0.0; m * n]);
                assert_eq!(bits(&c), bits(&expected), "{m}x{k}x{n} {ta} {tb}");
            }
        }
    }
}
