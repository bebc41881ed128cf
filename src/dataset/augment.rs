//! Seeded augmentation: what a plan may ask for ([`Augment`]) and one
//! sample's draw of it ([`Geometry`]), which moves an image and its mask
//! alike.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use crate::sandbox::random::unit_f32;

/// Seeded augmentation, applied to training batches only.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Augment {
    /// Mirror left–right with probability ½.
    pub horizontal_flip: bool,
    /// Mirror top–bottom with probability ½.
    pub vertical_flip: bool,
    /// Pad by this many zero pixels on each side, then cut a random window
    /// of the original size (0: off).
    pub crop_padding: u32,
    /// Rotate by an angle uniform in ±this many degrees (0: off; at most 45).
    pub max_rotation_degrees: f32,
}

/// One sample's augmentation, drawn from its stream: where each output
/// pixel reads from. Images and their masks share it, so they move together.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    flip_h: bool,
    flip_v: bool,
    dy: f32,
    dx: f32,
    angle: f32,
}

impl Geometry {
    /// The draws, made in a fixed order whatever is on.
    pub(super) fn draw(a: &Augment, rng: &mut ChaCha8Rng) -> Geometry {
        let mut draw = || unit_f32(rng.next_u64());
        let flip_h = a.horizontal_flip && draw() < 0.5;
        let flip_v = a.vertical_flip && draw() < 0.5;
        let pad = a.crop_padding as f32;
        let (dy, dx) = if a.crop_padding > 0 {
            let span = 2.0 * pad + 1.0;
            (
                (draw() * span).floor().min(2.0 * pad) - pad,
                (draw() * span).floor().min(2.0 * pad) - pad,
            )
        } else {
            (0.0, 0.0)
        };
        let angle = if a.max_rotation_degrees > 0.0 {
            (draw() * 2.0 - 1.0) * a.max_rotation_degrees.to_radians()
        } else {
            0.0
        };
        Geometry {
            flip_h,
            flip_v,
            dy,
            dx,
            angle,
        }
    }

    /// Write `planes` planes of `h` × `w` from `sample` into `out` through
    /// this geometry: bilinear between pixels when rotated and `smooth`,
    /// else the nearest pixel (masks: a class is never blended); outside
    /// the source reads 0.
    pub(super) fn warp(
        &self,
        sample: &[f32],
        (planes, h, w): (usize, usize, usize),
        smooth: bool,
        out: &mut [f32],
    ) {
        let plane = h * w;
        // Output pixel (r, col) reads source (sr, sc): the flips undone, then
        // the crop offset, then the rotation about the centre — an affine map,
        // so along a row the source moves by a constant step.
        let (sin, cos) = self.angle.sin_cos();
        let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
        let step = if self.flip_h { -1.0 } else { 1.0 };
        let bilinear = smooth && self.angle != 0.0;
        for r in 0..h {
            let sr = if self.flip_v { h - 1 - r } else { r } as f32 + self.dy;
            let sc0 = if self.flip_h { w as f32 - 1.0 } else { 0.0 } + self.dx;
            let (y, x0) = (sr - cy, sc0 - cx);
            let mut src_y = cy + cos * y + sin * x0;
            let mut src_x = cx - sin * y + cos * x0;
            let (step_y, step_x) = (sin * step, cos * step);
            for col in 0..w {
                let at = r * w + col;
                if bilinear {
                    let (y0, x0) = (src_y.floor(), src_x.floor());
                    let (fy, fx) = (src_y - y0, src_x - x0);
                    let weights = [
                        (1.0 - fy) * (1.0 - fx),
                        (1.0 - fy) * fx,
                        fy * (1.0 - fx),
                        fy * fx,
                    ];
                    let corners = [
                        (y0, x0),
                        (y0, x0 + 1.0),
                        (y0 + 1.0, x0),
                        (y0 + 1.0, x0 + 1.0),
                    ];
                    let index = corners.map(|(yy, xx)| {
                        (yy >= 0.0 && xx >= 0.0 && yy < h as f32 && xx < w as f32)
                            .then(|| yy as usize * w + xx as usize)
                    });
                    for c in 0..planes {
                        let base = &sample[c * plane..(c + 1) * plane];
                        let mut v = 0.0;
                        for k in 0..4 {
                            if let Some(i) = index[k] {
                                v += weights[k] * base[i];
                            }
                        }
                        out[c * plane + at] = v;
                    }
                } else {
                    // Whole pixels: a copy or a zero.
                    let (yi, xi) = (src_y.round(), src_x.round());
                    let inside = yi >= 0.0 && xi >= 0.0 && yi < h as f32 && xi < w as f32;
                    let from = yi as usize * w + xi as usize;
                    for c in 0..planes {
                        out[c * plane + at] = if inside {
                            sample[c * plane + from]
                        } else {
                            0.0
                        };
                    }
                }
                src_y += step_y;
                src_x += step_x;
            }
        }
    }
}
