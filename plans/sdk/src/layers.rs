//! Layers with hand-written backward passes, and [`Sequential`] to stack them.
//!
//! Activations flow as row-major `Array2<f32>` of shape [batch, width].
//! A training forward pass caches what the backward pass needs; inference
//! ([`Sequential::infer`]) caches nothing.

use ndarray::{Array1, Array2};

use crate::error::{PlanResult, invalid_data, invalid_state};
use crate::kernels;
use crate::random;

/// A fully connected layer y = x·Wᵀ + b, with PyTorch's [out, in] weight layout.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Prefix of the parameter names (`<name>.weight`, `<name>.bias`).
    pub name: String,
    /// Weight of shape [n_out, n_in].
    pub weight: Array2<f32>,
    /// Bias of shape [n_out].
    pub bias: Array1<f32>,
    grad_weight: Array2<f32>,
    grad_bias: Array1<f32>,
    input: Option<Array2<f32>>,
}

impl Linear {
    /// A layer whose parameters all start at zero (linear models, like scikit-learn).
    pub fn zeros(name: &str, n_in: usize, n_out: usize) -> Self {
        Linear {
            name: name.to_string(),
            weight: Array2::zeros((n_out, n_in)),
            bias: Array1::zeros(n_out),
            grad_weight: Array2::zeros((n_out, n_in)),
            grad_bias: Array1::zeros(n_out),
            input: None,
        }
    }

    /// PyTorch's default initialisation: weight and bias uniform in
    /// [-1/√n_in, 1/√n_in), drawn from the host-seeded stream.
    pub fn uniform(name: &str, n_in: usize, n_out: usize) -> Self {
        let mut layer = Linear::zeros(name, n_in, n_out);
        let bound = 1.0 / libm::sqrtf(n_in as f32);
        let w = random::uniform_range(n_in * n_out, -bound, bound);
        let b = random::uniform_range(n_out, -bound, bound);
        layer.weight = Array2::from_shape_vec((n_out, n_in), w).expect("shape matches length");
        layer.bias = Array1::from(b);
        layer
    }

    /// Input width.
    pub fn n_in(&self) -> usize {
        self.weight.ncols()
    }

    /// Output width.
    pub fn n_out(&self) -> usize {
        self.weight.nrows()
    }

    fn apply(&self, x: &Array2<f32>) -> Array2<f32> {
        let mut out = Array2::zeros((x.nrows(), self.n_out()));
        kernels::linear_forward(
            x.as_slice().expect("activations are standard layout"),
            self.weight.as_slice().expect("weights are standard layout"),
            self.bias.as_slice().expect("bias is contiguous"),
            self.n_in(),
            out.as_slice_mut().expect("fresh array"),
        );
        out
    }

    fn backward(
        &mut self,
        grad_out: &Array2<f32>,
        want_input_grad: bool,
    ) -> PlanResult<Option<Array2<f32>>> {
        let input = self
            .input
            .take()
            .ok_or_else(|| invalid_state(format!("{}: backward without forward", self.name)))?;
        let mut grad_input = want_input_grad.then(|| Array2::zeros(input.raw_dim()));
        kernels::linear_backward(
            input.as_slice().expect("activations are standard layout"),
            self.weight.as_slice().expect("weights are standard layout"),
            grad_out.as_slice().expect("gradients are standard layout"),
            self.n_in(),
            self.grad_weight.as_slice_mut().expect("standard layout"),
            self.grad_bias.as_slice_mut().expect("contiguous"),
            grad_input
                .as_mut()
                .map(|g| g.as_slice_mut().expect("fresh array")),
        );
        Ok(grad_input)
    }
}

/// An element-wise non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh(x)
    Tanh,
}

impl Activation {
    /// Parse a name from model arguments ("relu", "sigmoid", "tanh").
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "relu" => Some(Activation::Relu),
            "sigmoid" => Some(Activation::Sigmoid),
            "tanh" => Some(Activation::Tanh),
            _ => None,
        }
    }

    /// f(x)
    pub fn value(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => libm::tanhf(x),
        }
    }

    /// f'(x) written in terms of the output y = f(x).
    fn derivative_from_output(self, y: f32) -> f32 {
        match self {
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Tanh => 1.0 - y * y,
        }
    }
}

