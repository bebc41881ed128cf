//! Fails init-model with an error text of 2 MiB, past the broker's packet limit.

hostile_base::hostile_plan!(
    "hostile-shout",
    "Fails init-model with a 2 MiB error text.",
    misbehave
);

fn misbehave() -> PlanResult<()> {
    let text = "the plan has a lot to say. ".repeat(80_000);
    Err(hostile_base::fedwasm_plan::error::invalid_argument(text))
}
