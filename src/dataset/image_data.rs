//! An image dataset on a worker: read once (every file decoded, the
//! registration digest checked), described to the plan, and prepared as the
//! plan's `data-spec` asks (fitted in parallel, split, batched by
//! [`Samples`] with seeded augmentation).
//!
//! The plan sees tensors only: [`image_info`] gives it counts, sizes and
//! class names, never a path. What the items are labelled with is checked
//! against the plan's task in `image_targets.rs`.
//!
//! Over 600 lines with its tests (each mismatch between a plan and the
//! images, masks, reuse of fitted images); the code itself is 340.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::DatasetError;
use super::image_manifest::{ManifestColumns, load_manifest};
use super::image_pipeline::{Augment, Fit, ImageSpec, fit_image, fit_mask};
use super::image_targets::{Targets, targets};
use super::images::{DecodedImage, ImageLimits, ImageSet, ImageTarget, TargetKind, load_folder};
use super::prepare::{ImageFinish, PreparedData, Samples};
use super::split::{Split, split_rows};
use crate::digest::Sha256Digest;
use crate::sandbox::random::StreamSeed;
use crate::sandbox::types::{
    DataSpec, DatasetInfo, FeatureSelection, ImageFit, ImageInfo, ImageTargetKind, Scaling,
};

/// Where a task's images come from, as the node registered them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    /// A CSV manifest's columns; none for an image folder.
    pub manifest: Option<ManifestColumns>,
    /// The digest recorded at registration, checked when the files are read.
    pub digest: Sha256Digest,
}

/// A dataset's images, decoded, as a worker keeps them between tasks.
#[derive(Debug, Clone)]
pub struct LoadedImages {
    /// What registration records: classes, items, size and mode.
    pub set: ImageSet,
    /// Every item's image, in item order.
    pub images: Vec<DecodedImage>,
    /// For a mask dataset, every item's mask, in item order: a class index
    /// (into the set's classes) per pixel, the image's size. Empty otherwise.
    pub masks: Vec<Vec<u8>>,
    /// Every item fitted to the size and channels the last task asked
    /// for: the next task of the same plan (the next round) reuses it.
    fitted: Arc<Mutex<Option<Arc<Fitted>>>>,
}

/// Every item of a dataset fitted to one size and channel count (values
/// in [0, 1], before augmentation and normalization), with the masks.
#[derive(Debug)]
struct Fitted {
    /// What they were fitted to: height, width, channels, fit.
    key: (u32, u32, u32, Fit),
    /// Every item's fitted image, back to back.
    images: Vec<f32>,
    /// Every item's fitted mask, back to back, when asked for.
    masks: Option<Vec<f32>>,
}

impl LoadedImages {
    /// The decoded images (and masks) of `set`.
    pub fn new(set: ImageSet, images: Vec<DecodedImage>, masks: Vec<Vec<u8>>) -> Self {
        LoadedImages {
            set,
            images,
            masks,
            fitted: Arc::default(),
        }
    }

    /// Every item fitted to `spec` (with its mask when `masks`), from the
    /// last task's work when it asked for the same size and channels.
    /// Fitting is the same bit for bit either way.
    fn fitted(&self, spec: &ImageSpec, masks: bool) -> Result<Arc<Fitted>, DatasetError> {
        let key = (spec.height, spec.width, spec.channels, spec.fit);
        let mut memo = self.fitted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = memo.as_ref()
            && done.key == key
            && (!masks || done.masks.is_some())
        {
            return Ok(done.clone());
        }
        // The old fit goes first: the budget counts one fitted copy.
        *memo = None;
        let mut images = vec![0.0f32; self.images.len() * spec.sample_len()];
        images
            .par_chunks_mut(spec.sample_len().max(1))
            .zip(self.images.par_iter())
            .try_for_each(|(out, image)| {
                out.copy_from_slice(&fit_image(image, spec)?);
                Ok::<_, DatasetError>(())
            })?;
        let size = (self.set.height, self.set.width);
        let masks = if masks {
            let plane = spec.plane();
            let mut all = vec![0.0f32; self.masks.len() * plane];
            all.par_chunks_mut(plane.max(1))
                .zip(self.masks.par_iter())
                .try_for_each(|(out, mask)| {
                    out.copy_from_slice(&fit_mask(mask, size, spec)?);
                    Ok::<_, DatasetError>(())
                })?;
            Some(all)
        } else {
            None
        };
        let done = Arc::new(Fitted { key, images, masks });
        *memo = Some(done.clone());
        Ok(done)
    }
}

