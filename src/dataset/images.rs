//! Image datasets on a node: a folder with one sub-folder per class (as
//! MedNIST and torchvision's `ImageFolder` lay them out), PNG or JPEG files,
//! 8-bit or 16-bit grayscale or RGB. CSV manifests are `image_manifest.rs`,
//! on the decoding and checks here.
//!
//! Registration reads every file once ([`scan_folder`]): an unreadable
//! file, an empty class, an image of another size or mode than the first
//! is refused, naming the file (relative to the folder, so the message can
//! leave the node). What it found — classes in sorted order, the common
//! shape, and a digest of every file's name and bytes — is what the node
//! records and shows; the digest lets it notice a folder changed since.
//! Decoding is bounded before it allocates ([`ImageLimits`]).
//!
//! Over 600 lines with its tests (one per way a folder can be wrong); the
//! code itself is 490.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader, Limits};

use super::DatasetError;
use crate::digest::{Sha256Digest, Sha256Hasher};

/// Bounds on what a node decodes, checked before pixels are allocated.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Widest and tallest image, in pixels.
    pub max_side: u32,
    /// Largest file, in bytes.
    pub max_file_bytes: u64,
    /// Most images in one dataset.
    pub max_images: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_side: 4096,
            max_file_bytes: 64 << 20,
            max_images: 1 << 20,
        }
    }
}

/// Channels and bits per channel of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelMode {
    /// 1 (grayscale) or 3 (RGB).
    pub channels: u32,
    /// 8 or 16.
    pub bits: u32,
}

impl std::fmt::Display for PixelMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.channels == 1 {
            "grayscale"
        } else {
            "RGB"
        };
        write!(f, "{}-bit {kind}", self.bits)
    }
}

/// One decoded image: pixels channel-first (`[C, H, W]`), scaled to [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// Channels and depth as stored in the file.
    pub mode: PixelMode,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// `C·H·W` values in [0, 1].
    pub pixels: Vec<f32>,
}

/// What an image is labelled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageTarget {
    /// One class: an index into the dataset's classes.
    Class(u32),
    /// Several labels, one flag per name in the dataset's classes.
    Labels(Vec<bool>),
    /// A mask image (relative path) of the same size: a class per pixel.
    Mask(PathBuf),
}

/// How a dataset's images are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// One class per image.
    Class,
    /// Any number of labels per image.
    MultiLabel,
    /// A mask per image (segmentation).
    Mask,
}

impl TargetKind {
    /// Its name in search replies.
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Class => "class",
            TargetKind::MultiLabel => "multi-label",
            TargetKind::Mask => "mask",
        }
    }
}

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageItem {
    /// Relative to the dataset's folder (or the manifest's).
    pub path: PathBuf,
    /// What it is labelled with.
    pub target: ImageTarget,
}

/// What registration found: an image folder or a manifest's images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// How the images are labelled.
    pub kind: TargetKind,
    /// Class names sorted (a class is an index into them), label names in
    /// manifest order, or the values found in masks.
    pub classes: Vec<String>,
    /// Every image, by class then file name.
    pub items: Vec<ImageItem>,
    /// The mode every image has.
    pub mode: PixelMode,
    /// The height every image has.
    pub height: u32,
    /// The width every image has.
    pub width: u32,
    /// SHA-256 over every file's relative path and bytes, in order.
    pub digest: Sha256Digest,
}

/// The first image's size and mode, which every other image must share;
/// and, when a worker reads the images to train on, the decoded images,
/// kept within a byte budget.
pub(super) struct Consistency {
    pub(super) first: Option<(PathBuf, PixelMode, u32, u32)>,
    kept: Option<Kept>,
}

/// What a worker keeps while reading: decoded images, raw mask values, and
/// the bytes they take against the plan's budget.
struct Kept {
    images: Vec<DecodedImage>,
    masks: Vec<Vec<u16>>,
    used: usize,
    max_bytes: usize,
}

impl Kept {
    fn charge(&mut self, bytes: usize, what: &str, count: usize) -> Result<(), DatasetError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.max_bytes {
            return Err(DatasetError::Invalid(format!(
                "the decoded {what} take more than the plan's memory budget of {} MiB ({count} so far); raise the node's sandbox memory_mib or register fewer or smaller images",
                self.max_bytes >> 20,
            )));
        }
        Ok(())
    }
}

impl Consistency {
    /// Check images and drop them (registration).
    pub(super) fn checking() -> Self {
        Consistency {
            first: None,
            kept: None,
        }
    }

