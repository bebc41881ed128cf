//! Apply a plan's `data-spec` to a table: select columns, check targets,
//! split off validation rows, scale with training statistics only.

use std::sync::Arc;

use super::image_pipeline::{Draws, ImageSpec, image_batch, normalized, segmentation_batch};
use super::split::{Split, split_rows};
use super::{ColumnKind, DatasetError, Table};
use crate::sandbox::random::StreamSeed;
use crate::sandbox::types::{
    Array, Batch, ColumnInfo, ColumnType, DataSpec, DatasetInfo, FeatureSelection, Scaling, Task,
};

/// Features and targets of a set of samples, features row-major.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// [len, n_features], row-major: a table's scaled rows, or images
    /// fitted to the plan's size with values in [0, 1], `[C, H, W]` each.
    pub features: Vec<f32>,
    /// Each sample's target, back to back: one value, or (multi-label) a
    /// 0/1 per label, or (segmentation) a class index per pixel, `[H, W]`.
    pub targets: Vec<f32>,
    /// The shape of one sample's target: `[]` for one value, `[labels]`,
    /// or `[H, W]` for a mask.
    pub target_shape: Vec<u32>,
    /// Floats of one sample.
    pub n_features: usize,
    /// Set for images: how a batch is finished (augmented when training,
    /// normalized) and shaped `[N, C, H, W]`.
    pub images: Option<Arc<ImageFinish>>,
}

/// What turns fitted images into a plan's batch: its spec and the task's
/// augmentation seed.
#[derive(Debug, Clone)]
pub struct ImageFinish {
    /// What the plan asked for; checked against the images.
    pub spec: ImageSpec,
    /// Seed of every sample's augmentation stream.
    pub seed: StreamSeed,
    /// Whether the targets are masks, moved with their images.
    pub masks: bool,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.len() / self.target_len().max(1)
    }

    /// Values of one sample's target.
    pub fn target_len(&self) -> usize {
        self.target_shape.iter().map(|&d| d as usize).product()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    fn shape(&self, n: usize) -> Vec<u32> {
        match &self.images {
            Some(f) => vec![n as u32, f.spec.channels, f.spec.height, f.spec.width],
            None => vec![n as u32, self.n_features as u32],
        }
    }

    /// The samples at `indices`, as a training batch: images augmented, the
    /// batch's sample `k` drawing from augmentation stream `first_draw + k`
    /// (the caller counts the samples drawn so far, so no two draws of a
    /// task share a stream).
    pub fn batch(&self, indices: &[usize], first_draw: u64) -> Result<Batch, DatasetError> {
        let d = self.n_features;
        let t = self.target_len();
        let mut target_shape = vec![indices.len() as u32];
        target_shape.extend_from_slice(&self.target_shape);
        let gathered_targets = || {
            indices
                .iter()
                .flat_map(|&i| &self.targets[i * t..(i + 1) * t])
                .copied()
                .collect()
        };
        let (features, targets) = match &self.images {
            Some(f) if f.masks => {
                let draws = Draws {
                    seed: &f.seed,
                    first_draw,
                    training: true,
                };
                segmentation_batch(&self.features, &self.targets, indices, &f.spec, &draws)?
            }
            Some(f) => (
                image_batch(&self.features, indices, &f.spec, &f.seed, first_draw, true)?,
                gathered_targets(),
            ),
            None => {
                let mut data = Vec::with_capacity(indices.len() * d);
                for &i in indices {
                    data.extend_from_slice(&self.features[i * d..(i + 1) * d]);
                }
                (data, gathered_targets())
            }
        };
        Ok(Batch {
            features: Array {
                shape: self.shape(indices.len()),
                data: features,
            },
            targets: Array {
                shape: target_shape,
                data: targets,
            },
        })
    }

    /// Samples `start..end` as a feature array for prediction: images
    /// normalized, never augmented.
    pub fn feature_rows(&self, start: usize, end: usize) -> Array {
        let d = self.n_features;
        let rows = &self.features[start * d..end * d];
        Array {
            shape: self.shape(end - start),
            data: match &self.images {
                Some(f) => normalized(rows, &f.spec),
                None => rows.to_vec(),
            },
        }
    }
}

