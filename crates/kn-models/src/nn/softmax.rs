//! Log-softmax over the vocabulary for the ndarray build: one multi-threaded pass per row for
//! the values and one for the gradient, instead of the dozen single-threaded, allocating burn
//! ops (and their backward steps) that composing it costs; over a 50k vocabulary and a few
//! hundred rows that composition was a sixth of a gpt2 attribution.
//!
//! The normaliser `Σ exp(x − max)` is summed in blocks of [`BLOCK`] columns and then over the
//! blocks, as `kn_core::predict::log_softmax` does (accumulating a 49,152-column row in order
//! in f32 costs 1.4e-4 relative on SmolLM2's probabilities).

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use super::fused::exp;

/// Columns per partial sum of the normaliser.
const BLOCK: usize = 1024;

/// Rows per parallel work item (at least one).
fn rows_per_item(width: usize) -> usize {
    ((1 << 15) / width.max(1)).max(1)
}

/// `x` as a row-major slice (copied only when it is not one already).
pub(super) fn standard<'a>(x: &'a ArrayViewD<'_, f32>) -> std::borrow::Cow<'a, [f32]> {
    match x.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    }
}

/// `log softmax(x)` over the last axis, as a new row-major array of `x`'s shape (`None` for a
/// 0-d input or a shape ndarray refuses).
///
/// # Shapes
/// - `x`, output: `[.., vocab]`
pub(crate) fn log_softmax(x: ArrayViewD<'_, f32>) -> Option<ArrayD<f32>> {
    let width = *x.shape().last()?;
    let shape = x.raw_dim();
    let input = standard(&x);
    let mut y = vec![0.0f32; input.len()];
    if width > 0 {
        let item = rows_per_item(width) * width;
        y.par_chunks_mut(item).zip(input.par_chunks(item)).for_each(|(y, x)| {
            for (y, x) in y.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                let shift = log_sum_exp(x);
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = x - shift;
                }
            }
        });
    }
    ArrayD::from_shape_vec(shape, y).ok()
}

/// `log Σ exp(x)` of one row: the normaliser summed in blocks of [`BLOCK`] columns (eight
/// partial sums per block) after the maximum is taken out, with the widest instructions this
/// CPU has.
fn log_sum_exp(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has the features `log_sum_exp_avx2` is compiled for (`wide`).
        #[allow(unsafe_code)]
        unsafe {
            return log_sum_exp_avx2(x);
        }
    }
    log_sum_exp_body(x)
}

/// Whether the CPU has AVX2 and FMA ([`super::avx2_fma`]).
#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    super::avx2_fma()
}

/// [`log_sum_exp_body`] compiled for AVX2 and FMA: `exp`'s `floor` becomes one rounding
/// instruction instead of a libm call per element, so the loops vectorise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn log_sum_exp_avx2(x: &[f32]) -> f32 {
    log_sum_exp_body(x)
}

#[inline(always)]
fn log_sum_exp_body(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let max = chunks.remainder().iter().chain(lanes.iter()).fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut total = 0.0f32;
    for block in x.chunks(BLOCK) {
        let mut sums = [0.0f32; 8];
        let mut chunks = block.chunks_exact(8);
        for c in &mut chunks {
            for (s, &v) in sums.iter_mut().zip(c) {
                *s += exp(v - max);
            }
        }
        let rest: f32 = chunks.remainder().iter().map(|&v| exp(v - max)).sum();
        total += sums.iter().sum::<f32>() + rest;
    }
    max + total.ln()
}

/// `out = a · exp(x − s) + b · g` element-wise (the whole log-softmax's gradient), with the
/// widest instructions this CPU has.
fn exp_row(out: &mut [f32], x: &[f32], s: f32, a: f32, g: &[f32], b: f32) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has the features `exp_row_avx2` is compiled for (`wide`).
        #[allow(unsafe_code)]
        unsafe {
            return exp_row_avx2(out, x, s, a, g, b);
        }
    }
    exp_row_body(out, x, s, a, g, b)
}

/// [`exp_row_body`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_row_avx2(out: &mut [f32], x: &[f32], s: f32, a: f32, g: &[f32], b: f32) {
    exp_row_body(out, x, s, a, g, b)
}

#[inline(always)]
fn exp_row_body(out: &mut [f32], x: &[f32], s: f32, a: f32, g: &[f32], b: f32) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
        *o = a * exp(x - s) + b * g;
    }
}