    /// Check images and keep them while they (and their masks) take at most
    /// `max_bytes`.
    pub(super) fn keeping(max_bytes: usize) -> Self {
        Consistency {
            first: None,
            kept: Some(Kept {
                images: Vec::new(),
                masks: Vec::new(),
                used: 0,
                max_bytes,
            }),
        }
    }

    /// The images kept, in the order accepted.
    pub(super) fn into_kept(self) -> Vec<DecodedImage> {
        self.into_kept_with_masks().0
    }

    /// The images and the masks' raw values kept, each in the order accepted.
    pub(super) fn into_kept_with_masks(self) -> (Vec<DecodedImage>, Vec<Vec<u16>>) {
        self.kept.map(|k| (k.images, k.masks)).unwrap_or_default()
    }

    /// Accept `image` (shown as `shown`) when it has the first image's size
    /// and mode, and keep it when keeping.
    pub(super) fn accept(&mut self, shown: &Path, image: DecodedImage) -> Result<(), DatasetError> {
        self.check(shown, &image)?;
        if let Some(kept) = &mut self.kept {
            let bytes = image.pixels.len() * std::mem::size_of::<f32>();
            kept.charge(bytes, "images", kept.images.len() + 1)?;
            kept.images.push(image);
        }
        Ok(())
    }

    /// Keep a mask's raw values when keeping (it was checked by the caller).
    pub(super) fn keep_mask(
        &mut self,
        values: impl FnOnce() -> Vec<u16>,
    ) -> Result<(), DatasetError> {
        if let Some(kept) = &mut self.kept {
            let values = values();
            kept.charge(values.len() * 2, "masks", kept.masks.len() + 1)?;
            kept.masks.push(values);
        }
        Ok(())
    }

    fn check(&mut self, shown: &Path, image: &DecodedImage) -> Result<(), DatasetError> {
        let Some((example, mode, height, width)) = &self.first else {
            self.first = Some((shown.to_path_buf(), image.mode, image.height, image.width));
            return Ok(());
        };
        if (image.height, image.width) != (*height, *width) {
            return Err(malformed(
                shown,
                format!(
                    "is {}×{}, but {} is {height}×{width}; every image of a dataset has one size",
                    image.height,
                    image.width,
                    example.display()
                ),
            ));
        }
        if image.mode != *mode {
            return Err(malformed(
                shown,
                format!(
                    "is {}, but {} is {mode}; every image of a dataset has one mode",
                    image.mode,
                    example.display()
                ),
            ));
        }
        Ok(())
    }
}

/// Add a file's relative name and bytes to `hasher`.
pub(super) fn hash_file(hasher: &mut Sha256Hasher, shown: &Path, bytes: &[u8]) {
    let relative = shown.to_string_lossy();
    hasher.update(&(relative.len() as u64).to_le_bytes());
    hasher.update(relative.as_bytes());
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

pub(super) fn malformed(path: &Path, reason: impl Into<String>) -> DatasetError {
    DatasetError::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e))
}

/// Decode the PNG or JPEG `bytes` (named `shown` in errors) within `limits`.
pub fn decode_bytes(
    bytes: &[u8],
    shown: &Path,
    limits: &ImageLimits,
) -> Result<DecodedImage, DatasetError> {
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| malformed(shown, format!("unreadable: {e}")))?;
    if reader.format().is_none() {
        return Err(malformed(shown, "not a PNG or JPEG image"));
    }
    let mut bounds = Limits::default();
    bounds.max_image_width = Some(limits.max_side);
    bounds.max_image_height = Some(limits.max_side);
    bounds.max_alloc = Some(u64::from(limits.max_side).pow(2) * 3 * 2 * 2);
    reader.limits(bounds);
    let image = reader
        .decode()
        .map_err(|e| malformed(shown, format!("cannot decode: {e}")))?;
    let (width, height) = (image.width(), image.height());
    let (mode, pixels) = match image {
        DynamicImage::ImageLuma8(gray) => (
            PixelMode {
                channels: 1,
                bits: 8,
            },
            gray.into_raw()
                .into_iter()
                .map(|v| f32::from(v) / 255.0)
                .collect(),
        ),
        DynamicImage::ImageLuma16(gray) => (
            PixelMode {
                channels: 1,
                bits: 16,
            },
            gray.into_raw()
                .into_iter()
                .map(|v| f32::from(v) / 65535.0)
                .collect(),
        ),
        DynamicImage::ImageRgb8(rgb) => (
            PixelMode {
                channels: 3,
                bits: 8,
            },
            channels_first(&rgb.into_raw(), 3, |v: &u8| f32::from(*v) / 255.0),
        ),
        DynamicImage::ImageRgb16(rgb) => (
            PixelMode {
                channels: 3,
                bits: 16,
            },
            channels_first(&rgb.into_raw(), 3, |v: &u16| f32::from(*v) / 65535.0),
        ),
        other => {
            return Err(malformed(
                shown,
                format!(
                    "has pixel type {:?}; use grayscale or RGB without alpha (8 or 16 bits)",
                    other.color()
                ),
            ));
        }
    };
    Ok(DecodedImage {
        mode,
        height,
        width,
        pixels,
    })
}