/// Read every image of the folder or manifest at `path` (at most
/// `max_bytes` of decoded pixels) and check that the files are those
/// registered.
pub fn load_images(
    path: &Path,
    source: &ImageSource,
    max_bytes: usize,
) -> Result<LoadedImages, DatasetError> {
    let loaded = read_images(path, source.manifest.as_ref(), max_bytes).map_err(|e| match e {
        DatasetError::Malformed { .. } => DatasetError::Invalid(format!(
            "an image file changed since the dataset was registered: {e}; the node's operator can check the files with `fedwasm node dataset check`, then register the dataset again"
        )),
        other => other,
    })?;
    if loaded.set.digest != source.digest {
        return Err(DatasetError::Invalid(
            "the dataset's image files changed since it was registered; the node's operator can see which with `fedwasm node dataset check`, then register the dataset again".into(),
        ));
    }
    Ok(loaded)
}

/// Read every image of the folder (or, with `manifest`, the CSV manifest)
/// at `path`, with registration's checks and at most `max_bytes` of
/// decoded pixels; nothing registered to compare with (the researcher
/// scoring a saved model on images of their own).
pub fn read_images(
    path: &Path,
    manifest: Option<&ManifestColumns>,
    max_bytes: usize,
) -> Result<LoadedImages, DatasetError> {
    let limits = ImageLimits::default();
    match manifest {
        None => {
            let (set, images) = load_folder(path, &limits, max_bytes)?;
            Ok(LoadedImages::new(set, images, Vec::new()))
        }
        Some(columns) => load_manifest(path, columns, &limits, max_bytes),
    }
}

/// The files `loaded` was read from besides the folder or manifest at
/// `path`: each class folder (for a folder), every image and mask. A worker
/// keeps the decoded images while none of these changes.
pub fn image_files(path: &Path, loaded: &LoadedImages, manifest: bool) -> Vec<PathBuf> {
    let root = if manifest {
        path.parent().unwrap_or(Path::new("."))
    } else {
        path
    };
    let mut files = Vec::with_capacity(loaded.set.items.len() + 1);
    for item in &loaded.set.items {
        if !manifest && let Some(class) = item.path.parent() {
            let folder = root.join(class);
            if files.last() != Some(&folder) {
                files.push(folder);
            }
        }
    }
    for item in &loaded.set.items {
        files.push(root.join(&item.path));
        if let ImageTarget::Mask(mask) = &item.target {
            files.push(root.join(mask));
        }
    }
    files
}

/// What a plan is told about an image dataset (never a path).
pub fn image_info(set: &ImageSet) -> DatasetInfo {
    let n = set.items.len() as u64;
    DatasetInfo {
        columns: Vec::new(),
        sample_count: n,
        shape: vec![
            n,
            u64::from(set.mode.channels),
            u64::from(set.height),
            u64::from(set.width),
        ],
        target: None,
        images: Some(ImageInfo {
            channels: set.mode.channels,
            height: set.height,
            width: set.width,
            target_kind: match set.kind {
                TargetKind::Class => ImageTargetKind::Class,
                TargetKind::MultiLabel => ImageTargetKind::MultiLabel,
                TargetKind::Mask => ImageTargetKind::Mask,
            },
            classes: set.classes.clone(),
        }),
    }
}

fn invalid(reason: impl Into<String>) -> DatasetError {
    DatasetError::Invalid(reason.into())
}

