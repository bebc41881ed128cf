//! Tries to read a file, an environment variable, the clock and a socket in init-model, and reports what it got.

hostile_base::hostile_plan!(
    "hostile-escape",
    "Tries to read a file, an environment variable, the clock and a socket in init-model, and reports what it got.",
    misbehave
);

/// Try every way out; fail with what succeeded, or log what was refused.
fn misbehave() -> PlanResult<()> {
    let mut got = Vec::new();
    match std::fs::read("/etc/passwd") {
        Ok(bytes) => got.push(format!("read /etc/passwd ({} bytes)", bytes.len())),
        Err(e) => hostile_base::fedwasm_plan::log::info(&format!("file: refused: {e}")),
    }
    match std::fs::read_dir(".") {
        Ok(_) => got.push("listed the current directory".to_string()),
        Err(e) => hostile_base::fedwasm_plan::log::info(&format!("dir: refused: {e}")),
    }
    let vars: Vec<(String, String)> = std::env::vars().collect();
    if vars.is_empty() {
        hostile_base::fedwasm_plan::log::info("env: empty");
    } else {
        got.push(format!("environment variables {vars:?}"));
    }
    let args: Vec<String> = std::env::args().collect();
    if !args.is_empty() {
        got.push(format!("arguments {args:?}"));
    }
    match std::net::TcpStream::connect("127.0.0.1:80") {
        Ok(_) => got.push("connected to 127.0.0.1:80".to_string()),
        Err(e) => hostile_base::fedwasm_plan::log::info(&format!("socket: refused: {e}")),
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if now.as_secs() > 0 {
        got.push(format!(
            "the wall clock ({} s since the epoch)",
            now.as_secs()
        ));
    } else {
        hostile_base::fedwasm_plan::log::info("clock: frozen at the epoch");
    }
    if got.is_empty() {
        Ok(())
    } else {
        Err(hostile_base::fedwasm_plan::error::internal(format!(
            "escaped: {}",
            got.join("; ")
        )))
    }
}
