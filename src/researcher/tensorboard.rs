//! TensorBoard event files: one writer per node under `<experiment>/runs/<node_id>/`.
//!
//! An event file is a sequence of TFRecords — `u64` length, masked CRC-32C of
//! the length, the bytes, masked CRC-32C of the bytes — each holding a
//! protobuf `Event`. The first event carries `file_version`; the others a
//! `Summary` with one scalar. The few protobuf fields needed are encoded here
//! directly, which spares a protobuf toolchain for three messages.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// CRC as TFRecord stores it: rotated and offset, so that a CRC of data that
/// itself holds CRCs does not degenerate.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn length_delimited(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push((field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Protobuf `Event { wall_time = 1, step = 2, file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: i64, body: EventBody<'_>) -> Vec<u8> {
    let mut out = vec![0x09];
    out.extend_from_slice(&wall_time.to_le_bytes());
    out.push(0x10);
    varint(&mut out, step as u64);
    match body {
        EventBody::FileVersion(version) => length_delimited(&mut out, 3, version.as_bytes()),
        EventBody::Scalar { tag, value } => {
            // Summary { repeated Value value = 1 }, Value { tag = 1, simple_value = 2 }
            let mut value_msg = Vec::new();
            length_delimited(&mut value_msg, 1, tag.as_bytes());
            value_msg.push(0x15);
            value_msg.extend_from_slice(&value.to_le_bytes());
            let mut summary = Vec::new();
            length_delimited(&mut summary, 1, &value_msg);
            length_delimited(&mut out, 5, &summary);
        }
    }
    out
}

enum EventBody<'a> {
    FileVersion(&'a str),
    Scalar { tag: &'a str, value: f32 },
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Create a new event file in `dir` (created if needed).
    pub fn create(dir: &Path) -> std::io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let stamp = now() as u64;
        let mut n = 0;
        let path = loop {
            let candidate = dir.join(format!(
                "events.out.tfevents.{stamp}.fedwasm.{}.{n}",
                std::process::id()
            ));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        let mut writer = EventWriter {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        writer.record(&event(now(), 0, EventBody::FileVersion("brain.Event:2")))?;
        writer.out.flush()?;
        Ok(writer)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc(data).to_le_bytes())
    }

    /// Append scalar `tag` = `value` at `step`, flushed so TensorBoard sees it live.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> std::io::Result<()> {
        self.record(&event(now(), step, EventBody::Scalar { tag, value }))?;
        self.out.flush()
    }
}

/// The writers of an experiment, one per node, created on first use.
pub struct TensorboardLog {
    runs: PathBuf,
    writers: BTreeMap<String, EventWriter>,
}

impl TensorboardLog {
    /// Event files go to `runs/<node_id>/`.
    pub fn new(runs: PathBuf) -> Self {
        TensorboardLog {
            runs,
            writers: BTreeMap::new(),
        }
    }

    /// The folder to point TensorBoard at.
    pub fn runs(&self) -> &Path {
        &self.runs
    }

    /// Record `tag` = `value` at `step` for `node`.
    pub fn scalar(&mut self, node: &str, tag: &str, step: u64, value: f32) -> std::io::Result<()> {
        if !self.writers.contains_key(node) {
            let writer = EventWriter::create(&self.runs.join(node))?;
            self.writers.insert(node.to_string(), writer);
        }
        match self.writers.get_mut(node) {
            Some(writer) => writer.scalar(tag, step as i64, value),
            None => Ok(()),
        }
    }
}

/// A scalar read back from an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarEvent {
    /// The tag, e.g. `TRAINING/Loss`.
    pub tag: String,
    /// The step.
    pub step: i64,
    /// The value.
    pub value: f32,
}