/// Interleaved `[H·W, C]` samples as `[C, H·W]`.
fn channels_first<T>(raw: &[T], channels: usize, scale: impl Fn(&T) -> f32) -> Vec<f32> {
    let pixels = raw.len() / channels;
    let mut out = Vec::with_capacity(raw.len());
    for c in 0..channels {
        out.extend((0..pixels).map(|p| scale(&raw[p * channels + c])));
    }
    out
}

/// Why `meta` is not a regular file a dataset may hold, if it is not.
fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        Some(
            "is a symbolic link; a dataset holds its files themselves (copy the file into the folder)",
        )
    } else if !kind.is_file() {
        Some("is not a regular file (a device, a FIFO or a socket); a dataset holds image files")
    } else {
        None
    }
}

/// Refuse `path` (shown as `shown`) unless it is a regular file, looked at
/// without following a link and before anything opens it.
pub(super) fn regular_file(path: &Path, shown: &Path) -> Result<u64, DatasetError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| malformed(shown, format!("unreadable: {e}")))?;
    match not_regular(&meta) {
        Some(reason) => Err(malformed(shown, reason)),
        None => Ok(meta.len()),
    }
}

/// Read `path` (shown as `shown`) within the file-size bound: a regular
/// file only, opened without following a link nor waiting on a FIFO (the
/// file could have been swapped since it was looked at), read no further
/// than the bound whatever its size says.
pub(super) fn read_bounded(
    path: &Path,
    shown: &Path,
    limits: &ImageLimits,
) -> Result<Vec<u8>, DatasetError> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| malformed(shown, format!("unreadable: {e}"));
    let too_large = |size: u64| {
        malformed(
            shown,
            format!(
                "is {size} bytes, more than the {} an image may take",
                limits.max_file_bytes
            ),
        )
    };
    let size = regular_file(path, shown)?;
    if size > limits.max_file_bytes {
        return Err(too_large(size));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let file = options.open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if let Some(reason) = not_regular(&meta) {
        return Err(malformed(shown, reason));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limits.max_file_bytes) as usize);
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Entries of `dir` sorted by name, hidden ones (`.name`) left out.
fn sorted_entries(dir: &Path, shown: &Path) -> Result<Vec<(String, PathBuf)>, DatasetError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| malformed(shown, format!("unreadable: {e}")))? {
        let entry = entry.map_err(|e| malformed(shown, format!("unreadable: {e}")))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(malformed(shown, "holds a file whose name is not UTF-8"));
        };
        if !name.starts_with('.') {
            entries.push((name, entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

/// Register the image folder `root`: one sub-folder per class, each holding
/// at least one image; every image decoded once and checked to share the
/// first one's size and mode.
pub fn scan_folder(root: &Path, limits: &ImageLimits) -> Result<ImageSet, DatasetError> {
    read_folder(root, limits, &mut Consistency::checking())
}

/// [`scan_folder`], keeping the decoded images (in item order) while they
/// take at most `max_bytes`: what a worker trains on.
pub fn load_folder(
    root: &Path,
    limits: &ImageLimits,
    max_bytes: usize,
) -> Result<(ImageSet, Vec<DecodedImage>), DatasetError> {
    let mut consistency = Consistency::keeping(max_bytes);
    let set = read_folder(root, limits, &mut consistency)?;
    Ok((set, consistency.into_kept()))
}

fn read_folder(
    root: &Path,
    limits: &ImageLimits,
    consistency: &mut Consistency,
) -> Result<ImageSet, DatasetError> {
    let top = Path::new(".");
    let classes: Vec<(String, PathBuf)> = sorted_entries(root, top)?;
    for (name, path) in &classes {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| malformed(Path::new(name), format!("unreadable: {e}")))?;
        if meta.file_type().is_symlink() {
            return Err(malformed(
                Path::new(name),
                "is a symbolic link; an image folder holds its class folders themselves",
            ));
        }
    }
    if let Some((name, _)) = classes.iter().find(|(_, p)| !p.is_dir()) {
        return Err(malformed(
            Path::new(name),
            "is a file at the top of an image folder, which holds one sub-folder per class",
        ));
    }
    if classes.is_empty() {
        return Err(malformed(
            top,
            "holds no class folder; put each class's images in a sub-folder named after it",
        ));
    }
    let mut hasher = Sha256Hasher::default();
    let mut items = Vec::new();
    for (label, (class, dir)) in classes.iter().enumerate() {
        let files = sorted_entries(dir, Path::new(class))?;
        if files.is_empty() {
            return Err(malformed(
                Path::new(class),
                "is an empty class folder; every class needs at least one image",
            ));
        }
        for (name, path) in files {
            let shown = Path::new(class).join(&name);
            if path.is_dir() || !is_image(&name) {
                return Err(malformed(
                    &shown,
                    "is not a .png, .jpg or .jpeg file; a class folder holds images only",
                ));
            }
            if items.len() == limits.max_images {
                return Err(malformed(
                    top,
                    format!("holds more than {} images", limits.max_images),
                ));
            }
            let bytes = read_bounded(&path, &shown, limits)?;
            let image = decode_bytes(&bytes, &shown, limits)?;
            consistency.accept(&shown, image)?;
            hash_file(&mut hasher, &shown, &bytes);
            items.push(ImageItem {
                path: shown,
                target: ImageTarget::Class(label as u32),
            });
        }
    }
    let (_, mode, height, width) = consistency
        .first
        .clone()
        .ok_or_else(|| malformed(top, "holds no image"))?;
    Ok(ImageSet {
        kind: TargetKind::Class,
        classes: classes.into_iter().map(|(name, _)| name).collect(),
        items,
        mode,
        height,
        width,
        digest: hasher.finish(),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb};

    /// A `side`² grayscale PNG of one shade at `dir/file`.
    pub(crate) fn gray(dir: &Path, file: &str, side: u32, value: u8) {
        std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
        ImageBuffer::from_pixel(side, side, Luma([value]))
            .save(dir.join(file))
            .unwrap();
    }

    fn error(dir: &Path) -> String {
        scan_folder(dir, &ImageLimits::default())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_class_folder_registers_sorted_classes_one_shape_and_a_digest() {
        let dir = tempfile::tempdir().unwrap();
        gray(dir.path(), "normal/b.png", 8, 10);
        gray(dir.path(), "normal/a.png", 8, 20);
        gray(dir.path(), "effusion/x.png", 8, 30);
        std::fs::write(dir.path().join(".DS_Store"), b"ignored").unwrap();
        let found = scan_folder(dir.path(), &ImageLimits::default()).unwrap();
        assert_eq!(found.classes, ["effusion", "normal"]);
        let items: Vec<(String, u32)> = found
            .items
            .iter()
            .map(|i| match i.target {
                ImageTarget::Class(label) => (i.path.display().to_string(), label),
                _ => unreachable!("a folder labels by class"),
            })
            .collect();
        assert_eq!(
            items,
            [
                ("effusion/x.png".to_string(), 0),
                ("normal/a.png".to_string(), 1),
                ("normal/b.png".to_string(), 1),
            ]
        );
        assert_eq!((found.mode.channels, found.height, found.width), (1, 8, 8));
        let again = scan_folder(dir.path(), &ImageLimits::default()).unwrap();
        assert_eq!(again.digest, found.digest);
        gray(dir.path(), "normal/b.png", 8, 11);
        let changed = scan_folder(dir.path(), &ImageLimits::default()).unwrap();
        assert_ne!(
            changed.digest, found.digest,
            "a changed pixel changes the digest"
        );
    }

    #[test]
    fn sixteen_bit_grayscale_and_rgb_decode_channel_first_in_unit_range() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("deep.png");
        ImageBuffer::from_fn(2, 1, |x, _| Luma([if x == 0 { 0u16 } else { 65535 }]))
            .save(&deep)
            .unwrap();
        let image = decode_bytes(
            &std::fs::read(&deep).unwrap(),
            Path::new("deep.png"),
            &ImageLimits::default(),
        )
        .unwrap();
        assert_eq!(
            image.mode,
            PixelMode {
                channels: 1,
                bits: 16
            }
        );
        assert_eq!(image.pixels, [0.0, 1.0]);
        let rgb = dir.path().join("rgb.png");
        ImageBuffer::from_fn(2, 1, |x, _| Rgb([255u8, 0, if x == 0 { 51 } else { 102 }]))
            .save(&rgb)
            .unwrap();
        let image = decode_bytes(
            &std::fs::read(&rgb).unwrap(),
            Path::new("rgb.png"),
            &ImageLimits::default(),
        )
        .unwrap();
        assert_eq!((image.mode.channels, image.height, image.width), (3, 1, 2));
        assert_eq!(image.pixels, [1.0, 1.0, 0.0, 0.0, 0.2, 0.4]);
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read_never_links_devices_or_fifos() {
        // A link to /dev/zero would be read without end; a FIFO would hang.
        let zero = tempfile::tempdir().unwrap();
        gray(zero.path(), "a/ok.png", 4, 0);
        std::os::unix::fs::symlink("/dev/zero", zero.path().join("a/zero.png")).unwrap();
        assert!(error(zero.path()).contains("a/zero.png: is a symbolic link"));

        let fifo = tempfile::tempdir().unwrap();
        gray(fifo.path(), "a/ok.png", 4, 0);
        let path = std::ffi::CString::new(
            fifo.path()
                .join("a/pipe.png")
                .as_os_str()
                .as_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        assert!(error(fifo.path()).contains("a/pipe.png: is not a regular file"));

        let outside = tempfile::tempdir().unwrap();
        gray(outside.path(), "b/x.png", 4, 0);
        let linked = tempfile::tempdir().unwrap();
        gray(linked.path(), "a/ok.png", 4, 0);
        std::os::unix::fs::symlink(outside.path().join("b"), linked.path().join("b")).unwrap();
        assert!(error(linked.path()).contains("b: is a symbolic link"));
    }

    #[test]
    fn each_bad_folder_names_the_file_or_class() {
        let corrupt = tempfile::tempdir().unwrap();
        gray(corrupt.path(), "a/ok.png", 4, 0);
        std::fs::write(
            corrupt.path().join("a/broken.png"),
            b"\x89PNG\r\n\x1a\nnot really",
        )
        .unwrap();
        let err = error(corrupt.path());
        assert!(
            err.contains("a/broken.png") && err.contains("cannot decode"),
            "{err}"
        );

        let empty = tempfile::tempdir().unwrap();
        gray(empty.path(), "a/ok.png", 4, 0);
        std::fs::create_dir_all(empty.path().join("b")).unwrap();
        assert!(error(empty.path()).contains("b: is an empty class folder"));

        let sizes = tempfile::tempdir().unwrap();
        gray(sizes.path(), "a/one.png", 4, 0);
        gray(sizes.path(), "a/two.png", 5, 0);
        let err = error(sizes.path());
        assert!(
            err.contains("a/two.png: is 5×5, but a/one.png is 4×4"),
            "{err}"
        );

        let modes = tempfile::tempdir().unwrap();
        gray(modes.path(), "a/gray.png", 4, 0);
        ImageBuffer::from_pixel(4, 4, Rgb([1u8, 2, 3]))
            .save(modes.path().join("a/rgb.png"))
            .unwrap();
        let err = error(modes.path());
        assert!(
            err.contains("a/rgb.png: is 8-bit RGB, but a/gray.png is 8-bit grayscale"),
            "{err}"
        );

        let alpha = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(alpha.path().join("a")).unwrap();
        ImageBuffer::from_pixel(4, 4, image::Rgba([1u8, 2, 3, 4]))
            .save(alpha.path().join("a/rgba.png"))
            .unwrap();
        assert!(error(alpha.path()).contains("without alpha"));

        let stray = tempfile::tempdir().unwrap();
        gray(stray.path(), "a/ok.png", 4, 0);
        std::fs::write(stray.path().join("a/notes.txt"), b"x").unwrap();
        assert!(error(stray.path()).contains("a/notes.txt: is not a .png"));

        let flat = tempfile::tempdir().unwrap();
        gray(flat.path(), "ok.png", 4, 0);
        assert!(error(flat.path()).contains("ok.png: is a file at the top"));

        let huge = tempfile::tempdir().unwrap();
        gray(huge.path(), "a/big.png", 64, 0);
        let tight = ImageLimits {
            max_side: 32,
            ..ImageLimits::default()
        };
        let err = scan_folder(huge.path(), &tight).unwrap_err().to_string();
        assert!(
            err.contains("a/big.png") && err.contains("cannot decode"),
            "{err}"
        );
    }
}