/// A dataset ready for batching.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Feature columns, in model input order.
    pub feature_names: Vec<String>,
    /// The target column.
    pub target_name: String,
    /// What the plan learns.
    pub task: Task,
    /// Rows to train on.
    pub train: Samples,
    /// Rows held out for validation (empty when test_ratio is 0).
    pub test: Samples,
}

/// What a plan is told about `table` (never its path).
pub fn dataset_info(table: &Table, target: Option<&str>) -> DatasetInfo {
    DatasetInfo {
        columns: table
            .names()
            .iter()
            .zip(table.kinds())
            .map(|(name, kind)| ColumnInfo {
                name: name.clone(),
                column_type: match kind {
                    ColumnKind::Integer => ColumnType::Integer,
                    ColumnKind::Float => ColumnType::Float,
                },
            })
            .collect(),
        sample_count: table.rows() as u64,
        shape: vec![table.rows() as u64, table.width() as u64],
        target: target.map(str::to_string),
        images: None,
    }
}

fn check_target(task: &Task, value: f64) -> Option<String> {
    match *task {
        Task::BinaryClassification if value != 0.0 && value != 1.0 => {
            Some("is not 0 or 1, as a binary classification plan needs".into())
        }
        Task::MulticlassClassification(n)
            if value.fract() != 0.0 || value < 0.0 || value >= n as f64 =>
        {
            Some(format!(
                "is not a class index in 0..{n}; labels must be integers 0..n_classes-1"
            ))
        }
        _ => None,
    }
}

