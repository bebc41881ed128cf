//! ResNet-18 and ResNet-34 (He et al., 2016; BasicBlock), with parameter
//! names and shapes **identical to torchvision's** `resnet18()` /
//! `resnet34()` `state_dict()` (`conv1.weight`, `bn1.running_mean`,
//! `layer2.0.downsample.0.weight`, …, `fc.bias`), so that torchvision's
//! weights, converted to float32 safetensors, can start a federation through
//! `initial_parameters` (see `names/` and the README).
//!
//! `width` scales every layer's channels (64 as torchvision); `small_input`
//! swaps the 7×7 stride-2 stem and its max pooling for a 3×3 stride-1
//! convolution, for 28–64 pixel images (`conv1.weight` is then
//! `[width, C, 3, 3]`). Images only: the node fits them to `input_shape`,
//! normalizes and augments them as the image arguments say.

use fedwasm_plan::prelude::*;

/// Two 3×3 convolutions with batch normalization and a shortcut, which is a
/// 1×1 convolution and batch normalization (`downsample`) when the block
/// changes the size or the channels.
struct BasicBlock {
    conv1: nn::Conv2d,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2d,
    bn2: nn::BatchNorm,
    downsample: Option<Sequential>,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize) -> PlanResult<Self> {
        let downsample = if stride != 1 || c_in != c_out {
            Some(
                Sequential::new()
                    .push(
                        nn::Conv2d::new(c_in, c_out, [1, 1])?
                            .stride(stride)
                            .without_bias(),
                    )
                    .push(nn::BatchNorm::new_2d(c_out)?),
            )
        } else {
            None
        };
        Ok(BasicBlock {
            conv1: nn::Conv2d::new(c_in, c_out, [3, 3])?
                .stride(stride)
                .padding(1)
                .without_bias(),
            bn1: nn::BatchNorm::new_2d(c_out)?,
            conv2: nn::Conv2d::new(c_out, c_out, [3, 3])?
                .padding(1)
                .without_bias(),
            bn2: nn::BatchNorm::new_2d(c_out)?,
            downsample,
        })
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        let out = self.bn1.forward(&self.conv1.forward(x)?)?.relu();
        let out = self.bn2.forward(&self.conv2.forward(&out)?)?;
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        Ok(out.add(&identity)?.relu())
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.module("conv1", &self.conv1);
        v.module("bn1", &self.bn1);
        v.module("conv2", &self.conv2);
        v.module("bn2", &self.bn2);
        if let Some(d) = &self.downsample {
            v.module("downsample", d);
        }
    }
}

/// The network, in torchvision's module order.
struct Network {
    conv1: nn::Conv2d,
    bn1: nn::BatchNorm,
    stem_pool: Option<nn::MaxPool2d>,
    /// `layer1` … `layer4`.
    layers: Vec<Sequential>,
    fc: nn::Linear,
}

impl Network {
    fn new(depth: usize, c_in: usize, width: usize, n_out: usize, small: bool) -> PlanResult<Self> {
        let blocks: [usize; 4] = match depth {
            18 => [2, 2, 2, 2],
            34 => [3, 4, 6, 3],
            other => {
                return Err(invalid_argument(format!(
                    "model_args.depth must be 18 or 34 (BasicBlock ResNets), got {other}"
                )));
            }
        };
        let conv1 = if small {
            nn::Conv2d::new(c_in, width, [3, 3])?
                .padding(1)
                .without_bias()
        } else {
            nn::Conv2d::new(c_in, width, [7, 7])?
                .stride(2)
                .padding(3)
                .without_bias()
        };
        let stem_pool = (!small).then(|| {
            let mut pool = nn::MaxPool2d::new(3);
            pool.options.stride = [2, 2];
            pool.options.padding = [1, 1];
            pool
        });
        let mut c = width;
        let mut layers: Vec<Sequential> = Vec::with_capacity(4);
        for (i, &count) in blocks.iter().enumerate() {
            let c_out = width << i;
            let mut layer = Sequential::new();
            for b in 0..count {
                let stride = if b == 0 && i > 0 { 2 } else { 1 };
                layer = layer.push(BasicBlock::new(c, c_out, stride)?);
                c = c_out;
            }
            layers.push(layer);
        }
        Ok(Network {
            conv1,
            bn1: nn::BatchNorm::new_2d(width)?,
            stem_pool,
            layers,
            fc: nn::Linear::new(c, n_out)?,
        })
    }
}

impl Module for Network {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        let mut x = self.bn1.forward(&self.conv1.forward(x)?)?.relu();
        if let Some(pool) = &self.stem_pool {
            x = pool.forward(&x)?;
        }
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        let x = nn::AdaptiveAvgPool2d::new(1, 1).forward(&x)?.flatten(1)?;
        self.fc.forward(&x)
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.module("conv1", &self.conv1);
        v.module("bn1", &self.bn1);
        for (i, layer) in self.layers.iter().enumerate() {
            v.module(&format!("layer{}", i + 1), layer);
        }
        v.module("fc", &self.fc);
    }
}

/// The plan: the network, its classification head and its image arguments.
pub struct ResNet {
    network: Network,
    classifier: Classifier,
    n_classes: usize,
    shape: [u32; 3],
    images: ImageArgs,
}

