//! Table lookup: whole-number indices (stored as f32) select rows of a
//! `[num, dim]` weight, and the weight's gradient adds each looked-up row's
//! output gradient back, in index order from zero — the order the plan SDK
//! always used. An index that is no row gives a NaN row (the SDK names it
//! first; a hostile plan gets NaN, never a panic or a read out of bounds).

use crate::parallel::for_each_chunk_mut;

/// `count` lookups into a table of `num` rows of `dim` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedding {
    pub num: usize,
    pub dim: usize,
    pub count: usize,
}

impl Embedding {
    /// `(table, output)` lengths, or `None` when they overflow.
    pub fn lens(&self) -> Option<(usize, usize)> {
        Some((
            self.num.checked_mul(self.dim)?,
            self.count.checked_mul(self.dim)?,
        ))
    }

    /// The row an index names, if it names one.
    fn row(&self, v: f32) -> Option<usize> {
        (v >= 0.0 && v.fract() == 0.0 && (v as usize) < self.num).then_some(v as usize)
    }
}

/// Lookups one task copies.
const LOOKUPS_PER_TASK: usize = 256;

/// `out[k] = weight[indices[k]]`, row by row.
pub fn embedding(e: &Embedding, indices: &[f32], weight: &[f32], out: &mut [f32]) {
    let dim = e.dim;
    if dim == 0 {
        return;
    }
    for_each_chunk_mut(out, dim * LOOKUPS_PER_TASK, |c, chunk| {
        for (j, dst) in chunk.chunks_exact_mut(dim).enumerate() {
            match e.row(indices[c * LOOKUPS_PER_TASK + j]) {
                Some(i) => dst.copy_from_slice(&weight[i * dim..(i + 1) * dim]),
                None => dst.fill(f32::NAN),
            }
        }
    });
}

/// The table's gradient from the output gradient `g`: each lookup's row of
/// `g` added to its index's row, lookups in order; with `samples` > 1 each
/// sample's own table (its `count / samples` consecutive lookups),
/// `[samples, num·dim]`.
pub fn embedding_grad(e: &Embedding, samples: usize, indices: &[f32], g: &[f32], dw: &mut [f32]) {
    dw.fill(0.0);
    let (dim, table) = (e.dim, e.num * e.dim);
    let per = e.count / samples.max(1);
    for (k, &v) in indices.iter().enumerate() {
        let at = (k / per.max(1)) * table;
        let src = &g[k * dim..(k + 1) * dim];
        match e.row(v) {
            Some(i) => {
                for (d, &s) in dw[at + i * dim..at + (i + 1) * dim].iter_mut().zip(src) {
                    *d += s;
                }
            }
            None => dw[at..at + table].fill(f32::NAN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_looked_up_and_their_gradients_added_back() {
        let e = Embedding {
            num: 3,
            dim: 2,
            count: 4,
        };
        let weight = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0];
        let indices = [2.0, 0.0, 2.0, 1.0];
        let mut out = [f32::NAN; 8];
        embedding(&e, &indices, &weight, &mut out);
        assert_eq!(out, [20.0, 21.0, 0.0, 1.0, 20.0, 21.0, 10.0, 11.0]);
        let g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut dw = [f32::NAN; 6];
        embedding_grad(&e, 1, &indices, &g, &mut dw);
        assert_eq!(dw, [3.0, 4.0, 7.0, 8.0, 6.0, 8.0]);
        let mut each = [f32::NAN; 12];
        embedding_grad(&e, 2, &indices, &g, &mut each);
        assert_eq!(
            each,
            [3.0, 4.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 7.0, 8.0, 5.0, 6.0]
        );
    }

    #[test]
    fn an_index_that_is_no_row_gives_nan_not_a_panic() {
        let e = Embedding {
            num: 2,
            dim: 1,
            count: 2,
        };
        for bad in [2.0, -1.0, 0.5, f32::NAN, 1e30] {
            let mut out = [0.0; 2];
            embedding(&e, &[0.0, bad], &[5.0, 6.0], &mut out);
            assert!(out[0] == 5.0 && out[1].is_nan(), "{bad}");
            let mut dw = [0.0; 2];
            embedding_grad(&e, 1, &[0.0, bad], &[1.0, 1.0], &mut dw);
            assert!(dw.iter().all(|d| d.is_nan()), "{bad}");
        }
    }
}
