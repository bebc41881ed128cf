//! Recurses without bound in init-model.

hostile_base::hostile_plan!(
    "hostile-recursion",
    "Recurses without bound in init-model.",
    misbehave
);

// Unbounded on purpose: the host must catch the stack overflow.
#[allow(unconditional_recursion)]
fn deeper(depth: u64, pad: [u64; 16]) -> u64 {
    let next = std::hint::black_box(pad);
    deeper(depth + 1, next) + next[(depth % 16) as usize]
}

fn misbehave() -> PlanResult<()> {
    std::hint::black_box(deeper(0, [1; 16]));
    Ok(())
}