/// Select, check, split and scale `table` as `spec` asks.
pub fn prepare(
    table: &Table,
    spec: &DataSpec,
    registered_target: Option<&str>,
    split: &Split,
) -> Result<PreparedData, DatasetError> {
    let target_name = spec
        .target
        .as_deref()
        .or(registered_target)
        .ok_or(DatasetError::NoTarget)?
        .to_string();
    match spec.task {
        Task::MultiLabelClassification(_) => return Err(DatasetError::Invalid(
            "the plan asks for multi-label targets, but a table has one target column; multi-label targets come from an image manifest's label columns".into(),
        )),
        Task::Segmentation(_) => return Err(DatasetError::Invalid(
            "the plan asks for segmentation, but a table has no masks; segmentation trains on an image manifest with a mask column".into(),
        )),
        _ => {}
    }
    if spec.images.is_some() {
        return Err(DatasetError::Invalid(
            "the plan's data-spec asks for images (`data-spec.images`), but this dataset is a table: use a plan for tables on it, or register an image folder or manifest for this plan".into(),
        ));
    }
    let target_col = table.column(&target_name)?;
    let feature_cols: Vec<usize> = match &spec.features {
        FeatureSelection::AllExceptTarget => {
            (0..table.width()).filter(|&c| c != target_col).collect()
        }
        FeatureSelection::Columns(names) => {
            let cols = names
                .iter()
                .map(|n| table.column(n))
                .collect::<Result<Vec<_>, _>>()?;
            if cols.contains(&target_col) {
                return Err(DatasetError::Invalid(format!(
                    "the plan asks for the target `{target_name}` as a feature too"
                )));
            }
            cols
        }
    };
    if feature_cols.is_empty() {
        return Err(DatasetError::Invalid(
            "the plan selects no feature column".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(&twice) = feature_cols.iter().find(|&&c| !seen.insert(c)) {
        return Err(DatasetError::Invalid(format!(
            "the plan selects column `{}` more than once",
            table.names()[twice]
        )));
    }
    let needed = table
        .rows()
        .checked_mul(feature_cols.len() + 1)
        .and_then(|n| n.checked_mul(std::mem::size_of::<f32>()));
    if needed.is_none_or(|n| n > split.max_bytes) {
        return Err(DatasetError::Invalid(format!(
            "{} rows of {} features take more than the plan's memory budget of {} MiB; select fewer columns or raise the node's sandbox memory_mib",
            table.rows(),
            feature_cols.len(),
            split.max_bytes >> 20
        )));
    }
    for r in 0..table.rows() {
        let value = table.get(r, target_col);
        if let Some(reason) = check_target(&spec.task, value) {
            return Err(DatasetError::BadTarget {
                row: r + 1,
                column: target_name,
                value,
                reason,
            });
        }
    }
    let (train_rows, test_rows) = split_rows(table.rows(), split)?;

    let scalers: Vec<(f64, f64)> = feature_cols
        .iter()
        .map(|&c| scaler(table, c, &train_rows, spec.scaling))
        .collect();
    let gather = |rows: &[usize]| {
        let mut features = Vec::with_capacity(rows.len() * feature_cols.len());
        let mut targets = Vec::with_capacity(rows.len());
        for &r in rows {
            for (&c, &(shift, scale)) in feature_cols.iter().zip(&scalers) {
                features.push(((table.get(r, c) - shift) / scale) as f32);
            }
            targets.push(table.get(r, target_col) as f32);
        }
        Samples {
            features,
            targets,
            target_shape: Vec::new(),
            n_features: feature_cols.len(),
            images: None,
        }
    };
    Ok(PreparedData {
        feature_names: feature_cols
            .iter()
            .map(|&c| table.names()[c].clone())
            .collect(),
        target_name,
        task: spec.task,
        train: gather(&train_rows),
        test: gather(&test_rows),
    })
}

/// (shift, scale) of column `c` over `rows`, so that (x - shift) / scale is the scaled value.
fn scaler(table: &Table, c: usize, rows: &[usize], scaling: Scaling) -> (f64, f64) {
    let values = rows.iter().map(|&r| table.get(r, c));
    let nonzero = |s: f64| if s > 0.0 { s } else { 1.0 };
    match scaling {
        Scaling::None => (0.0, 1.0),
        Scaling::Standardize => {
            let n = rows.len() as f64;
            let mean = values.clone().sum::<f64>() / n;
            let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            (mean, nonzero(var.sqrt()))
        }
        Scaling::MinMax => {
            let min = values.clone().fold(f64::INFINITY, f64::min);
            let max = values.fold(f64::NEG_INFINITY, f64::max);
            (min, nonzero(max - min))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        // x1, x2 (constant), y
        let mut values = Vec::new();
        for i in 0..10 {
            values.extend([i as f64, 5.0, (i % 2) as f64]);
        }
        Table::new(vec!["x1".into(), "x2".into(), "y".into()], values).unwrap()
    }

    fn spec(task: Task, scaling: Scaling) -> DataSpec {
        DataSpec {
            features: FeatureSelection::AllExceptTarget,
            target: None,
            task,
            scaling,
            images: None,
        }
    }

    fn no_split() -> Split {
        Split {
            test_ratio: 0.0,
            designated_test: None,
            seed: StreamSeed([0; 32]),
            max_bytes: 1 << 30,
        }
    }

    #[test]
    fn an_image_spec_on_a_table_is_refused_not_trained_as_a_table() {
        use crate::sandbox::types::{Augmentation, ImageFit, ImageSpec};
        let asks_images = DataSpec {
            images: Some(ImageSpec {
                height: 4,
                width: 4,
                channels: 1,
                fit: ImageFit::Resize,
                mean: vec![0.0],
                std: vec![1.0],
                augmentation: Augmentation {
                    horizontal_flip: false,
                    vertical_flip: false,
                    crop_padding: 0,
                    max_rotation_degrees: 0.0,
                },
            }),
            ..spec(Task::BinaryClassification, Scaling::None)
        };
        let err = prepare(&table(), &asks_images, Some("y"), &no_split())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data-spec.images") && err.contains("is a table"),
            "{err}"
        );
    }

    #[test]
    fn standardizes_with_training_statistics() {
        let p = prepare(
            &table(),
            &spec(Task::BinaryClassification, Scaling::Standardize),
            Some("y"),
            &no_split(),
        )
        .unwrap();
        assert_eq!(p.feature_names, ["x1", "x2"]);
        assert_eq!(p.train.len(), 10);
        let x1: Vec<f32> = p.train.features.chunks(2).map(|r| r[0]).collect();
        let mean = x1.iter().sum::<f32>() / 10.0;
        assert!(mean.abs() < 1e-6);
        assert!(
            p.train.features.chunks(2).all(|r| r[1] == 0.0),
            "constant column becomes 0"
        );
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let split = Split {
            test_ratio: 0.3,
            designated_test: None,
            seed: StreamSeed([9; 32]),
            max_bytes: 1 << 30,
        };
        let s = spec(Task::Regression, Scaling::None);
        let a = prepare(&table(), &s, Some("y"), &split).unwrap();
        let b = prepare(&table(), &s, Some("y"), &split).unwrap();
        assert_eq!((a.train.len(), a.test.len()), (7, 3));
        assert_eq!(a.test.features, b.test.features);
        let mut all: Vec<f32> = a
            .train
            .features
            .chunks(2)
            .chain(a.test.features.chunks(2))
            .map(|r| r[0])
            .collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, (0..10).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn a_designated_test_part_is_held_out_whatever_the_ratio_and_scales_from_training_rows() {
        let designated: Vec<bool> = (0..10).map(|r| r >= 8).collect();
        let split = Split {
            test_ratio: 0.5,
            designated_test: Some(designated),
            seed: StreamSeed([9; 32]),
            max_bytes: 1 << 30,
        };
        let s = spec(Task::Regression, Scaling::None);
        let p = prepare(&table(), &s, Some("y"), &split).unwrap();
        assert_eq!((p.train.len(), p.test.len()), (8, 2));
        let first: Vec<f32> = p.test.features.chunks(2).map(|r| r[0]).collect();
        assert_eq!(first, [8.0, 9.0]);
        let short = Split {
            designated_test: Some(vec![true; 3]),
            ..no_split()
        };
        let err = prepare(&table(), &s, Some("y"), &short).unwrap_err();
        assert!(
            err.to_string().contains("marks 3 rows of a 10-row table"),
            "{err}"
        );
    }

    #[test]
    fn bad_targets_and_columns_are_named() {
        let err = prepare(
            &table(),
            &spec(Task::MulticlassClassification(1), Scaling::None),
            Some("y"),
            &no_split(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("row 2: target `y` = 1 is not a class index in 0..1"),
            "{err}"
        );
        let err = prepare(
            &table(),
            &spec(Task::Regression, Scaling::None),
            None,
            &no_split(),
        )
        .unwrap_err();
        assert!(matches!(err, DatasetError::NoTarget));
        let mut s = spec(Task::Regression, Scaling::None);
        s.features = FeatureSelection::Columns(vec!["x3".into()]);
        let err = prepare(&table(), &s, Some("y"), &no_split())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column `x3`"), "{err}");
    }

    #[test]
    fn a_spec_cannot_make_the_host_build_more_than_the_budget() {
        let mut s = spec(Task::Regression, Scaling::None);
        s.features = FeatureSelection::Columns(vec!["x1".into(); 100_000]);
        let err = prepare(&table(), &s, Some("y"), &no_split())
            .unwrap_err()
            .to_string();
        assert!(err.contains("column `x1` more than once"), "{err}");
        // 10 rows × (2 features + target) × 4 bytes = 120 bytes.
        let s = spec(Task::Regression, Scaling::None);
        let tight = Split {
            max_bytes: 119,
            ..no_split()
        };
        let err = prepare(&table(), &s, Some("y"), &tight)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the plan's memory budget"), "{err}");
        let enough = Split {
            max_bytes: 120,
            ..no_split()
        };
        assert!(prepare(&table(), &s, Some("y"), &enough).is_ok());
    }
}
