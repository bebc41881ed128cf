//! From decoded images to the `[N, C, H, W]` batches a plan asks for: fit
//! to the plan's size (resize, or center-crop), its channels (grayscale or
//! RGB), seeded augmentation (flips, random crop with padding, small
//! rotation), per-channel normalization.
//!
//! Fitting and channel conversion happen once per image and task
//! ([`fit_image`], from the decoded images the worker keeps between rounds);
//! augmentation and normalization happen per batch ([`image_batch`]). Each sample draws its augmentation
//! from its own stream of the task's seed (the ChaCha stream numbered by the
//! sample's draw index), so a batch is the same bit for bit whatever the
//! thread count, and the samples of a batch are prepared in parallel.
//!
//! Over 500 lines with its tests (the geometry of each augmentation is
//! checked pixel by pixel); the pipeline itself is 350.

use image::imageops::{FilterType, resize};
use image::{ImageBuffer, Luma};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

use super::DatasetError;
use super::images::DecodedImage;
use crate::sandbox::random::{StreamSeed, unit_f32};

/// How an image is brought to the plan's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Resize (bilinear) to exactly the size asked.
    Resize,
    /// Cut the centre out; the image must be at least the size asked.
    CenterCrop,
}

/// Seeded augmentation, applied to training batches only.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Augment {
    /// Mirror left–right with probability ½.
    pub horizontal_flip: bool,
    /// Mirror top–bottom with probability ½.
    pub vertical_flip: bool,
    /// Pad by this many zero pixels on each side, then cut a random window
    /// of the original size (0: off).
    pub crop_padding: u32,
    /// Rotate by an angle uniform in ±this many degrees (0: off; at most 45).
    pub max_rotation_degrees: f32,
}

/// What a plan asks of images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    /// Rows of the batches.
    pub height: u32,
    /// Columns of the batches.
    pub width: u32,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: u32,
    /// How to reach that size.
    pub fit: Fit,
    /// Per channel, subtracted after augmentation.
    pub mean: Vec<f32>,
    /// Per channel, divided by after subtracting the mean; positive.
    pub std: Vec<f32>,
    /// Training-time augmentation.
    pub augment: Augment,
}

fn invalid(reason: String) -> DatasetError {
    DatasetError::Invalid(reason)
}