/// `log softmax(x)` of each row at one column per row, `ids[row]`, without the whole
/// log-softmax array, and the rows' normalisers `log Σ exp(x)` for the backward pass. `None`
/// if `ids` has not one entry per row or names a column past the last.
///
/// # Shapes
/// - `x`: `[.., vocab]`; values: `x`'s shape without its last axis; normalisers: `[rows]`
pub(crate) fn picked_log_softmax(x: ArrayViewD<'_, f32>, ids: &[u32]) -> Option<(ArrayD<f32>, ArrayD<f32>)> {
    let width = *x.shape().last()?;
    let rows = x.len() / width.max(1);
    if width == 0 || ids.len() != rows || ids.iter().any(|&t| t as usize >= width) {
        return None;
    }
    let input = standard(&x);
    let shift: Vec<f32> = input.par_chunks(width).map(log_sum_exp).collect();
    let values: Vec<f32> = (0..rows).map(|r| input[r * width + ids[r] as usize] - shift[r]).collect();
    let shape = &x.shape()[..x.ndim() - 1];
    Some((ArrayD::from_shape_vec(shape.to_vec(), values).ok()?, ArrayD::from_shape_vec(vec![rows], shift).ok()?))
}

/// The input gradient of [`picked_log_softmax`] given the gradient `g` of its values: row `r`
/// is `g_r · (onehot(ids[r]) − softmax(x_r))`, as a new array (`x` copied, then
/// [`picked_log_softmax_backward_in_place`]); `None` when the shapes disagree.
///
/// # Shapes
/// - `x`, output: `[.., vocab]`; `shift`: `[rows]`; `g`: `x`'s shape without its last axis
pub(crate) fn picked_log_softmax_backward(
    x: ArrayViewD<'_, f32>,
    shift: ArrayViewD<'_, f32>,
    ids: &[u32],
    g: ArrayViewD<'_, f32>,
) -> Option<ArrayD<f32>> {
    let mut out = x.as_standard_layout().into_owned();
    picked_log_softmax_backward_in_place(&mut out.view_mut(), shift, ids, g).then_some(out)
}

/// [`picked_log_softmax_backward`] written over `x` itself, which the backward pass owns and
/// no longer needs: no second `[rows, vocab]` array (on gpt2's 240-row head, 48 MB of fresh
/// pages per pass). False, with `x` untouched, when the shapes disagree or `x` is not one
/// contiguous row-major block.
///
/// # Shapes
/// - `x`: `[.., vocab]`; `shift`: `[rows]`; `g`: `x`'s shape without its last axis
pub(crate) fn picked_log_softmax_backward_in_place(
    x: &mut ndarray::ArrayViewMutD<'_, f32>,
    shift: ArrayViewD<'_, f32>,
    ids: &[u32],
    g: ArrayViewD<'_, f32>,
) -> bool {
    let Some(&width) = x.shape().last() else { return false };
    let rows = x.len() / width.max(1);
    if width == 0 || ids.len() != rows || shift.len() != rows || g.len() != rows {
        return false;
    }
    let (shift, gs) = (standard(&shift), standard(&g));
    let Some(xs) = x.as_slice_mut() else { return false };
    xs.par_chunks_mut(width).enumerate().for_each(|(r, o)| {
        let (g, s) = (gs[r], shift[r]);
        exp_row_in_place(o, s, -g);
        if let Some(o) = o.get_mut(ids[r] as usize) {
            *o += g;
        }
    });
    true
}

/// `o = a · exp(o − s)` element-wise, with the widest instructions this CPU has.
fn exp_row_in_place(o: &mut [f32], s: f32, a: f32) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has the features `exp_row_in_place_avx2` is compiled for (`wide`).
        #[allow(unsafe_code)]
        unsafe {
            return exp_row_in_place_avx2(o, s, a);
        }
    }
    exp_row_in_place_body(o, s, a)
}

/// [`exp_row_in_place_body`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_row_in_place_avx2(o: &mut [f32], s: f32, a: f32) {
    exp_row_in_place_body(o, s, a)
}

#[inline(always)]
fn exp_row_in_place_body(o: &mut [f32], s: f32, a: f32) {
    for o in o.iter_mut() {
        *o = a * exp(*o - s);
    }
}

