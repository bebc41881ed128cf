//! Asks the host for a matrix product whose dimensions do not fit its
//! tensors, and one whose sizes overflow: each must come back as a plan
//! error, never a host panic or an allocation.

use hostile_base::fedwasm_plan::__bindings::fedwasm::plan::compute::{
    MatmulDims, Tensor as HostTensor, matmul,
};

hostile_base::hostile_plan!(
    "hostile-compute-shape",
    "Asks the host for products that do not fit their tensors.",
    misbehave
);

fn misbehave() -> PlanResult<()> {
    let a = HostTensor::upload(&[1.0; 6])?;
    let b = HostTensor::upload(&[1.0; 12])?;
    let huge = MatmulDims {
        m: u32::MAX,
        k: u32::MAX,
        n: u32::MAX,
        transpose_a: false,
        transpose_b: false,
    };
    if matmul(huge, &a, &b, None).is_ok() {
        return Err(invalid_data("the host ran a product of 2^96 values"));
    }
    let misfit = MatmulDims {
        m: 2,
        k: 4,
        n: 4,
        ..huge
    };
    matmul(misfit, &a, &b, None)?;
    Ok(())
}
