//! Model and optimizer arguments: a JSON object checked against what the plan
//! declares in `describe()`.
//!
//! A plan lists its arguments once as [`ArgSpec`]s. [`Args::parse`] refuses
//! unknown keys (listing the accepted ones), missing required keys and values of
//! the wrong JSON type, so that a typo in an experiment file fails loudly on the
//! first call instead of silently training the wrong model.

use serde_json::{Map, Value};

use crate::error::{PlanResult, invalid_argument};
use crate::types::ArgInfo;

/// The JSON type an argument must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// A whole number ≥ 0 (a float with an integral value is accepted).
    Count,
    /// Any finite number.
    Number,
    /// A string.
    Text,
    /// true or false.
    Boolean,
    /// A list of whole numbers ≥ 0.
    CountList,
    /// A finite number, or a non-empty list of them (one per channel, say).
    NumberOrList,
}

impl ArgType {
    fn name(self) -> &'static str {
        match self {
            ArgType::Count => "integer",
            ArgType::Number => "number",
            ArgType::Text => "string",
            ArgType::Boolean => "boolean",
            ArgType::CountList => "list<integer>",
            ArgType::NumberOrList => "number or list<number>",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            ArgType::Count => as_count(value).is_some(),
            ArgType::Number => value.as_f64().is_some_and(f64::is_finite),
            ArgType::Text => value.is_string(),
            ArgType::Boolean => value.is_boolean(),
            ArgType::CountList => value
                .as_array()
                .is_some_and(|items| items.iter().all(|v| as_count(v).is_some())),
            ArgType::NumberOrList => match value.as_array() {
                Some(items) => {
                    !items.is_empty() && items.iter().all(|v| ArgType::Number.accepts(v))
                }
                None => ArgType::Number.accepts(value),
            },
        }
    }
}

/// One argument a plan accepts: its declaration for `describe()` and for checking.
#[derive(Debug, Clone)]
pub struct ArgSpec {
    /// Key in the JSON object.
    pub name: &'static str,
    /// Expected JSON type.
    pub ty: ArgType,
    /// Default as JSON text; `None` makes the argument required.
    pub default: Option<&'static str>,
    /// One line for the researcher.
    pub help: &'static str,
}

impl ArgSpec {
    /// A required argument.
    pub const fn required(name: &'static str, ty: ArgType, help: &'static str) -> Self {
        ArgSpec {
            name,
            ty,
            default: None,
            help,
        }
    }

    /// An optional argument with a default given as JSON text.
    pub const fn optional(
        name: &'static str,
        ty: ArgType,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        ArgSpec {
            name,
            ty,
            default: Some(default),
            help,
        }
    }

    /// The WIT description of this argument.
    pub fn info(&self) -> ArgInfo {
        ArgInfo {
            name: self.name.to_string(),
            type_name: self.ty.name().to_string(),
            required: self.default.is_none(),
            default_value: self.default.map(str::to_string),
            help: self.help.to_string(),
        }
    }
}

/// Checked arguments with defaults filled in.
#[derive(Debug, Clone)]
pub struct Args {
    what: &'static str,
    values: Map<String, Value>,
}

fn as_count(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64).then_some(f as u64)
}

