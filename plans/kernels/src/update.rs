//! Optimizer updates: one parameter changed in place from its gradient, with
//! the rule's state (momentum, Adam's moments) beside it.
//!
//! A training step ends by touching every parameter once; for a model of
//! millions of weights that pass costs as much as a small layer, and in a
//! plan it would also carry every gradient into the sandbox and every
//! parameter back. Here it runs where the gradients already are, split over
//! chunks of the parameter on every thread. Each element is computed alone,
//! by the same expression in the same order as the plan SDK always did (one
//! rounding per operation, nothing fused), so the split never changes a bit.
//!
//! The gradient an update follows is `d = scale·g − correction + μ·(w − w₀)
//! + λ·w`: `scale` brings the whole gradient under a norm bound, the
//! correction is Scaffold's, μ is FedProx's pull towards the global model
//! `w₀` (the anchor) and λ an L2 penalty. A term that is off is skipped, not
//! added as zero: `x + 0·y` is not always `x` (`-0`, infinities).

use crate::parallel::for_each_chunk_mut;

/// Elements one task updates.
const CHUNK: usize = 1 << 14;

/// How an update moves a parameter once its gradient `d` is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// `w −= lr·d`.
    Sgd,
    /// PyTorch's momentum (no dampening): the velocity `v` is `d` on the
    /// first update and `momentum·v + d` after; `w −= lr·v`, or with
    /// Nesterov `w −= lr·(d + momentum·v)`. State: `first` holds `v`.
    Momentum {
        /// The velocity's decay.
        momentum: f32,
        /// Nesterov's look-ahead.
        nesterov: bool,
        /// The first update seeds the velocity with `d`.
        first_update: bool,
    },
    /// Adam: `m = β₁m + (1−β₁)d`, `v = β₂v + (1−β₂)d²`,
    /// `w = w·decay − lr·(m/c₁)/(√(v/c₂) + eps)`. State: `first` holds `m`,
    /// `second` holds `v`.
    Adam {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
        /// The first moment's bias correction, 1 − β₁ᵗ.
        c1: f32,
        /// The second moment's bias correction, 1 − β₂ᵗ.
        c2: f32,
        /// The weights' own decay (AdamW's 1 − lr·λ; 1 for Adam).
        decay: f32,
    },
}

impl Rule {
    /// How many state tensors the rule keeps beside the parameter.
    pub fn moments(self) -> usize {
        match self {
            Rule::Sgd => 0,
            Rule::Momentum { .. } => 1,
            Rule::Adam { .. } => 2,
        }
    }
}

/// One update of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// The learning rate.
    pub lr: f32,
    /// The gradient's scale (global-norm clipping); 1 leaves it alone.
    pub scale: f32,
    /// FedProx's μ; not 0 needs the anchor.
    pub prox_mu: f32,
    /// The L2 penalty added to the gradient; 0 for none.
    pub l2: f32,
    /// The rule, with its step-dependent constants.
    pub rule: Rule,
}

/// The tensors an update reads besides the gradient (`None` when unused).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras<'a> {
    /// Scaffold's correction, subtracted from the gradient.
    pub correction: Option<&'a [f32]>,
    /// FedProx's anchor `w₀`.
    pub anchor: Option<&'a [f32]>,
}

/// The rule's state, changed with the parameter.
#[derive(Debug, Default)]
pub struct State<'a> {
    /// Momentum's velocity or Adam's first moment.
    pub first: Option<&'a mut [f32]>,
    /// Adam's second moment.
    pub second: Option<&'a mut [f32]>,
}

/// Why an update cannot run: the offending tensor and the lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateError(pub String);

