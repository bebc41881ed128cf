//! [`Tensor`]: an n-dimensional array of f32 that remembers how it was
//! computed, so that `loss.backward()` fills the gradient of every parameter
//! it depends on (reverse-mode automatic differentiation, as in PyTorch).
//!
//! Tensors are cheap handles (`Clone` shares the array). Parameters are leaf
//! tensors made with [`Tensor::parameter`]; every operation on a tensor that
//! requires a gradient records its inputs and a backward function, unless
//! [`no_grad`] is in force. Values are row-major (C order).

mod autograd;
mod broadcast;
mod mode;

use std::cell::{Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;

pub(crate) use autograd::clip_factors;
pub(crate) use autograd::dp_backward;
pub use autograd::{BackwardFn, Grad, Need};
pub(crate) use autograd::{HostBackwardFn, HostGrad};
pub(crate) use broadcast::broadcast_shape;
pub use mode::{grad_enabled, is_training, no_grad, with_training};

use crate::backend::Buf;
use crate::error::{PlanResult, invalid_data};

/// An n-dimensional f32 array, possibly a node of an autodiff graph.
#[derive(Clone)]
pub struct Tensor(Rc<Inner>);

struct Inner {
    shape: Vec<usize>,
    data: RefCell<Buf>,
    grad: RefCell<Option<Buf>>,
    requires_grad: bool,
    node: Option<autograd::Node>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.0.shape)
            .field("requires_grad", &self.0.requires_grad)
            .field("op", &self.0.node.as_ref().map(|n| n.name))
            .finish()
    }
}

