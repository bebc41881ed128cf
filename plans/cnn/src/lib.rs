//! A configurable convolutional classifier in the LeNet/VGG style: blocks of
//! 3×3 convolution (`conv1`, `conv2`, …), optional batch normalization
//! (`bn1`, …), ReLU and 2×2 pooling, then either flattening or global
//! average pooling, dropout and fully connected layers (`fc1`, …, `out`).
//!
//! On an image dataset the plan asks the node for `input_shape` images
//! (resized or center-cropped, converted to its channels, normalized with
//! `mean` and `std`, and augmented as its arguments say). On a table, each
//! row is viewed as one `[C, H, W]` image, e.g. the 64 pixels of an 8×8
//! digit as `[1, 8, 8]`.

use fedwasm_plan::prelude::*;

/// The plan: the network, its classification head, and how it wants its data.
pub struct Cnn {
    model: Sequential,
    classifier: Classifier,
    n_classes: usize,
    shape: [u32; 3],
    scaling: Scaling,
    images: ImageArgs,
}

fn scaling(name: &str) -> PlanResult<Scaling> {
    match name {
        "standardize" => Ok(Scaling::Standardize),
        "min-max" => Ok(Scaling::MinMax),
        "none" => Ok(Scaling::None),
        other => Err(invalid_argument(format!(
            "model_args.scaling must be standardize, min-max or none, got \"{other}\""
        ))),
    }
}

