//! Asks the host for 40 MB of random floats in init-model: within its memory
//! cap once copied, but the host would hold them twice.

hostile_base::hostile_plan!(
    "hostile-gamble",
    "Asks the host for 40 MB of random floats.",
    misbehave
);

fn misbehave() -> PlanResult<()> {
    let floats = hostile_base::fedwasm_plan::random::uniform(10_000_000);
    std::hint::black_box(&floats);
    Ok(())
}