/// The input gradient of `y = log softmax(x)`: `g − exp(y) · Σ g` over each row.
///
/// # Shapes
/// - `y`, `g`, output: `[.., vocab]`
pub(crate) fn log_softmax_backward(y: ArrayViewD<'_, f32>, g: ArrayViewD<'_, f32>) -> Option<ArrayD<f32>> {
    if y.shape() != g.shape() {
        return None;
    }
    let width = *y.shape().last()?;
    let shape = y.raw_dim();
    let (ys, gs) = (standard(&y), standard(&g));
    let mut out = vec![0.0f32; ys.len()];
    if width > 0 {
        let item = rows_per_item(width) * width;
        out.par_chunks_mut(item).zip(ys.par_chunks(item)).zip(gs.par_chunks(item)).for_each(|((o, y), g)| {
            for ((o, y), g) in o.chunks_exact_mut(width).zip(y.chunks_exact(width)).zip(g.chunks_exact(width)) {
                let total: f32 = g.chunks(BLOCK).map(|b| b.iter().sum::<f32>()).sum();
                exp_row(o, y, 0.0, -total, g, 1.0);
            }
        });
    }
    ArrayD::from_shape_vec(shape, out).ok()
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn values_and_gradient_match_f64() {
        let (rows, v) = (5, 3 * super::BLOCK + 77);
        let x = ArrayD::from_shape_fn(IxDyn(&[1, rows, v]), |i| ((i[1] * v + i[2]) as f32 * 0.377).sin() * 9.0);
        let g = ArrayD::from_shape_fn(IxDyn(&[1, rows, v]), |i| ((i[1] * 7 + i[2] * 3) % 13) as f32 * 0.1 - 0.6);
        let y = super::log_softmax(x.view()).unwrap();
        let dx = super::log_softmax_backward(y.view(), g.view()).unwrap();
        let (mut worst, mut worst_grad) = (0.0f64, 0.0f64);
        for r in 0..rows {
            let row: Vec<f64> = (0..v).map(|j| x[[0, r, j]] as f64).collect();
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + row.iter().map(|&a| (a - max).exp()).sum::<f64>().ln();
            let gsum: f64 = (0..v).map(|j| g[[0, r, j]] as f64).sum();
            for j in 0..v {
                worst = worst.max((y[[0, r, j]] as f64 - (row[j] - lse)).abs());
                let want = g[[0, r, j]] as f64 - (row[j] - lse).exp() * gsum;
                worst_grad = worst_grad.max((dx[[0, r, j]] as f64 - want).abs());
            }
        }
        println!("fused log_softmax vs f64: values {worst:.1e}, gradient {worst_grad:.1e}");
        assert!(worst < 2e-6, "{worst}");
        assert!(worst_grad < 1e-6, "{worst_grad}");
    }

    /// The in-place backward writes exactly what the allocating one returns.
    #[test]
    fn the_in_place_picked_gradient_equals_the_allocating_one_bit_for_bit() {
        let v = 2 * super::BLOCK + 13;
        let x = ArrayD::from_shape_fn(IxDyn(&[3, 1, v]), |i| ((i[0] * v + i[2]) as f32 * 0.173).sin() * 5.0);
        let ids = [7u32, v as u32 - 1, 0];
        let g = ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![1.5f32, -0.25, 0.75]).unwrap();
        let (_, shift) = super::picked_log_softmax(x.view(), &ids).unwrap();
        let want = super::picked_log_softmax_backward(x.view(), shift.view(), &ids, g.view()).unwrap();
        let mut got = x.clone();
        assert!(super::picked_log_softmax_backward_in_place(&mut got.view_mut(), shift.view(), &ids, g.view()));
        assert_eq!(got, want);
        // A column-major block is refused and left as it was.
        let mut t = x.clone().reversed_axes();
        let before = t.clone();
        assert!(!super::picked_log_softmax_backward_in_place(&mut t.view_mut(), shift.view(), &ids, g.view()));
        assert_eq!(t, before);
    }

    #[test]
    fn picked_values_and_gradient_equal_the_whole_log_softmax() {
        let (rows, v) = (4, 2 * super::BLOCK + 13);
        let x =
            ArrayD::from_shape_fn(IxDyn(&[2, 2, v]), |i| (((i[0] * 2 + i[1]) * v + i[2]) as f32 * 0.291).cos() * 7.0);
        let ids = [3u32, 0, v as u32 - 1, 1500];
        let g = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0.5f32, -1.0, 2.0, 0.25]).unwrap();
        let (values, shift) = super::picked_log_softmax(x.view(), &ids).unwrap();
        let y = super::log_softmax(x.view()).unwrap();
        let dx = super::picked_log_softmax_backward(x.view(), shift.view(), &ids, g.view()).unwrap();
        // The whole log-softmax's gradient of Σ_r g_r y[r, ids[r]].
        let mut onehot = ArrayD::<f32>::zeros(IxDyn(&[2, 2, v]));
        for r in 0..rows {
            onehot[[r / 2, r % 2, ids[r] as usize]] = g.as_slice().unwrap()[r];
        }
        let want = super::log_softmax_backward(y.view(), onehot.view()).unwrap();
        let mut worst = 0.0f32;
        for r in 0..rows {
            assert_eq!(values.as_slice().unwrap()[r], y[[r / 2, r % 2, ids[r] as usize]]);
        }
        for (a, b) in dx.iter().zip(want.iter()) {
            worst = worst.max((a - b).abs());
        }
        println!("picked log-softmax gradient vs the whole one: {worst:.1e}");
        assert!(worst <= 1e-6, "{worst}");
        assert!(super::picked_log_softmax(x.view(), &[0, 1, 2, v as u32]).is_none(), "a column past the last");
        assert!(super::picked_log_softmax(x.view(), &[0, 1]).is_none(), "one id per row");
    }
}
