//! `compute.update`: an optimizer's update of one parameter, in place on
//! the host tensors a plan holds.
//!
//! Unlike every other operation it makes nothing: it changes the parameter
//! and the rule's state where they are, so the only new memory is none. A
//! hostile plan may pass one handle twice; a tensor that is changed must be
//! passed once, or the update would read what it is writing, so that is
//! refused before anything is touched.

use fedwasm_kernels::update::{Extras, Rule, State, Update};
use wasmtime::component::Resource;

use super::{HostTensor, PARALLEL_WORK, invalid_data};
use crate::sandbox::bindings::compute;
use crate::sandbox::bindings::types::PlanError;
use crate::sandbox::host::HostState;

/// The kernel's update for the plan's `step`.
fn update_of(step: &compute::UpdateStep) -> Update {
    let rule = match step.rule {
        compute::UpdateRule::Sgd => Rule::Sgd,
        compute::UpdateRule::Momentum(m) => Rule::Momentum {
            momentum: m.momentum,
            nesterov: m.nesterov,
            first_update: m.first_update,
        },
        compute::UpdateRule::Adam(a) => Rule::Adam {
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            c1: a.c1,
            c2: a.c2,
            decay: a.decay,
        },
    };
    Update {
        lr: step.lr,
        scale: step.scale,
        prox_mu: step.prox_mu,
        l2: step.l2,
        rule,
    }
}

/// The tensors one update works on, as the plan passed them.
pub(super) struct Operands {
    pub(super) w: Resource<HostTensor>,
    pub(super) g: Resource<HostTensor>,
    pub(super) correction: Option<Resource<HostTensor>>,
    pub(super) anchor: Option<Resource<HostTensor>>,
    pub(super) first: Option<Resource<HostTensor>>,
    pub(super) second: Option<Resource<HostTensor>>,
}

impl Operands {
    /// Whether a tensor the update changes is also passed in another place.
    fn aliased(&self) -> bool {
        let all = [
            Some(&self.w),
            Some(&self.g),
            self.correction.as_ref(),
            self.anchor.as_ref(),
            self.first.as_ref(),
            self.second.as_ref(),
        ];
        let changed = [Some(&self.w), self.first.as_ref(), self.second.as_ref()];
        changed
            .into_iter()
            .flatten()
            .any(|c| all.iter().flatten().filter(|t| t.rep() == c.rep()).count() > 1)
    }
}

impl HostState {
    /// Run one update: the operands checked (distinct where changed, every
    /// length the parameter's), then the kernel on the pool.
    pub(super) fn run_update(
        &mut self,
        step: &compute::UpdateStep,
        t: &Operands,
    ) -> wasmtime::Result<Result<(), PlanError>> {
        let update = update_of(step);
        if t.aliased() {
            return Ok(Err(invalid_data(
                "update: the parameter and the optimizer's state are changed in place, so each \\
                 must be a tensor of its own, passed once"
                    .to_owned(),
            )));
        }
        let len = |s: &Self, h: Option<&Resource<HostTensor>>| -> wasmtime::Result<Option<usize>> {
            h.map(|h| Ok(s.tensor(h)?.data.len())).transpose()
        };
        let w_len = self.tensor(&t.w)?.data.len();
        let checked = update.check(
            w_len,
            self.tensor(&t.g)?.data.len(),
            [
                len(self, t.correction.as_ref())?,
                len(self, t.anchor.as_ref())?,
            ],
            [len(self, t.first.as_ref())?, len(self, t.second.as_ref())?],
        );
        if let Err(e) = checked {
            return Ok(Err(invalid_data(e.0)));
        }
        // The changed tensors leave the table while the kernel runs, so the
        // ones it reads can be borrowed beside them; they go back whatever
        // happens.
        let mut w = self.take_data(&t.w)?;
        let mut first = t.first.as_ref().map(|h| self.take_data(h)).transpose()?;
        let mut second = t.second.as_ref().map(|h| self.take_data(h)).transpose()?;
        let ran = self.apply_update(
            &update,
            t,
            &mut w,
            first.as_deref_mut(),
            second.as_deref_mut(),
        );
        self.put_data(&t.w, w)?;
        if let (Some(h), Some(data)) = (&t.first, first) {
            self.put_data(h, data)?;
        }
        if let (Some(h), Some(data)) = (&t.second, second) {
            self.put_data(h, data)?;
        }
        ran.map(Ok)
    }

