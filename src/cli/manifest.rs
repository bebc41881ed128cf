//! The image manifest a command's `--image-column`, `--target` and
//! `--mask-column` describe: one reading for `node dataset add`, `plan
//! check` and `evaluate`, so the three accept the same labels.

use anyhow::bail;

use fedwasm::dataset::{ManifestColumns, ManifestTarget};

/// The manifest's columns, or none when there is no `--image-column` (a
/// table or an image folder). A manifest is labelled by `--target` (a class
/// column, or label columns separated by commas) or by `--mask-column`.
pub fn manifest_columns(
    image_column: Option<String>,
    target: Option<&str>,
    mask_column: Option<String>,
) -> anyhow::Result<Option<ManifestColumns>> {
    let target = match (image_column.is_some(), target, mask_column) {
        (false, _, Some(_)) => {
            bail!("--mask-column needs --image-column: the manifest's column of image paths")
        }
        (false, _, None) => return Ok(None),
        (true, Some(_), Some(_)) => {
            bail!("label a manifest by --target or by --mask-column, not both")
        }
        (true, None, None) => {
            bail!(
                "an image manifest needs --target (a class column, or label columns LABEL1,LABEL2) or --mask-column"
            )
        }
        (true, None, Some(mask)) => ManifestTarget::Mask(mask),
        (true, Some(target), None) => ManifestTarget::classes_or_labels(target),
    };
    Ok(image_column.map(|image| ManifestColumns { image, target }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_is_labelled_by_classes_labels_or_masks_and_never_two_ways() {
        let image = || Some("file".to_string());
        assert!(manifest_columns(None, Some("y"), None).unwrap().is_none());
        let class = manifest_columns(image(), Some("y"), None).unwrap().unwrap();
        assert_eq!(class.target, ManifestTarget::Class("y".into()));
        let labels = manifest_columns(image(), Some("a,b"), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            labels.target,
            ManifestTarget::Labels(vec!["a".into(), "b".into()])
        );
        let masks = manifest_columns(image(), None, Some("mask".into()))
            .unwrap()
            .unwrap();
        assert_eq!(masks.target, ManifestTarget::Mask("mask".into()));
        let err = |i, t, m| manifest_columns(i, t, m).unwrap_err().to_string();
        assert!(err(image(), Some("y"), Some("m".into())).contains("not both"));
        assert!(err(image(), None, None).contains("--mask-column"));
        assert!(err(None, None, Some("m".into())).contains("needs --image-column"));
    }
}
