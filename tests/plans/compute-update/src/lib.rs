//! Asks the host for optimizer updates it must refuse: a tensor passed as
//! both the parameter and its state (the update would read what it writes),
//! a state of the wrong length, then 4 TiB of zeros. The first two must come
//! back as plan errors, the last stop the call at the memory budget.

use hostile_base::fedwasm_plan::__bindings::fedwasm::plan::compute::{
    MomentumRule, Tensor as HostTensor, UpdateRule, UpdateStep, update,
};

hostile_base::hostile_plan!(
    "hostile-compute-update",
    "Asks for updates of aliased and misfit tensors, then 4 TiB of zeros.",
    misbehave
);

fn misbehave() -> PlanResult<()> {
    let w = HostTensor::upload(&[1.0; 4])?;
    let g = HostTensor::upload(&[1.0; 4])?;
    let short = HostTensor::zeros(3)?;
    let step = UpdateStep {
        lr: 0.1,
        scale: 1.0,
        prox_mu: 0.0,
        l2: 0.0,
        rule: UpdateRule::Momentum(MomentumRule {
            momentum: 0.9,
            nesterov: false,
            first_update: false,
        }),
    };
    if update(step, &w, &g, None, None, Some(&w), None).is_ok() {
        return Err(invalid_data("the host updated a tensor passed twice"));
    }
    if update(step, &w, &g, None, None, Some(&short), None).is_ok() {
        return Err(invalid_data("the host updated with a state too short"));
    }
    if w.read() != [1.0; 4] {
        return Err(invalid_data("a refused update changed the parameter"));
    }
    HostTensor::zeros(1 << 40)?;
    Ok(())
}
