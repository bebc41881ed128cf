//! Parameter tensors in safetensors files: the format parameters travel in,
//! readable by Python's `safetensors` and PyTorch.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::Dtype;

use crate::sandbox::types::Tensor;

mod dtype;

use dtype::{Casts, Dtypes, element_size, extend_f32};

/// Why a parameter file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    /// File system failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a safetensors file, or one with tensors fedwasm cannot use.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Encode `tensors` (f32, little-endian) with string `metadata` as safetensors bytes.
///
/// The header is written here rather than by the `safetensors` crate, whose
/// metadata map has a random iteration order: parameters are content-addressed,
/// so the same values must always give the same bytes. Header keys are sorted,
/// data follows in the order given, and the header is padded to 8 bytes as the
/// format asks. Files are read back (and so validated) by the crate.
pub fn to_bytes(
    tensors: &[Tensor],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).map_err(|e| e.to_string())?,
        );
    }
    let mut offset = 0usize;
    for t in tensors {
        let expected = t
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize));
        if expected != Some(t.data.len()) {
            return Err(format!(
                "tensor `{}` has shape {:?} but {} values",
                t.name,
                t.shape,
                t.data.len()
            ));
        }
        if t.name == "__metadata__" || header.contains_key(&t.name) {
            return Err(format!("tensor name `{}` is reserved or repeated", t.name));
        }
        let end = offset.saturating_add(4 * t.data.len());
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for t in tensors {
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Write `tensors` with `metadata` to `path`.
pub fn write_file(
    path: &Path,
    tensors: &[Tensor],
    metadata: &BTreeMap<String, String>,
) -> Result<(), TensorFileError> {
    let shown = path.display().to_string();
    let bytes = to_bytes(tensors, metadata).map_err(|reason| TensorFileError::Format {
        path: shown.clone(),
        reason,
    })?;
    std::fs::write(path, bytes).map_err(|source| TensorFileError::Io {
        path: shown,
        source,
    })
}

/// The largest file a peer may send for parameters shaped like `like`: its
/// f32 data, plus room for a header (names, shapes, offsets, metadata). A
/// download past this is refused before it fills a disk.
pub fn max_file_bytes(like: &[Tensor]) -> u64 {
    let data: u64 = like
        .iter()
        .map(|t| (t.data.len() as u64).saturating_mul(4))
        .fold(0, u64::saturating_add);
    let header = 64 * 1024 + 512 * like.len() as u64;
    data.saturating_add(header)
}

/// Largest header accepted: names and shapes, never data.
const MAX_HEADER: u64 = 16 << 20;

/// Most tensors a parameter file may hold: far more than any model has, few
/// enough that their bookkeeping stays small.
pub const MAX_TENSORS: usize = 1 << 16;

/// Host memory one decoded tensor costs besides its values: its struct, name
/// and shape allocations and the parsed header entry, rounded up.
const TENSOR_OVERHEAD: usize = 256;

/// Tensors (sorted by name) and metadata.
type Decoded = (Vec<Tensor>, BTreeMap<String, String>);

/// Decode safetensors from `reader`, `size` bytes long, streaming, in at
/// most about `budget` bytes of memory: the header is parsed and validated by
/// the `safetensors` crate, its tensor count and sizes are checked against
/// the budget, then each tensor is decoded straight from the reader, so a
/// model needs its own memory, not twice it. Tensors of other dtypes than
/// F32 are refused, or with [`Dtypes::CastToF32`] cast and recorded in
/// `casts`. Errors are the reason, without the file's name.
fn decode(
    mut reader: impl std::io::Read,
    size: u64,
    budget: usize,
    dtypes: Dtypes,
    casts: &mut Casts,
) -> Result<Decoded, String> {
    let mut n = [0u8; 8];
    reader
        .read_exact(&mut n)
        .map_err(|_| "not a safetensors file: shorter than its header length".to_string())?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > size {
        return Err(format!(
            "not a safetensors file: header length {n} does not fit a {size}-byte file"
        ));
    }
    // Parsing costs a few times the header's size.
    if n.saturating_mul(4) > budget as u64 {
        return Err(format!(
            "a header of {n} bytes is over the memory budget of {} MiB",
            budget >> 20
        ));
    }
    let mut header = vec![0u8; n as usize];
    reader.read_exact(&mut header).map_err(|e| e.to_string())?;
    let meta: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| format!("not a safetensors file: {e}"))?;
    if 8 + n + meta.data_len() as u64 != size {
        return Err(format!(
            "the header describes {} data bytes but the file holds {}",
            meta.data_len(),
            size - 8 - n
        ));
    }
    // Each tensor's header entry and element size, looked up once.
    let mut entries = Vec::new();
    for name in meta.offset_keys() {
        let info = meta
            .info(&name)
            .ok_or_else(|| format!("tensor `{name}` vanished from the header"))?;
        let element = readable_element_size(&name, info.dtype, dtypes)?;
        entries.push((name, info, element));
    }
    // Values are held as F32 whatever their stored size.
    let values_bytes = entries
        .iter()
        .map(|(_, info, element)| (info.data_offsets.1 - info.data_offsets.0) / element * 4)
        .fold(0usize, usize::saturating_add);
    let count = entries.len();
    let needed = count
        .saturating_mul(TENSOR_OVERHEAD)
        .saturating_add(values_bytes);
    if count > MAX_TENSORS || needed > budget {
        return Err(format!(
            "{count} tensors of {} bytes need more than the memory budget of {} MiB (at most {MAX_TENSORS} tensors)",
            meta.data_len(),
            budget >> 20
        ));
    }
    let mut tensors = Vec::with_capacity(count);
    let mut chunk = vec![0u8; 1 << 16];
    for (name, info, element) in entries {
        let shape = info
            .shape
            .iter()
            .map(|&d| {
                u32::try_from(d).map_err(|_| format!("tensor `{name}` has a dimension over 2^32"))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let mut left = info.data_offsets.1 - info.data_offsets.0;
        let mut data = Vec::with_capacity(left / element);
        while left > 0 {
            // A multiple of every element size, so no element is split.
            let take = left.min(chunk.len());
            reader
                .read_exact(&mut chunk[..take])
                .map_err(|e| e.to_string())?;
            extend_f32(info.dtype, &chunk[..take], &mut data);
            left -= take;
        }
        if info.dtype != Dtype::F32 {
            casts.record(info.dtype, &name);
        }
        tensors.push(Tensor { name, shape, data });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((tensors, metadata))
}

/// Bytes per element of tensor `name` stored as `dtype`, or why it cannot
/// be read under `dtypes`.
fn readable_element_size(name: &str, dtype: Dtype, dtypes: Dtypes) -> Result<usize, String> {
    match (dtype, dtypes) {
        (Dtype::F32, _) => Ok(4),
        (_, Dtypes::F32Only) => Err(format!(
            "tensor `{name}` is {dtype:?}; fedwasm parameters are F32"
        )),
        (_, Dtypes::CastToF32) => element_size(dtype).ok_or_else(|| {
            format!(
                "tensor `{name}` is {dtype:?}, which fedwasm cannot read; save it as float32 (F16, BF16, F64 and integer tensors are cast)"
            )
        }),
    }
}

/// Decode safetensors bytes into f32 tensors (sorted by name) and metadata.
pub fn from_bytes(bytes: &[u8]) -> Result<Decoded, String> {
    decode_f32(bytes, bytes.len() as u64, usize::MAX)
}

/// [`from_bytes`] within a memory budget (see [`read_file_within`]).
pub fn from_bytes_within(bytes: &[u8], budget: usize) -> Result<Decoded, String> {
    decode_f32(bytes, bytes.len() as u64, budget)
}

/// [`decode`] of F32 tensors only.
fn decode_f32(reader: impl std::io::Read, size: u64, budget: usize) -> Result<Decoded, String> {
    decode(reader, size, budget, Dtypes::F32Only, &mut Casts::default())
}

/// Read the tensors (sorted by name) and metadata of `path`, streaming. The
/// file is trusted to fit in memory (its size was checked when it arrived).
pub fn read_file(path: &Path) -> Result<Decoded, TensorFileError> {
    read_file_within(path, usize::MAX)
}

/// [`read_file`] that refuses, before allocating, a file whose decoded
/// tensors would take more than about `budget` bytes: how a node reads
/// parameters for a plan, within the plan's memory budget.
pub fn read_file_within(path: &Path, budget: usize) -> Result<Decoded, TensorFileError> {
    read_from(path, budget, Dtypes::F32Only, &mut Casts::default())
}

/// [`read_file`] of a researcher's own file, as PyTorch may have saved it:
/// F16, BF16, F64 and integer tensors (BatchNorm's `num_batches_tracked`
/// is I64) are cast to F32, and what was cast is told, one note per stored
/// dtype.
pub fn read_file_casting(path: &Path) -> Result<(Decoded, Vec<String>), TensorFileError> {
    let mut casts = Casts::default();
    let decoded = read_from(path, usize::MAX, Dtypes::CastToF32, &mut casts)?;
    Ok((decoded, casts.notes()))
}

/// [`decode`] of the file at `path`, streamed; errors name the file.
fn read_from(
    path: &Path,
    budget: usize,
    dtypes: Dtypes,
    casts: &mut Casts,
) -> Result<Decoded, TensorFileError> {
    let shown = path.display().to_string();
    let io = |source| TensorFileError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    decode(
        std::io::BufReader::with_capacity(1 << 16, file),
        size,
        budget,
        dtypes,
        casts,
    )
    .map_err(|reason| TensorFileError::Format {
        path: shown.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values_and_metadata() {
        let tensors = vec![
            Tensor {
                name: "fc.weight".into(),
                shape: vec![2, 2],
                data: vec![1.0, -2.5, 3.0, f32::MIN_POSITIVE],
            },
            Tensor {
                name: "fc.bias".into(),
                shape: vec![2],
                data: vec![0.0, 7.0],
            },
        ];
        let meta = BTreeMap::from([
            ("round".to_string(), "3".to_string()),
            ("node".to_string(), "a".to_string()),
            ("plan".to_string(), "p".to_string()),
        ]);
        let bytes = to_bytes(&tensors, &meta).unwrap();
        assert_eq!(
            bytes,
            to_bytes(&tensors, &meta).unwrap(),
            "encoding is deterministic"
        );
        let (back, back_meta) = from_bytes(&bytes).unwrap();
        assert_eq!(back_meta, meta);
        assert_eq!(back[0].name, "fc.bias");
        assert_eq!(back[1].data, tensors[0].data);
        assert!(
            from_bytes(b"garbage")
                .unwrap_err()
                .contains("not a safetensors file")
        );
        // A plan may claim any shape: one whose element count overflows is refused.
        let overflowing = Tensor {
            name: "w".into(),
            shape: vec![u32::MAX, u32::MAX, u32::MAX],
            data: vec![],
        };
        let err = to_bytes(&[overflowing], &BTreeMap::new()).unwrap_err();
        assert!(err.contains("has shape"), "{err}");
    }

    /// A file of `(name, dtype, shape, bytes)` tensors, as PyTorch writes one.
    fn torch_file(
        dir: &Path,
        tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
    ) -> std::path::PathBuf {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                let view =
                    safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
                (name.to_string(), view)
            })
            .collect();
        let path = dir.join("torch.safetensors");
        safetensors::serialize_to_file(views, None, &path).unwrap();
        path
    }

    #[test]
    fn a_torch_state_dict_is_cast_for_the_researcher_and_refused_from_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let half: Vec<u8> = [0.5f32, -1.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let path = torch_file(
            dir.path(),
            &[
                (
                    "bn.num_batches_tracked",
                    Dtype::I64,
                    vec![],
                    42i64.to_le_bytes().to_vec(),
                ),
                ("fc.weight", Dtype::F16, vec![1, 2], half),
                (
                    "fc.bias",
                    Dtype::F32,
                    vec![1],
                    0.25f32.to_le_bytes().to_vec(),
                ),
            ],
        );
        let ((tensors, _), notes) = read_file_casting(&path).unwrap();
        let values: Vec<(&str, &[u32], &[f32])> = tensors
            .iter()
            .map(|t| (t.name.as_str(), &t.shape[..], &t.data[..]))
            .collect();
        assert_eq!(
            values,
            [
                ("bn.num_batches_tracked", &[][..], &[42.0][..]),
                ("fc.bias", &[1][..], &[0.25][..]),
                ("fc.weight", &[1, 2][..], &[0.5, -1.0][..]),
            ]
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[1].contains("from I64") && notes[1].contains("bn.num_batches_tracked"));
        let refused = read_file(&path).unwrap_err().to_string();
        assert!(
            refused.contains("is I64; fedwasm parameters are F32"),
            "{refused}"
        );

        let unreadable = torch_file(dir.path(), &[("n", Dtype::U64, vec![1], vec![0; 8])]);
        let err = read_file_casting(&unreadable).unwrap_err().to_string();
        assert!(
            err.contains("U64, which fedwasm cannot read; save it as float32"),
            "{err}"
        );
    }

    #[test]
    fn files_stream_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let big = Tensor {
            name: "w".into(),
            shape: vec![100_003],
            data: (0..100_003).map(|i| i as f32 * 0.5).collect(),
        };
        let small = Tensor {
            name: "b".into(),
            shape: vec![1],
            data: vec![-1.0],
        };
        let meta = BTreeMap::from([("round".to_string(), "1".to_string())]);
        let path = dir.path().join("p.safetensors");
        write_file(&path, &[big.clone(), small.clone()], &meta).unwrap();
        let (back, back_meta) = read_file(&path).unwrap();
        assert_eq!(back_meta, meta);
        assert_eq!(
            (back[0].data.clone(), back[1].data.clone()),
            (small.data, big.data)
        );

        let bytes = std::fs::read(&path).unwrap();
        let damaged = |name: &str, content: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            read_file(&p).unwrap_err().to_string()
        };
        assert!(
            damaged("short", &bytes[..bytes.len() - 4]).contains("data bytes but the file holds")
        );
        assert!(damaged("tiny", b"abc").contains("shorter than its header length"));
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(damaged("huge", &huge).contains("does not fit"));
        let mut not_json = bytes.clone();
        not_json[8] = b'x';
        assert!(damaged("json", &not_json).contains("not a safetensors file"));
        // Within a budget: 100 004 floats need ~400 KB.
        assert!(read_file_within(&path, 1 << 20).is_ok());
        let err = read_file_within(&path, 100_000).unwrap_err().to_string();
        assert!(err.contains("more than the memory budget"), "{err}");
    }

    #[test]
    fn many_empty_tensors_are_refused_before_they_are_built() {
        let empty: Vec<Tensor> = (0..MAX_TENSORS + 1)
            .map(|i| Tensor {
                name: format!("t{i}"),
                shape: vec![0],
                data: vec![],
            })
            .collect();
        let bytes = to_bytes(&empty, &BTreeMap::new()).unwrap();
        let err = decode_f32(&bytes[..], bytes.len() as u64, usize::MAX / 2).unwrap_err();
        assert!(err.contains("at most 65536 tensors"), "{err}");
    }
}