impl ImageSpec {
    /// The spec is usable on images of `height` × `width`; the error names
    /// the argument and what the data can give.
    pub fn check(&self, height: u32, width: u32) -> Result<(), DatasetError> {
        if !(1..=4096).contains(&self.height) || !(1..=4096).contains(&self.width) {
            return Err(invalid(format!(
                "image size {}×{} asked; a side is 1 to 4096 pixels",
                self.height, self.width
            )));
        }
        if self.fit == Fit::CenterCrop && (self.height > height || self.width > width) {
            return Err(invalid(format!(
                "center-crop to {}×{} asked, but the images are {height}×{width}; ask for at most that, or resize",
                self.height, self.width
            )));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(invalid(format!(
                "{} channels asked; images are read as 1 (grayscale) or 3 (RGB)",
                self.channels
            )));
        }
        let n = self.channels as usize;
        if self.mean.len() != n || self.std.len() != n {
            return Err(invalid(format!(
                "normalization has {} means and {} stds for {n} channels",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(invalid(
                "normalization needs finite means and positive stds".into(),
            ));
        }
        let a = &self.augment;
        if !(0.0..=45.0).contains(&a.max_rotation_degrees) {
            return Err(invalid(format!(
                "rotation of up to {}° asked; augmentation rotates by at most 45°",
                a.max_rotation_degrees
            )));
        }
        if a.crop_padding > self.height.min(self.width) {
            return Err(invalid(format!(
                "crop padding of {} asked; at most the smaller side, {}",
                a.crop_padding,
                self.height.min(self.width)
            )));
        }
        Ok(())
    }

    fn plane(&self) -> usize {
        self.height as usize * self.width as usize
    }

    /// Floats of one prepared sample.
    pub fn sample_len(&self) -> usize {
        self.channels as usize * self.plane()
    }
}

/// `image` fitted to `spec`'s size and channels, values still in [0, 1]:
/// what the worker caches between rounds. `spec` must have passed
/// [`ImageSpec::check`] for the image's size.
pub fn fit_image(image: &DecodedImage, spec: &ImageSpec) -> Result<Vec<f32>, DatasetError> {
    let (h, w) = (image.height as usize, image.width as usize);
    let channels = image.mode.channels as usize;
    if h * w == 0 || image.pixels.len() != channels * h * w || !matches!(channels, 1 | 3) {
        return Err(invalid(format!(
            "an image of {} values is not {channels} channels of {h}×{w}",
            image.pixels.len()
        )));
    }
    if spec.fit == Fit::CenterCrop && (spec.height as usize > h || spec.width as usize > w) {
        return Err(invalid(format!(
            "center-crop to {}×{} asked of a {h}×{w} image",
            spec.height, spec.width
        )));
    }
    let planes: Vec<&[f32]> = image.pixels.chunks_exact(h * w).collect();
    let fitted: Vec<Vec<f32>> = planes
        .iter()
        .map(|plane| match spec.fit {
            Fit::Resize if (spec.height, spec.width) == (image.height, image.width) => {
                plane.to_vec()
            }
            Fit::Resize => {
                let buffer: ImageBuffer<Luma<f32>, Vec<f32>> =
                    ImageBuffer::from_raw(image.width, image.height, plane.to_vec())
                        .unwrap_or_default();
                resize(&buffer, spec.width, spec.height, FilterType::Triangle).into_raw()
            }
            Fit::CenterCrop => {
                let top = (h - spec.height as usize) / 2;
                let left = (w - spec.width as usize) / 2;
                (0..spec.height as usize)
                    .flat_map(|r| {
                        let start = (top + r) * w + left;
                        plane[start..start + spec.width as usize].iter().copied()
                    })
                    .collect()
            }
        })
        .collect();
    Ok(match (fitted.len(), spec.channels) {
        (1, 3) => [fitted[0].as_slice(); 3].concat(),
        (3, 1) => fitted[0]
            .iter()
            .zip(&fitted[1])
            .zip(&fitted[2])
            // ITU-R 601-2 luma, as PIL's convert("L").
            .map(|((r, g), b)| 0.299 * r + 0.587 * g + 0.114 * b)
            .collect(),
        _ => fitted.concat(),
    })
}

/// Augment one fitted sample into `out` with draws from `rng`, then
/// normalize it. The draws are made in a fixed order whatever is on.
fn augment_into(sample: &[f32], spec: &ImageSpec, rng: &mut ChaCha8Rng, out: &mut [f32]) {
    let a = &spec.augment;
    let (h, w) = (spec.height as usize, spec.width as usize);
    let plane = h * w;
    let mut draw = || unit_f32(rng.next_u64());
    let flip_h = a.horizontal_flip && draw() < 0.5;
    let flip_v = a.vertical_flip && draw() < 0.5;
    let pad = a.crop_padding as f32;
    let (dy, dx) = if a.crop_padding > 0 {
        let span = 2.0 * pad + 1.0;
        (
            (draw() * span).floor().min(2.0 * pad) - pad,
            (draw() * span).floor().min(2.0 * pad) - pad,
        )
    } else {
        (0.0, 0.0)
    };
    let angle = if a.max_rotation_degrees > 0.0 {
        (draw() * 2.0 - 1.0) * a.max_rotation_degrees.to_radians()
    } else {
        0.0
    };
    let channels = spec.channels as usize;
    // Output pixel (r, col) reads source (sr, sc): the flips undone, then
    // the crop offset, then the rotation about the centre — an affine map,
    // so along a row the source moves by a constant step.
    let (sin, cos) = angle.sin_cos();
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let step = if flip_h { -1.0 } else { 1.0 };
    for r in 0..h {
        let sr = if flip_v { h - 1 - r } else { r } as f32 + dy;
        let sc0 = if flip_h { w as f32 - 1.0 } else { 0.0 } + dx;
        let (y, x0) = (sr - cy, sc0 - cx);
        let mut src_y = cy + cos * y + sin * x0;
        let mut src_x = cx - sin * y + cos * x0;
        let (step_y, step_x) = (sin * step, cos * step);
        for col in 0..w {
            let at = r * w + col;
            if angle == 0.0 {
                // Whole pixels: a copy or a zero.
                let (yi, xi) = (src_y.round(), src_x.round());
                let inside = yi >= 0.0 && xi >= 0.0 && yi < h as f32 && xi < w as f32;
                let from = yi as usize * w + xi as usize;
                for c in 0..channels {
                    let v = if inside {
                        sample[c * plane + from]
                    } else {
                        0.0
                    };
                    out[c * plane + at] = v;
                }
            } else {
                let (y0, x0) = (src_y.floor(), src_x.floor());
                let (fy, fx) = (src_y - y0, src_x - x0);
                let weights = [
                    (1.0 - fy) * (1.0 - fx),
                    (1.0 - fy) * fx,
                    fy * (1.0 - fx),
                    fy * fx,
                ];
                let corners = [
                    (y0, x0),
                    (y0, x0 + 1.0),
                    (y0 + 1.0, x0),
                    (y0 + 1.0, x0 + 1.0),
                ];
                let index = corners.map(|(yy, xx)| {
                    (yy >= 0.0 && xx >= 0.0 && yy < h as f32 && xx < w as f32)
                        .then(|| yy as usize * w + xx as usize)
                });
                for c in 0..channels {
                    let base = &sample[c * plane..(c + 1) * plane];
                    let mut v = 0.0;
                    for k in 0..4 {
                        if let Some(i) = index[k] {
                            v += weights[k] * base[i];
                        }
                    }
                    out[c * plane + at] = v;
                }
            }
            src_y += step_y;
            src_x += step_x;
        }
    }
    for c in 0..channels {
        let (mean, inv) = (spec.mean[c], 1.0 / spec.std[c]);
        for v in &mut out[c * plane..(c + 1) * plane] {
            *v = (*v - mean) * inv;
        }
    }
}

/// The batch `[N, C, H, W]` of the fitted samples for `indices` (sample
/// `i` is `fitted[i·L..(i+1)·L]`, `L` = [`ImageSpec::sample_len`]):
/// augmented when `training` (sample `k` of the batch drawing from stream
/// `first_draw + k` of `seed`), then normalized. Built in parallel, the
/// same bit for bit on any number of threads. Every sample must have been
/// fitted to `spec`, and every index name one.
pub fn image_batch(
    fitted: &[f32],
    indices: &[usize],
    spec: &ImageSpec,
    seed: &StreamSeed,
    first_draw: u64,
    training: bool,
) -> Result<Vec<f32>, DatasetError> {
    let len = spec.sample_len();
    if spec.mean.len() != spec.channels as usize || spec.std.len() != spec.channels as usize {
        return Err(invalid("normalization does not match the channels".into()));
    }
    let count = fitted.len() / len.max(1);
    if len == 0 || !fitted.len().is_multiple_of(len) {
        return Err(invalid(format!(
            "{} values are not whole samples of {len}",
            fitted.len()
        )));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= count) {
        return Err(invalid(format!(
            "sample {bad} is not one of the {count} samples fitted to {len} values"
        )));
    }
    let mut batch = vec![0.0f32; indices.len() * len];
    let plain = ImageSpec {
        augment: Augment::default(),
        ..spec.clone()
    };
    batch
        .par_chunks_mut(len)
        .zip(indices.par_iter())
        .enumerate()
        .for_each(|(k, (out, &index))| {
            let mut rng = ChaCha8Rng::from_seed(seed.0);
            rng.set_stream(first_draw + k as u64);
            let used = if training { spec } else { &plain };
            augment_into(&fitted[index * len..(index + 1) * len], used, &mut rng, out);
        });
    Ok(batch)
}

/// Fitted samples (whole ones, back to back) normalized per channel and
/// nothing else: what prediction sees, equal bit for bit to
/// [`image_batch`] without training. A channel `spec` has no mean or std
/// for (never, once [`ImageSpec::check`] passed) is left as it is.
pub fn normalized(fitted: &[f32], spec: &ImageSpec) -> Vec<f32> {
    let plane = spec.plane().max(1);
    let channels = spec.channels.max(1) as usize;
    fitted
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / plane) % channels;
            match (spec.mean.get(c), spec.std.get(c)) {
                (Some(mean), Some(std)) => (v - mean) * (1.0 / std),
                _ => v,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::images::PixelMode;

    fn spec(channels: u32, side: u32) -> ImageSpec {
        ImageSpec {
            height: side,
            width: side,
            channels,
            fit: Fit::Resize,
            mean: vec![0.0; channels as usize],
            std: vec![1.0; channels as usize],
            augment: Augment::default(),
        }
    }

    fn ramp(channels: u32, side: u32) -> DecodedImage {
        let n = (channels * side * side) as usize;
        DecodedImage {
            mode: PixelMode { channels, bits: 8 },
            height: side,
            width: side,
            pixels: (0..n).map(|i| i as f32 / n as f32).collect(),
        }
    }

    #[test]
    fn fitting_crops_the_centre_resizes_and_converts_channels() {
        let image = ramp(1, 4);
        let crop = ImageSpec {
            fit: Fit::CenterCrop,
            ..spec(1, 2)
        };
        assert_eq!(
            fit_image(&image, &crop).unwrap(),
            [5.0 / 16.0, 6.0 / 16.0, 9.0 / 16.0, 10.0 / 16.0]
        );
        let small = fit_image(&image, &spec(1, 2)).unwrap();
        assert_eq!(small.len(), 4);
        assert!(
            small.windows(2).all(|p| p[0] <= p[1] || p[0] > p[1]),
            "finite"
        );
        let rgb = fit_image(&image, &spec(3, 4)).unwrap();
        assert_eq!(&rgb[..16], &rgb[16..32]);
        let gray = fit_image(&ramp(3, 2), &spec(1, 2)).unwrap();
        let expected = 0.299 * 0.0 + 0.587 * (4.0 / 12.0) + 0.114 * (8.0 / 12.0);
        assert!((gray[0] - expected).abs() < 1e-6);
    }

    #[test]
    fn without_augmentation_a_batch_is_the_normalized_samples() {
        let fitted = [0.5f32; 4]
            .into_iter()
            .chain([1.0f32; 4])
            .collect::<Vec<_>>();
        let s = ImageSpec {
            mean: vec![0.5],
            std: vec![0.25],
            ..spec(1, 2)
        };
        let seed = StreamSeed([1; 32]);
        let batch = image_batch(&fitted, &[1, 0], &s, &seed, 0, true).unwrap();
        assert_eq!(batch, [2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn augmentation_is_seeded_per_sample_and_the_same_on_any_thread_count() {
        let fitted: Vec<Vec<f32>> = (0..16)
            .map(|i| {
                fit_image(&ramp(1, 8), &spec(1, 8))
                    .unwrap()
                    .iter()
                    .map(|v| v + i as f32)
                    .collect()
            })
            .collect();
        let s = ImageSpec {
            augment: Augment {
                horizontal_flip: true,
                vertical_flip: true,
                crop_padding: 2,
                max_rotation_degrees: 15.0,
            },
            ..spec(1, 8)
        };
        let seed = StreamSeed([7; 32]);
        let indices: Vec<usize> = (0..16).collect();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let a =
            one.install(|| image_batch(&fitted.concat(), &indices, &s, &seed, 32, true).unwrap());
        let b =
            four.install(|| image_batch(&fitted.concat(), &indices, &s, &seed, 32, true).unwrap());
        assert_eq!(a, b);
        let other = image_batch(
            &fitted.concat(),
            &indices,
            &s,
            &StreamSeed([8; 32]),
            32,
            true,
        )
        .unwrap();
        assert_ne!(a, other, "another seed augments differently");
        let plain = image_batch(&fitted.concat(), &indices, &s, &seed, 32, false).unwrap();
        assert_eq!(
            plain,
            fitted.concat(),
            "validation batches are not augmented"
        );
        // The same sample at another draw index is augmented afresh.
        let later = image_batch(&fitted.concat(), &indices, &s, &seed, 48, true).unwrap();
        assert_ne!(a, later);
        // Prediction's normalization is the validation batch, bit for bit.
        let scaled = ImageSpec {
            mean: vec![0.3],
            std: vec![0.7],
            ..s.clone()
        };
        let all: Vec<usize> = (0..fitted.len()).collect();
        assert_eq!(
            normalized(&fitted.concat(), &scaled),
            image_batch(&fitted.concat(), &all, &scaled, &seed, 0, false).unwrap()
        );
    }

    #[test]
    fn a_flip_mirrors_or_keeps_and_both_happen() {
        let fitted = vec![1.0, 2.0, 3.0, 4.0];
        let s = ImageSpec {
            augment: Augment {
                horizontal_flip: true,
                ..Augment::default()
            },
            ..spec(1, 2)
        };
        let seed = StreamSeed([3; 32]);
        let outcomes: std::collections::BTreeSet<Vec<u32>> = (0..32)
            .map(|draw| {
                image_batch(&fitted, &[0], &s, &seed, draw, true)
                    .unwrap()
                    .iter()
                    .map(|v| *v as u32)
                    .collect()
            })
            .collect();
        let expected: std::collections::BTreeSet<Vec<u32>> =
            [vec![1, 2, 3, 4], vec![2, 1, 4, 3]].into_iter().collect();
        assert_eq!(outcomes, expected, "kept or mirrored, both seen");
    }

    #[test]
    fn inconsistent_inputs_are_errors_not_panics() {
        let bad_image = DecodedImage {
            mode: PixelMode {
                channels: 3,
                bits: 8,
            },
            height: 2,
            width: 2,
            pixels: vec![0.0; 4],
        };
        assert!(fit_image(&bad_image, &spec(1, 2)).is_err());
        let crop = ImageSpec {
            fit: Fit::CenterCrop,
            ..spec(1, 8)
        };
        assert!(fit_image(&ramp(1, 4), &crop).is_err());
        let seed = StreamSeed([0; 32]);
        let fitted = vec![0.0f32; 4];
        assert!(image_batch(&fitted, &[1], &spec(1, 2), &seed, 0, true).is_err());
        assert!(image_batch(&fitted, &[0], &spec(1, 3), &seed, 0, true).is_err());
    }

    #[test]
    fn specs_the_data_cannot_serve_are_named() {
        let err = |s: ImageSpec| s.check(28, 28).unwrap_err().to_string();
        assert!(
            err(ImageSpec {
                fit: Fit::CenterCrop,
                ..spec(1, 32)
            })
            .contains("center-crop to 32×32 asked, but the images are 28×28")
        );
        assert!(err(spec(2, 28)).contains("2 channels asked"));
        assert!(
            err(ImageSpec {
                std: vec![0.0],
                ..spec(1, 28)
            })
            .contains("positive stds")
        );
        assert!(
            err(ImageSpec {
                mean: vec![0.0, 0.0],
                ..spec(1, 28)
            })
            .contains("2 means and 1 stds")
        );
        let mut rotating = spec(1, 28);
        rotating.augment.max_rotation_degrees = 90.0;
        assert!(err(rotating).contains("at most 45°"));
        assert!(spec(3, 224).check(28, 28).is_ok(), "resizing up is allowed");
    }
}