/// The host's image spec from the plan's, checked against images of
/// `height` × `width`.
fn image_spec(spec: &DataSpec, height: u32, width: u32) -> Result<ImageSpec, DatasetError> {
    let Some(asked) = &spec.images else {
        return Err(invalid(
            "the dataset holds images, but the plan's training-data asks for table columns (data-spec.images is none); use an image plan (e.g. cnn) or a tabular dataset",
        ));
    };
    if !matches!(spec.features, FeatureSelection::AllExceptTarget) {
        return Err(invalid(
            "data-spec.features selects columns, but the dataset holds images; ask for all-except-target",
        ));
    }
    if spec.target.is_some() {
        return Err(invalid(
            "data-spec.target names a column, but an image dataset's targets are its labels; leave it none",
        ));
    }
    if spec.scaling != Scaling::None {
        return Err(invalid(
            "data-spec.scaling applies to tables; images are normalized by data-spec.images.mean and std, so ask for scaling none",
        ));
    }
    let a = &asked.augmentation;
    let host = ImageSpec {
        height: asked.height,
        width: asked.width,
        channels: asked.channels,
        fit: match asked.fit {
            ImageFit::Resize => Fit::Resize,
            ImageFit::CenterCrop => Fit::CenterCrop,
        },
        mean: asked.mean.clone(),
        std: asked.std.clone(),
        augment: Augment {
            horizontal_flip: a.horizontal_flip,
            vertical_flip: a.vertical_flip,
            crop_padding: a.crop_padding,
            max_rotation_degrees: a.max_rotation_degrees,
        },
    };
    host.check(height, width).map_err(|e| match e {
        DatasetError::Invalid(reason) => invalid(format!("data-spec.images: {reason}")),
        other => other,
    })?;
    Ok(host)
}

/// Refuse, before anything is fitted, a size whose images do not fit the
/// plan's memory budget together with the decoded ones: the worker holds
/// the decoded images, one fitted copy (kept for the next round) and the
/// samples gathered from it. The error names the largest square size that
/// fits.
fn check_budget(
    loaded: &LoadedImages,
    image: &ImageSpec,
    per_sample: usize,
    max_bytes: usize,
) -> Result<(), DatasetError> {
    const F32: usize = std::mem::size_of::<f32>();
    let count = loaded.set.items.len();
    let decoded = loaded
        .images
        .iter()
        .map(|i| i.pixels.len() * F32)
        .chain(loaded.masks.iter().map(Vec::len))
        .fold(0usize, usize::saturating_add);
    let fitted = count
        .checked_mul(per_sample)
        .and_then(|n| n.checked_mul(2 * F32));
    let needed = fitted.and_then(|f| f.checked_add(decoded));
    if needed.is_some_and(|n| n <= max_bytes) {
        return Ok(());
    }
    // Per pixel of a square side s: channels (and a mask) twice, as f32.
    let per_pixel = (per_sample / image.plane().max(1)) * 2 * F32 * count.max(1);
    let room = max_bytes.saturating_sub(decoded) / per_pixel.max(1);
    let side = (room as f64).sqrt().floor() as u64;
    Err(invalid(format!(
        "{count} images of {}×{}×{} need {} MiB fitted (twice: kept and batched) beside {} MiB decoded, more than the plan's memory budget of {} MiB; ask for at most {side}×{side}, or raise the node's sandbox memory_mib",
        image.channels,
        image.height,
        image.width,
        fitted.map_or(u64::MAX, |f| (f >> 20) as u64),
        decoded >> 20,
        max_bytes >> 20
    )))
}

