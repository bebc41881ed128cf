//! From decoded images (and masks) to the `[N, C, H, W]` batches a plan
//! asks for: fit to the plan's size (resize, or center-crop), its channels
//! (grayscale or RGB), seeded augmentation (`augment.rs`), per-channel
//! normalization; masks fitted by nearest pixel and moved with their images.
//!
//! Fitting and channel conversion happen once per image and task
//! ([`fit_image`], [`fit_mask`], from the decoded images the worker keeps
//! between rounds); augmentation and normalization happen per batch
//! ([`image_batch`], [`segmentation_batch`]). Each sample draws its
//! augmentation from its own stream of the task's seed (the ChaCha stream
//! numbered by the sample's draw index), so a batch is the same bit for bit
//! whatever the thread count, and the samples of a batch are prepared in
//! parallel.
//!
//! Over 600 lines with its tests (augmentation, masks and fitting are
//! checked pixel by pixel); the pipeline itself is 380.

use image::imageops::{FilterType, resize};
use image::{ImageBuffer, Luma};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use rayon::prelude::*;

use super::DatasetError;
pub use super::augment::Augment;
use super::augment::Geometry;
use super::images::DecodedImage;
use crate::sandbox::random::StreamSeed;

/// How an image is brought to the plan's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Resize (bilinear) to exactly the size asked.
    Resize,
    /// Cut the centre out; the image must be at least the size asked.
    CenterCrop,
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

    /// Pixels of one fitted image plane: height × width.
    pub(crate) fn plane(&self) -> usize {
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

/// Normalize one sample's channels in place.
fn normalize_into(out: &mut [f32], spec: &ImageSpec) {
    let plane = spec.plane();
    for c in 0..spec.channels as usize {
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
    let draws = Draws {
        seed,
        first_draw,
        training,
    };
    Ok(batch_with_masks(fitted, None, indices, spec, &draws)?.0)
}

/// [`image_batch`] with each sample's mask (`masks[i·H·W..]`, class
/// indices at the plan's size): the masks `[N, H, W]` moved by the same
/// augmentation as their images, by nearest pixel, class 0 where the
/// augmentation brings in what lies outside the image.
pub fn segmentation_batch(
    fitted: &[f32],
    masks: &[f32],
    indices: &[usize],
    spec: &ImageSpec,
    draws: &Draws<'_>,
) -> Result<(Vec<f32>, Vec<f32>), DatasetError> {
    batch_with_masks(fitted, Some(masks), indices, spec, draws)
}

/// Where a batch's augmentation draws come from.
#[derive(Debug, Clone, Copy)]
pub struct Draws<'a> {
    /// The task's augmentation seed.
    pub seed: &'a StreamSeed,
    /// Stream of the batch's first sample; sample `k` uses `first_draw + k`.
    pub first_draw: u64,
    /// Augment (training) or not (validation).
    pub training: bool,
}

fn batch_with_masks(
    fitted: &[f32],
    masks: Option<&[f32]>,
    indices: &[usize],
    spec: &ImageSpec,
    draws: &Draws<'_>,
) -> Result<(Vec<f32>, Vec<f32>), DatasetError> {
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
    let plane = spec.plane();
    if let Some(m) = masks
        && m.len() != count * plane
    {
        return Err(invalid(format!(
            "{} mask values for {count} samples of {}×{}",
            m.len(),
            spec.height,
            spec.width
        )));
    }
    let mut batch = vec![0.0f32; indices.len() * len];
    let mut batch_masks = vec![
        0.0f32;
        if masks.is_some() {
            indices.len() * plane
        } else {
            0
        }
    ];
    let size = (spec.height as usize, spec.width as usize);
    let augment = if draws.training {
        spec.augment
    } else {
        Augment::default()
    };
    let work = |k: usize, index: usize, out: &mut [f32], mask_out: &mut [f32]| {
        let mut rng = ChaCha8Rng::from_seed(draws.seed.0);
        rng.set_stream(draws.first_draw + k as u64);
        let geometry = Geometry::draw(&augment, &mut rng);
        let sample = &fitted[index * len..(index + 1) * len];
        geometry.warp(sample, (spec.channels as usize, size.0, size.1), true, out);
        normalize_into(out, spec);
        if let Some(m) = masks {
            let mask = &m[index * plane..(index + 1) * plane];
            geometry.warp(mask, (1, size.0, size.1), false, mask_out);
        }
    };
    if masks.is_some() {
        batch
            .par_chunks_mut(len)
            .zip(batch_masks.par_chunks_mut(plane.max(1)))
            .zip(indices.par_iter())
            .enumerate()
            .for_each(|(k, ((out, mask_out), &index))| work(k, index, out, mask_out));
    } else {
        batch
            .par_chunks_mut(len)
            .zip(indices.par_iter())
            .enumerate()
            .for_each(|(k, (out, &index))| work(k, index, out, &mut []));
    }
    Ok((batch, batch_masks))
}

/// Masks (class indices, one byte per pixel, `h` × `w`) brought to the
/// plan's size as their images are: the nearest pixel when resized, the
/// same centre when cropped. The spec must have passed [`ImageSpec::check`].
pub fn fit_mask(
    mask: &[u8],
    (h, w): (u32, u32),
    spec: &ImageSpec,
) -> Result<Vec<f32>, DatasetError> {
    let (h, w) = (h as usize, w as usize);
    let (th, tw) = (spec.height as usize, spec.width as usize);
    if mask.len() != h * w || h * w == 0 {
        return Err(invalid(format!(
            "a mask of {} values is not {h}×{w}",
            mask.len()
        )));
    }
    let (rows, cols): (Vec<usize>, Vec<usize>) = match spec.fit {
        Fit::Resize => (
            (0..th).map(|r| nearest(r, th, h)).collect(),
            (0..tw).map(|c| nearest(c, tw, w)).collect(),
        ),
        Fit::CenterCrop => {
            if th > h || tw > w {
                return Err(invalid(format!(
                    "center-crop to {th}×{tw} asked of a {h}×{w} mask"
                )));
            }
            let (top, left) = ((h - th) / 2, (w - tw) / 2);
            ((top..top + th).collect(), (left..left + tw).collect())
        }
    };
    Ok(rows
        .iter()
        .flat_map(|&r| cols.iter().map(move |&c| f32::from(mask[r * w + c])))
        .collect())
}

/// The source index of output pixel `i` of `to` when resizing from `from`
/// pixels: the one whose centre is nearest (PyTorch's `nearest-exact`).
fn nearest(i: usize, to: usize, from: usize) -> usize {
    (((i as f64 + 0.5) * from as f64 / to as f64).floor() as usize).min(from - 1)
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

    #[test]
    fn masks_are_fitted_by_nearest_pixel_or_cropped_like_their_images() {
        // A 4×4 mask of classes 0..3 by column.
        let mask: Vec<u8> = (0..16).map(|k| (k % 4) as u8).collect();
        let up = fit_mask(&mask, (4, 4), &spec(1, 8)).unwrap();
        assert_eq!(up[..8], [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        // Down, each output pixel takes the source pixel under its centre.
        let down = fit_mask(&mask, (4, 4), &spec(1, 2)).unwrap();
        assert_eq!(down, [1.0, 3.0, 1.0, 3.0]);
        let crop = ImageSpec {
            fit: Fit::CenterCrop,
            ..spec(1, 2)
        };
        assert_eq!(
            fit_mask(&mask, (4, 4), &crop).unwrap(),
            [1.0, 2.0, 1.0, 2.0]
        );
        assert!(fit_mask(&mask[..15], (4, 4), &spec(1, 2)).is_err());
        assert!(
            fit_mask(
                &mask,
                (4, 4),
                &ImageSpec {
                    fit: Fit::CenterCrop,
                    ..spec(1, 8)
                }
            )
            .is_err()
        );
    }

    #[test]
    fn a_rotated_mask_keeps_to_its_image() {
        // A bright disc and its mask: wherever the rotated image reads only
        // disc pixels the mask says disc, only background pixels background.
        let side = 16;
        let inside = |k: usize| {
            let (r, c) = ((k / side) as f32 - 7.5, (k % side) as f32 - 5.0);
            r * r + c * c < 16.0
        };
        let fitted: Vec<f32> = (0..side * side)
            .map(|k| f32::from(u8::from(inside(k))))
            .collect();
        let mask = fitted.clone();
        let s = ImageSpec {
            augment: Augment {
                horizontal_flip: true,
                vertical_flip: true,
                crop_padding: 2,
                max_rotation_degrees: 40.0,
            },
            ..spec(1, side as u32)
        };
        let seed = StreamSeed([9; 32]);
        let indices = vec![0; 24];
        let draws = Draws {
            seed: &seed,
            first_draw: 0,
            training: true,
        };
        let (images, masks) = segmentation_batch(&fitted, &mask, &indices, &s, &draws).unwrap();
        assert_eq!(
            images,
            image_batch(&fitted, &indices, &s, &seed, 0, true).unwrap(),
            "the masks do not change the images' draws"
        );
        let (mut disc, mut background) = (0, 0);
        for (x, m) in images.iter().zip(&masks) {
            if *x == 1.0 {
                assert_eq!(*m, 1.0);
                disc += 1;
            } else if *x == 0.0 {
                assert_eq!(*m, 0.0);
                background += 1;
            }
        }
        assert!(disc > 100 && background > 1000, "{disc} {background}");
        let samples: Vec<&[f32]> = masks.chunks(side * side).collect();
        assert!(
            samples.windows(2).any(|w| w[0] != w[1]),
            "each sample draws its own"
        );
        let still = Draws {
            training: false,
            ..draws
        };
        let (_, plain) = segmentation_batch(&fitted, &mask, &[0], &s, &still).unwrap();
        assert_eq!(plain, mask, "validation masks are not augmented");
    }
}
