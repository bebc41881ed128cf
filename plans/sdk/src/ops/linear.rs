//! Matrix products: `matmul` of two matrices and the fused affine map
//! `linear` (x·Wᵀ + b, PyTorch's `F.linear`). Forward and the summed
//! gradients run on the node's host ([`crate::backend`]), and so do DP-SGD's
//! ghost norms and clipped sums; full per-sample gradients (a sample of
//! several rows, or an explicit per-sample need) still run in the plan.

use fedwasm_kernels::squares::words_to_f64;
use fedwasm_kernels::{Binary, Broadcast, MatMul, Op};

use crate::backend::{self, Buf};
use crate::error::{PlanResult, invalid_data};
use crate::kernels::{MatRef, gemm};
use crate::tensor::{HostGrad, Need, Tensor, clip_factors};

/// `op(a)·op(b)` (+ a bias every row starts from) on the backend.
fn product(mm: MatMul, inputs: &[&Tensor]) -> PlanResult<Buf> {
    backend::run(Op::MatMul(mm), inputs)
}

/// A tensor over values computed in the plan.
fn local(values: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_values(Buf::local(values), shape)
}

/// A matrix product's dimensions, no transposes.
fn dims(m: usize, k: usize, n: usize) -> MatMul {
    MatMul {
        m,
        k,
        n,
        transpose_a: false,
        transpose_b: false,
    }
}

use super::{per_sample_stride, shape_error};

/// `g` (`batch` samples of `per_sample` values each) with each sample's
/// values scaled by its DP-SGD clipping factor, where `g` is.
fn clipped_rows(g: &Tensor, batch: usize, per_sample: usize) -> PlanResult<Tensor> {
    let mut factors = clip_factors();
    factors.resize(batch, 1.0);
    let factors = Tensor::new(factors, &[batch])?;
    let shapes =
        Broadcast::new(&[batch, per_sample], &[batch, 1]).map_err(|e| shape_error("linear", e))?;
    let scaled = backend::run_near(
        Op::Binary {
            op: Binary::Mul,
            shapes,
        },
        &[g, &factors],
    )?;
    Ok(Tensor::from_values(scaled, g.shape()))
}

/// The squared norm of each of the `rows` rows of `t` (width `w`), in f64,
/// where `t` is (four values per row read back).
fn row_squares(t: &Tensor, rows: usize, w: usize) -> PlanResult<Vec<f64>> {
    let words = backend::run_near(Op::RowSquares { rows, width: w }, &[t])?;
    Tensor::from_values(words, &[rows, 4])
        .to_vec()
        .chunks_exact(4)
        .map(|w| {
            words_to_f64(w)
                .ok_or_else(|| invalid_data("a row's sum of squares came back malformed"))
        })
        .collect()
}

impl Tensor {
    /// The product of a `[m, k]` and a `[k, n]` matrix.
    pub fn matmul(&self, other: &Tensor) -> PlanResult<Tensor> {
        let ([m, k], [k2, n]) = (self.shape(), other.shape()) else {
            return Err(shape_error(
                "matmul",
                format!(
                    "needs two 2-D tensors, got {:?} and {:?}",
                    self.shape(),
                    other.shape()
                ),
            ));
        };
        let (m, k, n) = (*m, *k, *n);
        if k != *k2 {
            return Err(shape_error(
                "matmul",
                format!("inner dimensions differ: [{m}, {k}] · [{k2}, {n}]"),
            ));
        }
        let out = product(dims(m, k, n), &[self, other])?;
        let (a, b) = (self.clone(), other.clone());
        Tensor::from_buf("matmul", out, &[m, n], &[self, other], move |gt, need| {
            let da = match need[0] {
                // Asked only of ghost operations (the linear map).
                Need::SampleSquares(_) | Need::Clipped(_) => None,
                Need::Nothing => None,
                Need::Sum => {
                    // da = g·bᵀ
                    let mm = MatMul {
                        transpose_b: true,
                        ..dims(m, n, k)
                    };
                    Some(HostGrad::Sum(Tensor::from_values(
                        product(mm, &[gt, &b])?,
                        &[m, k],
                    )))
                }
                // The left operand's rows are the samples; a parameter there has no batch.
                Need::PerSample(_) => None,
            };
            let db = match need[1] {
                // Asked only of ghost operations (the linear map).
                Need::SampleSquares(_) | Need::Clipped(_) => None,
                Need::Nothing => None,
                Need::Sum => {
                    // db = aᵀ·g
                    let mm = MatMul {
                        transpose_a: true,
                        ..dims(k, m, n)
                    };
                    Some(HostGrad::Sum(Tensor::from_values(
                        product(mm, &[&a, gt])?,
                        &[k, n],
                    )))
                }
                Need::PerSample(batch) => {
                    per_sample_stride(&[m, n], batch, "matmul")?;
                    let (av, g) = (a.values(), gt.values());
                    let mut db = vec![0.0f32; batch * k * n];
                    for (s, dst) in db.chunks_exact_mut(k * n).enumerate() {
                        gemm(
                            MatRef::row_major(&av[s * k..(s + 1) * k], 1, k).t(),
                            MatRef::row_major(&g[s * n..(s + 1) * n], 1, n),
                            dst,
                            false,
                        );
                    }
                    Some(HostGrad::PerSample(local(db, &[batch, k * n])))
                }
            };
            Ok(vec![da, db])
        })
    }

