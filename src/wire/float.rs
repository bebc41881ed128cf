//! Floats that may be infinite or NaN, in JSON.
//!
//! JSON has no infinity and no NaN: serde_json writes them as `null`, which
//! then fails to read back as a number. Yet an honest plan can diverge (an
//! infinite loss) or score a model with an infinite mean squared error, and
//! that result must reach the researcher, the history and the breakpoints
//! intact. These `serde(with = …)` modules write finite values as numbers and
//! the others as the strings `"inf"`, `"-inf"` and `"NaN"`, and read both.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

fn text(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("NaN")
    } else if value == f64::INFINITY {
        Some("inf")
    } else if value == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

struct AnyF64;

impl Visitor<'_> for AnyF64 {
    type Value = f64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number, or \"inf\", \"-inf\" or \"NaN\"")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
        }
    }
}

/// A float that serializes any value, finite or not.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Any(f64);

impl Serialize for Any {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match text(self.0) {
            Some(t) => s.serialize_str(t),
            None => s.serialize_f64(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyF64).map(Any)
    }
}

/// `f64` fields.
pub mod f64_any {
    use super::*;

    /// Write `value`, a number or its name.
    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        Any(*value).serialize(s)
    }

    /// Read a number or a name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Any::deserialize(d).map(|a| a.0)
    }
}

/// `f32` fields (the f32 → f64 → f32 round trip is exact).
pub mod f32_any {
    use super::*;

    /// Write `value`, a number or its name.
    pub fn serialize<S: Serializer>(value: &f32, s: S) -> Result<S::Ok, S::Error> {
        Any(f64::from(*value)).serialize(s)
    }

    /// Read a number or a name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Any::deserialize(d).map(|a| a.0 as f32)
    }
}

/// `Option<f32>` fields.
pub mod opt_f32_any {
    use super::*;

    /// Write `value`: null, a number or its name.
    pub fn serialize<S: Serializer>(value: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
        value.map(|v| Any(f64::from(v))).serialize(s)
    }

    /// Read null, a number or a name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
        Option::<Any>::deserialize(d).map(|a| a.map(|a| a.0 as f32))
    }
}

/// `BTreeMap<String, f64>` fields.
pub mod map_f64_any {
    use std::collections::BTreeMap;

    use super::*;

    /// Write each value, a number or its name.
    pub fn serialize<S: Serializer>(
        value: &BTreeMap<String, f64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(value.iter().map(|(k, v)| (k, Any(*v))))
    }

    /// Read each value, a number or a name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let map = BTreeMap::<String, Any>::deserialize(d)?;
        Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "super::f64_any")]
        a: f64,
        #[serde(with = "super::f32_any")]
        b: f32,
        #[serde(with = "super::opt_f32_any")]
        c: Option<f32>,
        #[serde(with = "super::opt_f32_any")]
        d: Option<f32>,
        #[serde(with = "super::map_f64_any")]
        e: BTreeMap<String, f64>,
    }

    #[test]
    fn every_float_survives_json() {
        let sample = Sample {
            a: f64::INFINITY,
            b: f32::NEG_INFINITY,
            c: Some(f32::NAN),
            d: None,
            e: BTreeMap::from([("loss".into(), 0.25), ("bad".into(), f64::NAN)]),
        };
        let json = serde_json::to_string(&sample).unwrap();
        assert_eq!(
            json,
            r#"{"a":"inf","b":"-inf","c":"NaN","d":null,"e":{"bad":"NaN","loss":0.25}}"#
        );
        let back: Sample = serde_json::from_str(&json).unwrap();
        assert!(back.a == f64::INFINITY && back.b == f32::NEG_INFINITY);
        assert!(back.c.unwrap().is_nan() && back.d.is_none());
        assert!(back.e["bad"].is_nan() && back.e["loss"] == 0.25);
        let plain: Sample =
            serde_json::from_str(r#"{"a":1,"b":0.5,"c":2,"d":null,"e":{}}"#).unwrap();
        assert_eq!((plain.a, plain.b, plain.c), (1.0, 0.5, Some(2.0)));
        assert!(
            serde_json::from_str::<Sample>(r#"{"a":"lots","b":0,"c":null,"d":null,"e":{}}"#)
                .is_err()
        );
    }
}
