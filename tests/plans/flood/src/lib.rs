//! Prints 256 KiB to stdout and stderr in init-model, then trains normally:
//! past the host's 64 KiB buffers, which must drop the excess, not fail.

hostile_base::hostile_plan!(
    "hostile-flood",
    "Prints 256 KiB to stdout and stderr, then trains normally.",
    misbehave
);

fn misbehave() -> PlanResult<()> {
    let line = "x".repeat(1023);
    for _ in 0..256 {
        println!("{line}");
        eprintln!("{line}");
    }
    Ok(())
}
