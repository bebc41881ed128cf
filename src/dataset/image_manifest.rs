//! Image datasets listed by a CSV manifest: a column of image paths
//! (relative to the manifest, kept inside its folder) and the labelling — a
//! class column, several 0/1 label columns, or a column of mask images.
//! Decoding, size and mode checks and digests are the image folder's
//! (`images.rs`).

use std::path::{Path, PathBuf};

use super::DatasetError;
use super::image_data::LoadedImages;
use super::images::{
    Consistency, ImageItem, ImageLimits, ImageSet, ImageTarget, TargetKind, decode_bytes,
    hash_file, malformed, read_bounded,
};
use crate::digest::Sha256Hasher;

/// Which columns of a CSV manifest say what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestColumns {
    /// The column of image paths, relative to the manifest's folder.
    pub image: String,
    /// The labelling.
    pub target: ManifestTarget,
}

/// The target columns of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestTarget {
    /// One column of class names (or integers).
    Class(String),
    /// One 0/1 column per label.
    Labels(Vec<String>),
    /// A column of mask image paths.
    Mask(String),
}

impl ManifestTarget {
    /// What a `--target` argument names: one class column, or several
    /// label columns separated by commas.
    pub fn classes_or_labels(target: &str) -> Self {
        let names: Vec<String> = target.split(',').map(|t| t.trim().to_string()).collect();
        match names.as_slice() {
            [one] => ManifestTarget::Class(one.clone()),
            _ => ManifestTarget::Labels(names),
        }
    }
}

/// A manifest's path cell as a path inside `root`, or why not: relative,
/// without `..`, naming a file.
fn manifest_path(
    root: &Path,
    cell: &str,
    row: usize,
    column: &str,
) -> Result<(PathBuf, PathBuf), DatasetError> {
    let relative = PathBuf::from(cell.trim());
    let inside = !cell.trim().is_empty()
        && relative.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if !inside {
        return Err(DatasetError::Invalid(format!(
            "manifest row {row}: `{column}` = {cell:?}; image paths are relative to the manifest's folder and stay inside it"
        )));
    }
    // No folder on the way may be a link that leads out of the manifest's folder.
    let mut folder = root.to_path_buf();
    for part in relative.parent().into_iter().flat_map(Path::components) {
        folder.push(part);
        let linked = std::fs::symlink_metadata(&folder).is_ok_and(|m| m.file_type().is_symlink());
        if linked {
            return Err(DatasetError::Invalid(format!(
                "manifest row {row}: `{column}` = {cell:?} goes through a symbolic link; image paths stay inside the manifest's folder"
            )));
        }
    }
    Ok((root.join(&relative), relative))
}

/// Class names in order: numerically when every one is an integer (so
/// `10` follows `9`), otherwise as text.
fn sorted_classes(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or_default());
    }
    names
}

/// Register the images a CSV manifest lists: `columns.image` holds paths
/// relative to the manifest's folder, `columns.target` says how each is
/// labelled. Every image (and mask) is decoded once; the first bad row,
/// file or value is named.
pub fn scan_manifest(
    manifest: &Path,
    columns: &ManifestColumns,
    limits: &ImageLimits,
) -> Result<ImageSet, DatasetError> {
    read_manifest(manifest, columns, limits, &mut Consistency::checking())
}

/// [`scan_manifest`], keeping the decoded images (in item order) while
/// they take at most `max_bytes`, and for a mask manifest every mask as
/// class indices (an index into the set's classes per pixel): what a
/// worker trains on.
pub fn load_manifest(
    manifest: &Path,
    columns: &ManifestColumns,
    limits: &ImageLimits,
    max_bytes: usize,
) -> Result<LoadedImages, DatasetError> {
    let mut consistency = Consistency::keeping(max_bytes);
    let set = read_manifest(manifest, columns, limits, &mut consistency)?;
    let (images, raw_masks) = consistency.into_kept_with_masks();
    let values: Vec<u16> = set.classes.iter().filter_map(|c| c.parse().ok()).collect();
    let masks = raw_masks
        .into_iter()
        .map(|raw| {
            raw.into_iter()
                .map(|v| values.binary_search(&v).unwrap_or_default() as u8)
                .collect()
        })
        .collect();
    Ok(LoadedImages::new(set, images, masks))
}