/// Read the scalars of an event file, checking every CRC: the reader the
/// tests (and anyone without TensorBoard) use.
pub fn read_scalars(path: &Path) -> Result<Vec<ScalarEvent>, String> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut at = 0;
    let mut scalars = Vec::new();
    let mut first = true;
    while at < bytes.len() {
        let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
            let slice = bytes
                .get(*at..*at + n)
                .ok_or_else(|| format!("truncated record at byte {}", *at))?;
            *at += n;
            Ok(slice)
        };
        let len_bytes = take(&mut at, 8)?;
        let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| "length")?) as usize;
        let len_crc = u32::from_le_bytes(take(&mut at, 4)?.try_into().map_err(|_| "crc")?);
        if len_crc != masked_crc(len_bytes) {
            return Err(format!("bad length CRC at byte {}", at - 12));
        }
        let data = take(&mut at, len)?;
        let data_crc = u32::from_le_bytes(take(&mut at, 4)?.try_into().map_err(|_| "crc")?);
        if data_crc != masked_crc(data) {
            return Err(format!("bad data CRC at byte {}", at - 4 - len));
        }
        let parsed = parse_event(data)?;
        if first {
            if parsed.file_version.as_deref() != Some("brain.Event:2") {
                return Err("the first event has no file_version".into());
            }
            first = false;
        }
        scalars.extend(parsed.scalar.map(|(tag, value)| ScalarEvent {
            tag,
            step: parsed.step,
            value,
        }));
    }
    Ok(scalars)
}

#[derive(Default)]
struct ParsedEvent {
    step: i64,
    file_version: Option<String>,
    scalar: Option<(String, f32)>,
}

fn read_varint(data: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at).ok_or("truncated varint")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

/// One protobuf field: number, wire type, payload.
type Field<'a> = (u64, u8, &'a [u8]);

/// The fields of a protobuf message.
fn fields(data: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let key = read_varint(data, &mut at)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        let start = at;
        let end = match wire {
            0 => {
                read_varint(data, &mut at)?;
                at
            }
            1 => at + 8,
            2 => {
                let len = read_varint(data, &mut at)? as usize;
                let s = at;
                at = s + len;
                out.push((field, wire, data.get(s..at).ok_or("truncated field")?));
                continue;
            }
            5 => at + 4,
            other => return Err(format!("unsupported wire type {other}")),
        };
        at = end;
        out.push((field, wire, data.get(start..end).ok_or("truncated field")?));
    }
    Ok(out)
}

fn parse_event(data: &[u8]) -> Result<ParsedEvent, String> {
    let mut event = ParsedEvent::default();
    for (field, _, payload) in fields(data)? {
        match field {
            2 => event.step = read_varint(payload, &mut 0)? as i64,
            3 => event.file_version = Some(String::from_utf8_lossy(payload).into_owned()),
            5 => {
                for (f, _, value) in fields(payload)? {
                    if f != 1 {
                        continue;
                    }
                    let (mut tag, mut number) = (String::new(), None);
                    for (vf, _, vp) in fields(value)? {
                        match vf {
                            1 => tag = String::from_utf8_lossy(vp).into_owned(),
                            2 => {
                                number = Some(f32::from_le_bytes(
                                    vp.try_into().map_err(|_| "simple_value")?,
                                ))
                            }
                            _ => {}
                        }
                    }
                    if let Some(v) = number {
                        event.scalar = Some((tag, v));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tfrecord() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720); masking per TFRecord.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn scalars_round_trip_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TensorboardLog::new(dir.path().join("runs"));
        log.scalar("node-a", "TRAINING/Loss", 10, 0.5).unwrap();
        log.scalar("node-a", "TRAINING/Loss", 300, 0.25).unwrap();
        log.scalar("node-b", "TRAINING/Loss", 10, 0.75).unwrap();
        let file = std::fs::read_dir(dir.path().join("runs/node-a"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert!(
            file.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("events.out.tfevents.")
        );
        let scalars = read_scalars(&file).unwrap();
        assert_eq!(
            scalars,
            [
                ScalarEvent {
                    tag: "TRAINING/Loss".into(),
                    step: 10,
                    value: 0.5
                },
                ScalarEvent {
                    tag: "TRAINING/Loss".into(),
                    step: 300,
                    value: 0.25
                },
            ]
        );
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        assert!(read_scalars(&file).unwrap_err().contains("CRC"));
    }
}