/// The logistic function, computed without overflow for any input.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + libm::expf(-x))
    } else {
        let e = libm::expf(x);
        e / (1.0 + e)
    }
}

#[derive(Debug, Clone)]
enum Layer {
    Linear(Box<Linear>),
    Activation {
        kind: Activation,
        output: Option<Array2<f32>>,
    },
}

/// Layers applied in order; owns the parameters and their gradients.
#[derive(Debug, Clone, Default)]
pub struct Sequential {
    layers: Vec<Layer>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Append a linear layer.
    pub fn linear(mut self, layer: Linear) -> Self {
        self.layers.push(Layer::Linear(Box::new(layer)));
        self
    }

    /// Append an activation.
    pub fn activation(mut self, kind: Activation) -> Self {
        self.layers.push(Layer::Activation { kind, output: None });
        self
    }

    fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().filter_map(|l| match l {
            Layer::Linear(lin) => Some(&**lin),
            Layer::Activation { .. } => None,
        })
    }

    /// Width the first linear layer expects.
    pub fn n_inputs(&self) -> usize {
        self.linears().next().map_or(0, Linear::n_in)
    }

    /// Width of the last linear layer.
    pub fn n_outputs(&self) -> usize {
        self.linears().last().map_or(0, Linear::n_out)
    }

    fn check_input(&self, x: &Array2<f32>) -> PlanResult<()> {
        if x.ncols() != self.n_inputs() {
            return Err(invalid_data(format!(
                "the model takes {} features per sample but the batch has {}; \
                 check the feature columns or the model's n_features",
                self.n_inputs(),
                x.ncols()
            )));
        }
        Ok(())
    }

    /// Forward pass for training: caches what [`Sequential::backward`] needs.
    pub fn forward(&mut self, x: Array2<f32>) -> PlanResult<Array2<f32>> {
        self.check_input(&x)?;
        let mut h = x;
        for layer in &mut self.layers {
            h = match layer {
                Layer::Linear(lin) => {
                    let out = lin.apply(&h);
                    lin.input = Some(h);
                    out
                }
                Layer::Activation { kind, output } => {
                    let k = *kind;
                    h.mapv_inplace(|v| k.value(v));
                    *output = Some(h.clone());
                    h
                }
            };
        }
        Ok(h)
    }

    /// Forward pass without caches, for prediction.
    pub fn infer(&self, x: Array2<f32>) -> PlanResult<Array2<f32>> {
        self.check_input(&x)?;
        let mut h = x;
        for layer in &self.layers {
            h = match layer {
                Layer::Linear(lin) => lin.apply(&h),
                Layer::Activation { kind, .. } => {
                    let k = *kind;
                    h.mapv_inplace(|v| k.value(v));
                    h
                }
            };
        }
        Ok(h)
    }

    /// Backward pass from the gradient of the loss with respect to the output;
    /// adds into the parameter gradients (call [`Sequential::zero_grad`] first).
    pub fn backward(&mut self, grad_output: Array2<f32>) -> PlanResult<()> {
        let first_linear = self
            .layers
            .iter()
            .position(|l| matches!(l, Layer::Linear(_)));
        let mut g = grad_output;
        for (i, layer) in self.layers.iter_mut().enumerate().rev() {
            match layer {
                Layer::Linear(lin) => {
                    let want = Some(i) != first_linear;
                    match lin.backward(&g, want)? {
                        Some(next) => g = next,
                        None => break,
                    }
                }
                Layer::Activation { kind, output } => {
                    let y = output
                        .take()
                        .ok_or_else(|| invalid_state("activation: backward without forward"))?;
                    let k = *kind;
                    g.zip_mut_with(&y, |gi, &yi| *gi *= k.derivative_from_output(yi));
                }
            }
        }
        Ok(())
    }

    /// The L2 norm of each row's own parameter gradient, for the output
    /// gradient `grad_output` of the last [`Sequential::forward`], without
    /// computing per-row gradients or touching the caches ("ghost norms"):
    /// a linear layer's gradient for one row is the outer product of the
    /// row's output gradient g and input a, whose squared norm is
    /// ‖g‖²·‖a‖², plus ‖g‖² for the bias.
    pub fn per_sample_gradient_norms(&self, grad_output: &Array2<f32>) -> PlanResult<Vec<f32>> {
        let rows = grad_output.nrows();
        let mut squares = vec![0.0f32; rows];
        let mut g = grad_output.clone();
        let first_linear = self
            .layers
            .iter()
            .position(|l| matches!(l, Layer::Linear(_)));
        for (i, layer) in self.layers.iter().enumerate().rev() {
            match layer {
                Layer::Linear(lin) => {
                    let a = lin.input.as_ref().ok_or_else(|| {
                        invalid_state(format!("{}: gradient norms without forward", lin.name))
                    })?;
                    for (r, square) in squares.iter_mut().enumerate() {
                        let g2: f32 = g.row(r).iter().map(|v| v * v).sum();
                        let a2: f32 = a.row(r).iter().map(|v| v * v).sum();
                        *square += g2 * (a2 + 1.0);
                    }
                    if Some(i) == first_linear {
                        break;
                    }
                    let mut input_grad = Array2::<f32>::zeros(a.raw_dim());
                    for (gr, mut out) in g.rows().into_iter().zip(input_grad.rows_mut()) {
                        for (go, w) in gr.iter().zip(lin.weight.rows()) {
                            for (o, wv) in out.iter_mut().zip(w) {
                                *o += go * wv;
                            }
                        }
                    }
                    g = input_grad;
                }
                Layer::Activation { kind, output } => {
                    let y = output.as_ref().ok_or_else(|| {
                        invalid_state("activation: gradient norms without forward")
                    })?;
                    let k = *kind;
                    g.zip_mut_with(y, |gi, &yi| *gi *= k.derivative_from_output(yi));
                }
            }
        }
        Ok(squares.into_iter().map(libm::sqrtf).collect())
    }

    /// Reset every parameter gradient to zero.
    pub fn zero_grad(&mut self) {
        for layer in &mut self.layers {
            if let Layer::Linear(lin) = layer {
                lin.grad_weight.fill(0.0);
                lin.grad_bias.fill(0.0);
            }
        }
    }

    /// Every parameter as (name, shape, values), weights before biases, layer by layer.
    pub fn parameters(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        let mut out = Vec::new();
        for lin in self.linears() {
            out.push((
                format!("{}.weight", lin.name),
                lin.weight.shape().to_vec(),
                lin.weight.as_slice().expect("standard layout"),
            ));
            out.push((
                format!("{}.bias", lin.name),
                lin.bias.shape().to_vec(),
                lin.bias.as_slice().expect("contiguous"),
            ));
        }
        out
    }

    /// Every parameter with its gradient, in the order of [`Sequential::parameters`].
    pub fn parameters_and_gradients(&mut self) -> Vec<(&mut [f32], &[f32])> {
        let mut out = Vec::new();
        for layer in &mut self.layers {
            if let Layer::Linear(lin) = layer {
                out.push((
                    lin.weight.as_slice_mut().expect("standard layout"),
                    lin.grad_weight.as_slice().expect("standard layout"),
                ));
                out.push((
                    lin.bias.as_slice_mut().expect("contiguous"),
                    lin.grad_bias.as_slice().expect("contiguous"),
                ));
            }
        }
        out
    }

    /// Every parameter's gradient, in the order of [`Sequential::parameters`].
    pub fn gradients(&self) -> Vec<&[f32]> {
        self.linears()
            .flat_map(|lin| {
                [
                    lin.grad_weight.as_slice().expect("standard layout"),
                    lin.grad_bias.as_slice().expect("contiguous"),
                ]
            })
            .collect()
    }

    /// Every parameter's gradient, mutably (DP-SGD replaces them).
    pub fn gradients_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out = Vec::new();
        for layer in &mut self.layers {
            if let Layer::Linear(lin) = layer {
                out.push(lin.grad_weight.as_slice_mut().expect("standard layout"));
                out.push(lin.grad_bias.as_slice_mut().expect("contiguous"));
            }
        }
        out
    }

    /// Take `values` as the new parameters, in the order of [`Sequential::parameters`],
    /// without copying them. Lengths must already be checked
    /// (see [`crate::params::match_tensors`]).
    pub fn replace_parameters(&mut self, values: Vec<Vec<f32>>) {
        let mut values = values.into_iter();
        for layer in &mut self.layers {
            if let Layer::Linear(lin) = layer {
                let (Some(w), Some(b)) = (values.next(), values.next()) else {
                    return;
                };
                lin.weight =
                    Array2::from_shape_vec(lin.weight.raw_dim(), w).expect("weight length checked");
                lin.bias = Array1::from(b);
            }
        }
    }

    /// Mutable parameter values, in the order of [`Sequential::parameters`].
    pub fn parameters_mut(&mut self) -> Vec<&mut [f32]> {
        self.parameters_and_gradients()
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Σ output·probe: a scalar whose gradient with respect to the output is `probe`.
    fn probe_loss(model: &Sequential, x: &Array2<f32>, probe: &Array2<f32>) -> f64 {
        let out = model.infer(x.clone()).unwrap();
        out.iter()
            .zip(probe)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    }

    fn check_gradients(mut model: Sequential) {
        random::seed_native([3; 32]);
        let x = Array2::from_shape_vec((4, model.n_inputs()), random::normal(4 * model.n_inputs()))
            .unwrap();
        let probe = Array2::from_shape_vec(
            (4, model.n_outputs()),
            random::normal(4 * model.n_outputs()),
        )
        .unwrap();
        model.zero_grad();
        model.forward(x.clone()).unwrap();
        model.backward(probe.clone()).unwrap();
        let analytic: Vec<Vec<f32>> = model
            .parameters_and_gradients()
            .into_iter()
            .map(|(_, g)| g.to_vec())
            .collect();
        let eps = 1e-2f32;
        for (p, grads) in analytic.iter().enumerate() {
            for (i, &g) in grads.iter().enumerate() {
                let original = model.parameters_mut()[p][i];
                model.parameters_mut()[p][i] = original + eps;
                let plus = probe_loss(&model, &x, &probe);
                model.parameters_mut()[p][i] = original - eps;
                let minus = probe_loss(&model, &x, &probe);
                model.parameters_mut()[p][i] = original;
                let numeric = (plus - minus) / (2.0 * eps as f64);
                let tol = 2e-2 * (1.0 + numeric.abs());
                assert!(
                    (numeric - g as f64).abs() < tol,
                    "parameter {p}[{i}]: analytic {g}, numeric {numeric}"
                );
            }
        }
    }

    #[test]
    fn linear_gradients_match_finite_differences() {
        random::seed_native([1; 32]);
        check_gradients(Sequential::new().linear(Linear::uniform("fc", 5, 3)));
    }

    #[test]
    fn activation_gradients_match_finite_differences() {
        for act in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
            random::seed_native([2; 32]);
            check_gradients(
                Sequential::new()
                    .linear(Linear::uniform("fc1", 4, 6))
                    .activation(act)
                    .linear(Linear::uniform("fc2", 6, 2)),
            );
        }
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }

    #[test]
    fn wrong_input_width_names_both_widths() {
        let model = Sequential::new().linear(Linear::zeros("fc", 3, 1));
        let err = model.infer(Array2::zeros((2, 5))).unwrap_err();
        assert!(
            err.message.contains("takes 3 features") && err.message.contains("has 5"),
            "{err}"
        );
    }
}
