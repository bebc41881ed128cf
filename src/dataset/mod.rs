//! A node's tabular data, loaded once and prepared the way a plan asks.
//!
//! The same code serves `fedwasm plan check` and the node, so a plan author's
//! dry run sees exactly the rows, columns, scaling and batches a node will use.
//!
//! - `table`: read a CSV file into a numeric [`Table`].
//! - `prepare`: apply a plan's `data-spec` (columns, target checks, split, scaling).
//! - `batches`: the seeded order of mini-batches.
//! - `image_pipeline`: decoded images (and masks) to the `[N, C, H, W]`
//!   batches a plan asks for (fit, channels, augmentation, normalization);
//!   `augment`: the seeded flips, crop and rotation, one draw per sample
//!   shared by an image and its mask.
//! - `images`: image folders (one sub-folder per class), checked and
//!   digested at registration, decoded within bounds; `image_manifest`: CSV
//!   manifests (class, multi-label or mask targets) on the same checks.

mod augment;
pub(crate) mod batches;
mod error;
pub(crate) mod image_data;
pub(crate) mod image_manifest;
pub(crate) mod image_pipeline;
mod image_targets;
pub(crate) mod images;
pub(crate) mod prepare;
pub(crate) mod split;
pub(crate) mod table;

pub use batches::BatchSchedule;
pub use error::DatasetError;
pub use image_data::{
    ImageSource, LoadedImages, image_files, image_info, load_images, prepare_images, read_images,
};
pub use image_manifest::{
    ManifestColumns, ManifestTarget, load_manifest, manifest_split, scan_manifest,
};
pub use image_pipeline::{
    Augment, Draws, Fit, ImageSpec, fit_image, fit_mask, image_batch, normalized,
    segmentation_batch,
};
pub use images::{
    DecodedImage, ImageItem, ImageLimits, ImageSet, ImageTarget, PixelMode, TargetKind,
    decode_bytes, load_folder, scan_folder,
};
pub use prepare::PreparedData;
pub use split::Split;
pub use table::{ColumnKind, Table};