    /// `x·Wᵀ + b` over the last dimension of `x` (`[…, in]` → `[…, out]`),
    /// for a weight `[out, in]` and an optional bias `[out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> PlanResult<Tensor> {
        let [n_out, n_in] = *weight.shape() else {
            return Err(shape_error(
                "linear",
                format!("weight must be [out, in], got {:?}", weight.shape()),
            ));
        };
        if self.shape().last() != Some(&n_in) {
            return Err(shape_error(
                "linear",
                format!(
                    "the input {:?} has {} features per sample, the layer takes {n_in}",
                    self.shape(),
                    self.shape().last().copied().unwrap_or(0)
                ),
            ));
        }
        if let Some(b) = bias
            && b.shape() != [n_out]
        {
            return Err(shape_error(
                "linear",
                format!("bias must be [{n_out}], got {:?}", b.shape()),
            ));
        }
        let rows = self.numel() / n_in.max(1);
        // x·Wᵀ, every row starting from the bias.
        let forward = MatMul {
            transpose_b: true,
            ..dims(rows, n_in, n_out)
        };
        let mut operands = vec![self, weight];
        operands.extend(bias);
        let out = product(forward, &operands)?;
        let mut shape = self.shape().to_vec();
        *shape.last_mut().expect("checked above") = n_out;
        let backward = LinearBackward {
            x: self.clone(),
            w: weight.clone(),
            rows,
            n_in,
            n_out,
            out_shape: shape.clone(),
        };
        Tensor::from_ghost_buf("linear", out, &shape, &operands, move |gt, need| {
            backward.grads(gt, need)
        })
    }
}

/// What the linear map's backward needs: its input `x` (`rows × n_in`
/// values), its weight `[n_out, n_in]` and its output's shape. The summed
/// gradients, DP-SGD's ghost norms and clipped sums run on the host; full
/// per-sample gradients in the plan, from the output gradient read once.
struct LinearBackward {
    x: Tensor,
    w: Tensor,
    rows: usize,
    n_in: usize,
    n_out: usize,
    out_shape: Vec<usize>,
}

impl LinearBackward {
    /// The gradients `need` asks for: input, weight and (with a bias) bias.
    fn grads(&self, gt: &Tensor, need: &[Need]) -> PlanResult<Vec<Option<HostGrad>>> {
        let mut grads = vec![
            self.input_grad(gt, need[0])?,
            self.weight_grad(gt, need[1])?,
        ];
        if let Some(&bias) = need.get(2) {
            grads.push(self.bias_grad(gt, bias)?);
        }
        Ok(grads)
    }

    /// Rows of g belonging to each sample (more than one for `[N, T, in]` inputs).
    fn rows_per_sample(&self, batch: usize) -> PlanResult<usize> {
        Ok(per_sample_stride(&self.out_shape, batch, "linear")? / self.n_out.max(1))
    }

    /// `dx = g·W`, on the host.
    fn input_grad(&self, gt: &Tensor, need: Need) -> PlanResult<Option<HostGrad>> {
        Ok(match need {
            Need::Sum => Some(HostGrad::Sum(Tensor::from_values(
                product(dims(self.rows, self.n_out, self.n_in), &[gt, &self.w])?,
                self.x.shape(),
            ))),
            _ => None,
        })
    }

