//! Hands the host a tensor handle it never made: the host must refuse it
//! without touching anything of the node.

use hostile_base::fedwasm_plan::__bindings::fedwasm::plan::compute::{Tensor as HostTensor, add};

hostile_base::hostile_plan!(
    "hostile-compute-handle",
    "Hands the host a handle it never made.",
    misbehave
);

fn misbehave() -> PlanResult<()> {
    let real = HostTensor::upload(&[1.0; 4])?;
    // SAFETY (for the plan): none intended; this forges handle 4242.
    let forged = unsafe { HostTensor::from_handle(4242) };
    add(&real, &forged)?;
    Ok(())
}
