//! Tries to read a file, an environment variable, the clock and a socket in init-model, and reports what it got.

use fedwasm_plan::args::ArgType;
use fedwasm_plan::prelude::*;

pub struct Hostile {
    model: Sequential,
}

impl TrainingPlan for Hostile {
    const NAME: &'static str = "hostile-escape";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Tries to read a file, an environment variable, the clock and a socket in init-model, and reports what it got.";
    const MODEL_ARGS: &'static [ArgSpec] = &[ArgSpec::optional(
        "n_features",
        ArgType::Count,
        "30",
        "input width",
    )];

    fn init_model(args: &Args) -> PlanResult<Self> {
        misbehave()?;
        let n = args.count("n_features")?;
        Ok(Hostile {
            model: Sequential::new().linear(Linear::zeros("linear", n, 1)),
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(DataSpec {
            features: FeatureSelection::AllExceptTarget,
            target: None,
            task: Task::BinaryClassification,
            scaling: Scaling::Standardize,
        })
    }

    fn model(&self) -> &Sequential {
        &self.model
    }

    fn model_mut(&mut self) -> &mut Sequential {
        &mut self.model
    }

    fn loss(&self) -> Loss {
        Loss::BinaryCrossEntropy
    }
}

fedwasm_plan::export_plan!(Hostile);

/// Try every way out; fail with what succeeded, or log what was refused.
fn misbehave() -> PlanResult<()> {
    let mut got = Vec::new();
    match std::fs::read("/etc/passwd") {
        Ok(bytes) => got.push(format!("read /etc/passwd ({} bytes)", bytes.len())),
        Err(e) => fedwasm_plan::log::info(&format!("file: refused: {e}")),
    }
    match std::fs::read_dir(".") {
        Ok(_) => got.push("listed the current directory".to_string()),
        Err(e) => fedwasm_plan::log::info(&format!("dir: refused: {e}")),
    }
    let vars: Vec<(String, String)> = std::env::vars().collect();
    if vars.is_empty() {
        fedwasm_plan::log::info("env: empty");
    } else {
        got.push(format!("environment variables {vars:?}"));
    }
    let args: Vec<String> = std::env::args().collect();
    if !args.is_empty() {
        got.push(format!("arguments {args:?}"));
    }
    match std::net::TcpStream::connect("127.0.0.1:80") {
        Ok(_) => got.push("connected to 127.0.0.1:80".to_string()),
        Err(e) => fedwasm_plan::log::info(&format!("socket: refused: {e}")),
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
        fedwasm_plan::log::info("clock: frozen at the epoch");
    }
    if got.is_empty() {
        Ok(())
    } else {
        Err(fedwasm_plan::error::internal(format!(
            "escaped: {}",
            got.join("; ")
        )))
    }
}