    /// `dW = gᵀ·x` on the host; per sample, its squared norms (a ghost norm
    /// on the host when each sample is one row, else in the plan), or
    /// clipped and summed on the host.
    fn weight_grad(&self, gt: &Tensor, need: Need) -> PlanResult<Option<HostGrad>> {
        let (rows, n_in, n_out) = (self.rows, self.n_in, self.n_out);
        Ok(match need {
            Need::Nothing => None,
            Need::Sum => {
                let mm = MatMul {
                    transpose_a: true,
                    ..dims(n_out, rows, n_in)
                };
                Some(HostGrad::Sum(Tensor::from_values(
                    product(mm, &[gt, &self.x])?,
                    &[n_out, n_in],
                )))
            }
            Need::SampleSquares(batch) if self.rows_per_sample(batch)? == 1 => {
                // Sample b's gradient is g_b ⊗ x_b: its squared norm is ‖g_b‖²·‖x_b‖².
                let gs = row_squares(gt, rows, n_out)?;
                let xs = row_squares(&self.x, rows, n_in)?;
                Some(HostGrad::SampleSquares(
                    gs.iter().zip(&xs).map(|(a, b)| a * b).collect(),
                ))
            }
            Need::PerSample(batch) | Need::SampleSquares(batch) => {
                let per = self.rows_per_sample(batch)?;
                let (xv, g) = (self.x.values(), gt.values());
                let mut dw = vec![0.0f32; batch * n_out * n_in];
                for (s, dst) in dw.chunks_exact_mut(n_out * n_in).enumerate() {
                    let r = s * per..(s + 1) * per;
                    gemm(
                        MatRef::row_major(&g[r.start * n_out..r.end * n_out], per, n_out).t(),
                        MatRef::row_major(&xv[r.start * n_in..r.end * n_in], per, n_in),
                        dst,
                        false,
                    );
                }
                Some(HostGrad::PerSample(local(dw, &[batch, n_out * n_in])))
            }
            Need::Clipped(batch) => {
                // Σ_b c_b·g_bᵀx_b: the rows of g scaled by their sample's factor.
                let scaled = clipped_rows(gt, batch, self.rows_per_sample(batch)? * n_out)?;
                let mm = MatMul {
                    transpose_a: true,
                    ..dims(n_out, rows, n_in)
                };
                Some(HostGrad::Sum(Tensor::from_values(
                    product(mm, &[&scaled, &self.x])?,
                    &[n_out, n_in],
                )))
            }
        })
    }

    /// Each column of g summed over the rows in order, on the host; per
    /// sample, its squared norms (on the host when each sample is one row),
    /// or clipped and summed on the host.
    fn bias_grad(&self, gt: &Tensor, need: Need) -> PlanResult<Option<HostGrad>> {
        let n_out = self.n_out;
        Ok(match need {
            Need::Nothing => None,
            Need::Sum => {
                let sums = Op::ChannelSums {
                    batch: self.rows,
                    channels: n_out,
                    plane: 1,
                    per_sample: false,
                };
                let db = backend::run(sums, &[gt])?;
                Some(HostGrad::Sum(Tensor::from_values(db, &[n_out])))
            }
            Need::SampleSquares(batch) if self.rows_per_sample(batch)? == 1 => {
                Some(HostGrad::SampleSquares(row_squares(gt, self.rows, n_out)?))
            }
            Need::PerSample(batch) | Need::SampleSquares(batch) => {
                let per = self.rows_per_sample(batch)?;
                let g = gt.values();
                let mut db = vec![0.0f32; batch * n_out];
                for (s, dst) in db.chunks_exact_mut(n_out).enumerate() {
                    for row in g[s * per * n_out..(s + 1) * per * n_out].chunks_exact(n_out) {
                        crate::kernels::simd::add_assign(dst, row);
                    }
                }
                Some(HostGrad::PerSample(local(db, &[batch, n_out])))
            }
            Need::Clipped(batch) => {
                let scaled = clipped_rows(gt, batch, self.rows_per_sample(batch)? * n_out)?;
                let sums = Op::ChannelSums {
                    batch: self.rows,
                    channels: n_out,
                    plane: 1,
                    per_sample: false,
                };
                let db = backend::run(sums, &[&scaled])?;
                Some(HostGrad::Sum(Tensor::from_values(db, &[n_out])))
            }
        })
    }
}
