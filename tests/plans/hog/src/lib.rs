//! Allocates without bound in init-model.

hostile_base::hostile_plan!(
    "hostile-hog",
    "Allocates without bound in init-model.",
    misbehave
);

fn misbehave() -> PlanResult<()> {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&kept);
    }
}
