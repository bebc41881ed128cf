//! Asks the host for broadcasts, sums, softmaxes and losses it must refuse
//! or survive: shapes whose sizes overflow, alternating broadcasts past the
//! kernels' rank, zero samples, a label smoothing out of range, targets
//! that are no class, a loss of misfit lengths or a negative δ, a dropout
//! that drops everything; then a sum's gradient of 4 GiB from one value.
//! Each refusal must be a plan error, the bad targets a NaN, and the last
//! stop the call at the memory budget.

use hostile_base::fedwasm_plan::__bindings::fedwasm::plan::compute::{
    Axis, BinaryOp, CrossEntropyDims, Operand, PointwiseLossKind, Tensor as HostTensor, add_normal,
    binary, binary_grad, cross_entropy, dropout_mask, expand_axis, pointwise_loss, softmax,
    sum_axis, sum_of_squares,
};

hostile_base::hostile_plan!(
    "hostile-compute-reduce",
    "Asks for broadcasts, sums and losses that do not fit, then a 4 GiB gradient.",
    misbehave
);

fn refused<T, E>(what: &str, r: Result<T, E>) -> PlanResult<()> {
    match r {
        Ok(_) => Err(invalid_data(format!("the host ran {what}"))),
        Err(_) => Ok(()),
    }
}

fn misbehave() -> PlanResult<()> {
    let x = HostTensor::upload(&[1.0; 6])?;
    let huge = [u32::MAX, u32::MAX, u32::MAX];
    refused(
        "a broadcast of 2^96 values",
        binary(BinaryOp::Mul, &huge, &[1], &x, &x),
    )?;
    refused(
        "a broadcast over 7 alternating dimensions",
        binary(
            BinaryOp::Add,
            &[2, 1, 2, 1, 2, 1, 2],
            &[1, 2, 1, 2, 1, 2, 1],
            &x,
            &x,
        ),
    )?;
    let none = Operand {
        second: true,
        samples: 0,
    };
    refused(
        "a gradient shared among zero samples",
        binary_grad(BinaryOp::Div, &[2, 3], &[3], none, &x, &x, &x),
    )?;
    let overflow = Axis {
        outer: u32::MAX,
        size: u32::MAX,
        inner: u32::MAX,
    };
    refused("a sum of 2^96 values", sum_axis(overflow, &x))?;
    let misfit = Axis {
        outer: 2,
        size: 2,
        inner: 2,
    };
    refused("a softmax of 8 values over 6", softmax(misfit, true, &x))?;
    let dims = CrossEntropyDims {
        batch: 2,
        classes: 3,
        inner: 1,
        label_smoothing: 2.0,
    };
    let targets = HostTensor::upload(&[7.0, -1.0])?;
    refused(
        "a label smoothing of 2",
        cross_entropy(dims, &x, &targets, None),
    )?;
    let dims = CrossEntropyDims {
        label_smoothing: 0.0,
        ..dims
    };
    let sums = cross_entropy(dims, &x, &targets, None)?.read();
    if !sums.iter().all(|v| v.is_nan()) {
        return Err(invalid_data(format!(
            "targets that are no class gave {sums:?}"
        )));
    }
    refused(
        "a loss of 6 outputs against 2 targets",
        pointwise_loss(PointwiseLossKind::Mse, &x, &targets, None),
    )?;
    refused(
        "a Huber loss with δ = −1",
        pointwise_loss(PointwiseLossKind::Huber(-1.0), &x, &x, None),
    )?;
    refused("a dropout of probability 1", dropout_mask(4, 1.0))?;
    add_normal(&x, 1.0)?;
    if sum_of_squares(&x)?.read().len() != 4 {
        return Err(invalid_data("a sum of squares is not four words"));
    }
    let one = HostTensor::upload(&[1.0])?;
    let spread = Axis {
        outer: 1,
        size: 1 << 30,
        inner: 1,
    };
    expand_axis(spread, &one)?;
    Ok(())
}
