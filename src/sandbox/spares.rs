//! Buffers of dropped host tensors, kept for the next tensor of the same
//! length.
//!
//! A training step allocates the same shapes every step: without reuse,
//! each operation's output is fresh memory the kernel must fault in page by
//! page (and the allocator hands back to the system when the tensor drops,
//! on the compute threads' arenas), which cost a tenth of a CNN's step.
//! Spares stay counted in the plan's memory budget until they are reused
//! or evicted; [`super::host::MemoryCap`] evicts them all before it would
//! refuse the plan anything, so keeping them never makes a plan fail.

use std::collections::HashMap;

/// Most spares kept of one length: a bound whatever a plan does.
const PER_LENGTH: usize = 256;

/// Reusable buffers by length, and the bytes they hold.
#[derive(Default)]
pub(crate) struct Spares {
    by_len: HashMap<usize, Vec<Vec<f32>>>,
    bytes: usize,
}

impl Spares {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keep `buffer`, an operation's output, for reuse, unless it is empty
    /// or [`PER_LENGTH`] spares of its length are kept already. (Only
    /// outputs are kept: a tensor the plan uploads every step has a length
    /// no output may take, and kept it would only make the next upload
    /// fault fresh memory in.)
    pub(crate) fn keep(&mut self, buffer: Vec<f32>) {
        let len = buffer.len();
        if len == 0 {
            return;
        }
        let kept = self.by_len.entry(len).or_default();
        if kept.len() == PER_LENGTH {
            return;
        }
        self.bytes += bytes(len);
        kept.push(buffer);
    }

    /// A buffer of `len` values for an operation's output: a spare of that
    /// length as the plan's last tensor left it (every operation writes its
    /// whole output and reads none of it: `fedwasm_kernels::Op::run`, tested
    /// there), or a new zeroed one.
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        let Some(kept) = self.by_len.get_mut(&len) else {
            return vec![0.0; len];
        };
        let buffer = kept.pop().unwrap_or_else(|| vec![0.0; len]);
        if kept.is_empty() {
            // No entry outlives its spares: the map never outgrows them.
            self.by_len.remove(&len);
        }
        self.bytes -= bytes(len);
        buffer
    }

    /// Free every spare.
    pub(crate) fn clear(&mut self) {
        self.by_len.clear();
        self.bytes = 0;
    }
}

/// A spare is charged as the tensor it was.
fn bytes(len: usize) -> usize {
    super::compute::HostTensor::bytes(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_of_the_length_asked_is_reused() {
        let mut spares = Spares::default();
        spares.keep(vec![3.0; 8]);
        spares.keep(Vec::new());
        assert_eq!(spares.bytes(), bytes(8));
        let other = spares.take(4);
        assert_eq!((other, spares.bytes()), (vec![0.0; 4], bytes(8)));
        let reused = spares.take(8);
        assert_eq!((reused, spares.bytes()), (vec![3.0; 8], 0));
        spares.keep(vec![1.0; 2]);
        spares.clear();
        assert_eq!(spares.bytes(), 0);
        assert_eq!(spares.take(2), vec![0.0; 2]);
        for _ in 0..PER_LENGTH + 3 {
            spares.keep(vec![1.0; 2]);
        }
        assert_eq!(spares.bytes(), bytes(2) * PER_LENGTH);
        assert_eq!(spares.take(2), vec![1.0; 2]);
        assert_eq!(spares.by_len[&2].len(), PER_LENGTH - 1);
    }
}
