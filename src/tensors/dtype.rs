//! Tensors stored in another dtype than F32, read as F32.
//!
//! fedwasm exchanges F32 only, and a node refuses anything else. But a
//! researcher's own starting point is often PyTorch's `state_dict` saved as
//! is: BatchNorm's `num_batches_tracked` is I64, and a model may be F16,
//! BF16 or F64. [`Dtypes::CastToF32`] reads those, and says what it cast.

use std::collections::BTreeMap;

use safetensors::Dtype;

/// What a reader accepts besides F32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dtypes {
    /// F32 only: parameters from the network (a node's, the researcher's).
    F32Only,
    /// F16, BF16, F64 and integer tensors too, cast to F32: the
    /// researcher's own files (`initial_parameters`).
    CastToF32,
}

/// Bytes of one element of `dtype`, when it can be read as F32.
pub(super) fn element_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 | Dtype::I32 => Some(4),
        Dtype::F64 | Dtype::I64 => Some(8),
        Dtype::F16 | Dtype::BF16 | Dtype::I16 => Some(2),
        Dtype::I8 | Dtype::U8 | Dtype::BOOL => Some(1),
        _ => None,
    }
}

/// Append the values of `bytes` (whole little-endian elements of `dtype`,
/// one [`element_size`] accepts) to `out`, as F32: F16 and BF16 exactly,
/// F64 rounded to nearest, integers exactly up to 2^24 in magnitude.
pub(super) fn extend_f32(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>) {
    fn each<const N: usize>(bytes: &[u8], out: &mut Vec<f32>, f: impl Fn([u8; N]) -> f32) {
        out.extend(
            bytes
                .chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunks of N bytes"))),
        );
    }
    match dtype {
        Dtype::F32 => each(bytes, out, f32::from_le_bytes),
        Dtype::F64 => each(bytes, out, |b| f64::from_le_bytes(b) as f32),
        Dtype::F16 => each(bytes, out, |b| half::f16::from_le_bytes(b).to_f32()),
        Dtype::BF16 => each(bytes, out, |b| half::bf16::from_le_bytes(b).to_f32()),
        Dtype::I64 => each(bytes, out, |b| i64::from_le_bytes(b) as f32),
        Dtype::I32 => each(bytes, out, |b| i32::from_le_bytes(b) as f32),
        Dtype::I16 => each(bytes, out, |b| f32::from(i16::from_le_bytes(b))),
        Dtype::I8 => each(bytes, out, |b: [u8; 1]| f32::from(b[0] as i8)),
        Dtype::U8 => each(bytes, out, |b: [u8; 1]| f32::from(b[0])),
        Dtype::BOOL => each(bytes, out, |b: [u8; 1]| f32::from(u8::from(b[0] != 0))),
        other => unreachable!("{other:?} has no element size"),
    }
}

/// The tensors a reader cast, by their stored dtype.
#[derive(Debug, Default)]
pub(super) struct Casts(BTreeMap<String, Vec<String>>);

impl Casts {
    /// `name` was stored as `dtype` and cast to F32.
    pub(super) fn record(&mut self, dtype: Dtype, name: &str) {
        self.0
            .entry(format!("{dtype:?}"))
            .or_default()
            .push(name.to_string());
    }

    /// One sentence per stored dtype, naming the first tensors cast.
    pub(super) fn notes(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(dtype, names)| {
                let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
                let more = if names.len() > 3 { ", …" } else { "" };
                let how = match dtype.as_str() {
                    "F16" | "BF16" => "exactly",
                    "F64" => "rounded to the nearest F32",
                    _ => "exactly up to 2^24 in magnitude",
                };
                format!(
                    "cast {} tensor(s) from {dtype} to F32, {how}: {}{more}",
                    names.len(),
                    shown.join(", ")
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_readable_dtype_reads_its_values() {
        let cases: [(Dtype, Vec<u8>, Vec<f32>); 8] = [
            (Dtype::F64, 1.5f64.to_le_bytes().to_vec(), vec![1.5]),
            (
                Dtype::F16,
                half::f16::from_f32(-2.25).to_le_bytes().to_vec(),
                vec![-2.25],
            ),
            (
                Dtype::BF16,
                half::bf16::from_f32(3.0).to_le_bytes().to_vec(),
                vec![3.0],
            ),
            (
                Dtype::I64,
                [7i64.to_le_bytes(), (-1i64).to_le_bytes()].concat(),
                vec![7.0, -1.0],
            ),
            (
                Dtype::I32,
                123_456i32.to_le_bytes().to_vec(),
                vec![123_456.0],
            ),
            (Dtype::I8, vec![0xff], vec![-1.0]),
            (Dtype::U8, vec![0xff], vec![255.0]),
            (Dtype::BOOL, vec![0, 1, 2], vec![0.0, 1.0, 1.0]),
        ];
        for (dtype, bytes, expected) in cases {
            let size = element_size(dtype).expect("readable");
            assert_eq!(bytes.len() % size, 0, "{dtype:?}");
            let mut out = Vec::new();
            extend_f32(dtype, &bytes, &mut out);
            assert_eq!(out, expected, "{dtype:?}");
        }
        assert_eq!(element_size(Dtype::U64), None);
        assert_eq!(element_size(Dtype::F8_E4M3), None);
    }

    #[test]
    fn notes_name_the_dtype_and_the_first_tensors() {
        let mut casts = Casts::default();
        for name in ["a", "b", "c", "d"] {
            casts.record(Dtype::I64, name);
        }
        casts.record(Dtype::F16, "w");
        let notes = casts.notes();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0], "cast 1 tensor(s) from F16 to F32, exactly: w");
        assert!(
            notes[1].starts_with("cast 4 tensor(s) from I64 to F32")
                && notes[1].ends_with("a, b, c, …"),
            "{}",
            notes[1]
        );
    }
}