/// The designated test part a manifest's `column` marks: one flag per
/// listed image, in row order (the order of the set's items), true for a
/// 1, false for a 0. Anything else, or a part left empty, is refused as a
/// table's split column is.
pub fn manifest_split(
    manifest: &Path,
    column: &str,
    limits: &ImageLimits,
) -> Result<Vec<bool>, DatasetError> {
    let shown = Path::new(manifest.file_name().unwrap_or_default());
    let bytes = read_bounded(manifest, shown, limits)?;
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| malformed(shown, format!("unreadable header: {e}")))?
        .clone();
    let at =
        headers
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| DatasetError::UnknownColumn {
                column: column.to_string(),
                available: headers.iter().collect::<Vec<_>>().join(", "),
            })?;
    let mut test = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| malformed(shown, format!("row {}: {e}", i + 2)))?;
        if test.len() == limits.max_images {
            return Err(malformed(
                shown,
                format!("lists more than {} images", limits.max_images),
            ));
        }
        test.push(match record[at].trim() {
            "0" => false,
            "1" => true,
            other => {
                return Err(DatasetError::Invalid(format!(
                    "manifest row {}: split column `{column}` = {other:?}; it must be 0 (training) or 1 (test)",
                    i + 2
                )));
            }
        });
    }
    let n_test = test.iter().filter(|t| **t).count();
    if n_test == 0 || n_test == test.len() {
        return Err(DatasetError::Invalid(format!(
            "split column `{column}` marks {n_test} of {} images as test; both the training and the test part need images",
            test.len()
        )));
    }
    Ok(test)
}

