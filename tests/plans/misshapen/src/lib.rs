//! A segmentation plan whose `predict` flattens each sample's class maps
//! into one row, `[n, classes·H·W]`, instead of `[n, classes, H, W]`: the
//! node must refuse the shape by name, never read it as something else.

use fedwasm_plan::prelude::*;

/// A 1×1 convolution to two class maps per pixel.
pub struct Misshapen {
    model: Sequential,
    segmenter: Segmenter,
}

impl TrainingPlan for Misshapen {
    const NAME: &'static str = "hostile-misshapen";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Segments, then predicts in the wrong shape.";
    const MODEL_ARGS: &'static [ArgSpec] = &[];

    fn init_model(_args: &Args) -> PlanResult<Self> {
        Ok(Misshapen {
            model: Sequential::new().add("head", nn::Conv2d::new(1, 2, [1, 1])?),
            segmenter: Segmenter::new(2)?,
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(image_data(
            self.segmenter.task,
            (1, 32, 32),
            (0.5, 0.25),
            no_augmentation(),
        ))
    }

    fn model(&self) -> &dyn Module {
        &self.model
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        self.segmenter.loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        self.segmenter.predict(output)?.flatten(1)
    }
}

fedwasm_plan::export_plan!(Misshapen);
