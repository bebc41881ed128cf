//! Parameter tensors in safetensors files: the format parameters travel in,
//! readable by Python's `safetensors` and PyTorch.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::Dtype;

use crate::sandbox::types::Tensor;

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
        let expected: usize = t.shape.iter().map(|&d| d as usize).product();
        if expected != t.data.len() {
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
        let end = offset + 4 * t.data.len();
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

/// Largest header accepted: names and shapes, never data.
const MAX_HEADER: u64 = 100 << 20;

/// Tensors (sorted by name) and metadata.
type Decoded = (Vec<Tensor>, BTreeMap<String, String>);

/// Decode safetensors from `reader`, `size` bytes long, streaming: the header
/// is parsed and validated by the `safetensors` crate, then each tensor is
/// decoded straight from the reader, so a model needs its own memory, not
/// twice it. Errors are the reason, without the file's name.
fn decode(mut reader: impl std::io::Read, size: u64) -> Result<Decoded, String> {
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
    let mut tensors = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    for name in meta.offset_keys() {
        let info = meta
            .info(&name)
            .ok_or_else(|| format!("tensor `{name}` vanished from the header"))?;
        if info.dtype != Dtype::F32 {
            return Err(format!(
                "tensor `{name}` is {:?}; fedwasm parameters are F32",
                info.dtype
            ));
        }
        let shape = info
            .shape
            .iter()
            .map(|&d| {
                u32::try_from(d).map_err(|_| format!("tensor `{name}` has a dimension over 2^32"))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let mut left = info.data_offsets.1 - info.data_offsets.0;
        let mut data = Vec::with_capacity(left / 4);
        while left > 0 {
            let take = left.min(chunk.len());
            reader
                .read_exact(&mut chunk[..take])
                .map_err(|e| e.to_string())?;
            data.extend(
                chunk[..take]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            left -= take;
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

/// Decode safetensors bytes into f32 tensors (sorted by name) and metadata.
pub fn from_bytes(bytes: &[u8]) -> Result<Decoded, String> {
    decode(bytes, bytes.len() as u64)
}

/// Read the tensors (sorted by name) and metadata of `path`, streaming.
pub fn read_file(path: &Path) -> Result<Decoded, TensorFileError> {
    let shown = path.display().to_string();
    let io = |source| TensorFileError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    decode(std::io::BufReader::with_capacity(1 << 16, file), size).map_err(|reason| {
        TensorFileError::Format {
            path: shown.clone(),
            reason,
        }
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
    }
}
