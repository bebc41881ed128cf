//! A U-Net (Ronneberger et al., 2015) for segmentation: a class per pixel.
//!
//! The encoder is `depth` levels of two 3×3 convolutions (batch
//! normalization, ReLU; `down1`, `down2`, …) each followed by 2×2 max
//! pooling, then a `bottom` block; the decoder upsamples by 2 (nearest),
//! joins the encoder's output of the same level (the skip connection) and
//! applies two convolutions again (`up1`, …); a 1×1 convolution (`head`)
//! gives one logit map per class. Channels start at `base_channels` and
//! double at each level. Trained with per-pixel cross-entropy plus
//! `dice_weight` × soft Dice of the foreground classes.
//!
//! The node fits the images and their masks to `input_shape` (masks by
//! nearest pixel) and augments both with the same draws.

use fedwasm_plan::prelude::*;

/// Two 3×3 convolutions, each with batch normalization (or a bias) and ReLU.
fn double_conv(c_in: usize, c_out: usize, batch_norm: bool) -> PlanResult<Sequential> {
    let mut block = Sequential::new();
    for (k, from) in [(1, c_in), (2, c_out)] {
        let conv = nn::Conv2d::new(from, c_out, [3, 3])?.padding(1);
        block = if batch_norm {
            block
                .add(&format!("conv{k}"), conv.without_bias())
                .add(&format!("bn{k}"), nn::BatchNorm::new_2d(c_out)?)
        } else {
            block.add(&format!("conv{k}"), conv)
        };
        block = block.push(nn::Relu);
    }
    Ok(block)
}

/// The network: encoder blocks, bottom, decoder blocks (deepest last) and
/// the per-pixel head.
struct UNet {
    down: Vec<Sequential>,
    bottom: Sequential,
    up: Vec<Sequential>,
    head: nn::Conv2d,
    pool: nn::MaxPool2d,
}

impl Module for UNet {
    fn forward(&self, input: &Tensor) -> PlanResult<Tensor> {
        let mut x = input.clone();
        let mut skips = Vec::with_capacity(self.down.len());
        for block in &self.down {
            x = block.forward(&x)?;
            skips.push(x.clone());
            x = self.pool.forward(&x)?;
        }
        x = self.bottom.forward(&x)?;
        for (block, skip) in self.up.iter().zip(&skips).rev() {
            x = block.forward(&skip.cat(&x.upsample_nearest2d(2)?, 1)?)?;
        }
        self.head.forward(&x)
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        for (i, block) in self.down.iter().enumerate() {
            v.module(&format!("down{}", i + 1), block);
        }
        v.module("bottom", &self.bottom);
        for (i, block) in self.up.iter().enumerate() {
            v.module(&format!("up{}", i + 1), block);
        }
        v.module("head", &self.head);
    }
}

/// The plan: the network, its segmentation head and how it wants its data.
pub struct Unet {
    model: UNet,
    segmenter: Segmenter,
    shape: [u32; 3],
    images: ImageArgs,
}