    /// The kernel on the tensors the update reads, on the pool when it is
    /// large enough to pay for it.
    fn apply_update(
        &self,
        update: &Update,
        t: &Operands,
        w: &mut [f32],
        first: Option<&mut [f32]>,
        second: Option<&mut [f32]>,
    ) -> wasmtime::Result<()> {
        let g = &self.tensor(&t.g)?.data;
        let extras = Extras {
            correction: match &t.correction {
                Some(h) => Some(self.tensor(h)?.data.as_slice()),
                None => None,
            },
            anchor: match &t.anchor {
                Some(h) => Some(self.tensor(h)?.data.as_slice()),
                None => None,
            },
        };
        let state = State { first, second };
        let small = w.len() < PARALLEL_WORK;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if small {
                fedwasm_kernels::parallel::serial(|| update.apply(w, g, extras, state));
            } else {
                self.pool.install(|| update.apply(w, g, extras, state));
            }
        }));
        if ran.is_err() {
            wasmtime::bail!("compute.update: the host's kernel failed");
        }
        Ok(())
    }

    fn take_data(&mut self, h: &Resource<HostTensor>) -> wasmtime::Result<Vec<f32>> {
        Ok(std::mem::take(&mut self.table.get_mut(h)?.data))
    }

    fn put_data(&mut self, h: &Resource<HostTensor>, data: Vec<f32>) -> wasmtime::Result<()> {
        self.table.get_mut(h)?.data = data;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::TENSOR_OVERHEAD;
    use super::super::tests::{borrow, state};
    use super::*;
    use compute::{Host, HostTensor as _};

    fn momentum(first_update: bool) -> compute::UpdateStep {
        compute::UpdateStep {
            lr: 0.5,
            scale: 1.0,
            prox_mu: 0.0,
            l2: 0.0,
            rule: compute::UpdateRule::Momentum(compute::MomentumRule {
                momentum: 0.5,
                nesterov: false,
                first_update,
            }),
        }
    }

    /// The update changes the parameter and its state where they are, as
    /// the kernel does, and takes nothing from the budget.
    #[test]
    fn an_update_changes_held_tensors_in_place() {
        let mut s = state(16);
        let w = s.upload(vec![1.0, 2.0]).unwrap().unwrap();
        let g = s.upload(vec![1.0, -1.0]).unwrap().unwrap();
        let c = s.upload(vec![0.5, 0.5]).unwrap().unwrap();
        let v = s.zeros(2).unwrap().unwrap();
        let held = s.memory.host;
        for first_update in [true, false] {
            s.update(
                momentum(first_update),
                borrow(&w),
                borrow(&g),
                Some(borrow(&c)),
                None,
                Some(borrow(&v)),
                None,
            )
            .unwrap()
            .unwrap();
        }
        assert_eq!(s.read(borrow(&w)).unwrap(), vec![0.375, 3.875]);
        assert_eq!(s.read(borrow(&v)).unwrap(), vec![0.75, -2.25]);
        assert_eq!(s.memory.host, held);
        let copy = s.duplicate(borrow(&w)).unwrap().unwrap();
        assert_eq!(s.read(borrow(&copy)).unwrap(), vec![0.375, 3.875]);
    }

    /// A tensor passed twice where one is changed, or a missing or misfit
    /// state, is the plan's error, and nothing is changed.
    #[test]
    fn aliased_missing_or_misfit_operands_are_refused_untouched() {
        let mut s = state(16);
        let w = s.upload(vec![1.0; 4]).unwrap().unwrap();
        let g = s.upload(vec![1.0; 4]).unwrap().unwrap();
        let short = s.zeros(3).unwrap().unwrap();
        let mut refused = |first: Option<&Resource<HostTensor>>, grad: &Resource<HostTensor>| {
            s.update(
                momentum(false),
                borrow(&w),
                borrow(grad),
                None,
                None,
                first.map(borrow),
                None,
            )
            .unwrap()
            .unwrap_err()
            .message
        };
        assert!(refused(Some(&w), &g).contains("passed once"));
        assert!(refused(Some(&g), &w).contains("passed once"));
        assert_eq!(refused(None, &g), "update: the first moment is missing");
        assert!(refused(Some(&short), &g).contains("the first moment should hold 4 values"));
        assert_eq!(s.read(borrow(&w)).unwrap(), vec![1.0; 4]);
        let forged = Resource::<HostTensor>::new_borrow(999);
        assert!(
            s.update(
                momentum(true),
                borrow(&w),
                forged,
                None,
                None,
                Some(borrow(&short)),
                None
            )
            .is_err()
        );
    }

    /// Zeros and copies are host tensors like any other: charged to the
    /// budget before they exist.
    #[test]
    fn zeros_and_copies_are_charged_to_the_budget() {
        let mut s = state(1);
        let err = s.zeros(1 << 40).unwrap_err();
        assert!(err.to_string().contains("compute.tensor.zeros"), "{err}");
        let quarter = ((1 << 18) - TENSOR_OVERHEAD) / 4;
        let a = s.zeros(quarter as u64).unwrap().unwrap();
        let _b = s.duplicate(borrow(&a)).unwrap().unwrap();
        let _c = s.duplicate(borrow(&a)).unwrap().unwrap();
        let _d = s.duplicate(borrow(&a)).unwrap().unwrap();
        let err = s.duplicate(borrow(&a)).unwrap_err();
        assert!(
            err.to_string().contains("compute.tensor.duplicate"),
            "{err}"
        );
    }
}
