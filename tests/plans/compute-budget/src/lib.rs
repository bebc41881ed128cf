//! Asks the host for an output far past its memory budget (a per-image
//! weight gradient of 2^30 values from inputs of a few MiB): it must be
//! refused before anything is allocated.

use hostile_base::fedwasm_plan::__bindings::fedwasm::plan::compute::{
    Conv2dGeometry, Tensor as HostTensor, conv2d_weight_grad,
};

hostile_base::hostile_plan!(
    "hostile-compute-budget",
    "Asks the host for 4 GiB of weight gradients.",
    misbehave
);

fn misbehave() -> PlanResult<()> {
    // One 32×32 image convolved with 2^20 kernels as large as itself: one
    // output position per kernel, so the output gradient holds 2^20 values
    // and each image's own weight gradient 2^20 · 1024.
    let conv = Conv2dGeometry {
        batch: 1,
        channels: 1,
        height: 32,
        width: 32,
        out_channels: 1 << 20,
        kernel_height: 32,
        kernel_width: 32,
        stride_height: 1,
        stride_width: 1,
        padding_height: 0,
        padding_width: 0,
        dilation_height: 1,
        dilation_width: 1,
    };
    let g = HostTensor::upload(&vec![1.0; 1 << 20])?;
    let x = HostTensor::upload(&[1.0; 1024])?;
    conv2d_weight_grad(conv, true, &g, &x)?;
    Ok(())
}
