//! Dice, the overlap score of segmentation masks, over the decided class
//! of every held-out pixel.

/// Dice of per-pixel `decisions` against `targets` (class indices below
/// `classes`): 2·TP / (2·TP + FP + FN) over all pixels for each class but
/// the background (0), averaged over the classes seen in the targets or
/// the decisions. With no foreground anywhere, predicted or true, the
/// masks agree perfectly: 1.
pub fn dice(decisions: &[f32], targets: &[f32], classes: usize) -> Result<f64, String> {
    if decisions.len() != targets.len() {
        return Err(format!(
            "{} decided pixels for {} target pixels",
            decisions.len(),
            targets.len()
        ));
    }
    if targets.is_empty() {
        return Err("no pixel to score".into());
    }
    let index = |v: f32| {
        (v >= 0.0 && v.fract() == 0.0 && (v as usize) < classes)
            .then_some(v as usize)
            .ok_or_else(|| format!("{v} is not a class index below {classes}"))
    };
    // (true positives, false positives, false negatives) per class.
    let mut counts = vec![(0u64, 0u64, 0u64); classes];
    for (&d, &t) in decisions.iter().zip(targets) {
        let (d, t) = (index(d)?, index(t)?);
        if d == t {
            counts[t].0 += 1;
        } else {
            counts[d].1 += 1;
            counts[t].2 += 1;
        }
    }
    let per_class: Vec<f64> = counts
        .iter()
        .skip(1)
        .filter(|(tp, fp, fn_)| tp + fp + fn_ > 0)
        .map(|&(tp, fp, fn_)| 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64)
        .collect();
    Ok(if per_class.is_empty() {
        1.0
    } else {
        per_class.iter().sum::<f64>() / per_class.len() as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_is_per_foreground_class_over_all_pixels() {
        // Class 1: TP 2, FP 2, FN 1 → 4/7; class 2: TP 1, FP 0, FN 1 → 2/3.
        let targets = [0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 0.0];
        let decided = [0.0, 1.0, 1.0, 0.0, 2.0, 1.0, 1.0];
        let d = dice(&decided, &targets, 3).unwrap();
        assert!((d - (4.0 / 7.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12, "{d}");
        assert_eq!(
            dice(&[0.0; 4], &[0.0; 4], 2).unwrap(),
            1.0,
            "no foreground anywhere"
        );
        assert!(dice(&[0.0], &[3.0], 2).is_err());
        assert!(dice(&[0.0], &[], 2).is_err());
    }
}
