//! NumPy/PyTorch broadcasting: aligning shapes from the right, a dimension of
//! one stretches to match.

/// The broadcast shape of `a` and `b`, or `None` when they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        let offset = n - s.len();
        if i < offset { 1 } else { s[i - offset] }
    };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Strides of a row-major `shape` read inside the larger `out` shape: 0 along
/// dimensions it is broadcast over.
pub fn strides_within(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let offset = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        if shape[i] != 1 {
            strides[offset + i] = stride;
        }
        stride *= shape[i];
    }
    strides
}

/// Call `f(out_index, a_offset, b_offset)` for every element of `out` in
/// row-major order, with the offsets given by the two stride lists.
pub fn for_each_pair(
    out: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let total: usize = out.iter().product();
    if total == 0 {
        return;
    }
    let nd = out.len();
    if nd == 0 {
        f(0, 0, 0);
        return;
    }
    let inner = out[nd - 1];
    let (ia, ib) = (sa[nd - 1], sb[nd - 1]);
    let mut index = vec![0usize; nd];
    let (mut oa, mut ob, mut o) = (0usize, 0usize, 0usize);
    loop {
        for k in 0..inner {
            f(o + k, oa + k * ia, ob + k * ib);
        }
        o += inner;
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if index[d] < out[d] {
                break;
            }
            oa -= sa[d] * out[d];
            ob -= sb[d] * out[d];
            index[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_broadcast_like_numpy() {
        assert_eq!(broadcast_shape(&[4, 1, 3], &[5, 1]), Some(vec![4, 5, 3]));
        assert_eq!(broadcast_shape(&[], &[2]), Some(vec![2]));
        assert_eq!(broadcast_shape(&[2, 3], &[3, 2]), None);
    }

    #[test]
    fn offsets_walk_both_operands() {
        let out = [2, 3];
        let sa = strides_within(&[2, 1], &out);
        let sb = strides_within(&[3], &out);
        let mut seen = Vec::new();
        for_each_pair(&out, &sa, &sb, |o, a, b| seen.push((o, a, b)));
        assert_eq!(
            seen,
            vec![
                (0, 0, 0),
                (1, 0, 1),
                (2, 0, 2),
                (3, 1, 0),
                (4, 1, 1),
                (5, 1, 2)
            ]
        );
    }
}
