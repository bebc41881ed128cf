//! Panics in init-model.

hostile_base::hostile_plan!("hostile-panic", "Panics in init-model.", misbehave);

fn misbehave() -> PlanResult<()> {
    if std::hint::black_box(true) {
        panic!("hostile plan panicked on purpose");
    }
    Ok(())
}