impl TrainingPlan for Cnn {
    const NAME: &'static str = "cnn";
    const VERSION: &'static str = "0.2.0";
    const DESCRIPTION: &'static str = "Convolutional classifier: blocks of 3x3 convolution, batch normalization, \
         ReLU and 2x2 pooling, then dropout and fully connected layers; PyTorch's default \
         initialisation. Image datasets are fitted to input_shape, normalized and augmented by \
         the node; a table's rows are viewed as [C, H, W] images.";
    const MODEL_ARGS: &'static [ArgSpec] = &[
        ArgSpec::required(
            "input_shape",
            ArgType::CountList,
            "[channels, height, width] of one image: asked of an image dataset; for a table, their product is the number of feature columns",
        ),
        ArgSpec::required(
            "n_classes",
            ArgType::Count,
            "number of classes, or of labels with multi_label",
        ),
        ArgSpec::optional(
            "multi_label",
            ArgType::Boolean,
            "false",
            "images labelled with several yes/no labels (a manifest's label columns): one sigmoid output per label",
        ),
        ArgSpec::optional(
            "channels",
            ArgType::CountList,
            "[16, 32]",
            "output channels of each convolution block",
        ),
        ArgSpec::optional("kernel", ArgType::Count, "3", "convolution kernel size"),
        ArgSpec::optional(
            "padding",
            ArgType::CountList,
            "[]",
            "zero padding of each block's convolution; [] pads kernel/2 everywhere (same size for odd kernels)",
        ),
        ArgSpec::optional(
            "pooled_blocks",
            ArgType::CountList,
            "[]",
            "blocks (1, 2, …) followed by 2x2 pooling; [] means every block while the image is at least 2x2",
        ),
        ArgSpec::optional(
            "batch_norm",
            ArgType::Boolean,
            "true",
            "batch normalization after each convolution",
        ),
        ArgSpec::optional(
            "pool",
            ArgType::Text,
            "\"max\"",
            "2x2 pooling after each block: max, avg or none",
        ),
        ArgSpec::optional(
            "global_pool",
            ArgType::Boolean,
            "false",
            "average each channel over the image before the fully connected layers, instead of flattening",
        ),
        ArgSpec::optional(
            "hidden",
            ArgType::CountList,
            "[64]",
            "width of each hidden fully connected layer",
        ),
        ArgSpec::optional(
            "dropout",
            ArgType::Number,
            "0.25",
            "dropout probability before each fully connected layer",
        ),
        ArgSpec::optional(
            "scaling",
            ArgType::Text,
            "\"min-max\"",
            "tables: feature scaling by the node with its own training statistics: min-max, standardize or none",
        ),
        ArgSpec::optional(
            "fit",
            ArgType::Text,
            "\"resize\"",
            "images: how the node brings them to input_shape: resize or center-crop",
        ),
        ArgSpec::optional(
            "mean",
            ArgType::NumberOrList,
            "0.5",
            "images: subtracted from the [0, 1] values: one number, or one per channel (ImageNet's [0.485, 0.456, 0.406])",
        ),
        ArgSpec::optional(
            "std",
            ArgType::NumberOrList,
            "0.5",
            "images: divides each channel after the mean: one number, or one per channel (ImageNet's [0.229, 0.224, 0.225])",
        ),
        ArgSpec::optional(
            "horizontal_flip",
            ArgType::Boolean,
            "false",
            "images: training samples mirrored left-right at random",
        ),
        ArgSpec::optional(
            "vertical_flip",
            ArgType::Boolean,
            "false",
            "images: training samples mirrored top-bottom at random",
        ),
        ArgSpec::optional(
            "crop_padding",
            ArgType::Count,
            "0",
            "images: training samples padded by this many pixels and cropped back at random",
        ),
        ArgSpec::optional(
            "rotation",
            ArgType::Number,
            "0",
            "images: training samples rotated by up to this many degrees either way",
        ),
    ];
    const OPTIMIZER_ARGS: &'static [ArgSpec] = &optimizer_args("0.05");

    fn init_model(args: &Args) -> PlanResult<Self> {
        let shape = args.counts("input_shape")?;
        let [c, mut h, mut w] = shape[..] else {
            return Err(invalid_argument(format!(
                "model_args.input_shape must be [channels, height, width], got {shape:?}"
            )));
        };
        if c == 0 || h == 0 || w == 0 {
            return Err(invalid_argument(
                "model_args.input_shape: every extent must be at least 1",
            ));
        }
        let multi_label = args.boolean("multi_label")?;
        let n_classes = args.count_at_least("n_classes", if multi_label { 1 } else { 2 })?;
        let kernel = args.count_at_least("kernel", 1)?;
        let dropout = args.number("dropout")?;
        if !(0.0..1.0).contains(&dropout) {
            return Err(invalid_argument(format!(
                "model_args.dropout must be in [0, 1), got {dropout}"
            )));
        }
        let pool = args.text("pool")?;
        if !matches!(pool, "max" | "avg" | "none") {
            return Err(invalid_argument(format!(
                "model_args.pool must be max, avg or none, got \"{pool}\""
            )));
        }
        let channels = args.counts("channels")?;
        let hidden = args.counts("hidden")?;
        if channels.contains(&0) || hidden.contains(&0) {
            return Err(invalid_argument(
                "model_args.channels and hidden: every layer needs at least one unit",
            ));
        }
        let batch_norm = args.boolean("batch_norm")?;
        let mut padding = args.counts("padding")?;
        if padding.is_empty() {
            padding = vec![kernel / 2; channels.len()];
        } else if padding.len() != channels.len() {
            return Err(invalid_argument(format!(
                "model_args.padding has {} values for {} blocks",
                padding.len(),
                channels.len()
            )));
        }
        let pooled = args.counts("pooled_blocks")?;
        if let Some(b) = pooled.iter().find(|&&b| b == 0 || b > channels.len()) {
            return Err(invalid_argument(format!(
                "model_args.pooled_blocks: there is no block {b} (blocks are 1..={})",
                channels.len()
            )));
        }
        let mut model = Sequential::new().add("view", nn::Reshape(vec![c, h, w]));
        let mut c_in = c;
        for (i, &c_out) in channels.iter().enumerate() {
            let k = i + 1;
            let conv = nn::Conv2d::new(c_in, c_out, [kernel; 2])?.padding(padding[i]);
            let fits = |size: usize| (size + 2 * padding[i]).checked_sub(kernel).map(|s| s + 1);
            let (Some(oh), Some(ow)) = (fits(h), fits(w)) else {
                return Err(invalid_argument(format!(
                    "model_args: block {k}'s {kernel}x{kernel} kernel does not fit its {h}x{w} input"
                )));
            };
            (h, w) = (oh, ow);
            // A bias before batch normalization is cancelled by it.
            model = if batch_norm {
                model
                    .add(&format!("conv{k}"), conv.without_bias())
                    .add(&format!("bn{k}"), nn::BatchNorm::new_2d(c_out)?)
            } else {
                model.add(&format!("conv{k}"), conv)
            };
            model = model.push(nn::Relu);
            let pool_here = if pooled.is_empty() {
                h >= 2 && w >= 2
            } else {
                pooled.contains(&k)
            };
            if pool_here {
                if h < 2 || w < 2 {
                    return Err(invalid_argument(format!(
                        "model_args.pooled_blocks: block {k}'s output is {h}x{w}, too small to pool"
                    )));
                }
                match pool {
                    "max" => model = model.push(nn::MaxPool2d::new(2)),
                    "avg" => model = model.push(nn::AvgPool2d::new(2)),
                    _ => {}
                }
                if pool != "none" {
                    (h, w) = (h / 2, w / 2);
                }
            }
            c_in = c_out;
        }
        let mut width = if args.boolean("global_pool")? {
            model = model.push(nn::AdaptiveAvgPool2d::new(1, 1));
            c_in
        } else {
            c_in * h * w
        };
        model = model.push(nn::Flatten(1));
        let classifier = if multi_label {
            Classifier::multi_label(n_classes)
        } else {
            Classifier::new(n_classes)
        };
        for (j, &units) in hidden.iter().enumerate() {
            model = model
                .push(nn::Dropout::new(dropout)?)
                .add(&format!("fc{}", j + 1), nn::Linear::new(width, units)?)
                .push(nn::Relu);
            width = units;
        }
        model = model
            .push(nn::Dropout::new(dropout)?)
            .add("out", nn::Linear::new(width, classifier.outputs)?);
        Ok(Cnn {
            model,
            classifier,
            n_classes,
            shape: [c as u32, shape[1] as u32, shape[2] as u32],
            scaling: scaling(args.text("scaling")?)?,
            images: ImageArgs::from_args(args, c)?,
        })
    }

    fn training_data(&self, info: &DatasetInfo) -> PlanResult<DataSpec> {
        let [c, h, w] = self.shape;
        if let Some(images) = &info.images {
            let multi_label = matches!(self.classifier.task, Task::MultiLabelClassification(_));
            let (kind, what) = match images.target_kind {
                ImageTargetKind::Class if multi_label => {
                    return Err(invalid_data(
                        "the dataset's images carry one class each; drop model_args.multi_label",
                    ));
                }
                ImageTargetKind::MultiLabel if !multi_label => {
                    return Err(invalid_data(
                        "the dataset's images carry several labels each; set model_args.multi_label to true",
                    ));
                }
                ImageTargetKind::Mask => {
                    return Err(invalid_data(
                        "this plan classifies whole images; the dataset's images are labelled by masks",
                    ));
                }
                ImageTargetKind::Class => ("n_classes", "classes"),
                ImageTargetKind::MultiLabel => ("n_classes", "labels"),
            };
            if images.classes.len() != self.n_classes {
                return Err(invalid_data(format!(
                    "model_args.{kind} is {} but the dataset has {} {what} ({})",
                    self.n_classes,
                    images.classes.len(),
                    images.classes.join(", ")
                )));
            }
            return Ok(self.images.data_spec(self.classifier.task, (c, h, w)));
        }
        let pixels = (c * h * w) as usize;
        let features = info
            .columns
            .len()
            .saturating_sub(usize::from(info.target.is_some()));
        if features != pixels {
            return Err(invalid_data(format!(
                "model_args.input_shape needs {pixels} feature columns per image, the dataset has {features}"
            )));
        }
        Ok(DataSpec {
            scaling: self.scaling,
            ..standardized_tabular(self.classifier.task)
        })
    }

    fn model(&self) -> &dyn Module {
        &self.model
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        self.classifier.loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        self.classifier.predict(output)
    }
}

fedwasm_plan::export_plan!(Cnn);