impl Args {
    /// Parse `json` (an object; empty text means `{}`) for the arguments `specs`.
    /// `what` names the argument set in messages ("model_args", "optimizer_args").
    pub fn parse(what: &'static str, json: &str, specs: &[ArgSpec]) -> PlanResult<Args> {
        let value: Value = if json.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(json)
                .map_err(|e| invalid_argument(format!("{what} is not valid JSON: {e}")))?
        };
        let Value::Object(mut values) = value else {
            return Err(invalid_argument(format!(
                "{what} must be a JSON object such as {{\"n_features\": 30}}"
            )));
        };
        let accepted = || specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
        for key in values.keys() {
            if !specs.iter().any(|s| s.name == key) {
                return Err(invalid_argument(format!(
                    "unknown key `{key}` in {what}; accepted keys: {}",
                    accepted()
                )));
            }
        }
        for spec in specs {
            match values.get(spec.name) {
                Some(Value::Null) | None => match spec.default {
                    Some(default) => {
                        let v = serde_json::from_str(default).map_err(|e| {
                            invalid_argument(format!("default of {}.{}: {e}", what, spec.name))
                        })?;
                        values.insert(spec.name.to_string(), v);
                    }
                    None => {
                        return Err(invalid_argument(format!(
                            "missing required {what}.{} ({}): {}",
                            spec.name,
                            spec.ty.name(),
                            spec.help
                        )));
                    }
                },
                Some(v) if !spec.ty.accepts(v) => {
                    return Err(invalid_argument(format!(
                        "{what}.{} must be of type {}, got {v}",
                        spec.name,
                        spec.ty.name()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(Args { what, values })
    }

    fn get(&self, name: &str) -> PlanResult<&Value> {
        self.values.get(name).ok_or_else(|| {
            invalid_argument(format!("{}.{name} is not declared by this plan", self.what))
        })
    }

    /// A whole-number argument.
    pub fn count(&self, name: &str) -> PlanResult<usize> {
        let v = self.get(name)?;
        as_count(v)
            .map(|n| n as usize)
            .ok_or_else(|| invalid_argument(format!("{}.{name} must be an integer ≥ 0", self.what)))
    }

    /// A whole-number argument that must be at least `min`.
    pub fn count_at_least(&self, name: &str, min: usize) -> PlanResult<usize> {
        let n = self.count(name)?;
        if n < min {
            return Err(invalid_argument(format!(
                "{}.{name} must be at least {min}, got {n}",
                self.what
            )));
        }
        Ok(n)
    }

    /// A numeric argument, as f32.
    pub fn number(&self, name: &str) -> PlanResult<f32> {
        self.get(name)?
            .as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| invalid_argument(format!("{}.{name} must be a number", self.what)))
    }

    /// A number or list of numbers, as a list (one number: a list of one).
    pub fn numbers(&self, name: &str) -> PlanResult<Vec<f32>> {
        let err = || {
            invalid_argument(format!(
                "{}.{name} must be a number or a list of numbers",
                self.what
            ))
        };
        let value = self.get(name)?;
        match value.as_array() {
            Some(items) => items
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32).ok_or_else(err))
                .collect(),
            None => value.as_f64().map(|f| vec![f as f32]).ok_or_else(err),
        }
    }

    /// A string argument.
    pub fn text(&self, name: &str) -> PlanResult<&str> {
        self.get(name)?
            .as_str()
            .ok_or_else(|| invalid_argument(format!("{}.{name} must be a string", self.what)))
    }

    /// A boolean argument.
    pub fn boolean(&self, name: &str) -> PlanResult<bool> {
        self.get(name)?
            .as_bool()
            .ok_or_else(|| invalid_argument(format!("{}.{name} must be true or false", self.what)))
    }

    /// A list of whole numbers.
    pub fn counts(&self, name: &str) -> PlanResult<Vec<usize>> {
        let err = || invalid_argument(format!("{}.{name} must be a list of integers", self.what));
        self.get(name)?
            .as_array()
            .ok_or_else(err)?
            .iter()
            .map(|v| as_count(v).map(|n| n as usize).ok_or_else(err))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ArgSpec] = &[
        ArgSpec::required("n_features", ArgType::Count, "input width"),
        ArgSpec::optional("lr", ArgType::Number, "0.1", "learning rate"),
        ArgSpec::optional("hidden", ArgType::CountList, "[8, 4]", "hidden sizes"),
    ];

    #[test]
    fn fills_defaults_and_reads_values() {
        let args = Args::parse("model_args", r#"{"n_features": 30.0}"#, SPECS).unwrap();
        assert_eq!(args.count("n_features").unwrap(), 30);
        assert_eq!(args.number("lr").unwrap(), 0.1);
        assert_eq!(args.counts("hidden").unwrap(), vec![8, 4]);
    }

    #[test]
    fn names_missing_unknown_and_mistyped_keys() {
        let missing = Args::parse("model_args", "{}", SPECS).unwrap_err();
        assert!(
            missing
                .message
                .contains("missing required model_args.n_features"),
            "{missing}"
        );
        let unknown =
            Args::parse("model_args", r#"{"n_features":1,"nfeat":2}"#, SPECS).unwrap_err();
        assert!(unknown.message.contains("unknown key `nfeat`"), "{unknown}");
        assert!(
            unknown.message.contains("n_features, lr, hidden"),
            "{unknown}"
        );
        let typed = Args::parse("model_args", r#"{"n_features":"30"}"#, SPECS).unwrap_err();
        assert!(typed.message.contains("must be of type integer"), "{typed}");
        let not_object = Args::parse("model_args", "[1]", SPECS).unwrap_err();
        assert!(
            not_object.message.contains("must be a JSON object"),
            "{not_object}"
        );
        let negative = Args::parse("model_args", r#"{"n_features":-1}"#, SPECS).unwrap_err();
        assert!(negative.message.contains("integer"), "{negative}");
    }
}