impl TrainingPlan for ResNet {
    const NAME: &'static str = "resnet";
    const VERSION: &'static str = "0.3.0";
    const DESCRIPTION: &'static str = "ResNet-18/34 (BasicBlock) with torchvision's parameter names and shapes, \
         so torchvision's weights can start a federation; an optional small-input stem for \
         28-64 pixel images. Images are fitted to input_shape, normalized and augmented by the node.";
    const MODEL_ARGS: &'static [ArgSpec] = &[
        ArgSpec::required(
            "input_shape",
            ArgType::CountList,
            "[channels, height, width] the node fits every image to",
        ),
        ArgSpec::required(
            "n_classes",
            ArgType::Count,
            "number of classes (fc's outputs)",
        ),
        ArgSpec::optional("depth", ArgType::Count, "18", "18 or 34"),
        ArgSpec::optional(
            "width",
            ArgType::Count,
            "64",
            "channels of the first layer (torchvision: 64); each later layer doubles them",
        ),
        ArgSpec::optional(
            "small_input",
            ArgType::Boolean,
            "false",
            "a 3x3 stride-1 stem without max pooling, for 28-64 pixel images (conv1.weight becomes [width, C, 3, 3])",
        ),
        ArgSpec::optional(
            "fit",
            ArgType::Text,
            "\"resize\"",
            "how the node brings images to input_shape: resize or center-crop",
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
            "0.25",
            "divides each channel after the mean: one number, or one per channel (ImageNet's [0.229, 0.224, 0.225])",
        ),
        ArgSpec::optional(
            "horizontal_flip",
            ArgType::Boolean,
            "false",
            "training samples mirrored left-right at random",
        ),
        ArgSpec::optional(
            "vertical_flip",
            ArgType::Boolean,
            "false",
            "training samples mirrored top-bottom at random",
        ),
        ArgSpec::optional(
            "crop_padding",
            ArgType::Count,
            "0",
            "training samples padded by this many pixels and cropped back at random",
        ),
        ArgSpec::optional(
            "rotation",
            ArgType::Number,
            "0",
            "training samples rotated by up to this many degrees either way",
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
        let small = args.boolean("small_input")?;
        let least = if small { 8 } else { 32 };
        if c == 0 || h < least || w < least {
            return Err(invalid_argument(format!(
                "model_args.input_shape: images must be at least {least}x{least} for this stem \
                 (small_input: {small}) and have a channel, got {shape:?}"
            )));
        }
        let n_classes = args.count_at_least("n_classes", 2)?;
        let width = args.count_at_least("width", 1)?;
        let classifier = Classifier::new(n_classes);
        let network = Network::new(args.count("depth")?, c, width, classifier.outputs, small)?;
        Ok(ResNet {
            network,
            classifier,
            n_classes,
            shape: [c as u32, h as u32, w as u32],
            images: ImageArgs::from_args(args, c)?,
        })
    }

    fn training_data(&self, info: &DatasetInfo) -> PlanResult<DataSpec> {
        let Some(images) = &info.images else {
            return Err(invalid_data(
                "this plan trains on images; the dataset is a table (use the cnn or mlp plan)",
            ));
        };
        if images.target_kind != ImageTargetKind::Class {
            return Err(invalid_data(
                "this plan classifies images into one class each; the dataset's images carry labels or masks",
            ));
        }
        if images.classes.len() != self.n_classes {
            return Err(invalid_data(format!(
                "model_args.n_classes is {} but the dataset has {} classes ({})",
                self.n_classes,
                images.classes.len(),
                images.classes.join(", ")
            )));
        }
        let [c, h, w] = self.shape;
        Ok(self.images.data_spec(self.classifier.task, (c, h, w)))
    }

    fn model(&self) -> &dyn Module {
        &self.network
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        self.classifier.loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        self.classifier.predict(output)
    }
}

fedwasm_plan::export_plan!(ResNet);

#[cfg(test)]
mod tests {
    use super::*;
    use fedwasm_plan::Trainer;

    /// `name shape` lines of the plan's parameters and buffers, in order.
    fn our_names(depth: usize) -> Vec<String> {
        fedwasm_plan::random::seed_native([3; 32]);
        let mut trainer = Trainer::<ResNet>::new();
        trainer
            .init_model(&format!(
                r#"{{"input_shape": [3, 224, 224], "n_classes": 1000, "depth": {depth}}}"#
            ))
            .unwrap();
        trainer
            .get_parameters()
            .iter()
            .map(|t| {
                let shape: Vec<String> = t.shape.iter().map(u32::to_string).collect();
                format!("{} {}", t.name, shape.join(","))
            })
            .collect()
    }

    fn torchvision_names(depth: usize) -> Vec<String> {
        let file = match depth {
            18 => include_str!("../names/resnet18.txt"),
            _ => include_str!("../names/resnet34.txt"),
        };
        file.lines().map(str::to_string).collect()
    }

    #[test]
    fn names_and_shapes_equal_torchvisions_state_dict() {
        for depth in [18, 34] {
            assert_eq!(our_names(depth), torchvision_names(depth), "resnet{depth}");
        }
    }

    #[test]
    fn the_small_input_stem_and_width_change_only_what_they_say() {
        fedwasm_plan::random::seed_native([3; 32]);
        let mut trainer = Trainer::<ResNet>::new();
        trainer
            .init_model(
                r#"{"input_shape": [1, 16, 16], "n_classes": 2, "width": 8, "small_input": true}"#,
            )
            .unwrap();
        let params = trainer.get_parameters();
        assert_eq!(params[0].name, "conv1.weight");
        assert_eq!(params[0].shape, vec![8, 1, 3, 3]);
        // Two classes take one logit (the SDK's binary classifier).
        let fc = params.iter().find(|t| t.name == "fc.weight").unwrap();
        assert_eq!(fc.shape, vec![1, 64]);
        assert_eq!(params.len(), torchvision_names(18).len());
        let err = Trainer::<ResNet>::new()
            .init_model(r#"{"input_shape": [3, 224, 224], "n_classes": 10, "depth": 50}"#)
            .unwrap_err();
        assert!(
            err.message.contains("depth must be 18 or 34"),
            "{}",
            err.message
        );
    }
}