/// Fit, split and wrap `loaded` as the plan's `spec` asks. Training batches
/// are augmented with `augmentation` (the task's seed); held-out ones never.
pub fn prepare_images(
    loaded: &LoadedImages,
    spec: &DataSpec,
    split: &Split,
    augmentation: StreamSeed,
) -> Result<PreparedData, DatasetError> {
    let set = &loaded.set;
    let image = image_spec(spec, set.height, set.width)?;
    let targets = targets(set, &spec.task)?;
    let count = set.items.len();
    let masks = matches!(targets, Targets::Masks);
    if loaded.images.len() != count || (masks && loaded.masks.len() != count) {
        return Err(invalid(format!(
            "{} images and {} masks were read for {count} items",
            loaded.images.len(),
            loaded.masks.len()
        )));
    }
    let len = image.sample_len();
    let per_sample = if masks {
        len + image.height as usize * image.width as usize
    } else {
        len
    };
    check_budget(loaded, &image, per_sample, split.max_bytes)?;
    let (train, test) = split_rows(count, split)?;
    let finish = Arc::new(ImageFinish {
        spec: image.clone(),
        seed: augmentation,
        masks,
    });
    let fitted = loaded.fitted(&image, masks)?;
    let plane = image.height as usize * image.width as usize;
    let pick = |all: &[f32], rows: &[usize], width: usize| -> Vec<f32> {
        rows.iter()
            .flat_map(|&r| &all[r * width..(r + 1) * width])
            .copied()
            .collect()
    };
    let gather = |rows: &[usize]| -> Result<Samples, DatasetError> {
        let (targets, target_shape) = match (&targets, &fitted.masks) {
            (Targets::PerImage(values, shape), _) => {
                let width = shape.iter().map(|&d| d as usize).product::<usize>();
                (pick(values, rows, width), shape.clone())
            }
            (Targets::Masks, Some(all)) => {
                (pick(all, rows, plane), vec![image.height, image.width])
            }
            (Targets::Masks, None) => return Err(invalid("the masks were not fitted")),
        };
        Ok(Samples {
            features: pick(&fitted.images, rows, len),
            targets,
            target_shape,
            n_features: len,
            images: Some(finish.clone()),
        })
    };
    Ok(PreparedData {
        feature_names: Vec::new(),
        target_name: if masks { "mask" } else { "class" }.into(),
        task: spec.task,
        train: gather(&train)?,
        test: gather(&test)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::images::tests::gray;
    use crate::dataset::scan_folder;
    use crate::sandbox::types::{Augmentation, ImageSpec as WitImageSpec, Task};

    fn folder() -> (tempfile::TempDir, LoadedImages) {
        let dir = tempfile::tempdir().unwrap();
        for (class, value) in [("benign", 40u8), ("malignant", 200)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..5 {
                gray(&dir.path().join(class), &format!("{i}.png"), 8, value + i);
            }
        }
        let digest = scan_folder(dir.path(), &ImageLimits::default())
            .unwrap()
            .digest;
        let source = ImageSource {
            manifest: None,
            digest,
        };
        let loaded = load_images(dir.path(), &source, 1 << 20).unwrap();
        (dir, loaded)
    }

    fn spec(side: u32, fit: ImageFit) -> DataSpec {
        DataSpec {
            features: FeatureSelection::AllExceptTarget,
            target: None,
            task: Task::BinaryClassification,
            scaling: Scaling::None,
            images: Some(WitImageSpec {
                height: side,
                width: side,
                channels: 1,
                fit,
                mean: vec![0.5],
                std: vec![0.25],
                augmentation: Augmentation {
                    horizontal_flip: true,
                    vertical_flip: false,
                    crop_padding: 1,
                    max_rotation_degrees: 0.0,
                },
            }),
        }
    }

    fn split(test_ratio: f64) -> Split {
        Split {
            test_ratio,
            designated_test: None,
            seed: StreamSeed([1; 32]),
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn the_plan_is_told_sizes_and_classes_and_gets_nchw_batches() {
        let (_dir, loaded) = folder();
        let info = image_info(&loaded.set);
        assert_eq!(info.shape, [10, 1, 8, 8]);
        assert!(info.columns.is_empty() && info.target.is_none());
        let images = info.images.unwrap();
        assert_eq!(images.classes, ["benign", "malignant"]);
        let data = prepare_images(
            &loaded,
            &spec(4, ImageFit::Resize),
            &split(0.2),
            StreamSeed([2; 32]),
        )
        .unwrap();
        assert_eq!((data.train.len(), data.test.len()), (8, 2));
        let batch = data.train.batch(&[0, 7], 0).unwrap();
        assert_eq!(batch.features.shape, [2, 1, 4, 4]);
        assert_eq!(batch.targets.shape, [2]);
        assert_eq!(
            batch.targets.data,
            [data.train.targets[0], data.train.targets[7]]
        );
        let rows = data.test.feature_rows(0, 2);
        assert_eq!(rows.shape, [2, 1, 4, 4]);
        // A uniform image normalizes to one value, (v - 0.5) / 0.25, up to
        // the resize filter's rounding.
        let v = rows.data[0];
        assert!(rows.data[..16].iter().all(|&x| (x - v).abs() < 1e-5));
        // The same draw index gives the same batch.
        let again = |draw| data.train.batch(&[1, 2], draw).unwrap().features.data;
        assert_eq!(again(5), again(5));
    }

    #[test]
    fn specs_the_images_cannot_serve_are_refused_naming_the_field() {
        let (_dir, loaded) = folder();
        let seed = StreamSeed([0; 32]);
        let err = |s: DataSpec| {
            prepare_images(&loaded, &s, &split(0.0), seed)
                .unwrap_err()
                .to_string()
        };
        let crop = err(spec(16, ImageFit::CenterCrop));
        assert!(
            crop.contains("data-spec.images") && crop.contains("8×8"),
            "{crop}"
        );
        let huge = err(spec(5000, ImageFit::Resize));
        assert!(huge.contains("4096"), "{huge}");
        let tabular = err(DataSpec {
            images: None,
            ..spec(4, ImageFit::Resize)
        });
        assert!(tabular.contains("data-spec.images is none"), "{tabular}");
        let scaled = err(DataSpec {
            scaling: Scaling::Standardize,
            ..spec(4, ImageFit::Resize)
        });
        assert!(scaled.contains("data-spec.scaling"), "{scaled}");
        let classes = err(DataSpec {
            task: Task::MulticlassClassification(3),
            ..spec(4, ImageFit::Resize)
        });
        assert!(
            classes.contains("2 classes (benign, malignant)"),
            "{classes}"
        );
        let labels = err(DataSpec {
            task: Task::MultiLabelClassification(2),
            ..spec(4, ImageFit::Resize)
        });
        assert!(
            labels.contains("one of 2 classes each") && labels.contains("ask for classification"),
            "{labels}"
        );
        let big = prepare_images(
            &loaded,
            &spec(256, ImageFit::Resize),
            &Split {
                max_bytes: 1 << 20,
                ..split(0.0)
            },
            seed,
        )
        .unwrap_err()
        .to_string();
        assert!(big.contains("memory budget"), "{big}");
    }

    #[test]
    fn fitted_images_count_against_the_budget_with_the_decoded_ones() {
        let (_dir, loaded) = folder();
        let seed = StreamSeed([3; 32]);
        // 10 images of 1×60×60 take 144,000 bytes fitted once: under the
        // budget alone, over it twice beside the 2,560 decoded bytes.
        let budget = 200_000;
        let err = prepare_images(
            &loaded,
            &spec(60, ImageFit::Resize),
            &Split {
                max_bytes: budget,
                ..split(0.0)
            },
            seed,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ask for at most 49×49"), "{err}");
        let fits = prepare_images(
            &loaded,
            &spec(49, ImageFit::Resize),
            &Split {
                max_bytes: budget,
                ..split(0.0)
            },
            seed,
        );
        assert!(fits.is_ok(), "the size the error names fits");
    }

    #[test]
    fn changed_files_and_budgets_are_refused_before_training() {
        let (dir, loaded) = folder();
        let source = ImageSource {
            manifest: None,
            digest: loaded.set.digest,
        };
        gray(&dir.path().join("benign"), "0.png", 8, 99);
        let err = load_images(dir.path(), &source, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("changed since it was registered"), "{err}");
        let tiny = load_images(dir.path(), &source, 300)
            .unwrap_err()
            .to_string();
        assert!(tiny.contains("memory budget"), "{tiny}");
    }

    /// Six 4×4 images whose left column is bright, each with the mask of
    /// that column (255) over background (0), in a manifest.
    fn mask_manifest() -> (tempfile::TempDir, LoadedImages) {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("image,mask\n");
        for i in 0..6u8 {
            let pixels: Vec<u8> = (0..16)
                .map(|k| if k % 4 == 0 { 200 } else { 10 + i })
                .collect();
            let mask: Vec<u8> = (0..16).map(|k| if k % 4 == 0 { 255 } else { 0 }).collect();
            for (name, data) in [(format!("i{i}.png"), pixels), (format!("m{i}.png"), mask)] {
                image::GrayImage::from_raw(4, 4, data)
                    .unwrap()
                    .save(dir.path().join(name))
                    .unwrap();
            }
            csv.push_str(&format!("i{i}.png,m{i}.png\n"));
        }
        let manifest = dir.path().join("masks.csv");
        std::fs::write(&manifest, csv).unwrap();
        let columns = ManifestColumns {
            image: "image".into(),
            target: super::super::ManifestTarget::Mask("mask".into()),
        };
        let loaded = read_images(&manifest, Some(&columns), 1 << 20).unwrap();
        (dir, loaded)
    }

    #[test]
    fn masks_become_class_indices_fitted_and_flipped_with_their_images() {
        let (_dir, loaded) = mask_manifest();
        assert_eq!(loaded.set.classes, ["0", "255"]);
        assert_eq!(loaded.masks.len(), 6);
        assert_eq!(loaded.masks[0][..4], [1, 0, 0, 0]);
        let info = image_info(&loaded.set);
        assert!(matches!(
            info.images.unwrap().target_kind,
            ImageTargetKind::Mask
        ));
        let mut asked = spec(4, ImageFit::Resize);
        asked.task = Task::Segmentation(2);
        let data = prepare_images(&loaded, &asked, &split(0.0), StreamSeed([4; 32])).unwrap();
        assert_eq!(data.train.len(), 6);
        assert_eq!(data.train.target_shape, [4, 4]);
        assert_eq!(data.train.targets[..4], [1.0, 0.0, 0.0, 0.0]);
        // Over many draws the (flipped, shifted) masks still mark exactly the
        // bright pixels of their images, and both flips happen.
        let mut mirrored = false;
        for draw in 0..16 {
            let batch = data.train.batch(&[0, 3], draw * 2).unwrap();
            assert_eq!(batch.targets.shape, [2, 4, 4]);
            for (x, m) in batch.features.data.iter().zip(&batch.targets.data) {
                // Bright pixels normalize far above the mean, padding and
                // dark ones below it.
                assert_eq!(*m == 1.0, *x > 1.0, "{x} with class {m}");
            }
            // Only a mirrored column lands in the right half.
            mirrored |= batch
                .targets
                .data
                .iter()
                .enumerate()
                .any(|(k, &m)| m == 1.0 && k % 4 >= 2);
        }
        assert!(mirrored, "a horizontal flip moved the bright column right");
    }

    #[test]
    fn a_segmentation_task_must_fit_the_masks() {
        let (_dir, loaded) = mask_manifest();
        let err = |task: Task| {
            let mut asked = spec(4, ImageFit::Resize);
            asked.task = task;
            prepare_images(&loaded, &asked, &split(0.0), StreamSeed([0; 32]))
                .unwrap_err()
                .to_string()
        };
        let three = err(Task::Segmentation(3));
        assert!(
            three.contains("2 values (0, 255)") && three.contains("number of classes to 2"),
            "{three}"
        );
        let classes = err(Task::BinaryClassification);
        assert!(
            classes.contains("ask for segmentation into 2 classes"),
            "{classes}"
        );
        let (_dir, folder) = folder();
        let mut asked = spec(4, ImageFit::Resize);
        asked.task = Task::Segmentation(2);
        let err = prepare_images(&folder, &asked, &split(0.0), StreamSeed([0; 32]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a manifest with a mask column"), "{err}");
    }

    #[test]
    fn a_second_task_of_the_same_size_reuses_the_fitted_images() {
        let (_dir, loaded) = folder();
        let asked = spec(4, ImageFit::Resize);
        let prepare = |asked: &DataSpec| {
            prepare_images(&loaded, asked, &split(0.2), StreamSeed([2; 32])).unwrap()
        };
        let first = prepare(&asked);
        let memo = loaded.fitted.lock().unwrap().clone().unwrap();
        let again = prepare(&asked);
        let reused = loaded.fitted.lock().unwrap().clone().unwrap();
        assert!(Arc::ptr_eq(&memo, &reused), "fitted once");
        assert_eq!(first.train.features, again.train.features);
        assert_eq!(first.test.targets, again.test.targets);
        // Another size is fitted afresh, and replaces the memo.
        let smaller = prepare(&spec(2, ImageFit::Resize));
        assert_eq!(smaller.train.features.len(), 8 * 4);
        let replaced = loaded.fitted.lock().unwrap().clone().unwrap();
        assert!(!Arc::ptr_eq(&memo, &replaced));
    }
}