fn read_manifest(
    manifest: &Path,
    columns: &ManifestColumns,
    limits: &ImageLimits,
    consistency: &mut Consistency,
) -> Result<ImageSet, DatasetError> {
    let shown_manifest = Path::new(manifest.file_name().unwrap_or_default());
    // The operator's own path may be a link; the files it lists may not.
    let manifest = &manifest
        .canonicalize()
        .map_err(|e| malformed(shown_manifest, format!("unreadable: {e}")))?;
    let bytes = read_bounded(manifest, shown_manifest, limits)?;
    let root = manifest.parent().unwrap_or(Path::new("."));
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| malformed(shown_manifest, format!("unreadable header: {e}")))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DatasetError::UnknownColumn {
                column: name.to_string(),
                available: headers.iter().collect::<Vec<_>>().join(", "),
            })
    };
    let image_col = column(&columns.image)?;
    let target_cols: Vec<usize> = match &columns.target {
        ManifestTarget::Class(c) | ManifestTarget::Mask(c) => vec![column(c)?],
        ManifestTarget::Labels(names) if names.is_empty() => {
            return Err(DatasetError::Invalid(
                "a multi-label manifest needs label columns".into(),
            ));
        }
        ManifestTarget::Labels(names) => {
            names.iter().map(|n| column(n)).collect::<Result<_, _>>()?
        }
    };
    let mut hasher = Sha256Hasher::default();
    hash_file(&mut hasher, shown_manifest, &bytes);
    let mut rows: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 2;
        let record = record.map_err(|e| malformed(shown_manifest, format!("row {row}: {e}")))?;
        if rows.len() == limits.max_images {
            return Err(malformed(
                shown_manifest,
                format!("lists more than {} images", limits.max_images),
            ));
        }
        let (path, relative) = manifest_path(root, &record[image_col], row, &columns.image)?;
        let file = read_bounded(&path, &relative, limits)?;
        let image = decode_bytes(&file, &relative, limits)?;
        consistency.accept(&relative, image)?;
        hash_file(&mut hasher, &relative, &file);
        let cells = target_cols
            .iter()
            .map(|&c| record[c].trim().to_string())
            .collect();
        rows.push((relative, cells));
    }
    let (_, mode, height, width) = consistency
        .first
        .clone()
        .ok_or_else(|| malformed(shown_manifest, "lists no image"))?;
    let (classes, items) = match &columns.target {
        ManifestTarget::Class(name) => {
            if let Some((path, _)) = rows.iter().find(|(_, cells)| cells[0].is_empty()) {
                return Err(malformed(
                    path,
                    format!("has no `{name}`; every image needs a class"),
                ));
            }
            let classes = sorted_classes(rows.iter().map(|(_, c)| c[0].clone()).collect());
            let items = rows
                .into_iter()
                .map(|(path, cells)| {
                    let index = classes
                        .iter()
                        .position(|c| *c == cells[0])
                        .unwrap_or_default();
                    ImageItem {
                        path,
                        target: ImageTarget::Class(index as u32),
                    }
                })
                .collect();
            (classes, items)
        }
        ManifestTarget::Labels(names) => {
            let mut items = Vec::with_capacity(rows.len());
            for (path, cells) in rows {
                let flags = cells
                    .iter()
                    .zip(names)
                    .map(|(cell, name)| match cell.as_str() {
                        "0" => Ok(false),
                        "1" => Ok(true),
                        other => Err(malformed(
                            &path,
                            format!("has label `{name}` = {other:?}; a label is 0 or 1"),
                        )),
                    })
                    .collect::<Result<Vec<bool>, _>>()?;
                items.push(ImageItem {
                    path,
                    target: ImageTarget::Labels(flags),
                });
            }
            (names.clone(), items)
        }
        ManifestTarget::Mask(name) => {
            let mut values = std::collections::BTreeSet::new();
            let mut items = Vec::with_capacity(rows.len());
            for (row, (path, cells)) in rows.into_iter().enumerate() {
                let (file, relative) = manifest_path(root, &cells[0], row + 2, name)?;
                let bytes = read_bounded(&file, &relative, limits)?;
                let mask = decode_bytes(&bytes, &relative, limits)?;
                if mask.mode.channels != 1 || (mask.height, mask.width) != (height, width) {
                    return Err(malformed(
                        &relative,
                        format!(
                            "is a {} mask of {}×{}; a mask is grayscale, the size of its image ({height}×{width})",
                            mask.mode, mask.height, mask.width
                        ),
                    ));
                }
                let scale = if mask.mode.bits == 8 { 255.0 } else { 65535.0 };
                let raw = |v: &f32| (v * scale).round() as u16;
                for v in &mask.pixels {
                    values.insert(raw(v));
                    if values.len() > 256 {
                        return Err(malformed(
                            &relative,
                            "holds more than 256 distinct values; a mask holds class indices",
                        ));
                    }
                }
                consistency.keep_mask(|| mask.pixels.iter().map(raw).collect())?;
                hash_file(&mut hasher, &relative, &bytes);
                items.push(ImageItem {
                    path,
                    target: ImageTarget::Mask(relative),
                });
            }
            (values.into_iter().map(|v| v.to_string()).collect(), items)
        }
    };
    let kind = match columns.target {
        ManifestTarget::Class(_) => TargetKind::Class,
        ManifestTarget::Labels(_) => TargetKind::MultiLabel,
        ManifestTarget::Mask(_) => TargetKind::Mask,
    };
    Ok(ImageSet {
        kind,
        classes,
        items,
        mode,
        height,
        width,
        digest: hasher.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::images::tests::gray;
    use image::{ImageBuffer, Luma};

    fn manifest(dir: &Path, text: &str, target: ManifestTarget) -> Result<ImageSet, String> {
        let path = dir.join("manifest.csv");
        std::fs::write(&path, text).unwrap();
        let columns = ManifestColumns {
            image: "file".into(),
            target,
        };
        scan_manifest(&path, &columns, &ImageLimits::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_split_column_marks_the_test_images_in_row_order_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.csv");
        let split = |text: &str| {
            std::fs::write(&path, text).unwrap();
            manifest_split(&path, "fold", &ImageLimits::default()).map_err(|e| e.to_string())
        };
        assert_eq!(
            split("file,fold\na.png,0\nb.png,1\nc.png, 0\n").unwrap(),
            [false, true, false]
        );
        let err = split("file,fold\na.png,0\nb.png,2\n").unwrap_err();
        assert!(err.contains("row 3: split column `fold` = \"2\""), "{err}");
        let err = split("file,fold\na.png,1\nb.png,1\n").unwrap_err();
        assert!(err.contains("marks 2 of 2 images as test"), "{err}");
        let err = split("file,grade\na.png,1\n").unwrap_err();
        assert!(err.contains("fold") && err.contains("grade"), "{err}");
    }

    #[test]
    fn a_manifest_labels_by_class_by_several_labels_or_by_mask() {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in [("img/a.png", 10), ("img/b.png", 20), ("img/c.png", 30)] {
            gray(dir.path(), name, 4, value);
        }
        let classes = manifest(
            dir.path(),
            "file,grade\nimg/a.png,10\nimg/b.png,9\nimg/c.png,10\n",
            ManifestTarget::Class("grade".into()),
        )
        .unwrap();
        assert_eq!(classes.kind, TargetKind::Class);
        assert_eq!(classes.classes, ["9", "10"], "integers sort as numbers");
        let targets: Vec<_> = classes.items.iter().map(|i| i.target.clone()).collect();
        assert_eq!(
            targets,
            [
                ImageTarget::Class(1),
                ImageTarget::Class(0),
                ImageTarget::Class(1)
            ]
        );
        let labels = manifest(
            dir.path(),
            "file,effusion,nodule\nimg/a.png,1,0\nimg/b.png,1,1\n",
            ManifestTarget::Labels(vec!["effusion".into(), "nodule".into()]),
        )
        .unwrap();
        assert_eq!(labels.classes, ["effusion", "nodule"]);
        assert_eq!(
            labels.items[1].target,
            ImageTarget::Labels(vec![true, true])
        );
        ImageBuffer::from_fn(4, 4, |x, _| Luma([if x < 2 { 0u8 } else { 2 }]))
            .save(dir.path().join("img/mask.png"))
            .unwrap();
        let masks = manifest(
            dir.path(),
            "file,mask\nimg/a.png,img/mask.png\n",
            ManifestTarget::Mask("mask".into()),
        )
        .unwrap();
        assert_eq!(
            (masks.kind, masks.classes.clone()),
            (TargetKind::Mask, vec!["0".to_string(), "2".to_string()])
        );
    }

    #[test]
    fn each_bad_manifest_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        gray(dir.path(), "img/a.png", 4, 10);
        gray(dir.path(), "img/big.png", 8, 10);
        let class = || ManifestTarget::Class("y".into());
        let cases = [
            (
                "file,y\nimg/missing.png,1\n",
                class(),
                "img/missing.png: unreadable",
            ),
            (
                "file,y\n/etc/passwd,1\n",
                class(),
                "row 2: `file` = \"/etc/passwd\"",
            ),
            ("file,y\n../a.png,1\n", class(), "stay inside it"),
            ("file,y\nimg/a.png,\n", class(), "img/a.png: has no `y`"),
            (
                "file,y\nimg/a.png,1\nimg/big.png,1\n",
                class(),
                "img/big.png: is 8×8, but img/a.png is 4×4",
            ),
            ("file,z\nimg/a.png,1\n", class(), "no column `y`"),
            (
                "file,y\nimg/a.png,2\n",
                ManifestTarget::Labels(vec!["y".into()]),
                "has label `y` = \"2\"",
            ),
            (
                "file,y\nimg/a.png,img/big.png\n",
                ManifestTarget::Mask("y".into()),
                "img/big.png: is a 8-bit grayscale mask of 8×8",
            ),
            (
                "file,y\nimg/a.png,img/gone.png\n",
                ManifestTarget::Mask("y".into()),
                "img/gone.png: unreadable",
            ),
            (
                "file,y\nimg/a.png,../a.png\n",
                ManifestTarget::Mask("y".into()),
                "stay inside it",
            ),
            ("file,y\n", class(), "lists no image"),
            (
                "file,y\nout/x.png,1\n",
                class(),
                "goes through a symbolic link",
            ),
            (
                "file,y\nimg/zero.png,1\n",
                class(),
                "img/zero.png: is a symbolic link",
            ),
        ];
        let outside = tempfile::tempdir().unwrap();
        gray(outside.path(), "x.png", 4, 10);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
            std::os::unix::fs::symlink("/dev/zero", dir.path().join("img/zero.png")).unwrap();
        }
        for (text, target, expected) in cases {
            let err = manifest(dir.path(), text, target).expect_err(expected);
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}