impl TrainingPlan for Unet {
    const NAME: &'static str = "unet";
    const VERSION: &'static str = "0.2.0";
    const DESCRIPTION: &'static str = "U-Net for segmentation (a class per pixel): an encoder of double 3x3 \
         convolutions with batch normalization and 2x2 max pooling, a decoder that upsamples and \
         joins the encoder's maps of the same size, and a 1x1 convolution to one logit map per \
         class; per-pixel cross-entropy plus soft Dice. Trains on image manifests with a mask \
         column; the node fits and augments images and masks together.";
    const MODEL_ARGS: &'static [ArgSpec] = &[
        ArgSpec::required(
            "input_shape",
            ArgType::CountList,
            "[channels, height, width] asked of the images; height and width divisible by 2^depth",
        ),
        ArgSpec::required(
            "n_classes",
            ArgType::Count,
            "classes per pixel, background included: the number of values in the masks",
        ),
        ArgSpec::optional(
            "base_channels",
            ArgType::Count,
            "8",
            "channels of the first level; each deeper level doubles them",
        ),
        ArgSpec::optional(
            "depth",
            ArgType::Count,
            "2",
            "number of 2x2 poolings (and upsamplings)",
        ),
        ArgSpec::optional(
            "batch_norm",
            ArgType::Boolean,
            "true",
            "batch normalization after each convolution",
        ),
        ArgSpec::optional(
            "dice_weight",
            ArgType::Number,
            "0.5",
            "weight of the soft Dice term added to the per-pixel cross-entropy (0: off)",
        ),
        ArgSpec::optional(
            "fit",
            ArgType::Text,
            "\"resize\"",
            "how the node brings images and masks to input_shape: resize or center-crop",
        ),
        ArgSpec::optional(
            "mean",
            ArgType::NumberOrList,
            "0.5",
            "subtracted from the [0, 1] values: one number, or one per channel (ImageNet's [0.485, 0.456, 0.406])",
        ),
        ArgSpec::optional(
            "std",
            ArgType::NumberOrList,
            "0.5",
            "divides each channel after the mean: one number, or one per channel (ImageNet's [0.229, 0.224, 0.225])",
        ),
        ArgSpec::optional(
            "horizontal_flip",
            ArgType::Boolean,
            "false",
            "training samples (and masks) mirrored left-right at random",
        ),
        ArgSpec::optional(
            "vertical_flip",
            ArgType::Boolean,
            "false",
            "training samples (and masks) mirrored top-bottom at random",
        ),
        ArgSpec::optional(
            "crop_padding",
            ArgType::Count,
            "0",
            "training samples (and masks) padded by this many pixels and cropped back at random",
        ),
        ArgSpec::optional(
            "rotation",
            ArgType::Number,
            "0",
            "training samples (and masks) rotated by up to this many degrees either way",
        ),
    ];
    const OPTIMIZER_ARGS: &'static [ArgSpec] = &optimizer_args("0.05");

    fn init_model(args: &Args) -> PlanResult<Self> {
        let shape = args.counts("input_shape")?;
        let [c, h, w] = shape[..] else {
            return Err(invalid_argument(format!(
                "model_args.input_shape must be [channels, height, width], got {shape:?}"
            )));
        };
        if !matches!(c, 1 | 3) {
            return Err(invalid_argument(format!(
                "model_args.input_shape: images have 1 (grayscale) or 3 (RGB) channels, got {c}"
            )));
        }
        let depth = args.count("depth")?;
        if depth > 6 {
            return Err(invalid_argument(format!(
                "model_args.depth must be at most 6, got {depth}"
            )));
        }
        let scale = 1usize << depth;
        if h == 0 || w == 0 || h % scale != 0 || w % scale != 0 || h > 4096 || w > 4096 {
            return Err(invalid_argument(format!(
                "model_args.input_shape: height and width must be multiples of 2^depth = {scale} (at most 4096), got {h}x{w}"
            )));
        }
        let n_classes = args.count_at_least("n_classes", 2)?;
        let base = args.count_at_least("base_channels", 1)?;
        if base.checked_shl(depth as u32).is_none_or(|top| top > 1024) {
            return Err(invalid_argument(format!(
                "model_args.base_channels × 2^depth must be at most 1024, got {base} × {scale}"
            )));
        }
        let batch_norm = args.boolean("batch_norm")?;
        let width = |level: usize| base << level;
        let mut down = Vec::with_capacity(depth);
        let mut c_in = c;
        for level in 0..depth {
            down.push(double_conv(c_in, width(level), batch_norm)?);
            c_in = width(level);
        }
        let bottom = double_conv(c_in, width(depth), batch_norm)?;
        let up = (0..depth)
            .map(|level| double_conv(width(level) + width(level + 1), width(level), batch_norm))
            .collect::<PlanResult<Vec<_>>>()?;
        let head = nn::Conv2d::new(width(0), n_classes, [1, 1])?;
        let mut segmenter = Segmenter::new(n_classes)?;
        segmenter.dice_weight = args.number("dice_weight")?;
        if !(segmenter.dice_weight.is_finite() && segmenter.dice_weight >= 0.0) {
            return Err(invalid_argument(format!(
                "model_args.dice_weight must be 0 or more, got {}",
                segmenter.dice_weight
            )));
        }
        Ok(Unet {
            model: UNet {
                down,
                bottom,
                up,
                head,
                pool: nn::MaxPool2d::new(2),
            },
            segmenter,
            shape: [c as u32, h as u32, w as u32],
            images: ImageArgs::from_args(args, c)?,
        })
    }

    fn training_data(&self, info: &DatasetInfo) -> PlanResult<DataSpec> {
        let Some(images) = &info.images else {
            return Err(invalid_data(
                "this plan segments images; the dataset is a table. Register an image manifest with a mask column",
            ));
        };
        if !matches!(images.target_kind, ImageTargetKind::Mask) {
            return Err(invalid_data(
                "this plan segments images pixel by pixel; the dataset's images carry classes or labels, not masks. Use the cnn plan, or a manifest with a mask column",
            ));
        }
        if images.classes.len() != self.segmenter.classes {
            return Err(invalid_data(format!(
                "model_args.n_classes is {} but the dataset's masks hold {} values ({})",
                self.segmenter.classes,
                images.classes.len(),
                images.classes.join(", ")
            )));
        }
        let [c, h, w] = self.shape;
        Ok(self.images.data_spec(self.segmenter.task, (c, h, w)))
    }

    fn model(&self) -> &dyn Module {
        &self.model
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        self.segmenter.loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        self.segmenter.predict(output)
    }
}

fedwasm_plan::export_plan!(Unet);