impl Update {
    /// Check that every tensor the update needs is there and as long as the
    /// parameter (`len`): the state its rule keeps, the anchor FedProx needs.
    pub fn check(
        &self,
        len: usize,
        gradient: usize,
        extras: [Option<usize>; 2],
        state: [Option<usize>; 2],
    ) -> Result<(), UpdateError> {
        let moments = self.rule.moments();
        let wanted = [
            ("the gradient", Some(gradient), true),
            ("the correction", extras[0], false),
            ("the anchor", extras[1], self.prox_mu != 0.0),
            ("the first moment", state[0], moments >= 1),
            ("the second moment", state[1], moments >= 2),
        ];
        for (name, got, needed) in wanted {
            match got {
                None if needed => {
                    return Err(UpdateError(format!("update: {name} is missing")));
                }
                Some(got) if got != len => {
                    return Err(UpdateError(format!(
                        "update: {name} should hold {len} values like the parameter, got {got}"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Update `w` in place from its gradient `g`, after [`Update::check`]
    /// accepted the lengths (the rule's state and the anchor are there).
    pub fn apply(&self, w: &mut [f32], g: &[f32], extras: Extras<'_>, state: State<'_>) {
        let mut pieces = split(w, state);
        for_each_chunk_mut(&mut pieces, 1, |_, piece| {
            let [piece] = piece else { return };
            let start = piece.start;
            let end = start + piece.w.len();
            let part = Extras {
                correction: extras.correction.map(|c| &c[start..end]),
                anchor: extras.anchor.map(|a| &a[start..end]),
            };
            self.apply_piece(piece, &g[start..end], part);
        });
    }

    /// The update of one chunk: its gradient `d`, then the rule, each a
    /// loop of its own over whole slices so that it vectorizes.
    fn apply_piece(&self, piece: &mut Piece<'_>, g: &[f32], extras: Extras<'_>) {
        let Piece {
            w, first, second, ..
        } = piece;
        let plain = self.scale == 1.0
            && extras.correction.is_none()
            && self.prox_mu == 0.0
            && self.l2 == 0.0;
        let owned;
        let d = if plain {
            g
        } else {
            owned = self.direction(w, g, extras);
            owned.as_slice()
        };
        let lr = self.lr;
        match self.rule {
            Rule::Sgd => w.iter_mut().zip(d).for_each(|(w, &d)| *w -= lr * d),
            Rule::Momentum {
                momentum,
                nesterov,
                first_update,
            } => {
                let v = first.as_deref_mut().expect("checked");
                for ((w, &d), v) in w.iter_mut().zip(d).zip(v.iter_mut()) {
                    *v = if first_update { d } else { momentum * *v + d };
                    let step = if nesterov { d + momentum * *v } else { *v };
                    *w -= lr * step;
                }
            }
            Rule::Adam {
                beta1,
                beta2,
                eps,
                c1,
                c2,
                decay,
            } => {
                let m = first.as_deref_mut().expect("checked");
                let v = second.as_deref_mut().expect("checked");
                let state = m.iter_mut().zip(v.iter_mut());
                for ((w, &d), (m, v)) in w.iter_mut().zip(d).zip(state) {
                    *m = beta1 * *m + (1.0 - beta1) * d;
                    *v = beta2 * *v + (1.0 - beta2) * d * d;
                    // `sqrt` is correctly rounded everywhere (IEEE 754), as
                    // libm's: the same bits, and it vectorizes.
                    *w = *w * decay - lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
            }
        }
    }

    /// The gradient the rule follows: each term that is on, in a fixed
    /// order, one loop per term.
    fn direction(&self, w: &[f32], g: &[f32], extras: Extras<'_>) -> Vec<f32> {
        let mut d: Vec<f32> = if self.scale == 1.0 {
            g.to_vec()
        } else {
            g.iter().map(|&g| g * self.scale).collect()
        };
        if let Some(c) = extras.correction {
            d.iter_mut().zip(c).for_each(|(d, &c)| *d -= c);
        }
        if self.prox_mu != 0.0
            && let Some(a) = extras.anchor
        {
            let mu = self.prox_mu;
            for ((d, &w), &a) in d.iter_mut().zip(w).zip(a) {
                *d += mu * (w - a);
            }
        }
        if self.l2 != 0.0 {
            let l2 = self.l2;
            d.iter_mut().zip(w).for_each(|(d, &w)| *d += l2 * w);
        }
        d
    }
}

/// A chunk of a parameter and of its state, updated by one task.
struct Piece<'a> {
    start: usize,
    w: &'a mut [f32],
    first: Option<&'a mut [f32]>,
    second: Option<&'a mut [f32]>,
}

/// The parameter and its state cut into [`CHUNK`]-long pieces.
fn split<'a>(w: &'a mut [f32], state: State<'a>) -> Vec<Piece<'a>> {
    let mut first = state.first.map(|f| f.chunks_mut(CHUNK));
    let mut second = state.second.map(|s| s.chunks_mut(CHUNK));
    w.chunks_mut(CHUNK)
        .enumerate()
        .map(|(i, w)| Piece {
            start: i * CHUNK,
            w,
            first: first.as_mut().and_then(Iterator::next),
            second: second.as_mut().and_then(Iterator::next),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgd(rule: Rule) -> Update {
        Update {
            lr: 0.5,
            scale: 1.0,
            prox_mu: 0.0,
            l2: 0.0,
            rule,
        }
    }

    #[test]
    fn momentum_seeds_its_velocity_then_decays_it() {
        let mut w = vec![1.0, 2.0];
        let mut v = vec![0.0; 2];
        let correction = [0.5f32, 0.5];
        let extras = Extras {
            correction: Some(&correction),
            anchor: None,
        };
        let mut rule = Rule::Momentum {
            momentum: 0.5,
            nesterov: false,
            first_update: true,
        };
        fn state(v: &mut [f32]) -> State<'_> {
            State {
                first: Some(v),
                second: None,
            }
        }
        sgd(rule).apply(&mut w, &[1.0, -1.0], extras, state(&mut v));
        // corrected gradient (0.5, −1.5) is the first velocity
        assert_eq!((w.clone(), v.clone()), (vec![0.75, 2.75], vec![0.5, -1.5]));
        if let Rule::Momentum { first_update, .. } = &mut rule {
            *first_update = false;
        }
        sgd(rule).apply(&mut w, &[1.0, -1.0], extras, state(&mut v));
        assert_eq!((w, v), (vec![0.375, 3.875], vec![0.75, -2.25]));
    }

    #[test]
    fn prox_and_l2_pull_the_gradient() {
        let mut u = sgd(Rule::Sgd);
        u.prox_mu = 1.0;
        u.l2 = 0.5;
        let mut w = vec![3.0];
        let extras = Extras {
            correction: None,
            anchor: Some(&[1.0]),
        };
        // d = 0 + 1·(3 − 1) + 0.5·3 = 3.5; w = 3 − 0.5·3.5
        u.apply(&mut w, &[0.0], extras, State::default());
        assert_eq!(w, vec![1.25]);
    }

    /// Every chunk split gives the bits one loop over the whole gives.
    #[test]
    fn chunks_do_not_change_bits() {
        let len = 3 * CHUNK + 17;
        let g: Vec<f32> = (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 999.0 - 0.5)
            .collect();
        let w0: Vec<f32> = (0..len)
            .map(|i| ((i * 104_729) % 997) as f32 / 500.0)
            .collect();
        let u = Update {
            lr: 0.01,
            scale: 0.75,
            prox_mu: 0.0,
            l2: 1e-4,
            rule: Rule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                c1: 0.1,
                c2: 0.001,
                decay: 1.0,
            },
        };
        let mut w = w0.clone();
        let (mut m, mut v) = (vec![0.0; len], vec![0.0; len]);
        let state = State {
            first: Some(&mut m),
            second: Some(&mut v),
        };
        u.apply(&mut w, &g, Extras::default(), state);
        for i in [0, CHUNK - 1, CHUNK, len - 1] {
            let d = g[i] * 0.75 + 1e-4 * w0[i];
            let m = 0.9f32 * 0.0 + (1.0 - 0.9f32) * d;
            let v = 0.999f32 * 0.0 + (1.0 - 0.999f32) * d * d;
            let want = w0[i] - 0.01 * (m / 0.1) / (libm::sqrtf(v / 0.001) + 1e-8);
            assert_eq!(w[i].to_bits(), want.to_bits(), "element {i}");
        }
    }

    #[test]
    fn missing_or_short_tensors_are_named() {
        let mut u = sgd(Rule::Momentum {
            momentum: 0.9,
            nesterov: false,
            first_update: true,
        });
        let err = u.check(4, 4, [None, None], [None, None]).unwrap_err();
        assert_eq!(err.0, "update: the first moment is missing");
        let err = u.check(4, 3, [None, None], [Some(4), None]).unwrap_err();
        assert!(
            err.0.contains("the gradient should hold 4 values"),
            "{}",
            err.0
        );
        u.prox_mu = 0.1;
        let err = u.check(4, 4, [None, None], [Some(4), None]).unwrap_err();
        assert_eq!(err.0, "update: the anchor is missing");
        assert!(u.check(4, 4, [Some(4), Some(4)], [Some(4), None]).is_ok());
    }
}