/// Whether an operation on `inputs` records a graph (so saving what its
/// backward needs is worth it).
pub(crate) fn tracking(inputs: &[&Tensor]) -> bool {
    grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

/// Elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    fn leaf(shape: Vec<usize>, data: Vec<f32>, requires_grad: bool) -> Tensor {
        Tensor::leaf_buf(shape, Buf::local(data), requires_grad)
    }

    fn leaf_buf(shape: Vec<usize>, data: Buf, requires_grad: bool) -> Tensor {
        Tensor(Rc::new(Inner {
            shape,
            data: RefCell::new(data),
            grad: RefCell::new(None),
            requires_grad,
            node: None,
        }))
    }

    /// A tensor of `shape` over `data` (row-major); the lengths must agree.
    pub fn new(data: Vec<f32>, shape: &[usize]) -> PlanResult<Tensor> {
        if numel(shape) != data.len() {
            return Err(invalid_data(format!(
                "a tensor of shape {shape:?} needs {} values, got {}",
                numel(shape),
                data.len()
            )));
        }
        Ok(Tensor::leaf(shape.to_vec(), data, false))
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor with every element `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor::leaf(shape.to_vec(), vec![value; numel(shape)], false)
    }

    /// A 0-dimensional tensor.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::leaf(Vec::new(), vec![value], false)
    }

    /// A trainable leaf: its gradient is kept after `backward`.
    pub fn parameter(data: Vec<f32>, shape: &[usize]) -> PlanResult<Tensor> {
        let t = Tensor::new(data, shape)?;
        let Inner { shape, data, .. } = Rc::try_unwrap(t.0).ok().expect("fresh tensor");
        Ok(Tensor::leaf_buf(shape, data.into_inner(), true))
    }

    /// A tensor over values the node's host holds (a batch it prepared).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn on_host(
        tensor: crate::__bindings::fedwasm::plan::compute::Tensor,
        shape: &[usize],
    ) -> PlanResult<Tensor> {
        let len = tensor.len();
        if len != numel(shape) as u64 {
            return Err(invalid_data(format!(
                "the host sent {len} values for a tensor of shape {shape:?}"
            )));
        }
        Ok(Tensor::leaf_buf(
            shape.to_vec(),
            Buf::remote(tensor, len as usize),
            false,
        ))
    }

    /// The result of an operation: `data` of `shape`, computed from `inputs`,
    /// whose gradients `backward` gives from the output's. This is how the
    /// SDK's operations are built, and how a plan adds its own differentiable
    /// operation (PyTorch's `autograd.Function`). No graph is recorded when
    /// gradients are off or no input needs one.
    pub fn from_op(
        name: &'static str,
        data: Vec<f32>,
        shape: &[usize],
        inputs: &[&Tensor],
        backward: impl BackwardFn + 'static,
    ) -> PlanResult<Tensor> {
        let backward = autograd::Backward::Values(Box::new(backward));
        Tensor::build(name, Buf::local(data), shape, inputs, backward, false)
    }

    /// [`Tensor::from_op`] for values an operation left on the host (or
    /// computed in-process by the same kernels).
    /// Its backward takes and gives gradients as tensors, which stay on
    /// the host when the operations computing them run there.
    pub(crate) fn from_buf(
        name: &'static str,
        data: Buf,
        shape: &[usize],
        inputs: &[&Tensor],
        backward: impl HostBackwardFn + 'static,
    ) -> PlanResult<Tensor> {
        let backward = autograd::Backward::Host(Box::new(backward));
        Tensor::build(name, data, shape, inputs, backward, false)
    }

    /// [`Tensor::from_buf`] for an operation whose backward also answers
    /// [`Need::SampleSquares`] and [`Need::Clipped`] (ghost clipping).
    pub(crate) fn from_ghost_buf(
        name: &'static str,
        data: Buf,
        shape: &[usize],
        inputs: &[&Tensor],
        backward: impl HostBackwardFn + 'static,
    ) -> PlanResult<Tensor> {
        let backward = autograd::Backward::Host(Box::new(backward));
        Tensor::build(name, data, shape, inputs, backward, true)
    }

    /// A tensor over values an operation gave, outside any graph (a
    /// gradient, or an intermediate of a backward pass).
    pub(crate) fn from_values(data: Buf, shape: &[usize]) -> Tensor {
        Tensor::leaf_buf(shape.to_vec(), data, false)
    }

    /// The values, taken out (copied when another handle shares them).
    pub(crate) fn into_buf(self) -> Buf {
        match Rc::try_unwrap(self.0) {
            Ok(inner) => inner.data.into_inner(),
            Err(shared) => Buf::local(Tensor(shared).to_vec()),
        }
    }

    fn build(
        name: &'static str,
        data: Buf,
        shape: &[usize],
        inputs: &[&Tensor],
        backward: autograd::Backward,
        ghost: bool,
    ) -> PlanResult<Tensor> {
        if numel(shape) != data.len() {
            return Err(invalid_data(format!(
                "{name}: an output of shape {shape:?} needs {} values, got {}",
                numel(shape),
                data.len()
            )));
        }
        let track = tracking(inputs);
        let node = track.then(|| autograd::Node {
            name,
            ghost,
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            backward,
        });
        Ok(Tensor(Rc::new(Inner {
            shape: shape.to_vec(),
            data: RefCell::new(data),
            grad: RefCell::new(None),
            requires_grad: track,
            node,
        })))
    }

    /// The extent of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.0.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// The values, row-major (fetched from the node's host once, when an
    /// operation left them there).
    pub fn values(&self) -> Ref<'_, [f32]> {
        if !self.0.data.borrow().is_local() {
            self.0.data.borrow_mut().fetch();
        }
        Ref::map(self.0.data.borrow(), |b| b.values())
    }

    /// The values, mutably: for optimizers and parameter loading, which run
    /// outside any graph.
    pub fn values_mut(&self) -> RefMut<'_, [f32]> {
        RefMut::map(self.0.data.borrow_mut(), |b| b.values_mut())
    }

    /// A copy of the values.
    pub fn to_vec(&self) -> Vec<f32> {
        self.values().to_vec()
    }

    /// Where the values are, for the backend.
    pub(crate) fn buf(&self) -> Ref<'_, Buf> {
        self.0.data.borrow()
    }

    /// Where the values are, mutably, for the backend.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn buf_mut(&self) -> RefMut<'_, Buf> {
        self.0.data.borrow_mut()
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> PlanResult<f32> {
        let v = self.values();
        match *v {
            [x] => Ok(x),
            _ => Err(invalid_data(format!(
                "item() needs a one-element tensor, got shape {:?}",
                self.shape()
            ))),
        }
    }

    /// Whether a gradient flows to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// Whether this tensor was made directly rather than by an operation.
    pub fn is_leaf(&self) -> bool {
        self.0.node.is_none()
    }

    /// The accumulated gradient of a leaf, if `backward` reached it
    /// (fetched from the node's host once, when it was computed there).
    pub fn grad(&self) -> Option<Ref<'_, [f32]>> {
        if self.0.grad.borrow().as_ref().is_some_and(|g| !g.is_local())
            && let Some(g) = self.0.grad.borrow_mut().as_mut()
        {
            g.fetch();
        }
        Ref::filter_map(self.0.grad.borrow(), |g| g.as_ref().map(|b| b.values())).ok()
    }

    /// The gradient, mutably (gradient clipping, noise, corrections).
    pub fn grad_mut(&self) -> Option<RefMut<'_, [f32]>> {
        RefMut::filter_map(self.0.grad.borrow_mut(), |g| {
            g.as_mut().map(|b| b.values_mut())
        })
        .ok()
    }

    /// Replace the gradient (or clear it with `None`).
    pub fn set_grad(&self, grad: Option<Vec<f32>>) {
        *self.0.grad.borrow_mut() = grad.map(Buf::local);
    }

    /// The gradient as a tensor shaped like this one, for operations on it
    /// (taken out of the slot; put it back with [`Tensor::put_grad`]).
    pub(crate) fn take_grad(&self) -> Option<Tensor> {
        let g = self.0.grad.borrow_mut().take()?;
        Some(Tensor::from_values(g, self.shape()))
    }

    /// Store `g` as the gradient.
    pub(crate) fn put_grad(&self, g: Tensor) {
        *self.0.grad.borrow_mut() = Some(g.into_buf());
    }

    /// Add `g` to the gradient, creating it if needed.
    pub(crate) fn accumulate_grad(&self, g: Tensor) -> PlanResult<()> {
        let sum = match self.take_grad() {
            Some(acc) => crate::backend::add(&acc, &g)?,
            None => g,
        };
        self.put_grad(sum);
        Ok(())
    }

    /// The same values, cut from the graph.
    pub fn detach(&self) -> Tensor {
        Tensor::leaf(self.0.shape.clone(), self.to_vec(), false)
    }

    /// Whether two handles share one tensor.
    pub fn same(&self, other: &Tensor) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn key(&self) -> usize {
        Rc::as_ptr(&self.0) as usize
    }

    pub(crate) fn node(&self) -> Option<&autograd::Node> {
        self.0.node.as_ref()
    }

    /// Fill the gradient of every leaf this one-element tensor depends on:
    /// `∂self/∂leaf` is added to `leaf.grad()`.
    pub fn backward(&self) -> PlanResult<()> {
        if self.numel() != 1 {
            return Err(invalid_data(format!(
                "backward() starts from a one-element tensor (a loss), got shape {:?}",
                self.shape()
            )));
        }
        autograd::backward(self, vec![1.0])
    }
}
