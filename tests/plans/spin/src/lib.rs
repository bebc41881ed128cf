//! Loops forever in init-model.

hostile_base::hostile_plan!("hostile-spin", "Loops forever in init-model.", misbehave);

fn misbehave() -> PlanResult<()> {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
